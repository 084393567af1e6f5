//! OTA end to end: the firmware registry, the OTA key and signed manifests, campaigns that stage,
//! pause themselves and time devices out, device-bound resumable downloads, and the device SDK's
//! client (`rampart_device::ota`) doing real updates against the server.

use crate::support::*;
use base64::Engine;
use rampart_device::ota::{
    self as dota, Boot, DeviceIdentity, Faults, HttpOta, Outcome, SlotInfo, Slots,
};
use rampart_device::Secret;
use rampart_proto::ota::{Check, Target};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An image of `n` bytes that is not text (so it is not mistaken for markup).
fn image(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[i % 4] ^ seed)
        .collect()
}

async fn upload(
    srv: &Server,
    pk: &str,
    token: &str,
    bytes: Vec<u8>,
    target: &str,
    version: &str,
    hw: &str,
) -> (u16, Value) {
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name("../../evil.bin"),
        )
        .text("target", target.to_owned())
        .text("version", version.to_owned())
        .text("hardware_versions", hw.to_owned())
        .text("notes", "test image");
    let resp = srv
        .http_client
        .post(srv.url(&format!("/v1/products/{pk}/firmware")))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

async fn ota_key(srv: &Server, pk: &str) -> [u8; 32] {
    let (s, v) = srv
        .admin("GET", &format!("/v1/products/{pk}/ota-key"), None)
        .await;
    assert_eq!(s, 200, "{v}");
    base64::engine::general_purpose::STANDARD
        .decode(v["ed25519"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

async fn campaign(srv: &Server, pk: &str, id: &str) -> Value {
    let (s, v) = srv
        .admin("GET", &format!("/v1/products/{pk}/campaigns/{id}"), None)
        .await;
    assert_eq!(s, 200, "{v}");
    v
}

/// Poll the campaign until `f` holds (the sweep runs every 50 ms in these tests).
async fn wait_campaign(srv: &Server, pk: &str, id: &str, f: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = campaign(srv, pk, id).await;
        if f(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "campaign never got there: {v}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Every device of a campaign: did → (stage, state).
async fn campaign_devices(srv: &Server, pk: &str, id: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for page in 1.. {
        let (s, v) = srv
            .admin(
                "GET",
                &format!("/v1/products/{pk}/campaigns/{id}/devices?page={page}&limit=200"),
                None,
            )
            .await;
        assert_eq!(s, 200, "{v}");
        let data = v["data"].as_array().unwrap().clone();
        let n = data.len();
        out.extend(data);
        if n < 200 {
            break;
        }
    }
    out
}

fn server_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("RAMPART_OTA__SWEEP_INTERVAL_MS", "50"),
        ("RAMPART_LIMITS__REGISTER_IP__PER_MINUTE", "1000000"),
        ("RAMPART_LIMITS__REGISTER_IP__BURST", "100000"),
        ("RAMPART_LIMITS__IP__PER_MINUTE", "10000000"),
        ("RAMPART_LIMITS__IP__BURST", "1000000"),
    ]
}

#[tokio::test]
async fn firmware_registry_keys_and_refusals() {
    let srv = Server::start_with(&server_env()).await;
    let (pk, _) = srv.product(true, false).await;
    let img = image(10_000, 1);
    let (s, v) = upload(&srv, &pk, ADMIN, img.clone(), "module", "1.0.0", "B1, B2").await;
    assert_eq!(s, 201, "{v}");
    use md5::Digest as _;
    assert_eq!(v["size"], 10_000);
    assert_eq!(v["sha256"], hex::encode(sha2::Sha256::digest(&img)));
    assert_eq!(v["md5"], hex::encode(md5::Md5::digest(&img)));
    assert_eq!(v["target"], "module");
    assert_eq!(v["version"], "1.0.0");
    assert_eq!(v["sequence"], 1);
    assert_eq!(v["hardware_versions"], json!(["B1", "B2"]));
    let fw1 = v["firmware_id"].as_str().unwrap().to_owned();
    // Kept by content hash, never under the client's file name.
    let sha = v["sha256"].as_str().unwrap().to_owned();
    let kept = srv.data().join("uploads/sha256").join(&sha[..2]).join(&sha);
    assert_eq!(std::fs::read(kept).unwrap(), img);
    assert!(!srv.data().join("evil.bin").exists());

    // Sequences rise per target; module and MCU are apart.
    let (s, v) = upload(&srv, &pk, ADMIN, image(500, 2), "module", "1.1.0", "").await;
    assert_eq!((s, v["sequence"].as_i64()), (201, Some(2)), "{v}");
    let (s, v) = upload(&srv, &pk, ADMIN, image(500, 3), "mcu", "0.1.0", "").await;
    assert_eq!((s, v["sequence"].as_i64()), (201, Some(1)), "{v}");
    // The same version again, a bad target, a bad version, markup, nothing.
    let (s, v) = upload(&srv, &pk, ADMIN, image(500, 4), "module", "1.1.0", "").await;
    assert_error(s, &v, 409, "CONFLICT");
    let (s, v) = upload(&srv, &pk, ADMIN, image(500, 4), "modem", "1.2.0", "").await;
    assert_error(s, &v, 400, "INVALID_REQUEST");
    let (s, v) = upload(&srv, &pk, ADMIN, image(500, 4), "module", "1.2", "").await;
    assert_error(s, &v, 400, "INVALID_REQUEST");
    let (s, v) = upload(
        &srv,
        &pk,
        ADMIN,
        b"<html><script>x</script></html>".to_vec(),
        "module",
        "1.2.0",
        "",
    )
    .await;
    assert_error(s, &v, 415, "UNSUPPORTED_MEDIA_TYPE");
    let (s, v) = upload(&srv, &pk, ADMIN, Vec::new(), "module", "1.2.0", "").await;
    assert_error(s, &v, 400, "INVALID_REQUEST");
    // Without a token, and for an unknown product.
    let resp = srv
        .http_client
        .post(srv.url(&format!("/v1/products/{pk}/firmware")))
        .multipart(reqwest::multipart::Form::new().text("target", "module"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let (s, v) = upload(
        &srv,
        "pk_nothere",
        ADMIN,
        image(10, 1),
        "module",
        "1.0.0",
        "",
    )
    .await;
    assert_error(s, &v, 404, "NOT_FOUND");

    let (s, v) = srv
        .admin("GET", &format!("/v1/products/{pk}/firmware"), None)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["meta"]["total"], 3);

    // The key is made once and stays.
    let k1 = ota_key(&srv, &pk).await;
    assert_eq!(ota_key(&srv, &pk).await, k1);
    assert_eq!(audit_rows(&srv, "ota.firmware_upload").await.len(), 3);

    let resp = srv
        .http_client
        .delete(srv.url(&format!("/v1/products/{pk}/firmware/{fw1}")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    // Its bytes went with it (no other image had them).
    assert!(!srv
        .data()
        .join("uploads/sha256")
        .join(&sha[..2])
        .join(&sha)
        .exists());
    let (s, v) = srv
        .admin("DELETE", &format!("/v1/products/{pk}/firmware/{fw1}"), None)
        .await;
    assert_error(s, &v, 404, "NOT_FOUND");
    assert_eq!(audit_rows(&srv, "ota.firmware_delete").await.len(), 1);
}

#[tokio::test]
async fn firmware_over_the_cap_is_refused_while_it_streams() {
    let mut env = server_env();
    env.push(("RAMPART_OTA__MAX_FIRMWARE_BYTES", "4096"));
    let srv = Server::start_with(&env).await;
    let (pk, _) = srv.product(true, false).await;
    let (s, v) = upload(&srv, &pk, ADMIN, image(4097, 1), "module", "1.0.0", "").await;
    assert_error(s, &v, 413, "PAYLOAD_TOO_LARGE");
    let (s, v) = upload(&srv, &pk, ADMIN, image(4096, 1), "module", "1.0.0", "").await;
    assert_eq!(s, 201, "{v}");
    // No temporary file is left behind by the refused upload.
    let tmp = srv.data().join("uploads/tmp");
    assert_eq!(std::fs::read_dir(tmp).unwrap().count(), 0);
}

/// Firmware and allowlist files share the content-addressed store: deleting an image whose
/// bytes an allowlist upload also holds leaves the file for the allowlist, and the file goes
/// only with its last holder.
#[tokio::test]
async fn deleting_firmware_keeps_bytes_an_allowlist_file_holds() {
    let srv = Server::start_with(&server_env()).await;
    let (pk, _) = srv.product(true, true).await;
    let bytes = b"AA:BB:CC:00:00:01\nAA:BB:CC:00:00:02\n".to_vec();
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    let kept = srv.data().join("uploads/sha256").join(&sha[..2]).join(&sha);
    let resp = srv
        .http_client
        .post(srv.url(&format!("/v1/products/{pk}/allowlist/file")))
        .bearer_auth(ADMIN)
        .header("content-type", "text/csv")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["sha256"], sha.as_str(), "{v}");

    // Two images with the same bytes: one file for all three holders.
    let (s, v) = upload(&srv, &pk, ADMIN, bytes.clone(), "module", "1.0.0", "").await;
    assert_eq!((s, v["sha256"].as_str()), (201, Some(sha.as_str())), "{v}");
    let fw1 = v["firmware_id"].as_str().unwrap().to_owned();
    let (s, v) = upload(&srv, &pk, ADMIN, bytes.clone(), "mcu", "1.0.0", "").await;
    assert_eq!(s, 201, "{v}");
    let fw2 = v["firmware_id"].as_str().unwrap().to_owned();
    // A refused upload of the same bytes (a duplicate version) does not take the file away.
    let (s, v) = upload(&srv, &pk, ADMIN, bytes.clone(), "mcu", "1.0.0", "").await;
    assert_error(s, &v, 409, "CONFLICT");
    assert_eq!(std::fs::read(&kept).unwrap(), bytes);

    let delete = |fw: String| {
        let srv = &srv;
        let url = srv.url(&format!("/v1/products/{pk}/firmware/{fw}"));
        async move {
            let resp = srv
                .http_client
                .delete(url)
                .bearer_auth(ADMIN)
                .send()
                .await
                .unwrap();
            resp.status().as_u16()
        }
    };
    for fw in [&fw1, &fw2] {
        assert_eq!(delete(fw.clone()).await, 204);
        assert_eq!(
            std::fs::read(&kept).unwrap(),
            bytes,
            "the allowlist's file went with firmware {fw}"
        );
    }

    // An image nothing else holds: its file goes with it; a refused duplicate of it leaves
    // nothing behind either.
    let img = image(3000, 9);
    let (s, v) = upload(&srv, &pk, ADMIN, img.clone(), "module", "2.0.0", "").await;
    assert_eq!(s, 201, "{v}");
    let own = v["sha256"].as_str().unwrap().to_owned();
    let fw3 = v["firmware_id"].as_str().unwrap().to_owned();
    let own_path = srv.data().join("uploads/sha256").join(&own[..2]).join(&own);
    assert!(own_path.exists());
    assert_eq!(delete(fw3).await, 204);
    assert!(!own_path.exists());
    let (s, v) = upload(&srv, &pk, ADMIN, image(100, 10), "module", "4.0.0", "").await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = upload(&srv, &pk, ADMIN, img.clone(), "module", "4.0.0", "").await;
    assert_error(s, &v, 409, "CONFLICT");
    assert!(!own_path.exists(), "a refused upload left its file");
}

/// A developer created by the operator, logged in: (developer_id, access token).
async fn developer(srv: &Server, email: &str) -> (String, String) {
    let pw = "velvet tundra oxide lantern";
    let (s, v) = srv
        .admin(
            "POST",
            "/v1/admin/developers",
            Some(json!({"email": email, "password": pw})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let id = v["developer_id"].as_str().unwrap().to_owned();
    let (s, v) = srv
        .call(
            "POST",
            "/v1/developers/login",
            None,
            Some(json!({"email": email, "password": pw})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    (id, v["access_token"].as_str().unwrap().to_owned())
}

/// Rolling back to an older sequence is an owner's decision: an enterprise's admin, who may
/// upload and roll out, is refused a rollback campaign with 403; the owner starts it.
#[tokio::test]
async fn only_an_owner_starts_a_rollback_campaign() {
    let srv = Server::start_with(&server_env()).await;
    let (owner_id, owner) = developer(&srv, "boss@ota.example").await;
    let (_, admin) = developer(&srv, "staff@ota.example").await;
    let (s, v) = srv
        .admin(
            "POST",
            "/v1/admin/enterprises",
            Some(json!({"name": "OTA Maker", "owner_developer_id": owner_id})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let ent = v["enterprise_id"].as_str().unwrap().to_owned();
    let (s, v) = srv
        .call(
            "POST",
            &format!("/v1/enterprises/{ent}/invites"),
            Some(&owner),
            Some(json!({"email": "staff@ota.example", "role": "admin"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (_, inv) = srv
        .call("GET", "/v1/developers/me/invites", Some(&admin), None)
        .await;
    let id = inv["data"][0]["invite_id"].as_str().unwrap().to_owned();
    let (s, v) = srv
        .call(
            "POST",
            &format!("/v1/developers/me/invites/{id}/accept"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!((s, v["role"].as_str()), (200, Some("admin")), "{v}");

    let (s, v) = srv
        .call(
            "POST",
            "/v1/products",
            Some(&owner),
            Some(json!({
                "name": "Enterprise lamp",
                "identity": {"dynamic_registration": true, "allowlist": false},
                "owner": {"enterprise_id": ent},
                "datapoints": [{"name": "power", "type": "bool", "writable": true}]
            })),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let pk = v["product_key"].as_str().unwrap().to_owned();
    let ps = v["product_secret"].as_str().unwrap().to_owned();
    srv.register(&pk, &ps, "hw-rollback-1").await;

    // The admin uploads both releases and may roll the newer one out.
    let (s, v) = upload(&srv, &pk, &admin, image(800, 1), "module", "1.0.0", "").await;
    assert_eq!(s, 201, "{v}");
    let old = v["firmware_id"].as_str().unwrap().to_owned();
    let (s, v) = upload(&srv, &pk, &admin, image(800, 2), "module", "1.1.0", "").await;
    assert_eq!(s, 201, "{v}");
    let path = format!("/v1/products/{pk}/campaigns");
    let body = |rollback: bool| json!({"firmware_id": old, "stages": [100], "device_timeout_secs": 60, "rollback": rollback});
    // Without the rollback flag the older image is refused for anyone.
    let (s, v) = srv
        .call("POST", &path, Some(&admin), Some(body(false)))
        .await;
    assert_error(s, &v, 400, "INVALID_REQUEST");
    let (s, v) = srv
        .call("POST", &path, Some(&admin), Some(body(true)))
        .await;
    assert_error(s, &v, 403, "FORBIDDEN");
    let (s, list) = srv.call("GET", &path, Some(&admin), None).await;
    assert_eq!(
        (s, list["meta"]["total"].as_i64()),
        (200, Some(0)),
        "{list}"
    );
    let (s, v) = srv
        .call("POST", &path, Some(&owner), Some(body(true)))
        .await;
    assert_eq!(s, 201, "{v}");
    let cid = v["campaign_id"].as_str().unwrap().to_owned();
    // The admin sees it and may pause it like any other campaign.
    let (s, v) = srv
        .call("GET", &format!("{path}/{cid}"), Some(&admin), None)
        .await;
    assert_eq!((s, v["rollback"].as_bool()), (200, Some(true)), "{v}");
    let (s, v) = srv
        .call("POST", &format!("{path}/{cid}/pause"), Some(&admin), None)
        .await;
    assert_eq!((s, v["state"].as_str()), (200, Some("paused")), "{v}");
}

/// What a simulated device does in the campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Good,
    /// Its download is cut after 40% and resumed.
    Cut,
    /// Writing the inactive slot fails.
    FailApply,
    /// The image it received is corrupt: refused by the checksums and reported.
    Corrupt,
    /// It is handed a manifest altered in transit: refused by the signature.
    Forged,
    /// It runs a newer sequence already: the manifest is a downgrade, refused.
    Downgrade,
    /// The new image never reports healthy: rolled back at the health deadline.
    Unhealthy,
    /// Never answers.
    Silent,
}

struct Sim {
    http: HttpOta,
    slots: Slots,
    me: DeviceIdentity,
    role: Role,
}

#[derive(Default)]
struct Figures {
    downloads: AtomicU64,
    cut: AtomicU64,
    requests: AtomicU64,
    received: AtomicU64,
    refetched: AtomicU64,
    refused_signature: AtomicU64,
    refused_downgrade: AtomicU64,
    refused_digest: AtomicU64,
    rolled_back: AtomicU64,
}

const HEALTH_MS: i64 = 300;

/// One device's turn: check; with a manifest, update, reboot, commit (when healthy) and report
/// the new version by checking again. `false` when there was nothing to install yet.
async fn run_device(sim: &mut Sim, figures: &Figures) -> bool {
    if sim.role == Role::Silent {
        return true;
    }
    let running = sim.slots.running();
    let check = |r: &SlotInfo| Check {
        target: Target::Module,
        version: r.version.clone(),
        sequence: Some(r.sequence),
        hardware_version: Some("B1".into()),
    };
    let Some(mut m) = sim.http.check(&check(&running)).await.unwrap() else {
        return false;
    };
    if sim.role == Role::Forged {
        // Someone on the path points the device at their own image.
        m.url = "https://evil.example/fw.bin".into();
    }
    let faults = Faults {
        cut_after: (sim.role == Role::Cut).then_some(m.size * 4 / 10),
        fail_apply: sim.role == Role::FailApply,
        unhealthy: sim.role == Role::Unhealthy,
        corrupt: sim.role == Role::Corrupt,
    };
    match dota::update(&sim.http, &sim.me, &mut sim.slots, &m, &faults, HEALTH_MS).await {
        Outcome::Installed(stats) => {
            figures.downloads.fetch_add(1, Ordering::Relaxed);
            if stats.requests > 1 {
                figures.cut.fetch_add(1, Ordering::Relaxed);
            }
            figures
                .requests
                .fetch_add(u64::from(stats.requests), Ordering::Relaxed);
            figures
                .received
                .fetch_add(stats.received, Ordering::Relaxed);
            figures
                .refetched
                .fetch_add(stats.refetched, Ordering::Relaxed);
            // The reboot into the new slot.
            assert_eq!(sim.slots.boot(now_ms()).unwrap(), Boot::Trial);
            if faults.unhealthy {
                tokio::time::sleep(Duration::from_millis(HEALTH_MS as u64 + 20)).await;
                let b = sim.slots.boot(now_ms()).unwrap();
                assert!(matches!(b, Boot::RolledBack { .. }), "{b:?}");
                figures.rolled_back.fetch_add(1, Ordering::Relaxed);
            } else {
                sim.slots.commit().unwrap();
            }
            // The connect-time report after the reboot: what runs now.
            let after = sim.slots.running();
            assert!(sim.http.check(&check(&after)).await.unwrap().is_none());
        }
        Outcome::Refused(e) => match e {
            rampart_proto::ota::OtaError::BadSignature => {
                figures.refused_signature.fetch_add(1, Ordering::Relaxed);
            }
            rampart_proto::ota::OtaError::Rollback { .. } => {
                figures.refused_downgrade.fetch_add(1, Ordering::Relaxed);
            }
            other => panic!("unexpected refusal {other}"),
        },
        Outcome::Failed(why) => {
            if why.contains("SHA-256") {
                figures.refused_digest.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    true
}

/// Run `sims` with at most 48 at once; answers those that had nothing to install yet.
async fn run_all(sims: Vec<Sim>, figures: &Arc<Figures>) -> Vec<Sim> {
    use futures_util::StreamExt;
    let results: Vec<(Sim, bool)> = futures_util::stream::iter(sims)
        .map(|mut sim| {
            let figures = figures.clone();
            async move {
                let done = run_device(&mut sim, &figures).await;
                (sim, done)
            }
        })
        .buffer_unordered(48)
        .collect()
        .await;
    results
        .into_iter()
        .filter(|(_, done)| !done)
        .map(|(s, _)| s)
        .collect()
}

fn counts(v: &Value) -> String {
    let c = &v["counts"];
    [
        "notified",
        "downloading",
        "downloaded",
        "verified",
        "applying",
        "succeeded",
        "failed",
        "timed_out",
    ]
    .iter()
    .map(|k| format!("{k}={}", c[k]))
    .collect::<Vec<_>>()
    .join(" ")
}

/// The issue's end-to-end run: 1,000 devices, three stages, cut downloads, a corrupt image, a
/// forged manifest, a downgrade, injected failures that pause the campaign, an image that never
/// turns healthy, and a device that never answers.
#[tokio::test]
async fn a_thousand_devices_in_three_stages() {
    const N: usize = 1000;
    let started = Instant::now();
    let srv = Server::start_with(&server_env()).await;
    let (pk, ps) = srv.product(true, false).await;
    let key = ota_key(&srv, &pk).await;
    let (s, v) = upload(&srv, &pk, ADMIN, image(40_000, 7), "module", "1.0.0", "B1").await;
    assert_eq!(s, 201, "{v}");
    let fw2 = image(48 * 1024, 9);
    let (s, v) = upload(&srv, &pk, ADMIN, fw2.clone(), "module", "2.0.0", "B1").await;
    assert_eq!(s, 201, "{v}");
    let fw_id = v["firmware_id"].as_str().unwrap().to_owned();
    assert_eq!(v["sequence"], 2);

    // Register the fleet; each device says once what it runs (1.0.0, sequence 1, board B1).
    let root = tempfile::tempdir().unwrap();
    let regs: Vec<(String, String)> = {
        use futures_util::StreamExt;
        futures_util::stream::iter(0..N)
            .map(|i| {
                let (srv, pk, ps) = (&srv, &pk, &ps);
                async move {
                    let (did, secret, _) = srv.register(pk, ps, &format!("ota-{i:04}")).await;
                    (did, secret)
                }
            })
            .buffer_unordered(32)
            .collect()
            .await
    };
    let mut sims: std::collections::HashMap<String, Sim> = regs
        .into_iter()
        .map(|(did, secret)| {
            let sim = Sim {
                http: HttpOta::new(
                    srv.http_client.clone(),
                    &srv.url(""),
                    &did,
                    Secret::new(secret),
                ),
                slots: Slots::open(
                    &root.path().join(&did),
                    SlotInfo {
                        version: "1.0.0".into(),
                        sequence: 1,
                    },
                )
                .unwrap(),
                me: DeviceIdentity {
                    product_key: pk.clone(),
                    target: Target::Module,
                    ota_key: key,
                },
                role: Role::Good,
            };
            (did, sim)
        })
        .collect();
    let figures = Arc::new(Figures::default());
    let before: Vec<Sim> = sims.drain().map(|(_, s)| s).collect();
    let left = run_all(before, &figures).await;
    assert_eq!(left.len(), N, "no device has anything to install yet");
    let mut sims: std::collections::HashMap<String, Sim> = left
        .into_iter()
        .map(|s| (s.http.did().to_owned(), s))
        .collect();

    let (s, v) = srv
        .admin(
            "POST",
            &format!("/v1/products/{pk}/campaigns"),
            Some(
                json!({"firmware_id": fw_id, "selector": {"hardware_versions": ["B1"],
                "from_versions": ["1.0.0"]}, "stages": [1, 10, 100], "max_failure_percent": 5,
                "min_devices_per_stage": 1, "device_timeout_secs": 600}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let cid = v["campaign_id"].as_str().unwrap().to_owned();
    let v = campaign(&srv, &pk, &cid).await;
    assert_eq!(
        (v["state"].as_str(), v["stage"].as_i64()),
        (Some("running"), Some(1)),
        "{v}"
    );
    assert_eq!(v["devices"], N);
    // A running campaign's image cannot be deleted.
    let (s, e) = srv
        .admin(
            "DELETE",
            &format!("/v1/products/{pk}/firmware/{fw_id}"),
            None,
        )
        .await;
    assert_error(s, &e, 409, "CONFLICT");

    let devices = campaign_devices(&srv, &pk, &cid).await;
    let stage_of = |n: i64| -> Vec<String> {
        devices
            .iter()
            .filter(|d| d["stage"] == n)
            .map(|d| d["did"].as_str().unwrap().to_owned())
            .collect()
    };
    let (s1, s2, s3) = (stage_of(1), stage_of(2), stage_of(3));
    assert_eq!((s1.len(), s2.len(), s3.len()), (10, 90, 900));
    let mut take = |dids: &[String], roles: &[(Role, usize)]| -> Vec<Sim> {
        let mut out: Vec<Sim> = dids.iter().map(|d| sims.remove(d).unwrap()).collect();
        let mut i = 0;
        for (role, n) in roles {
            for sim in out.iter_mut().skip(i).take(*n) {
                sim.role = *role;
            }
            i += n;
        }
        out
    };

    // Stage 1: ten devices, two of them cut mid-download.
    let stage1 = take(&s1, &[(Role::Cut, 2)]);
    assert!(run_all(stage1, &figures).await.is_empty());
    let v = wait_campaign(&srv, &pk, &cid, |v| v["stage"] == 2).await;
    assert_eq!(v["counts"]["succeeded"], 10, "{v}");
    println!("after stage 1: {}", counts(&v));

    // Stage 2: five failed writes and one corrupt image are 6 of 90, over 5%: it pauses itself.
    let stage2 = take(
        &s2,
        &[(Role::FailApply, 5), (Role::Corrupt, 1), (Role::Cut, 9)],
    );
    let waiting = run_all(stage2, &figures).await;
    let v = wait_campaign(&srv, &pk, &cid, |v| v["state"] == "paused").await;
    let reason = v["reason"].as_str().unwrap();
    // It paused at the fifth failure or the sixth, whichever the sweep or a report saw first.
    assert!(
        reason.starts_with("stage 2: 5 of 90 devices failed or timed out")
            || reason.starts_with("stage 2: 6 of 90 devices failed or timed out"),
        "{v}"
    );
    assert_eq!(v["counts"]["failed"], 6, "{v}");
    println!("stage 2 paused itself: {reason}; {}", counts(&v));
    let paused = audit_rows(&srv, "ota.campaign_self_pause").await;
    assert_eq!(paused.len(), 1);
    // The reports of the failures name their causes.
    let devices = campaign_devices(&srv, &pk, &cid).await;
    let reasons: Vec<&str> = devices
        .iter()
        .filter(|d| d["state"] == "failed")
        .map(|d| d["reason"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        reasons.iter().filter(|r| r.contains("SHA-256")).count(),
        1,
        "{reasons:?}"
    );
    assert_eq!(
        reasons.iter().filter(|r| r.contains("flash write")).count(),
        5,
        "{reasons:?}"
    );

    // Resumed, the failures so far are accepted; devices that found it paused try again.
    let (s, v) = post(
        &srv,
        &format!("/v1/products/{pk}/campaigns/{cid}/resume"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(run_all(waiting, &figures).await.is_empty());
    let v = wait_campaign(&srv, &pk, &cid, |v| v["stage"] == 3).await;
    println!("after stage 2: {}", counts(&v));
    assert_eq!(v["counts"]["succeeded"], 10 + 84, "{v}");

    // Stage 3: 900 devices, a tenth of them cut; one forged manifest, one downgrade, one image
    // that never turns healthy, one device that never answers.
    let stage3 = take(
        &s3,
        &[
            (Role::Forged, 1),
            (Role::Downgrade, 1),
            (Role::Unhealthy, 1),
            (Role::Silent, 1),
            (Role::Cut, 90),
        ],
    );
    let mut stage3 = stage3;
    let downgrade = stage3
        .iter_mut()
        .find(|s| s.role == Role::Downgrade)
        .unwrap();
    // This device runs a release the cloud has not rolled out (a later sequence).
    let dir = root.path().join(format!("{}-newer", downgrade.http.did()));
    downgrade.slots = Slots::open(
        &dir,
        SlotInfo {
            version: "1.0.0".into(),
            sequence: 9,
        },
    )
    .unwrap();
    assert!(run_all(stage3, &figures).await.is_empty());
    let v = wait_campaign(&srv, &pk, &cid, |v| {
        v["counts"]["succeeded"] == 10 + 84 + 896 && v["counts"]["failed"] == 6 + 3
    })
    .await;
    assert_eq!(v["state"], "running", "{v}");
    // The silent device times out once its deadline passes; the stage then completes.
    srv.advance(Duration::from_secs(601));
    let v = wait_campaign(&srv, &pk, &cid, |v| v["state"] == "done").await;
    assert_eq!(v["counts"]["timed_out"], 1, "{v}");
    assert_eq!(v["counts"]["succeeded"], 990, "{v}");
    assert_eq!(v["counts"]["failed"], 9, "{v}");
    let f = &figures;
    assert_eq!(f.refused_signature.load(Ordering::Relaxed), 1);
    assert_eq!(f.refused_downgrade.load(Ordering::Relaxed), 1);
    assert_eq!(f.refused_digest.load(Ordering::Relaxed), 1);
    assert_eq!(f.rolled_back.load(Ordering::Relaxed), 1);
    assert_eq!(f.cut.load(Ordering::Relaxed), 2 + 9 + 90);
    // Resuming fetched only what was missing.
    assert_eq!(f.refetched.load(Ordering::Relaxed), 0);
    assert_eq!(
        f.received.load(Ordering::Relaxed),
        f.downloads.load(Ordering::Relaxed) * fw2.len() as u64
    );
    let devices = campaign_devices(&srv, &pk, &cid).await;
    let reason_of = |state: &str, needle: &str| {
        devices
            .iter()
            .filter(|d| d["state"] == state)
            .any(|d| d["reason"].as_str().unwrap_or("").contains(needle))
    };
    assert!(reason_of("failed", "signature"));
    assert!(reason_of("failed", "lower than the running 9"));
    assert!(reason_of("failed", "came back running 1.0.0"));
    assert!(reason_of("timed_out", "deadline"));
    println!(
        "OTA campaign of {N} devices: {}\n  downloads {} (cut and resumed: {}), requests {}, \
         bytes received {}, bytes re-fetched {}\n  refused: forged manifest {}, downgrade {}, \
         corrupt image {}; rolled back (not healthy) {}; took {:.1} s",
        counts(&v),
        f.downloads.load(Ordering::Relaxed),
        f.cut.load(Ordering::Relaxed),
        f.requests.load(Ordering::Relaxed),
        f.received.load(Ordering::Relaxed),
        f.refetched.load(Ordering::Relaxed),
        f.refused_signature.load(Ordering::Relaxed),
        f.refused_downgrade.load(Ordering::Relaxed),
        f.refused_digest.load(Ordering::Relaxed),
        f.rolled_back.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
}

/// The next publish on `topic` (other packets skipped), as JSON.
async fn next_publish(el: &mut rumqttc::EventLoop, topic: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, el.poll()).await {
            Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)))) if p.topic == topic => {
                return serde_json::from_slice(&p.payload).unwrap();
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("mqtt: {e}"),
            Err(_) => panic!("nothing on {topic}"),
        }
    }
}

/// Poll until the SUBACK of the device's subscription.
async fn until_suback(el: &mut rumqttc::EventLoop) {
    loop {
        if let rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_)) =
            tokio::time::timeout(Duration::from_secs(10), el.poll())
                .await
                .unwrap()
                .unwrap()
        {
            return;
        }
    }
}

async fn get_raw(
    srv: &Server,
    path: &str,
    auth: Option<&str>,
    range: Option<&str>,
) -> reqwest::Response {
    let url = if path.starts_with("https://") {
        path.to_owned()
    } else {
        srv.url(path)
    };
    let mut rb = srv.http_client.get(url);
    if let Some(a) = auth {
        rb = rb.header("authorization", a);
    }
    if let Some(r) = range {
        rb = rb.header("range", r);
    }
    rb.send().await.unwrap()
}

/// An admin POST.
async fn post(srv: &Server, path: &str, body: Option<Value>) -> (u16, Value) {
    srv.admin("POST", path, body).await
}

/// `Authorization: Basic` of a fresh CONNECT user name and password.
fn device_auth(did: &str, secret: &str) -> String {
    let (u, p) = creds(did, secret);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
    )
}

/// Manifests pushed over MQTT to an online device and answered to a check, chunks over MQTT,
/// the device-bound and expiring download URL with `Range`, success only from a check naming
/// the new version, `ota_status` events on the operator stream, the enterprise API's view, and
/// rollback campaigns.
#[tokio::test]
async fn devices_over_mqtt_and_https() {
    use crate::event_stream::{read_tenant, Stream};
    let srv = Server::start_with(&server_env()).await;
    let (pk, ps, key) = read_tenant(&srv, "OTA Co").await;
    let (a, a_secret, _) = srv.register(&pk, &ps, "ota-a").await;
    let (b, b_secret, _) = srv.register(&pk, &ps, "ota-b").await;
    let public = ota_key(&srv, &pk).await;
    let (mut st, res) = Stream::login(
        &srv,
        &key,
        json!({"products": [pk], "events": ["ota_status"], "subkey": "ota"}),
    )
    .await;
    assert_eq!(res["result"], true, "{res}");
    let (s, v) = upload(&srv, &pk, ADMIN, image(2_000, 1), "module", "1.0.0", "").await;
    assert_eq!(s, 201, "{v}");
    let old_id = v["firmware_id"].as_str().unwrap().to_owned();
    let img = image(30_000, 5);
    let (s, v) = upload(&srv, &pk, ADMIN, img.clone(), "module", "2.0.0", "").await;
    assert_eq!(s, 201, "{v}");
    let fw_id = v["firmware_id"].as_str().unwrap().to_owned();

    // Device A on MQTT: its check at connect, then it waits for manifests and chunks.
    let (u, p) = creds(&a, &a_secret);
    let (client, mut el) = rumqttc::AsyncClient::new(v4_options(&srv, &a, &u, &p), 64);
    client
        .subscribe(format!("dev/{a}/ota/#"), rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    client
        .subscribe(format!("dev/{a}/ota"), rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    until_suback(&mut el).await;
    until_suback(&mut el).await;
    let check = json!({"target": "module", "version": "1.0.0", "sequence": 1}).to_string();
    client
        .publish(
            format!("dev/{a}/ota/check"),
            rumqttc::QoS::AtLeastOnce,
            false,
            check,
        )
        .await
        .unwrap();
    // Device B on HTTPS: nothing to install yet.
    let q = "/v1/device/ota?target=module&version=1.0.0&sequence=1";
    let resp = get_raw(&srv, q, Some(&device_auth(&b, &b_secret)), None).await;
    assert_eq!(resp.status().as_u16(), 204);
    let resp = get_raw(&srv, q, None, None).await;
    assert_eq!(resp.status().as_u16(), 401);
    let resp = get_raw(&srv, q, Some(&device_auth(&b, &a_secret)), None).await;
    assert_eq!(resp.status().as_u16(), 401);

    let (s, v) = srv
        .admin(
            "POST",
            &format!("/v1/products/{pk}/campaigns"),
            Some(json!({"firmware_id": fw_id, "selector": {"dids": [a, b]}, "stages": [100]})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let cid = v["campaign_id"].as_str().unwrap().to_owned();
    // A is online: its manifest is pushed as the stage opens.
    let m = next_publish(&mut el, &format!("dev/{a}/ota")).await;
    let ma: rampart_proto::ota::Manifest = serde_json::from_value(m.clone()).unwrap();
    ma.verify(&public).unwrap();
    assert_eq!(
        (ma.version.as_str(), ma.sequence, ma.size),
        ("2.0.0", 2, 30_000)
    );
    assert_eq!(ma.campaign_id.as_deref(), Some(cid.as_str()));
    // Chunks over MQTT, each with its digest; too large a chunk is an error answer.
    let chunk_topic = format!("dev/{a}/ota/chunk");
    let ask = |offset: u64, length: u64| {
        let req = json!({"firmware_id": fw_id, "offset": offset, "length": length}).to_string();
        client.publish(&chunk_topic, rumqttc::QoS::AtLeastOnce, false, req)
    };
    ask(1000, 4096).await.unwrap();
    let c = next_publish(&mut el, &chunk_topic).await;
    let answer: rampart_proto::ota::ChunkAnswer = serde_json::from_value(c).unwrap();
    assert_eq!(answer.bytes().unwrap(), img[1000..5096]);
    ask(0, 1_000_000).await.unwrap();
    let c = next_publish(&mut el, &chunk_topic).await;
    assert!(c["error"].as_str().unwrap().contains("length"), "{c}");

    // B asks over HTTPS and downloads; A's URL is not B's.
    let resp = get_raw(&srv, q, Some(&device_auth(&b, &b_secret)), None).await;
    assert_eq!(resp.status().as_u16(), 200);
    let mb: rampart_proto::ota::Manifest = resp.json().await.unwrap();
    mb.verify(&public).unwrap();
    let resp = get_raw(&srv, &ma.url, Some(&device_auth(&b, &b_secret)), None).await;
    assert_eq!(resp.status().as_u16(), 403);
    let resp = get_raw(&srv, &mb.url, None, None).await;
    assert_eq!(resp.status().as_u16(), 401);
    let resp = get_raw(&srv, &mb.url, Some(&device_auth(&b, &b_secret)), None).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.bytes().await.unwrap(), img);
    let resp = get_raw(
        &srv,
        &mb.url,
        Some(&device_auth(&b, &b_secret)),
        Some("bytes=29000-"),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 206);
    assert_eq!(resp.headers()["content-range"], "bytes 29000-29999/30000");
    assert_eq!(resp.bytes().await.unwrap(), img[29_000..]);
    let resp = get_raw(
        &srv,
        &mb.url,
        Some(&device_auth(&b, &b_secret)),
        Some("bytes=30000-"),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 416);
    let mut tampered = mb.url.replace("expires=", "expires=9");
    let resp = get_raw(&srv, &tampered, Some(&device_auth(&b, &b_secret)), None).await;
    assert_eq!(resp.status().as_u16(), 403);
    tampered = mb.url.replace(&b, &a);
    let resp = get_raw(&srv, &tampered, Some(&device_auth(&a, &a_secret)), None).await;
    assert_eq!(resp.status().as_u16(), 403);

    // A status never makes a success; a check naming the new version does.
    let status = |state: &str| json!({"campaign_id": cid, "state": state});
    let post_status = |body: Value, auth: String| {
        let srv = &srv;
        async move {
            srv.http_client
                .post(srv.url("/v1/device/ota/status"))
                .header("authorization", auth)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let r = post_status(status("succeeded"), device_auth(&b, &b_secret)).await;
    assert_eq!(r.status().as_u16(), 400);
    for s in ["downloading", "downloaded", "verified", "applying"] {
        let r = post_status(status(s), device_auth(&b, &b_secret)).await;
        assert_eq!(r.status().as_u16(), 204, "{s}");
    }
    let r = post_status(status("downloading"), device_auth(&b, &b_secret)).await;
    assert_eq!(r.status().as_u16(), 409);
    let v = campaign(&srv, &pk, &cid).await;
    assert_eq!(
        (
            v["counts"]["applying"].as_i64(),
            v["counts"]["succeeded"].as_i64()
        ),
        (Some(1), Some(0)),
        "{v}"
    );
    let q2 = "/v1/device/ota?target=module&version=2.0.0&sequence=2&hardware_version=B1";
    let resp = get_raw(&srv, q2, Some(&device_auth(&b, &b_secret)), None).await;
    assert_eq!(resp.status().as_u16(), 204);
    let v = campaign(&srv, &pk, &cid).await;
    assert_eq!(v["counts"]["succeeded"], 1, "{v}");

    // The operator stream saw B's part move, in order.
    let mut seen = Vec::new();
    while !seen.contains(&"succeeded".to_owned()) {
        let m = st.recv().await;
        assert_eq!(m["event_type"], "ota_status", "{m}");
        assert_eq!(m["data"]["campaign_id"], cid.as_str(), "{m}");
        if m["did"] == b.as_str() {
            seen.push(m["data"]["state"].as_str().unwrap().to_owned());
        }
        st.ack(m["delivery_id"].as_i64().unwrap()).await;
    }
    assert_eq!(
        seen,
        [
            "notified",
            "downloading",
            "downloaded",
            "verified",
            "applying",
            "succeeded"
        ]
    );
    // And the enterprise API shows it.
    let (s, v) = crate::enterprise_api::signed(
        &srv,
        &key,
        "GET",
        &format!("/v1/enterprise/devices/{b}/ota"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["running"][0]["version"], "2.0.0", "{v}");
    assert_eq!(v["running"][0]["hardware_version"], "B1", "{v}");
    assert_eq!(v["campaigns"][0]["state"], "succeeded", "{v}");

    // A device may not publish where manifests come from.
    client
        .publish(
            format!("dev/{a}/ota"),
            rumqttc::QoS::AtLeastOnce,
            false,
            m.to_string(),
        )
        .await
        .unwrap();
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(10), el.poll())
            .await
            .unwrap()
        {
            Err(_) => break true,
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::Disconnect)) => break true,
            Ok(_) => {}
        }
    };
    assert!(closed);

    // Going back to 1.0.0 (a lower sequence) needs a rollback campaign, one per target at a time.
    let body = |rollback: bool| json!({"firmware_id": old_id, "selector": {"dids": [b]}, "stages": [100], "rollback": rollback});
    let (s, v) = post(
        &srv,
        &format!("/v1/products/{pk}/campaigns"),
        Some(body(false)),
    )
    .await;
    assert_error(s, &v, 400, "INVALID_REQUEST");
    let (s, v) = post(
        &srv,
        &format!("/v1/products/{pk}/campaigns"),
        Some(body(true)),
    )
    .await;
    assert_error(s, &v, 409, "CONFLICT");
    let (s, v) = post(
        &srv,
        &format!("/v1/products/{pk}/campaigns/{cid}/abort"),
        None,
    )
    .await;
    assert_eq!((s, v["state"].as_str()), (200, Some("aborted")), "{v}");
    let (s, v) = post(
        &srv,
        &format!("/v1/products/{pk}/campaigns/{cid}/resume"),
        None,
    )
    .await;
    assert_error(s, &v, 409, "CONFLICT");
    let (s, v) = post(
        &srv,
        &format!("/v1/products/{pk}/campaigns"),
        Some(body(true)),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let back = v["campaign_id"].as_str().unwrap().to_owned();
    // The product's campaigns, newest first: the rollback, then the aborted one.
    let (s, list) = srv
        .admin("GET", &format!("/v1/products/{pk}/campaigns?limit=2"), None)
        .await;
    assert_eq!(s, 200, "{list}");
    assert_eq!(list["data"][0]["campaign_id"], back.as_str(), "{list}");
    assert_eq!(list["data"][1]["campaign_id"], cid.as_str(), "{list}");
    assert_eq!(list["data"][1]["state"], "aborted", "{list}");
    assert!(list["data"][1]["counts"].is_object(), "{list}");
    let resp = get_raw(&srv, q2, Some(&device_auth(&b, &b_secret)), None).await;
    assert_eq!(resp.status().as_u16(), 200);
    let mr: rampart_proto::ota::Manifest = resp.json().await.unwrap();
    mr.verify(&public).unwrap();
    assert!(mr.rollback && mr.sequence == 1, "{mr:?}");
    assert!(mr.check_sequence(2).is_ok());
    assert_eq!(mr.campaign_id.as_deref(), Some(back.as_str()));

    // The URL expires with the manifest.
    srv.advance(Duration::from_secs(16 * 60));
    // The device's clock moved as well.
    let (u, p) = creds_at(&b, &b_secret, now_ms() + 16 * 60 * 1000);
    let later = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
    );
    let resp = get_raw(&srv, &mb.url, Some(&later), None).await;
    assert_eq!(resp.status().as_u16(), 403);
}

/// `rampart device simulate --ota-key`: simulated devices check, download, verify, install into
/// their slots, reboot, commit and report the new version, and the campaign ends `done`.
#[tokio::test]
async fn the_simulator_runs_updates() {
    let srv = Server::start_with(&server_env()).await;
    let (pk, _) = srv.product(false, false).await;
    let batch = crate::cli::issue_batch(&srv, &pk, 3, "sim.csv");
    let key = ota_key(&srv, &pk).await;
    let (s, v) = upload(&srv, &pk, ADMIN, image(20_000, 3), "module", "1.1.0", "").await;
    assert_eq!(s, 201, "{v}");
    let fw_id = v["firmware_id"].as_str().unwrap().to_owned();
    let slots = tempfile::tempdir().unwrap();
    let mut sim = tokio::process::Command::new(bin())
        .args([
            "device",
            "simulate",
            "--server",
            &format!("localhost:{}", srv.mqtt_tls),
        ])
        .arg("--ca")
        .arg(srv.ca_path())
        .arg("--batch")
        .arg(&batch)
        .args([
            "--count",
            "3",
            "--interval-ms",
            "1000",
            "--duration-s",
            "60",
        ])
        .args(["--api", &srv.url("")])
        .args([
            "--ota-key",
            &base64::engine::general_purpose::STANDARD.encode(key),
        ])
        .args(["--ota-version", "1.0.0", "--ota-check-s", "1"])
        .arg("--ota-dir")
        .arg(slots.path())
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Every device has connected and said what it runs.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, v) = srv
            .admin("GET", &format!("/v1/devices?product_key={pk}"), None)
            .await;
        let online = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["online"] == true)
            .count();
        if online == 3 {
            break;
        }
        assert!(sim.try_wait().unwrap().is_none(), "simulator exited early");
        assert!(Instant::now() < deadline, "devices never came online");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (s, v) = srv
        .admin(
            "POST",
            &format!("/v1/products/{pk}/campaigns"),
            Some(json!({"firmware_id": fw_id, 
                "stages": [34, 100]})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let cid = v["campaign_id"].as_str().unwrap().to_owned();
    let v = wait_campaign(&srv, &pk, &cid, |v| v["state"] == "done").await;
    assert_eq!(v["counts"]["succeeded"], 3, "{v}");
    // Each device's slots say it runs 1.1.0, committed.
    let mut running = 0;
    for entry in std::fs::read_dir(slots.path()).unwrap() {
        let state: Value = serde_json::from_slice(
            &std::fs::read(entry.unwrap().path().join("slots.json")).unwrap(),
        )
        .unwrap();
        let active = state["active"].as_str().unwrap();
        assert_eq!(state[active]["version"], "1.1.0", "{state}");
        assert!(state["trial"].is_null(), "{state}");
        running += 1;
    }
    assert_eq!(running, 3);
    sim.kill().await.unwrap();
}

/// OTA over MQTT with the SDK's `DeviceClient`: the manifest arrives on `dev/{did}/ota`, the image
/// in chunks on `dev/{did}/ota/chunk` (each checked against its SHA-256), resumed after the
/// connection is cut mid-way, progress reported on `dev/{did}/ota/status`; the update counts only
/// once the device reconnects and its check names the new version.
#[tokio::test]
async fn device_client_updates_over_mqtt_with_a_cut() {
    use rampart_device::{Backoff, ConnectOptions, DeviceClient, Event, TlsSettings, Transport};
    let srv = Server::start_with(&server_env()).await;
    let (pk, did, secret) = srv.device().await;
    let key = ota_key(&srv, &pk).await;
    let img = image(100_000, 7);
    let (s, v) = upload(&srv, &pk, ADMIN, img.clone(), "module", "1.1.0", "").await;
    assert_eq!(s, 201, "{v}");
    let fw_id = v["firmware_id"].as_str().unwrap().to_owned();

    let tls = TlsSettings::from_ca_file(&srv.ca_path()).unwrap();
    let mut opts = ConnectOptions::new(
        format!("localhost:{}", srv.mqtt_tls),
        did.clone(),
        secret.as_str().into(),
        Transport::Tls(tls),
    );
    opts.ota = true;
    opts.backoff = Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(500),
    };
    let (client, mut events) = DeviceClient::connect(opts).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let pump = tokio::spawn(async move {
        while let Some(ev) = events.next().await {
            let _ = tx.send(ev);
        }
    });
    async fn until<T>(
        rx: &mut tokio::sync::mpsc::UnboundedReceiver<Event>,
        mut f: impl FnMut(Event) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let ev = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .expect("no such event in time")
                .expect("the event loop ended");
            if let Some(t) = f(ev) {
                return t;
            }
        }
    }
    let slots_dir = tempfile::tempdir().unwrap();
    let mut slots = Slots::open(
        slots_dir.path(),
        SlotInfo {
            version: "1.0.0".into(),
            sequence: 0,
        },
    )
    .unwrap();
    let check = |slots: &Slots| Check {
        target: Target::Module,
        version: slots.running().version,
        sequence: Some(slots.running().sequence),
        hardware_version: None,
    };
    until(&mut rx, |e| (e == Event::Connected).then_some(())).await;
    client.ota_check(&check(&slots)).unwrap();

    // The device is online: opening the stage pushes the manifest.
    let (s, v) = srv
        .admin(
            "POST",
            &format!("/v1/products/{pk}/campaigns"),
            Some(json!({"firmware_id": fw_id, "selector": {"dids": [did]}, "stages": [100]})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let cid = v["campaign_id"].as_str().unwrap().to_owned();
    let m = until(&mut rx, |e| match e {
        Event::Ota(m) => Some(*m),
        _ => None,
    })
    .await;
    assert_eq!(m.campaign_id.as_deref(), Some(cid.as_str()));

    let mqtt = dota::MqttOta::new(client.clone())
        .answer_timeout(Duration::from_millis(1500))
        .chunk_len(8192);
    let me = DeviceIdentity {
        product_key: pk.clone(),
        target: Target::Module,
        ota_key: key,
    };
    // A forged manifest (another version under the same signature) is refused before any chunk.
    let mut forged = m.clone();
    forged.version = "9.9.9".into();
    assert!(matches!(
        dota::update(&mqtt, &me, &mut slots, &forged, &Faults::default(), 60_000).await,
        Outcome::Refused(rampart_proto::ota::OtaError::BadSignature)
    ));
    // The forgery was reported as a failure: the campaign's device failed. A fresh campaign
    // for the real run.
    let v = wait_campaign(&srv, &pk, &cid, |v| v["counts"]["failed"] == 1).await;
    assert_eq!(v["counts"]["failed"], 1, "{v}");
    let (s, v) = post(
        &srv,
        &format!("/v1/products/{pk}/campaigns/{cid}/abort"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = srv
        .admin(
            "POST",
            &format!("/v1/products/{pk}/campaigns"),
            Some(json!({"firmware_id": fw_id, "selector": {"dids": [did]}, "stages": [100]})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let cid = v["campaign_id"].as_str().unwrap().to_owned();
    let m = until(&mut rx, |e| match e {
        Event::Ota(m) if m.campaign_id.as_deref() == Some(cid.as_str()) => Some(*m),
        _ => None,
    })
    .await;

    // The connection is cut after 40,000 bytes: the download resumes from what is on disk.
    let faults = Faults {
        cut_after: Some(40_000),
        ..Default::default()
    };
    let outcome = dota::update(&mqtt, &me, &mut slots, &m, &faults, 60_000).await;
    let Outcome::Installed(stats) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(stats.received, 100_000, "{stats:?}");
    assert_eq!(stats.refetched, 0, "{stats:?}");
    assert!(stats.requests >= 13, "{stats:?}");
    // The cut was a real one: the connection went down (asked for) and came back.
    let mut seen = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        seen.push(ev);
    }
    assert!(
        seen.iter()
            .any(|e| matches!(e, Event::Disconnected { error: None, .. })),
        "{seen:?}"
    );
    assert!(seen.contains(&Event::Connected), "{seen:?}");
    let v = wait_campaign(&srv, &pk, &cid, |v| v["counts"]["applying"] == 1).await;
    assert_eq!(
        v["counts"]["succeeded"], 0,
        "a status alone is not success: {v}"
    );

    // Reboot into the new image, healthy: commit, reconnect, say what runs.
    assert_eq!(slots.boot(now_ms()).unwrap(), Boot::Trial);
    slots.commit().unwrap();
    assert_eq!(std::fs::read(slots.active_image()).unwrap(), img);
    client.reconnect_after(Duration::from_millis(50)).unwrap();
    until(&mut rx, |e| (e == Event::Connected).then_some(())).await;
    client.ota_check(&check(&slots)).unwrap();
    let v = wait_campaign(&srv, &pk, &cid, |v| v["state"] == "done").await;
    assert_eq!(v["counts"]["succeeded"], 1, "{v}");
    let devices = campaign_devices(&srv, &pk, &cid).await;
    assert_eq!(devices[0]["bytes"], 100_000, "{devices:?}");

    client.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), pump).await;
}
