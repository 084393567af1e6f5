//! OTA rows: firmware sequences per product and target, deletion guarded by active campaigns,
//! the first OTA key kept, campaigns and their devices moved only from the states named, and
//! deadlines expired only in running campaigns.

use crate::{device, product};
use rampart_store::*;

fn firmware(id: &str, pk: &str, target: &str, version: &str, sha: &str) -> FirmwareRow {
    FirmwareRow {
        firmware_id: id.into(),
        product_key: pk.into(),
        target: target.into(),
        version: version.into(),
        sequence: 0,
        hardware_versions: "B1".into(),
        notes: String::new(),
        size: 5,
        md5: "m".into(),
        sha256: sha.into(),
        created_by: "admin:bootstrap".into(),
        created_at: 1,
    }
}

fn campaign(id: &str, pk: &str, fw: &str, state: &str) -> CampaignRow {
    CampaignRow {
        campaign_id: id.into(),
        product_key: pk.into(),
        firmware_id: fw.into(),
        selector: "{}".into(),
        stages: "[50,100]".into(),
        max_failure_percent: 5,
        min_devices_per_stage: 1,
        device_timeout_secs: 60,
        rollback: false,
        state: state.into(),
        stage: 0,
        reason: None,
        accepted_failures: 0,
        created_by: "admin:bootstrap".into(),
        created_at: 10,
        updated_at: 10,
    }
}

async fn firmware_sequences_and_guarded_deletes(s: Store) {
    s.insert_product(&product("op1")).await.unwrap();
    assert_eq!(
        s.insert_firmware(&firmware("f1", "op1", "module", "1.0.0", "aa"))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.insert_firmware(&firmware("f2", "op1", "module", "1.1.0", "aa"))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        s.insert_firmware(&firmware("f3", "op1", "mcu", "1.0.0", "bb"))
            .await
            .unwrap(),
        1
    );
    assert!(matches!(
        s.insert_firmware(&firmware("f4", "op1", "module", "1.1.0", "cc"))
            .await,
        Err(StoreError::Conflict)
    ));
    let (rows, total) = s.list_firmware("op1", 0, 10).await.unwrap();
    assert_eq!((rows.len(), total), (3, 3));
    assert_eq!(s.firmware("f2").await.unwrap().unwrap().sequence, 2);
    assert_eq!(s.max_firmware_sequence("op1", "module").await.unwrap(), 2);
    assert_eq!(s.max_firmware_sequence("op1", "nothing").await.unwrap(), 0);

    s.insert_campaign(&campaign("c1", "op1", "f2", "running"), &[])
        .await
        .unwrap();
    assert!(matches!(
        s.delete_firmware("f2").await,
        Err(StoreError::Conflict)
    ));
    assert!(s
        .update_campaign("c1", "running", 0, "aborted", 0, Some("x"), 0, 11)
        .await
        .unwrap());
    // f1 shares its bytes with f2: deleting f2 says another row still names them.
    let (row, shared) = s.delete_firmware("f2").await.unwrap().unwrap();
    assert_eq!((row.firmware_id.as_str(), shared), ("f2", true));
    let (_, shared) = s.delete_firmware("f1").await.unwrap().unwrap();
    assert!(!shared);
    assert!(s.delete_firmware("f1").await.unwrap().is_none());
}

async fn the_first_ota_key_is_kept(s: Store) {
    s.insert_product(&product("op2")).await.unwrap();
    assert!(s.ota_key("op2").await.unwrap().is_none());
    let k = |b: u8| OtaKeyRow {
        product_key: "op2".into(),
        public_key: vec![b; 32],
        private_enc: vec![b; 4],
        created_at: 1,
    };
    assert_eq!(
        s.insert_ota_key(&k(1)).await.unwrap().public_key,
        vec![1; 32]
    );
    assert_eq!(
        s.insert_ota_key(&k(2)).await.unwrap().public_key,
        vec![1; 32]
    );
}

async fn campaign_devices_move_only_from_named_states(s: Store) {
    s.insert_product(&product("op3")).await.unwrap();
    for d in ["od1", "od2", "od3"] {
        s.insert_device(&device(d, "op3", &format!("hw-{d}")))
            .await
            .unwrap();
    }
    s.upsert_ota_device_info("od1", "module", "1.0.0", Some(1), Some("B1"), 5)
        .await
        .unwrap();
    // A later check without a hardware version keeps the known one.
    s.upsert_ota_device_info("od1", "module", "1.1.0", None, None, 6)
        .await
        .unwrap();
    let cands = s.ota_candidates("op3", "module").await.unwrap();
    assert_eq!(cands.len(), 3);
    assert_eq!(cands[0].version.as_deref(), Some("1.1.0"));
    assert_eq!(cands[0].hardware_version.as_deref(), Some("B1"));
    assert_eq!(cands[1].version, None);

    s.insert_firmware(&firmware("of1", "op3", "module", "2.0.0", "dd"))
        .await
        .unwrap();
    let devs = vec![
        ("od1".to_owned(), 0),
        ("od2".to_owned(), 0),
        ("od3".to_owned(), 1),
    ];
    s.insert_campaign(&campaign("oc1", "op3", "of1", "running"), &devs)
        .await
        .unwrap();
    assert_eq!(s.open_ota_stage("oc1", 0, 100).await.unwrap(), 2);
    assert_eq!(s.ota_pending("oc1", 0).await.unwrap(), ["od1", "od2"]);
    assert!(s
        .set_ota_device_state("oc1", "od1", &["pending"], "notified", None, None, 20)
        .await
        .unwrap());
    assert!(!s
        .set_ota_device_state("oc1", "od1", &["pending"], "notified", None, None, 21)
        .await
        .unwrap());
    assert!(s
        .set_ota_device_state(
            "oc1",
            "od1",
            &["notified", "downloading"],
            "downloading",
            Some(7),
            None,
            22
        )
        .await
        .unwrap());
    let d = s.ota_device("oc1", "od1").await.unwrap().unwrap();
    assert_eq!((d.state.as_str(), d.bytes), ("downloading", 7));
    assert_eq!(s.ota_device_active("od1").await.unwrap().len(), 1);
    let mut counts = s.ota_counts("oc1", Some(0)).await.unwrap();
    counts.sort();
    assert_eq!(counts, [("downloading".into(), 1), ("pending".into(), 1)]);
    let (page, total) = s.list_ota_devices("oc1", 0, 2).await.unwrap();
    assert_eq!((page.len(), total), (2, 3));

    // Paused campaigns keep their deadlines; running ones expire them, stage 1 has none yet.
    assert!(s
        .update_campaign("oc1", "running", 0, "paused", 0, Some("p"), 0, 30)
        .await
        .unwrap());
    assert!(s.expire_ota_devices(1_000).await.unwrap().is_empty());
    assert!(!s
        .update_campaign("oc1", "running", 0, "paused", 0, None, 0, 31)
        .await
        .unwrap());
    assert!(s
        .update_campaign("oc1", "paused", 0, "running", 0, None, 0, 32)
        .await
        .unwrap());
    let mut expired = s.expire_ota_devices(1_000).await.unwrap();
    expired.sort();
    assert_eq!(
        expired,
        [
            ("oc1".to_owned(), "od1".to_owned()),
            ("oc1".to_owned(), "od2".to_owned())
        ]
    );
    assert_eq!(s.extend_ota_deadlines("oc1", 5_000).await.unwrap(), 0);
    assert_eq!(s.campaigns_in_state("running").await.unwrap().len(), 1);
}

store_cases! {
    firmware_sequences_and_guarded_deletes,
    the_first_ota_key_is_kept,
    campaign_devices_move_only_from_named_states,
}
