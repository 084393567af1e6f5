//! How group commit amortises the commit: `Store::record_reports` on SQLite (WAL, synchronous=FULL,
//! so every commit is an fsync) with batches of 1, 16, 128 and 1024 reports of 2 points each, all for
//! one device. Throughput is in reports, so criterion's "thrpt" line reads as reports per second.
//!
//! Each batch size gets a fresh database in a temporary directory (under `$RAMPART_BENCH_TMPDIR` when
//! set, else the system temporary directory: put it on the disk you want to measure; a tmpfs hides
//! the fsync).
//!
//! Run: `cargo bench -p rampart-store --bench report_batching` (see `bench/README.md`).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rampart_store::{DeviceRow, ProductRow, ReportRow, Store};
use std::time::Duration;

const PRODUCT: &str = "benchproduct0001";
const DID: &str = "benchdevice000000001";
const BATCHES: [usize; 4] = [1, 16, 128, 1024];

fn product() -> ProductRow {
    ProductRow {
        product_key: PRODUCT.into(),
        name: "bench".into(),
        secret_enc: vec![0; 44],
        identity: rampart_store::IdentityFlags {
            dynamic_registration: true,
            ..Default::default()
        },
        report_limit_per_min: 600,
        model:
            r#"[{"name":"power","type":"bool"},{"name":"temp","type":"float","min":-40,"max":85}]"#
                .into(),
        enterprise_id: None,
        created_at: 1,
    }
}

fn device() -> DeviceRow {
    DeviceRow {
        did: DID.into(),
        product_key: PRODUCT.into(),
        hardware_id: "AA:BB:CC:DD:EE:FF".into(),
        mode: "product".into(),
        secret_enc: vec![0; 60],
        passcode_enc: vec![0; 38],
        created_at: 1,
        online: true,
        last_seen: None,
        state: "{}".into(),
    }
}

/// `n` reports of two points each, as the core builds them after validation.
fn batch(n: usize) -> Vec<ReportRow> {
    (0..n)
        .map(|i| {
            let ts = 1_795_616_567_115 + i as i64;
            let power = i % 2 == 0;
            let temp = format!("{:.1}", 20.0 + (i % 100) as f64 / 10.0);
            ReportRow {
                did: DID.into(),
                ts,
                values: serde_json::from_str(&format!(r#"{{"power":{power},"temp":{temp}}}"#))
                    .expect("values"),
            }
        })
        .collect()
}

fn temp_dir() -> tempfile::TempDir {
    match std::env::var_os("RAMPART_BENCH_TMPDIR") {
        Some(dir) => tempfile::Builder::new()
            .prefix("rampart-bench-")
            .tempdir_in(dir),
        None => tempfile::Builder::new().prefix("rampart-bench-").tempdir(),
    }
    .expect("temporary directory")
}

fn record_reports(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut g = c.benchmark_group("record_reports_sqlite");
    // Every iteration is at least one fsync: keep the sample count at criterion's minimum so the
    // whole group stays well under a minute on a small machine.
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(4));
    for n in BATCHES {
        let dir = temp_dir();
        let store = rt.block_on(async {
            let store = Store::open_sqlite(&dir.path().join("bench.db"))
                .await
                .expect("open SQLite");
            store.insert_product(&product()).await.expect("product");
            store.insert_device(&device()).await.expect("device");
            store
        });
        let reports = batch(n);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("batch", n), &reports, |b, reports| {
            b.to_async(&rt).iter(|| async {
                store.record_reports(reports).await.expect("record");
            })
        });
        // Sanity: when this batch size ran (a name filter may skip it), its rows landed.
        let rows = rt
            .block_on(store.history(DID, Some("temp"), 0, i64::MAX, 1))
            .expect("history");
        assert!(rows.len() <= 1);
        rt.block_on(store.close());
    }
    g.finish();
}

criterion_group!(benches, record_reports);
criterion_main!(benches);
