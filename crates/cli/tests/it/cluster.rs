//! Several nodes, one fleet: three servers on loopback sharing a PostgreSQL database of their own
//! (created for the test on `RAMPART_TEST_POSTGRES_URL`'s server) and NATS
//! (`RAMPART_TEST_NATS_URL`) under a subject prefix of their own. Skipped, with the reason
//! printed, when either variable is unset.

use crate::commands::fake_device;
use crate::support::*;
use rumqttc::v5::mqttbytes::v5 as p5;
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};

/// A database of the test's own on the PostgreSQL server of `RAMPART_TEST_POSTGRES_URL`,
/// dropped (with its connections) on drop.
struct PgDatabase {
    admin_url: String,
    name: String,
}

impl PgDatabase {
    fn create(test: &str) -> Option<PgDatabase> {
        let Ok(admin_url) = std::env::var("RAMPART_TEST_POSTGRES_URL") else {
            eprintln!("skipping {test}: RAMPART_TEST_POSTGRES_URL is not set");
            return None;
        };
        let name = format!("cluster_{}", nonce().to_lowercase());
        let out = Command::new("psql")
            .arg(&admin_url)
            .args(["-c", &format!("CREATE DATABASE {name}")])
            .output();
        match out {
            Ok(o) if o.status.success() => Some(PgDatabase { admin_url, name }),
            Ok(o) => {
                eprintln!(
                    "skipping {test}: cannot create a database: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
                None
            }
            Err(e) => {
                eprintln!("skipping {test}: cannot run psql: {e}");
                None
            }
        }
    }

    /// The URL of this database: the server's URL with its database name replaced.
    fn url(&self) -> String {
        let (base, query) = match self.admin_url.split_once('?') {
            Some((b, q)) => (b, format!("?{q}")),
            None => (self.admin_url.as_str(), String::new()),
        };
        let scheme_end = base.find("://").map_or(0, |i| i + 3);
        let host_end = base[scheme_end..]
            .find('/')
            .map_or(base.len(), |i| scheme_end + i);
        format!("{}/{}{query}", &base[..host_end], self.name)
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .arg(&self.admin_url)
            .args([
                "-c",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}

/// Nodes of one cluster: a database and a subject prefix of their own, one `master.key`.
/// Dropped in this order: the nodes stop before their database and buckets go.
struct Fleet {
    nodes: Vec<Server>,
    db: PgDatabase,
    nats: String,
    prefix: String,
    /// The master key file's text (hex).
    key: String,
}

impl Drop for Fleet {
    /// Stop the nodes, then delete the cluster's buckets (their JetStream streams) on the NATS
    /// server, speaking its text protocol: the test crate has no NATS client of its own.
    fn drop(&mut self) {
        use std::io::{BufRead, BufReader, Write};
        self.nodes.clear();
        let Some(addr) = self.nats.strip_prefix("nats://") else {
            return;
        };
        let Ok(stream) = std::net::TcpStream::connect(addr) else {
            return;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        let _ = reader.read_line(&mut line); // INFO
        let mut out = String::from("CONNECT {\"verbose\":false}\r\n");
        for b in ["presence", "nodes", "connects"] {
            out.push_str(&format!(
                "PUB $JS.API.STREAM.DELETE.KV_{}_{b} 0\r\n\r\n",
                self.prefix
            ));
        }
        out.push_str("PING\r\n");
        let mut w = &stream;
        if w.write_all(out.as_bytes()).is_ok() {
            // PONG: the server has read every request.
            for _ in 0..4 {
                line.clear();
                if reader.read_line(&mut line).is_err() || line.starts_with("PONG") {
                    break;
                }
            }
        }
    }
}

impl Fleet {
    /// `None` (with the reason printed) when PostgreSQL or NATS is not given.
    fn prepare(test: &str) -> Option<Fleet> {
        let Ok(nats) = std::env::var("RAMPART_TEST_NATS_URL") else {
            eprintln!("skipping {test}: RAMPART_TEST_NATS_URL is not set");
            return None;
        };
        let db = PgDatabase::create(test)?;
        let key = hmac_hex(&nonce(), "master key of a test cluster");
        Some(Fleet {
            prefix: format!("t{}", nonce().to_lowercase()),
            db,
            nats,
            key,
            nodes: Vec::new(),
        })
    }

    /// A data directory holding the cluster's master key (every node has the same one).
    fn data_dir(&self) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        std::fs::write(&path, &self.key).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        dir
    }

    fn env(&self, node: &str) -> Vec<(String, String)> {
        vec![
            ("RAMPART_STORE__URL".into(), self.db.url()),
            ("RAMPART_CLUSTER__NATS_URL".into(), self.nats.clone()),
            (
                "RAMPART_CLUSTER__SUBJECT_PREFIX".into(),
                self.prefix.clone(),
            ),
            ("RAMPART_CLUSTER__NODE_ID".into(), node.into()),
            (QUICK_RECONNECTS.0.into(), QUICK_RECONNECTS.1.into()),
        ]
    }

    /// Start node `name` in this process.
    async fn start(&mut self, name: &str) {
        let env = self.env(name);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let srv = Server::start_in(self.data_dir(), &env).await;
        self.nodes.push(srv);
    }

    /// Start node `name` as a `rampart` process (for what needs `kill -9`).
    async fn start_process(&mut self, name: &str) {
        let env = self.env(name);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let srv = Server::process_in(self.data_dir(), &env).await;
        self.nodes.push(srv);
    }
}

/// A device's `online` as node `srv` answers it.
async fn online(srv: &Server, did: &str) -> bool {
    srv.state(did).await["online"] == true
}

/// Poll `srv` until the device's `online` is `want`; returns how long it took.
async fn wait_online(srv: &Server, did: &str, want: bool, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if online(srv, did).await == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{did} not online={want} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The reason code of a server DISCONNECT, as rumqttc reports it.
fn server_disconnect(
    e: Result<rumqttc::v5::Event, rumqttc::v5::ConnectionError>,
) -> Option<p5::DisconnectReasonCode> {
    match e {
        Ok(rumqttc::v5::Event::Incoming(p5::Packet::Disconnect(d))) => Some(d.reason_code),
        Err(rumqttc::v5::ConnectionError::MqttState(
            rumqttc::v5::StateError::ServerDisconnect { reason_code, .. },
        )) => Some(reason_code),
        _ => None,
    }
}

#[tokio::test]
async fn cluster_mode_on_sqlite_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = rampart_server::Config::load_from(
        None,
        [("RAMPART_CLUSTER__NATS_URL", "nats://127.0.0.1:4222")],
    )
    .unwrap();
    cfg.data_dir = dir.path().to_path_buf();
    cfg.http.listen = "127.0.0.1:0".into();
    cfg.mqtt.tls_listen = "127.0.0.1:0".into();
    let e = match rampart_server::App::build(cfg).await {
        Ok(_) => panic!("a cluster node started on SQLite"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("a cluster needs a PostgreSQL store"), "{e}");
    // Refused before anything was written to the data directory.
    assert!(!dir.path().join("master.key").exists());
}

/// Three nodes: each names itself and the cluster state; a device on one node is online on every
/// node, takes commands sent through any node (acks come back to the caller), is taken over by a
/// connection to another node, is cut off by a disable sent through another node, and is offline
/// everywhere (409) once it has gone. CONNECT credentials and registration nonces are accepted
/// once in the whole cluster.
#[tokio::test]
async fn three_nodes_serve_one_fleet() {
    let Some(mut fleet) = Fleet::prepare("three_nodes_serve_one_fleet") else {
        return;
    };
    for n in ["n1", "n2", "n3"] {
        fleet.start(n).await;
    }
    let [a, b, c] = [&fleet.nodes[0], &fleet.nodes[1], &fleet.nodes[2]];
    for (srv, name) in [(a, "n1"), (b, "n2"), (c, "n3")] {
        let (s, v) = srv.call("GET", "/healthz", None, None).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(
            (
                v["node"].as_str(),
                v["cluster"].as_str(),
                v["store"].as_str()
            ),
            (Some(name), Some("connected"), Some("postgres")),
            "{v}"
        );
        let (s, v) = srv.call("GET", "/readyz", None, None).await;
        assert_eq!((s, v["bus"].as_str()), (200, Some("nats")), "{v}");
    }

    // A registration nonce used on one node is refused on another.
    let (pk, ps) = a.product(true, false).await;
    let body = Server::register_body(&pk, "hw-cluster-1", "product", &ps, now_ms(), &nonce());
    let (s, v) = a
        .call("POST", "/v1/device/register", None, Some(body.clone()))
        .await;
    assert_eq!(s, 200, "{v}");
    let did = v["did"].as_str().unwrap().to_owned();
    let secret = v["device_secret"].as_str().unwrap().to_owned();
    let (s, v) = c
        .call("POST", "/v1/device/register", None, Some(body))
        .await;
    assert_eq!(s, 401, "the same nonce on another node: {v}");

    // The device on node 2: online on every node; commands through nodes 1 and 3 reach it and
    // their acks come back.
    assert!(!online(a, &did).await);
    let path = format!("/v1/devices/{did}/commands");
    let (s, v) = a
        .admin("POST", &path, Some(json!({"set": {"power": true}})))
        .await;
    assert_error(s, &v, 409, "DEVICE_OFFLINE");
    let dev = fake_device(b, &did, &secret, |cmd| {
        Some(json!({"id": cmd["id"], "status": "ok"}))
    })
    .await;
    for srv in [a, b, c] {
        wait_online(srv, &did, true, Duration::from_secs(5)).await;
    }
    for srv in [a, c, b] {
        let started = Instant::now();
        let (s, v) = srv
            .admin("POST", &path, Some(json!({"set": {"power": true}})))
            .await;
        assert_eq!((s, v["status"].as_str()), (200, Some("ok")), "{v}");
        eprintln!(
            "command round trip through node {} to node 2: {:?}",
            srv.http,
            started.elapsed()
        );
    }
    let (s, v) = c
        .admin("POST", &path, Some(json!({"set": {"level": 55}})))
        .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("ok")), "{v}");

    // The same signed CONNECT again, on node 3: refused.
    let (u, p) = creds(&did, &secret);
    let (_c1, mut el1) = rumqttc::v5::AsyncClient::new(v5_options(b, &did, &u, &p), 10);
    v5_until(&mut el1, |e| {
        matches!(e, Ok(rumqttc::v5::Event::Incoming(p5::Packet::ConnAck(_)))).then_some(())
    })
    .await;
    // (el1 took the session over from the fake device on the same node.)
    let (_cr, mut replay) = rumqttc::v5::AsyncClient::new(v5_options(c, &did, &u, &p), 10);
    let refused = v5_until(&mut replay, |e| match e {
        Err(rumqttc::v5::ConnectionError::ConnectionRefused(code)) => Some(code),
        Ok(rumqttc::v5::Event::Incoming(p5::Packet::ConnAck(_))) => {
            panic!("a replayed CONNECT was accepted by another node")
        }
        _ => None,
    })
    .await;
    assert_eq!(refused, p5::ConnectReturnCode::BadUserNamePassword);

    // A fresh CONNECT on node 3 takes the session over from node 2.
    let (u, p) = creds(&did, &secret);
    let (_c3, mut el3) = rumqttc::v5::AsyncClient::new(v5_options(c, &did, &u, &p), 10);
    v5_until(&mut el3, |e| {
        matches!(e, Ok(rumqttc::v5::Event::Incoming(p5::Packet::ConnAck(_)))).then_some(())
    })
    .await;
    let code = v5_until(&mut el1, server_disconnect).await;
    assert_eq!(code, p5::DisconnectReasonCode::SessionTakenOver);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for srv in [a, b, c] {
        assert!(online(srv, &did).await, "online after the takeover");
    }

    // Disabled through node 1 while connected to node 3: node 3 closes the session (0x98), and
    // the device is offline on every node.
    let (s, v) = a
        .admin("POST", &format!("/v1/devices/{did}/disable"), None)
        .await;
    assert_eq!((s, &v["disabled"]), (200, &json!(true)), "{v}");
    let code = v5_until(&mut el3, server_disconnect).await;
    assert_eq!(code, p5::DisconnectReasonCode::AdministrativeAction);
    dev.abort();
    for srv in [a, b, c] {
        wait_online(srv, &did, false, Duration::from_secs(10)).await;
    }
    let (s, v) = b
        .admin("POST", &path, Some(json!({"set": {"power": false}})))
        .await;
    assert_error(s, &v, 409, "DEVICE_OFFLINE");
}

/// A node killed with SIGKILL leaves no word: its devices show offline on the other nodes within
/// 15 s (its liveness entry expires), the surviving node marks them offline in the store (lists),
/// and a command to them is 409.
#[tokio::test]
async fn a_killed_node_s_devices_go_offline_within_15_s() {
    let Some(mut fleet) = Fleet::prepare("a_killed_node_s_devices_go_offline_within_15_s") else {
        return;
    };
    fleet.start("n1").await;
    fleet.start_process("n2").await;
    let (pk, ps) = fleet.nodes[0].product(true, false).await;
    let (did, secret, _) = fleet.nodes[0].register(&pk, &ps, "hw-kill-1").await;
    let _dev = fake_device(&fleet.nodes[1], &did, &secret, |cmd| {
        Some(json!({"id": cmd["id"], "status": "ok"}))
    })
    .await;
    wait_online(&fleet.nodes[0], &did, true, Duration::from_secs(5)).await;
    fleet.nodes[1].kill();
    let killed = Instant::now();
    let took = wait_online(&fleet.nodes[0], &did, false, Duration::from_secs(15)).await;
    eprintln!("offline on the surviving node {took:?} after kill -9");
    // The surviving node also sweeps the dead node's devices in the store: lists say offline.
    let list = format!("/v1/devices?product_key={pk}");
    loop {
        let (s, v) = fleet.nodes[0].admin("GET", &list, None).await;
        assert_eq!(s, 200, "{v}");
        if v["data"][0]["online"] == false {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(25),
            "still online in the list: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "offline in the stored list {:?} after kill -9",
        killed.elapsed()
    );
    let (s, v) = fleet.nodes[0]
        .admin(
            "POST",
            &format!("/v1/devices/{did}/commands"),
            Some(json!({"set": {"power": true}})),
        )
        .await;
    assert_error(s, &v, 409, "DEVICE_OFFLINE");
}
