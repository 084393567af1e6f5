//! Durability of acknowledged reports across crashes. Devices report over
//! MQTT 5 with QoS 1 while the test kills the server with SIGKILL again and again and starts it
//! on the same data directory; each device reconnects to the new process and goes on. A PUBACK
//! with reason Success promises that the report is committed (the writer's group commit), so
//! afterwards, counted Jepsen-style from the history API, acknowledged-but-missing must be 0. A
//! report whose PUBACK was lost to a kill is sent again and may be stored twice: duplicates are
//! counted and printed, not failed.

use crate::support::*;
use rumqttc::v5::mqttbytes::v5::{Packet as P5, PubAckReason};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event};
use serde_json::json;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

const DEVICES: usize = 20;
const KILLS: usize = 5;
/// Acknowledged reports (all devices together) after each start before the next kill.
const ACKS_PER_LIFE: usize = 200;

/// The live server's generation and MQTT/TLS port; `None` while it is down.
type Target = Option<(u64, u16)>;

/// What one device saw.
struct Seen {
    did: String,
    /// Sequence numbers of the reports acknowledged with Success.
    acked: Vec<i64>,
    /// Reports sent again after a connection was lost before their PUBACK.
    resent: usize,
}

/// Report `{"seq": n}` for n = 0, 1, ... with QoS 1, one at a time, until `stop`; reconnect to
/// each new server generation after losing the connection.
async fn device(
    did: String,
    secret: String,
    ca: PathBuf,
    mut target: watch::Receiver<Target>,
    mut stop: watch::Receiver<bool>,
    acks: mpsc::UnboundedSender<()>,
) -> Seen {
    let mut seen = Seen {
        did: did.clone(),
        acked: Vec::new(),
        resent: 0,
    };
    let (mut seq, mut failed_gen, mut last_ts) = (0i64, 0u64, 0i64);
    let mut unacked_send = false;
    'connections: loop {
        let (gen, port) = loop {
            if *stop.borrow() {
                break 'connections;
            }
            if let Some((g, p)) = *target.borrow_and_update() {
                if g > failed_gen {
                    break (g, p);
                }
            }
            tokio::select! {
                _ = target.changed() => {}
                _ = stop.changed() => {}
            }
        };
        last_ts = now_ms().max(last_ts + 1);
        let (u, p) = creds_at(&did, &secret, last_ts);
        let (c, mut el) = AsyncClient::new(v5_options_at(port, &ca, &did, &u, &p), 10);
        loop {
            match el.poll().await {
                Ok(Event::Incoming(P5::ConnAck(_))) => break,
                Ok(_) => {}
                Err(_) => {
                    failed_gen = gen;
                    continue 'connections;
                }
            }
        }
        while !*stop.borrow() {
            if unacked_send {
                seen.resent += 1;
            }
            unacked_send = true;
            let report = json!({ "seq": seq }).to_string();
            c.publish(format!("dev/{did}/up"), QoS::AtLeastOnce, false, report)
                .await
                .unwrap();
            let reason = loop {
                match el.poll().await {
                    Ok(Event::Incoming(P5::PubAck(a))) => break Ok(a.reason),
                    Ok(_) => {}
                    Err(e) => break Err(e),
                }
            };
            match reason {
                Ok(PubAckReason::Success) => {
                    unacked_send = false;
                    seen.acked.push(seq);
                    seq += 1;
                    let _ = acks.send(());
                }
                Ok(other) => panic!("{did}: report {seq} refused with {other:?}"),
                Err(_) => {
                    failed_gen = gen;
                    continue 'connections;
                }
            }
        }
        let _ = c.disconnect().await;
        break;
    }
    seen
}

#[tokio::test]
async fn acknowledged_reports_survive_sigkill() {
    let mut srv = Server::process().await;
    let (s, v) = srv
        .admin(
            "POST",
            "/v1/products",
            Some(json!({
                "name": "Counter",
                "identity": {"dynamic_registration": true, "allowlist": false},
                "report_limit_per_min": 60000,
                "datapoints": [{"name": "seq", "type": "int", "min": 0, "max": 1000000, "step": 1}]
            })),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (pk, ps) = (
        v["product_key"].as_str().unwrap().to_owned(),
        v["product_secret"].as_str().unwrap().to_owned(),
    );
    let mut devices = Vec::new();
    for i in 0..DEVICES {
        let (did, secret, _) = srv.register(&pk, &ps, &format!("counter-{i}")).await;
        devices.push((did, secret));
    }

    let mut generation = 1;
    let (target_tx, target_rx) = watch::channel::<Target>(Some((generation, srv.mqtt_tls)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel();
    let tasks: Vec<_> = devices
        .iter()
        .map(|(did, secret)| {
            tokio::spawn(device(
                did.clone(),
                secret.clone(),
                srv.ca_path(),
                target_rx.clone(),
                stop_rx.clone(),
                ack_tx.clone(),
            ))
        })
        .collect();
    drop(ack_tx);

    for life in 0..=KILLS {
        for _ in 0..ACKS_PER_LIFE {
            tokio::time::timeout(Duration::from_secs(60), ack_rx.recv())
                .await
                .unwrap_or_else(|_| panic!("life {life}: reports stopped being acknowledged"))
                .expect("every device task ended");
        }
        if life < KILLS {
            target_tx.send(None).unwrap();
            srv = srv.crash_restart(&[]).await;
            generation += 1;
            target_tx.send(Some((generation, srv.mqtt_tls))).unwrap();
        }
    }
    stop_tx.send(true).unwrap();
    let mut seen = Vec::new();
    for t in tasks {
        seen.push(t.await.unwrap());
    }

    let (mut acked, mut missing, mut duplicates, mut unacked_stored, mut resent) = (0, 0, 0, 0, 0);
    for s in &seen {
        let (status, hist) = srv
            .admin(
                "GET",
                &format!("/v1/devices/{}/history?point=seq&limit=1000", s.did),
                None,
            )
            .await;
        assert_eq!(status, 200, "{hist}");
        let rows = hist["data"].as_array().unwrap();
        assert!(rows.len() < 1000, "history page full: raise the limit");
        let mut stored: HashMap<i64, usize> = HashMap::new();
        for r in rows {
            *stored.entry(r["value"].as_i64().unwrap()).or_default() += 1;
        }
        let lost: Vec<i64> = s
            .acked
            .iter()
            .copied()
            .filter(|q| !stored.contains_key(q))
            .collect();
        assert!(
            lost.is_empty(),
            "{}: acknowledged but missing: {lost:?}",
            s.did
        );
        acked += s.acked.len();
        missing += lost.len();
        resent += s.resent;
        duplicates += stored.values().map(|n| n - 1).sum::<usize>();
        unacked_stored += stored.keys().filter(|q| !s.acked.contains(q)).count();
    }
    println!(
        "durability: {DEVICES} devices, {KILLS} SIGKILLs: acknowledged {acked}, \
         acknowledged-but-missing {missing}, duplicates {duplicates}, resent after a kill {resent}, \
         stored without an acknowledgement {unacked_stored}"
    );
    assert_eq!(missing, 0);
    assert!(acked >= ACKS_PER_LIFE * (KILLS + 1));
}
