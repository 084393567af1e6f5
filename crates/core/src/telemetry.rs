//! The names the server reports under, in one place: every metric with its kind and meaning.
//!
//! Code counts through these constants, never through a string literal (a test in this module
//! scans the sources), so a metric has one spelling, and [`describe`] gives each one its help
//! text once a recorder is installed. Labels are low-cardinality by rule: a limit's name, a
//! listener, a reason, an audit action — never an id, an address or a user's input.

/// What a metric is, for its `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric: its name, kind, labels and meaning.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

macro_rules! metrics_table {
    ($( $konst:ident = $name:literal, $kind:ident, [$($label:literal),*], $help:literal; )*) => {
        $(
            #[doc = $help]
            pub const $konst: &str = $name;
        )*
        /// Every metric the server reports.
        pub const ALL: &[Metric] = &[
            $( Metric { name: $name, kind: Kind::$kind, labels: &[$($label),*], help: $help }, )*
        ];
    };
}

metrics_table! {
    // Devices and their sessions.
    MQTT_CONNECTIONS = "rampart_mqtt_connections", Gauge, [],
        "MQTT connections open now, authenticated or not.";
    MQTT_SESSIONS_IDLE = "rampart_mqtt_sessions_idle", Gauge, [],
        "Plain-TCP sessions parked in the idle pool (no task, no buffers).";
    MQTT_IDLE_PINGS = "rampart_mqtt_idle_pings_total", Counter, [],
        "PINGREQs answered by the idle pool without waking the session.";
    MQTT_CONNECTIONS_REFUSED = "rampart_mqtt_connections_refused_total", Counter, ["reason"],
        "Sockets closed at accept, before any byte was read.";
    MQTT_ACL_DENIED = "rampart_mqtt_acl_denied_total", Counter, [],
        "Publishes and subscriptions outside the device's own topics.";
    MQTT_ENCODE_REFUSED = "rampart_mqtt_encode_refused_total", Counter, [],
        "Packets the codec refused to encode (a reason code its packet type does not carry); a bug.";
    DEVICES_ONLINE = "rampart_devices_online", Gauge, [],
        "Devices with a live session on this node.";
    PRESENCE_STALE = "rampart_presence_stale_total", Counter, [],
        "Offline marks dropped because the device had connected again in between.";
    AUTH_REFUSALS = "rampart_auth_refusals_total", Counter, ["listener", "reason"],
        "Refused device registrations, CONNECTs and signed API calls, by listener and the check that failed.";
    // Reports.
    REPORTS = "rampart_reports_total", Counter, [],
        "Reports committed to the store.";
    REPORTS_INVALID = "rampart_reports_invalid_total", Counter, [],
        "Reports refused by the product's data-point model.";
    REPORTS_RATE_LIMITED = "rampart_reports_rate_limited_total", Counter, [],
        "Publishes refused by the product's report rate.";
    REPORT_BATCH_SIZE = "rampart_report_batch_size", Histogram, [],
        "Reports and presence changes written by one group commit.";
    REPORT_COMPACTIONS = "rampart_report_compactions_total", Counter, [],
        "Moves of the SQLite report journal into the history.";
    // Operator event stream and webhooks.
    EVENT_STREAM_QUEUED = "rampart_event_stream_queued_total", Counter, [],
        "Events queued for subscription groups.";
    EVENT_STREAM_ACKED = "rampart_event_stream_acked_total", Counter, [],
        "Queued events acknowledged by their consumers.";
    EVENT_STREAM_EXPIRED = "rampart_event_stream_expired_total", Counter, [],
        "Queued events removed by retention before anyone acknowledged them.";
    WEBHOOK_DELIVERED = "rampart_webhook_delivered_total", Counter, [],
        "Events a webhook endpoint accepted (2xx).";
    WEBHOOK_FAILURES = "rampart_webhook_failures_total", Counter, [],
        "Failed webhook delivery attempts (retried).";
    WEBHOOK_DEAD_LETTERS = "rampart_webhook_dead_letters_total", Counter, [],
        "Events moved to a webhook's dead letters after its last attempt.";
    WEBHOOK_DROPPED = "rampart_webhook_dropped_total", Counter, [],
        "Events dropped from a webhook's batch because their product left the webhook's enterprise.";
    // Limits, accounts and audit.
    LIMIT_REFUSALS = "rampart_limit_refusals_total", Counter, ["limit"],
        "Requests, connects and publishes refused by a named limit.";
    WRONG_PROTOCOL = "rampart_wrong_protocol_total", Counter, ["listener"],
        "Plaintext HTTP or MQTT sent to a TLS listener (answered with what to use instead).";
    SLOW_PEER_DISCONNECTS = "rampart_slow_peer_disconnects_total", Counter, ["listener"],
        "Connections closed because the peer stopped reading past the write deadline.";
    ACCOUNT_LOCKOUTS = "rampart_account_lockouts_total", Counter, [],
        "User and developer accounts locked after repeated failed logins.";
    AUDIT_EVENTS = "rampart_audit_events_total", Counter, ["action"],
        "Audit entries written, by action.";
    AUDIT_SUPPRESSED = "rampart_audit_suppressed_total", Counter, ["what"],
        "Audit entries not written because a per-address audit rate was exceeded.";
    // The secure-session layer (Noise) on the plain-TCP MQTT listener.
    SECURE_SESSION_HANDSHAKES = "rampart_secure_session_handshakes_total", Counter, [],
        "Secure-session (Noise) handshakes completed on the plain-TCP MQTT listener.";
    SECURE_SESSION_FAILURES = "rampart_secure_session_failures_total", Counter, ["reason"],
        "Connections on the plain-TCP MQTT listener closed by the secure-session layer, by reason.";
    SECURE_SESSION_REKEYS = "rampart_secure_session_rekeys_total", Counter, ["direction"],
        "Secure-session key rotations: `out` the server's sending key, `in` a device's.";
}

/// Gives every metric its help text in the installed recorder (call once, after installing it).
pub fn describe() {
    for m in ALL {
        match m.kind {
            Kind::Counter => metrics::describe_counter!(m.name, m.help),
            Kind::Gauge => metrics::describe_gauge!(m.name, m.help),
            Kind::Histogram => metrics::describe_histogram!(m.name, m.help),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::path::Path;

    #[test]
    fn names_are_unique_and_follow_prometheus_conventions() {
        let mut seen = BTreeSet::new();
        for m in ALL {
            assert!(seen.insert(m.name), "{} twice", m.name);
            assert!(m.name.starts_with("rampart_"), "{}", m.name);
            assert!(
                m.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{}",
                m.name
            );
            assert_eq!(
                m.kind == Kind::Counter,
                m.name.ends_with("_total"),
                "{}: counters and only counters end in _total",
                m.name
            );
            assert!(m.help.ends_with('.'), "{}", m.name);
        }
    }

    fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                sources(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    /// A metric named by a literal at its call site would escape this table (and its help text).
    #[test]
    fn every_metric_is_named_through_this_table() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files = Vec::new();
        for krate in ["core", "gateway", "api"] {
            sources(&root.join(krate).join("src"), &mut files);
        }
        let mut bad = Vec::new();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            for (i, line) in text.lines().enumerate() {
                for mac in ["counter!(\"", "gauge!(\"", "histogram!(\""] {
                    if line.contains(mac) {
                        bad.push(format!("{}:{}: {}", f.display(), i + 1, line.trim()));
                    }
                }
            }
        }
        assert!(
            bad.is_empty(),
            "metrics named by a literal:\n{}",
            bad.join("\n")
        );
    }

    /// The values of the `pub const X: &str = "value";` lines of a source file.
    fn table_values(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix("pub const ")?.split_once(": &str = \""))
            .map(|(_, v)| v.trim_end_matches("\";").to_owned())
            .collect()
    }

    /// Audit actions and limit names are contracts (operators filter and alert on them), so each
    /// is spelled once, in `audit::action` or `limits::name`; code outside tests uses the constants.
    #[test]
    fn audit_actions_and_limit_names_are_spelled_once() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let tables = [src.join("audit/action.rs"), src.join("limits/name.rs")];
        let values: Vec<String> = tables.iter().flat_map(|t| table_values(t)).collect();
        assert!(values.len() > 100, "{} values", values.len());
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files = Vec::new();
        for krate in ["core", "gateway", "api"] {
            sources(&root.join(krate).join("src"), &mut files);
        }
        let mut bad = Vec::new();
        let tables: Vec<_> = tables.iter().map(|t| t.canonicalize().unwrap()).collect();
        for f in files
            .iter()
            .filter(|f| !tables.contains(&f.canonicalize().unwrap()))
        {
            let text = std::fs::read_to_string(f).unwrap();
            // Tests pin the wire values with literals on purpose.
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for v in &values {
                if code.contains(&format!("\"{v}\"")) {
                    bad.push(format!("{}: \"{v}\"", f.display()));
                }
            }
        }
        assert!(
            bad.is_empty(),
            "spelled outside the tables:\n{}",
            bad.join("\n")
        );
    }
}
