//! TEMPORARY memory probe.
use crate::fake::Peer;
use rampart_device::{ConnectOptions, DeviceClient, Event, Transport};
use std::time::Duration;
use tokio::net::TcpListener;

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find(|l| l.starts_with("VmRSS"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn memprobe() {
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (kill_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let ktx = kill_tx.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let mut kill = ktx.subscribe();
            tokio::spawn(async move {
                let mut p = Peer::new(s, false);
                p.expect_connect().await;
                p.connack(0).await;
                p.expect_subscribe().await;
                tokio::select! { _ = async { while p.next().await.is_some() {} } => {}, _ = kill.recv() => {} }
            });
        }
    });
    let base = rss_kib();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(n);
    for i in 0..n {
        let tx = tx.clone();
        let addr = addr.clone();
        tokio::spawn(async move {
            let o = ConnectOptions::new(addr, format!("d{i}"), "s".into(), Transport::Tcp);
            let (c, mut ev) = DeviceClient::connect(o).unwrap();
            while let Some(e) = ev.next().await {
                if e == Event::Connected {
                    c.report(serde_json::json!({"a":1}).as_object().unwrap())
                        .unwrap();
                    let _ = tx.send(()).await;
                }
            }
        });
    }
    for _ in 0..n {
        rx.recv().await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib();
    println!("N={n} base={base} KiB after connect={after} KiB per-device={} KiB (includes fake broker side)", (after - base) / n as u64);
    let _ = kill_tx.send(());
    for _ in 0..n {
        rx.recv().await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after2 = rss_kib();
    println!(
        "after one reconnect={after2} KiB per-device={} KiB",
        (after2 - base) / n as u64
    );
}
