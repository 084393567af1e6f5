//! Lockout arithmetic over a user's [`LockState`]; pure, with the clock passed in.

use super::*;

/// Whether the account refuses logins at `now`.
pub fn is_locked(s: &LockState, now: i64) -> bool {
    s.locked_until > now
}

/// The state after a wrong password at `now`, and whether this failure locked the account.
pub fn after_failure(mut s: LockState, now: i64) -> (LockState, bool) {
    if s.failed_count == 0 || now - s.first_failed_at > FAIL_WINDOW_MS {
        s.failed_count = 0;
        s.first_failed_at = now;
    }
    s.failed_count += 1;
    if s.failed_count < MAX_FAILURES {
        return (s, false);
    }
    let shift = s.lockouts.clamp(0, 20) as u32;
    let dur = BASE_LOCK_MS.saturating_mul(1i64 << shift).min(MAX_LOCK_MS);
    s.locked_until = now + dur;
    s.lockouts += 1;
    s.failed_count = 0;
    s.first_failed_at = 0;
    (s, true)
}

/// The state after a successful login.
pub fn after_success() -> LockState {
    LockState::default()
}

/// The state to write when a try is claimed at `now`: counted as a failure until the caller
/// proves otherwise; `None` (nothing written, nothing to compare) while the account is locked.
pub fn claim(s: LockState, now: i64) -> Option<LockState> {
    (!is_locked(&s, now)).then(|| after_failure(s, now).0)
}

/// What a claim did, from the state it saw (`None`: the account is gone).
pub fn claimed(seen: Option<LockState>, now: i64) -> LoginClaim {
    match seen {
        Some(before) if !is_locked(&before, now) => {
            let (after, locks) = after_failure(before, now);
            LoginClaim::Counted {
                before,
                after,
                locks,
            }
        }
        _ => LoginClaim::Locked,
    }
}

/// A try at a password (or second factor) claimed in the store before anything is
/// compared, so concurrent tries are each counted and at most the allowed number compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginClaim {
    /// The account is locked: compare nothing.
    Locked,
    /// The try is counted as a failure: `before` is the state it replaced, `after` the
    /// state written, `locks` whether this try locked the account.
    Counted {
        before: LockState,
        after: LockState,
        locks: bool,
    },
}

impl LoginClaim {
    /// The state to write to give the try back (the password was right but the login stops
    /// for another reason): `before`, only while nobody counted another try since.
    pub fn refund(self) -> impl FnOnce(LockState) -> Option<LockState> + Send {
        move |now_stored| match self {
            LoginClaim::Counted { before, after, .. } if now_stored == after => Some(before),
            _ => None,
        }
    }
}
