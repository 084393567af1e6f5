//! README.md cannot rot: every shell block in it runs here, in order and in one shell (variables
//! carry over, as in a reader's terminal), against the binary started as the README's set-up
//! command starts it, from a scratch directory. The answers the README shows in comments are
//! checked against what the commands printed:
//! - `# 403 FORBIDDEN`: the block printed the error code `"FORBIDDEN"`;
//! - `# {"id":"...","status":"ok"}`: it printed every key, and each pair whose value is a plain
//!   word (`"status":"ok"`);
//! - `# audit chain intact: N entries verified`: it printed `audit chain intact:`.
//!
//! Blocks tagged `sh setup` (the server and the test command) are not run: the server is
//! started by this test on free ports, and the README's ports and `cargo run` are replaced by
//! those ports and the built binary. A block tagged `sh background` (a second terminal) runs in
//! the background; the `text` block after it shows what it printed, and the kinds of event in that
//! sample must all appear in what it printed here. (It is disowned: a `wait` in a later block
//! waits for that block's jobs, as in the reader's first terminal, not for the second terminal.)

use crate::support::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The admin token the README's set-up command sets.
const README_ADMIN_TOKEN: &str = "change-me-admin-token";

#[derive(Debug)]
struct Block {
    /// The words after the language: `setup`, `background`.
    tags: Vec<String>,
    lang: String,
    text: String,
    /// The line in README.md where the block starts, for messages.
    line: usize,
}

fn blocks(readme: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in readme.lines().enumerate() {
        if let Some(info) = line.strip_prefix("```") {
            match open.take() {
                Some(b) => out.push(b),
                None => {
                    let mut words = info.split_whitespace().map(str::to_owned);
                    open = Some(Block {
                        lang: words.next().unwrap_or_default(),
                        tags: words.collect(),
                        text: String::new(),
                        line: i + 1,
                    });
                }
            }
        } else if let Some(b) = open.as_mut() {
            b.text.push_str(line);
            b.text.push('\n');
        }
    }
    assert!(open.is_none(), "README.md has an unclosed code block");
    out
}

/// The comment of a shell line: after ` # ` or a leading `#`.
fn comment(line: &str) -> Option<&str> {
    let t = line.trim_start();
    if let Some(c) = t.strip_prefix('#') {
        return Some(c.trim());
    }
    line.find(" # ").map(|i| line[i + 3..].trim())
}

/// What the comments of a block say its output contains.
fn expectations(block: &str) -> Vec<String> {
    let mut want = Vec::new();
    for c in block.lines().filter_map(comment) {
        // `NNN CODE`: a status and its error code.
        let words: Vec<&str> = c
            .split(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
            .collect();
        for pair in words.windows(2) {
            let is_status = pair[0].len() == 3 && pair[0].bytes().all(|b| b.is_ascii_digit());
            let is_code =
                pair[1].len() > 3 && pair[1].bytes().all(|b| b.is_ascii_uppercase() || b == b'_');
            if is_status && is_code {
                want.push(format!("\"{}\"", pair[1]));
            }
        }
        // A JSON object: its keys, and its pairs with a plain-word value.
        if let (Some(a), Some(b)) = (c.find('{'), c.rfind('}')) {
            let object = &c[a + 1..b];
            for part in object.split(',') {
                let Some((k, v)) = part.split_once(':') else {
                    continue;
                };
                let k = k.trim();
                if !(k.starts_with('"') && k.ends_with('"') && k.len() > 2) {
                    continue;
                }
                let v = v.trim();
                let word = v.len() > 2
                    && v.starts_with('"')
                    && v.ends_with('"')
                    && v[1..v.len() - 1].bytes().all(|b| b.is_ascii_lowercase());
                want.push(if word {
                    format!("{k}:{v}")
                } else {
                    format!("{k}:")
                });
            }
        }
        // `some words: ...`: the words and the colon.
        if let Some((lead, _)) = c.split_once(':') {
            if !lead.is_empty() && lead.chars().all(|ch| ch.is_ascii_lowercase() || ch == ' ') {
                want.push(format!("{lead}:"));
            }
        }
    }
    want
}

/// The kinds of event in a sample of JSON lines.
fn kinds(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["kind"].as_str().map(str::to_owned))
        .collect()
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The README's commands, pointed at this test's server and binary.
fn localize(text: &str, http: u16, tls: u16) -> String {
    text.replace("cargo run --release -p rampart --", bin())
        .replace("localhost:8443", &format!("localhost:{http}"))
        .replace("localhost:8883", &format!("localhost:{tls}"))
        .replace("-p 8883", &format!("-p {tls}"))
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn port(listeners: &Value, name: &str) -> u16 {
    listeners[name]
        .as_str()
        .and_then(|a| a.rsplit_once(':'))
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {listeners}"))
}

#[test]
fn every_shell_block_of_the_readme_runs_and_answers_as_shown() {
    let missing: Vec<&str> = [
        "bash",
        "curl",
        "jq",
        "openssl",
        "mosquitto_pub",
        "mosquitto_sub",
    ]
    .into_iter()
    .filter(|t| !have(t))
    .collect();
    if !missing.is_empty() {
        eprintln!("skipping the README run: missing {missing:?} (.ci/run installs them)");
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let all = blocks(&readme);

    // The set-up block gives the test command CI runs, word for word.
    let setup = all
        .iter()
        .find(|b| b.tags.iter().any(|t| t == "setup"))
        .expect("README.md has a `sh setup` block");
    let test_command = setup
        .text
        .lines()
        .find(|l| l.contains("cargo test"))
        .map(|l| l.split(" # ").next().unwrap().trim().to_owned())
        .expect("the set-up block has the test command");
    let ci = std::fs::read_to_string(root.join(".ci/run")).unwrap();
    assert!(
        ci.lines().any(|l| l.trim() == test_command),
        ".ci/run does not run the README's test command `{test_command}`"
    );
    assert!(setup.text.contains(&format!(
        "RAMPART_ADMIN_TOKEN={README_ADMIN_TOKEN} cargo run --release -p rampart -- serve"
    )));

    // The server, as the set-up command starts it, from a scratch directory, on free ports.
    let dir = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
    let _server = Child(
        serve_on_free_ports()
            .current_dir(dir.path())
            .env("RAMPART_ADMIN_TOKEN", README_ADMIN_TOKEN)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let listeners_path = dir.path().join("rampart-data/listeners.json");
    let deadline = Instant::now() + Duration::from_secs(60);
    let listeners: Value = loop {
        if let Ok(v) = std::fs::read_to_string(&listeners_path)
            .map_err(|_| ())
            .and_then(|t| serde_json::from_str(&t).map_err(|_| ()))
        {
            break v;
        }
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(50));
    };
    let (http, tls) = (port(&listeners, "http"), port(&listeners, "mqtt_tls"));

    // One script: each block after a marker; background blocks into their own files.
    let mut script = String::from("set -eo pipefail\n");
    let mut run: Vec<(usize, &Block)> = Vec::new();
    let mut background: Vec<(usize, &Block, Option<&Block>)> = Vec::new();
    for (i, b) in all.iter().enumerate() {
        if b.lang != "sh" || b.tags.iter().any(|t| t == "setup") {
            continue;
        }
        let text = localize(&b.text, http, tls);
        if b.tags.iter().any(|t| t == "background") {
            let sample = all.get(i + 1).filter(|n| n.lang == "text");
            script.push_str(&format!(
                "( {text} ) > background-{i}.log 2>&1 &\nBACKGROUND_{i}=$!\ndisown\n\
                 for _ in $(seq 300); do [ -s background-{i}.log ] && break; sleep 0.1; done\n"
            ));
            background.push((i, b, sample));
        } else {
            script.push_str(&format!("printf '\\n@@block {i}@@\\n'\n{text}\n"));
            run.push((i, b));
        }
    }
    script.push_str("printf '\\n@@end@@\\n'\n");
    for (i, _, _) in &background {
        script.push_str(&format!("kill $BACKGROUND_{i} 2>/dev/null || true\n"));
    }
    std::fs::write(dir.path().join("readme.sh"), &script).unwrap();
    let out = Command::new("timeout")
        .args(["-k", "5", "300", "bash", "readme.sh"])
        .current_dir(dir.path())
        .env_remove("RAMPART_TOKEN")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let server_log = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
    assert!(
        out.status.success() && stdout.contains("@@end@@"),
        "the README's blocks failed ({:?})\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- server\n{server_log}",
        out.status
    );

    // What each block printed holds what its comments say.
    let checked: usize = run.iter().map(|(_, b)| expectations(&b.text).len()).sum();
    assert!(
        checked >= 10,
        "only {checked} answers found in the README's comments"
    );
    for (i, b) in &run {
        let marker = format!("@@block {i}@@");
        let start = stdout.find(&marker).unwrap() + marker.len();
        let rest = &stdout[start..];
        let printed = &rest[..rest.find("\n@@").unwrap_or(rest.len())];
        for want in expectations(&b.text) {
            assert!(
                printed.contains(&want),
                "README.md line {}: the block did not print {want}\n--- it printed\n{printed}",
                b.line
            );
        }
    }
    for (i, b, sample) in &background {
        let printed = std::fs::read_to_string(dir.path().join(format!("background-{i}.log")))
            .unwrap_or_default();
        if let Some(sample) = sample {
            let missing: Vec<String> = kinds(&sample.text)
                .difference(&kinds(&printed))
                .cloned()
                .collect();
            assert!(
                missing.is_empty(),
                "README.md line {}: the background block printed no {missing:?} event\n--- it printed\n{printed}",
                b.line
            );
        }
    }
}

#[test]
fn comments_become_expectations() {
    assert_eq!(
        expectations("curl x   # 403 FORBIDDEN\n# 401 from now on\n"),
        ["\"FORBIDDEN\""]
    );
    assert_eq!(
        expectations("curl y   # {\"id\":\"...\",\"status\":\"ok\"}\n"),
        ["\"id\":", "\"status\":\"ok\""]
    );
    assert_eq!(
        expectations("rampart audit verify   # audit chain intact: N entries verified\n"),
        ["audit chain intact:"]
    );
    assert!(expectations("# 2. A device registers with an HMAC of the secret.\n").is_empty());
}
