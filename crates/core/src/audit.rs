//! Audit log: every security-relevant act becomes one row (who, what, on what, from where, outcome)
//! and one structured log line. A failed audit write is logged loudly but never fails the act.

use crate::{now_ms, Core};
use rampart_store::AuditRow;

/// Who did something.
#[derive(Debug, Clone)]
pub struct Actor {
    pub kind: &'static str,
    pub id: String,
}

impl Actor {
    pub fn admin() -> Actor {
        Actor {
            kind: "admin",
            id: "bootstrap".into(),
        }
    }
    pub fn cli() -> Actor {
        Actor {
            kind: "cli",
            id: "local".into(),
        }
    }
    pub fn device(did: &str) -> Actor {
        Actor {
            kind: "device",
            id: did.into(),
        }
    }
    /// An end user.
    pub fn user(user_id: &str) -> Actor {
        Actor {
            kind: "user",
            id: user_id.into(),
        }
    }
    /// Someone who has not proven to be a user yet, named by the login name they gave.
    pub fn user_candidate(username: &str) -> Actor {
        Actor {
            kind: "user_candidate",
            id: username.chars().take(64).collect(),
        }
    }
    /// A device that has not proven its identity yet, named by what it claims.
    pub fn device_candidate(hardware_id: &str) -> Actor {
        Actor {
            kind: "device_candidate",
            id: hardware_id.chars().take(64).collect(),
        }
    }
}

/// One audit entry being built.
#[derive(Debug)]
pub struct AuditEvent(AuditRow);

impl AuditEvent {
    pub fn new(actor: &Actor, action: &str, outcome: &str) -> AuditEvent {
        AuditEvent(AuditRow {
            ts: now_ms(),
            actor_kind: actor.kind.into(),
            actor_id: actor.id.clone(),
            action: action.into(),
            outcome: outcome.chars().take(256).collect(),
            ..Default::default()
        })
    }
    pub fn target(mut self, t: impl Into<String>) -> Self {
        self.0.target = Some(t.into());
        self
    }
    pub fn source_ip(mut self, ip: impl Into<String>) -> Self {
        self.0.source_ip = Some(ip.into());
        self
    }
    pub fn detail(mut self, d: impl Into<String>) -> Self {
        self.0.detail = Some(d.into());
        self
    }
    pub fn tenant(mut self, t: impl Into<String>) -> Self {
        self.0.tenant = Some(t.into());
        self
    }
}

impl Core {
    pub async fn audit(&self, ev: AuditEvent) {
        let r = &ev.0;
        tracing::info!(
            target: "audit",
            actor_kind = %r.actor_kind, actor_id = %r.actor_id, action = %r.action,
            target = r.target.as_deref().unwrap_or(""), source_ip = r.source_ip.as_deref().unwrap_or(""),
            outcome = %r.outcome, "audit"
        );
        metrics::counter!("rampart_audit_events_total", "action" => r.action.clone()).increment(1);
        if let Err(e) = self.store().append_audit(r).await {
            tracing::error!(error = %e, action = %r.action, "audit write failed");
        }
    }
}
