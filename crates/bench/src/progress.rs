//! Progress bars on stderr (drawn only when stderr is a terminal) and phase lines (always printed).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::atomic::{AtomicBool, Ordering};

static QUIET: AtomicBool = AtomicBool::new(false);

/// Silence bars and phase lines (worker processes, tests).
pub(crate) fn set_quiet(q: bool) {
    QUIET.store(q, Ordering::Relaxed);
}

pub(crate) fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// A bar of `len` steps named `phase`.
pub(crate) fn bar(len: u64, phase: &str) -> ProgressBar {
    let target = if quiet() {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr_with_hz(4)
    };
    let b = ProgressBar::with_draw_target(Some(len), target);
    if let Ok(style) =
        ProgressStyle::with_template("{prefix:>9} [{bar:32}] {pos}/{len} {msg} ({elapsed})")
    {
        b.set_style(style.progress_chars("=> "));
    }
    b.set_prefix(phase.to_owned());
    b
}

/// One line on stderr describing a finished phase.
pub(crate) fn line(msg: impl AsRef<str>) {
    if !quiet() {
        eprintln!("bench: {}", msg.as_ref());
    }
}
