//! Interoperability with mosquitto-clients (skipped with a reason where they are not installed).

use crate::support::*;
use std::process::Command;

fn have(cmd: &str) -> bool {
    Command::new(cmd).arg("--help").output().is_ok()
}

#[tokio::test]
async fn mosquitto_pub_reports_over_tls() {
    if !have("mosquitto_pub") {
        eprintln!("skipping mosquitto_pub_reports_over_tls: mosquitto_pub is not installed (apt-get install mosquitto-clients)");
        return;
    }
    let srv = Server::start_with(&[QUICK_RECONNECTS]).await;
    let (_, did, secret) = srv.device().await;
    let (u, p) = creds(&did, &secret);
    let port = srv.mqtt_tls.to_string();
    let topic = format!("dev/{did}/up");
    let ca = srv.ca_path();
    let ca = ca.to_str().unwrap();
    for version in ["mqttv311", "mqttv5"] {
        let ts_creds = if version == "mqttv5" {
            creds_at(&did, &secret, now_ms() + 1)
        } else {
            (u.clone(), p.clone())
        };
        let out = tokio::task::spawn_blocking({
            let args: Vec<String> = [
                "-h",
                "localhost",
                "-p",
                &port,
                "--cafile",
                ca,
                "-V",
                version,
                "-i",
                &did,
                "-u",
                &ts_creds.0,
                "-P",
                &ts_creds.1,
                "-t",
                &topic,
                "-q",
                "1",
                "-m",
                if version == "mqttv5" {
                    r#"{"level":25}"#
                } else {
                    r#"{"power":true}"#
                },
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            move || Command::new("mosquitto_pub").args(args).output().unwrap()
        })
        .await
        .unwrap();
        assert!(
            out.status.success(),
            "{version}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    srv.wait_state(&did, |v| {
        v["state"]["power"] == true && v["state"]["level"] == 25
    })
    .await;

    // a wrong password is refused (mosquitto_pub exits non-zero)
    let (u, _) = creds(&did, &secret);
    let out = Command::new("mosquitto_pub")
        .args([
            "-h",
            "localhost",
            "-p",
            &port,
            "--cafile",
            ca,
            "-i",
            &did,
            "-u",
            &u,
            "-P",
            "00",
            "-t",
            &topic,
            "-m",
            "{}",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
}
