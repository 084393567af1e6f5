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
