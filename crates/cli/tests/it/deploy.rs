//! The deployment files under `deploy/` stay usable: the Dockerfile parses into a build stage
//! and a non-root runtime stage that copies the binary from it, the systemd unit passes
//! `systemd-analyze verify` (where it is installed) and keeps its hardening, and the Grafana
//! dashboard is JSON whose every query names a metric the server reports.

use crate::support::bin;
use std::path::{Path, PathBuf};

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(file)
}

/// A Dockerfile's instructions: (keyword, arguments), continuation lines joined, comments and
/// blank lines dropped. Panics on a keyword Docker does not have.
fn dockerfile(text: &str) -> Vec<(String, String)> {
    const KEYWORDS: &[&str] = &[
        "FROM",
        "RUN",
        "CMD",
        "LABEL",
        "EXPOSE",
        "ENV",
        "ADD",
        "COPY",
        "ENTRYPOINT",
        "VOLUME",
        "USER",
        "WORKDIR",
        "ARG",
        "ONBUILD",
        "STOPSIGNAL",
        "HEALTHCHECK",
        "SHELL",
    ];
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let t = line.trim();
        if pending.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        if let Some(head) = t.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(t);
        let (kw, args) = pending
            .split_once(char::is_whitespace)
            .expect("an argument");
        let kw = kw.to_uppercase();
        assert!(KEYWORDS.contains(&kw.as_str()), "unknown instruction {kw}");
        out.push((kw, args.trim().to_owned()));
        pending.clear();
    }
    assert!(pending.is_empty(), "a continued line at the end");
    out
}

#[test]
fn the_dockerfile_builds_in_one_stage_and_runs_as_non_root_in_another() {
    let text = std::fs::read_to_string(deploy("Dockerfile")).unwrap();
    let ins = dockerfile(&text);
    let stages: Vec<usize> = ins
        .iter()
        .enumerate()
        .filter(|(_, (k, _))| k == "FROM")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    let build = &ins[stages[0]..stages[1]];
    let runtime = &ins[stages[1]..];
    assert!(build[0].1.ends_with(" AS build"), "{}", build[0].1);
    // The build image's Rust is at least the workspace's minimum.
    let image = build[0].1.split_whitespace().next().unwrap();
    let version = image
        .strip_prefix("rust:")
        .and_then(|v| v.split('-').next())
        .expect("a rust image");
    let cargo =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml"))
            .unwrap();
    let want = cargo
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .unwrap()
        .trim_matches('"');
    let parse = |v: &str| -> Vec<u32> { v.split('.').map(|n| n.parse().unwrap()).collect() };
    assert!(parse(version) >= parse(want), "{version} < {want}");
    assert!(build.iter().any(|(k, a)| k == "RUN"
        && a.contains("cargo build --release --locked")
        && a.contains("--bin rampart")));
    assert!(runtime
        .iter()
        .any(|(k, a)| k == "COPY" && a.starts_with("--from=build ")));
    let user = runtime
        .iter()
        .rev()
        .find(|(k, _)| k == "USER")
        .map(|(_, a)| a.as_str())
        .expect("the runtime stage sets a user");
    let uid = user.split(':').next().unwrap();
    assert!(uid != "0" && uid != "root", "runs as {user}");
    assert!(
        !ins.iter().any(|(k, a)| k == "ADD" && a.contains("://")),
        "no remote ADD"
    );
    for (k, a) in runtime
        .iter()
        .filter(|(k, _)| k == "ENTRYPOINT" || k == "CMD")
    {
        let v: Vec<String> = serde_json::from_str(a).unwrap_or_else(|e| panic!("{k} {a}: {e}"));
        assert!(!v.is_empty());
    }
    // The runtime's command is one the binary accepts.
    let cmd: Vec<String> =
        serde_json::from_str(&runtime.iter().find(|(k, _)| k == "CMD").unwrap().1).unwrap();
    let mut probe: Vec<String> = cmd.clone();
    probe.push("--help".into());
    let out = std::process::Command::new(bin())
        .args(&probe)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_systemd_unit_verifies_and_keeps_its_hardening() {
    let text = std::fs::read_to_string(deploy("rampart.service")).unwrap();
    let mut section = String::new();
    let mut keys = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = s.to_owned();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not key=value: {line}"));
        keys.push((section.clone(), k.to_owned(), v.to_owned()));
    }
    let has = |s: &str, k: &str, v: &str| keys.iter().any(|(a, b, c)| a == s && b == k && c == v);
    for (k, v) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("DynamicUser", "yes"),
        ("StateDirectory", "rampart"),
        ("KillSignal", "SIGTERM"),
    ] {
        assert!(has("Service", k, v), "[Service] {k}={v}");
    }
    assert!(has("Install", "WantedBy", "multi-user.target"));

    let Ok(analyze) = which("systemd-analyze") else {
        eprintln!("systemd-analyze is not installed: the unit was parsed, not verified");
        return;
    };
    // Verified against the binary these tests built, which stands in for the installed one.
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("rampart.service");
    std::fs::write(&unit, text.replace("/usr/local/bin/rampart", bin())).unwrap();
    let out = std::process::Command::new(analyze)
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !err.contains("rampart.service:"),
        "{err}"
    );
}

fn which(name: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(())
}

#[test]
fn the_grafana_dashboard_queries_only_metrics_the_server_reports() {
    let text = std::fs::read_to_string(deploy("grafana/rampart.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let panels = v["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8);
    let known: Vec<String> = rampart_core::telemetry::ALL
        .iter()
        .flat_map(|m| match m.kind {
            rampart_core::telemetry::Kind::Histogram => vec![
                format!("{}_bucket", m.name),
                format!("{}_sum", m.name),
                format!("{}_count", m.name),
            ],
            _ => vec![m.name.to_owned()],
        })
        .collect();
    let mut seen = 0;
    for p in panels {
        for t in p["targets"].as_array().expect("targets") {
            let expr = t["expr"].as_str().expect("expr");
            for name in expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("rampart_"))
            {
                assert!(
                    known.iter().any(|k| k == name),
                    "{}: unknown metric {name}",
                    p["title"]
                );
                seen += 1;
            }
        }
    }
    assert!(seen >= 10);
    assert!(
        text.contains("rampart_limit_refusals_total") && text.contains("rampart_devices_online")
    );
}
