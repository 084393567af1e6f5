//! The crates form layers, and each wall is a Cargo edge: a crate may depend only on the
//! crates below it. The edges to the store matter most: the edges (gateway, API) reach data
//! only through `Core`, whose rules every read and write then passes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `rampart-*` crates a manifest names in one dependency table.
fn rampart_deps(manifest: &toml::Table, table: &str) -> BTreeSet<String> {
    manifest
        .get(table)
        .and_then(|t| t.as_table())
        .map(|t| {
            t.keys()
                .filter(|k| k.starts_with("rampart"))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// Every crate of `crates/` by package name, with its normal `rampart-*` dependencies.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(workspace().join("crates")).unwrap() {
        let manifest = entry.unwrap().path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let t: toml::Table = text.parse().unwrap();
        let name = t["package"]["name"].as_str().unwrap().to_owned();
        out.insert(name, rampart_deps(&t, "dependencies"));
    }
    out
}

#[test]
fn each_crate_depends_only_on_the_layers_below_it() {
    // What each library may link. The binary and the bench sit on top and are not listed.
    let allowed: BTreeMap<&str, &[&str]> = BTreeMap::from([
        ("rampart-proto", &[][..]),
        ("rampart-alloc", &[][..]),
        ("rampart-device", &["rampart-proto"][..]),
        ("rampart-store", &["rampart-proto"][..]),
        ("rampart-core", &["rampart-proto", "rampart-store"][..]),
        ("rampart-gateway", &["rampart-proto", "rampart-core"][..]),
        ("rampart-api", &["rampart-proto", "rampart-core"][..]),
        (
            "rampart-server",
            &[
                "rampart-proto",
                "rampart-store",
                "rampart-core",
                "rampart-gateway",
                "rampart-api",
            ][..],
        ),
    ]);
    let graph = graph();
    for (name, allowed) in &allowed {
        let Some(deps) = graph.get(*name) else {
            panic!("{name} is not in crates/");
        };
        for dep in deps {
            assert!(
                allowed.contains(&dep.as_str()),
                "{name} depends on {dep}; it may depend only on {allowed:?}"
            );
        }
    }
}

#[test]
fn the_store_is_reached_only_through_core() {
    let graph = graph();
    for (name, deps) in &graph {
        if ["rampart-gateway", "rampart-api", "rampart-device"].contains(&name.as_str()) {
            assert!(
                !deps.contains("rampart-store"),
                "{name} links the store; an edge must go through Core"
            );
        }
    }
    // `Core::store` stays crate-private: an edge that could call it would skip every rule.
    let lib = std::fs::read_to_string(workspace().join("crates/core/src/lib.rs")).unwrap();
    let decl = lib
        .lines()
        .find(|l| l.contains("fn store(&self)"))
        .expect("Core::store exists");
    assert!(
        decl.trim_start().starts_with("pub(crate) fn"),
        "Core::store must stay pub(crate): {decl}"
    );
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Time-based decisions read the core's `Clock`, so a skipped wait is seen by every part at
/// once; and only tests can move it: no crate turns on `test-clock` for a normal build.
#[test]
fn wall_time_is_read_only_through_the_clock() {
    let mut files = Vec::new();
    for krate in ["core", "gateway", "api", "server"] {
        sources(
            &workspace().join("crates").join(krate).join("src"),
            &mut files,
        );
    }
    let clock = workspace().join("crates/core/src/clock.rs");
    for f in files.iter().filter(|f| **f != clock) {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(
            !text.contains("SystemTime::now"),
            "{} reads the system clock; read `Core::clock` instead",
            f.display()
        );
    }
    for entry in std::fs::read_dir(workspace().join("crates")).unwrap() {
        let manifest = entry.unwrap().path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let t: toml::Table = text.parse().unwrap();
        let enabled = t
            .get("dependencies")
            .and_then(|d| d.get("rampart-core"))
            .and_then(|c| c.get("features"))
            .is_some_and(|f| f.to_string().contains("test-clock"));
        assert!(
            !enabled,
            "{} turns on test-clock outside dev-dependencies",
            manifest.display()
        );
    }
}
