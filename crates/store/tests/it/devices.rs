//! Devices: the registry, credentials for CONNECT, presence (group-committed with reports),
//! accepted CONNECT timestamps, several devices' states at once, re-provisioning.

use crate::{device, devices_of, report, state};
use rampart_store::*;

fn seen(did: &str, online: bool, ts: i64) -> PresenceRow {
    PresenceRow {
        did: did.into(),
        online,
        ts,
    }
}

fn connect(did: &str, ts: i64) -> ConnectRow {
    ConnectRow {
        did: did.into(),
        ts,
    }
}

async fn devices_conflict_on_the_same_hardware_id(s: Store) {
    devices_of(&s, "pk1", &[("d1", "hw1")]).await;
    assert!(matches!(
        s.insert_device(&device("d2", "pk1", "hw1")).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        s.get_device_by_hardware("pk1", "hw1")
            .await
            .unwrap()
            .unwrap()
            .did,
        "d1"
    );
}

async fn a_devices_secret_and_presence_are_stored(s: Store) {
    devices_of(&s, "pk1", &[("d1", "hw1")]).await;
    s.set_device_secret("d1", &[7]).await.unwrap();
    s.set_presence("d1", true, 100).await.unwrap();
    let d = s.get_device("d1").await.unwrap().unwrap();
    assert_eq!(
        (d.secret_enc, d.online, d.last_seen),
        (vec![7], true, Some(100))
    );
    let c = s.device_credentials("d1").await.unwrap().unwrap();
    assert_eq!((c.product_key.as_str(), c.secret_enc), ("pk1", vec![7]));
    assert!(s.device_credentials("nope").await.unwrap().is_none());
}

/// CONNECTs batched: only the ids that exist come back, once each.
async fn credentials_of_several_devices_come_back_once_each(s: Store) {
    devices_of(&s, "pk1", &[("d1", "hw1")]).await;
    s.set_device_secret("d1", &[7]).await.unwrap();
    let many = s
        .device_credentials_many(&["nope", "d1", "d1"])
        .await
        .unwrap();
    assert_eq!(many.len(), 1, "{many:?}");
    assert_eq!(
        (
            many[0].0.as_str(),
            many[0].1.product_key.as_str(),
            &many[0].1.secret_enc
        ),
        ("d1", "pk1", &vec![7])
    );
    assert!(s.device_credentials_many(&[]).await.unwrap().is_empty());
}

/// A device pre-registered with its public key: the key comes back with its credentials (one or
/// several at once) and on its own; other devices have none; the hardware id stays unique.
async fn a_devices_public_key_comes_back_with_its_credentials(s: Store) {
    devices_of(&s, "pk1", &[("d1", "hw1")]).await;
    s.insert_device_with_key(&device("d2", "pk1", "hw2"), &[3; 32])
        .await
        .unwrap();
    assert!(matches!(
        s.insert_device_with_key(&device("d3", "pk1", "hw2"), &[4; 32])
            .await,
        Err(StoreError::Conflict)
    ));
    let c = s.device_credentials("d2").await.unwrap().unwrap();
    assert_eq!(c.public_key, Some(vec![3; 32]));
    assert_eq!(
        s.device_credentials("d1")
            .await
            .unwrap()
            .unwrap()
            .public_key,
        None
    );
    let mut many = s.device_credentials_many(&["d1", "d2"]).await.unwrap();
    many.sort_by(|a, b| a.0.cmp(&b.0));
    let keys: Vec<_> = many.into_iter().map(|(d, c)| (d, c.public_key)).collect();
    assert_eq!(
        keys,
        [
            ("d1".to_owned(), None),
            ("d2".to_owned(), Some(vec![3; 32]))
        ]
    );
    assert_eq!(
        s.device_public_key("d2").await.unwrap(),
        Some(Some(vec![3; 32]))
    );
    assert_eq!(s.device_public_key("d1").await.unwrap(), Some(None));
    assert_eq!(s.device_public_key("nope").await.unwrap(), None);
    assert_eq!(
        s.get_device("d2").await.unwrap().unwrap().hardware_id,
        "hw2"
    );
}

async fn devices_and_those_online_are_counted(s: Store) {
    assert_eq!(s.count_devices_online().await.unwrap(), (0, 0));
    devices_of(&s, "pk1", &[("d1", "hw1"), ("d2", "hw2"), ("d3", "hw3")]).await;
    s.set_presence("d1", true, 100).await.unwrap();
    s.set_presence("d3", true, 100).await.unwrap();
    assert_eq!(s.count_devices_online().await.unwrap(), (3, 2));
    s.set_presence("d3", false, 200).await.unwrap();
    assert_eq!(s.count_devices_online().await.unwrap(), (3, 1));
}

async fn presence_is_reset_for_every_online_device(s: Store) {
    devices_of(&s, "pk1", &[("d1", "hw1"), ("d2", "hw2")]).await;
    s.set_presence("d1", true, 100).await.unwrap();
    assert_eq!(s.reset_presence().await.unwrap(), 1);
    assert!(!s.get_device("d1").await.unwrap().unwrap().online);
}

/// Presence is group-committed with reports: a device's last row in a batch wins.
async fn presence_in_a_batch_keeps_each_devices_last_row(s: Store) {
    devices_of(&s, "pk2", &[("p1", "hw-p1"), ("p2", "hw-p2")]).await;
    s.record_batch(
        &[report("p1", 420, r#"{"temp":1}"#)],
        &[
            seen("p1", true, 400),
            seen("p2", true, 410),
            seen("p1", false, 450),
        ],
    )
    .await
    .unwrap();
    let p1 = s.get_device("p1").await.unwrap().unwrap();
    let p2 = s.get_device("p2").await.unwrap().unwrap();
    assert_eq!((p1.online, p1.last_seen), (false, Some(450)));
    assert_eq!((p2.online, p2.last_seen), (true, Some(410)));
    assert_eq!(state(&s, "p1").await, serde_json::json!({"temp": 1}));
}

/// Several devices' states at once (the journal included on SQLite); unknown ones are left out.
async fn states_of_several_devices_come_back_for_those_that_exist(s: Store) {
    devices_of(&s, "pk2", &[("p1", "hw-p1"), ("p2", "hw-p2")]).await;
    s.record_batch(
        &[report("p1", 420, r#"{"temp":1}"#)],
        &[seen("p2", true, 410)],
    )
    .await
    .unwrap();
    let states = s
        .device_states(&["p1".into(), "nope".into(), "p2".into()])
        .await
        .unwrap();
    let states: Vec<(&str, serde_json::Value)> = states
        .iter()
        .map(|(d, st)| (d.as_str(), serde_json::from_str(st).unwrap()))
        .collect();
    assert_eq!(
        states,
        vec![
            ("p1", serde_json::json!({"temp": 1})),
            ("p2", serde_json::json!({}))
        ]
    );
}

async fn last_seen_never_moves_back(s: Store) {
    devices_of(&s, "pk2", &[("p2", "hw-p2")]).await;
    s.record_batch(&[], &[seen("p2", true, 410)]).await.unwrap();
    s.record_batch(&[], &[seen("p2", false, 300)])
        .await
        .unwrap();
    let p2 = s.get_device("p2").await.unwrap().unwrap();
    assert_eq!((p2.online, p2.last_seen), (false, Some(410)));
    s.record_batch(&[], &[]).await.unwrap();
    s.compact_reports().await.unwrap();
}

/// Accepted CONNECT timestamps only move forward, alone or with reports and presence.
async fn connect_timestamps_only_move_forward(s: Store) {
    devices_of(&s, "pk2", &[("p1", "hw-p1"), ("p2", "hw-p2")]).await;
    assert_eq!(
        s.device_credentials("p1")
            .await
            .unwrap()
            .unwrap()
            .connect_ts,
        0
    );
    s.record_writes(
        &[],
        &[],
        &[connect("p1", 700), connect("p1", 900), connect("p1", 800)],
    )
    .await
    .unwrap();
    s.record_writes(
        &[],
        &[seen("p2", true, 500)],
        &[connect("p1", 850), connect("p2", 5)],
    )
    .await
    .unwrap();
    let creds: std::collections::HashMap<String, DeviceCredentials> = s
        .device_credentials_many(&["p1", "p2"])
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!((creds["p1"].connect_ts, creds["p2"].connect_ts), (900, 5));
    s.record_writes(
        &[report("p2", 510, r#"{"temp":2}"#)],
        &[],
        &[connect("p2", 6)],
    )
    .await
    .unwrap();
    assert_eq!(
        s.device_credentials("p2")
            .await
            .unwrap()
            .unwrap()
            .connect_ts,
        6
    );
    s.compact_reports().await.unwrap();
    assert_eq!(
        s.device_credentials("p2")
            .await
            .unwrap()
            .unwrap()
            .connect_ts,
        6
    );
}

/// A re-provisioning window: spent once, within its time, taking every binding with it.
async fn a_reprovisioning_window_is_spent_once_within_its_time(s: Store) {
    devices_of(&s, "pk2", &[("p1", "hw-p1")]).await;
    assert_eq!(
        s.reprovision_device("p1", &[7], &[6], 1_000).await.unwrap(),
        None
    );
    assert!(!s.open_reprovision("nope", 2_000).await.unwrap());
    assert!(s.open_reprovision("p1", 2_000).await.unwrap());
    assert_eq!(
        s.reprovision_device("p1", &[7], &[6], 2_001).await.unwrap(),
        None,
        "expired"
    );
    let p1 = s.get_device("p1").await.unwrap().unwrap();
    assert_eq!(
        (p1.secret_enc, p1.passcode_enc),
        (vec![9], vec![8]),
        "nothing changed"
    );
    assert!(s.open_reprovision("p1", 3_000).await.unwrap());
    assert_eq!(
        s.reprovision_device("p1", &[7], &[6], 2_500).await.unwrap(),
        Some(vec![])
    );
    let p1 = s.get_device("p1").await.unwrap().unwrap();
    assert_eq!((p1.secret_enc, p1.passcode_enc), (vec![7], vec![6]));
    assert_eq!(
        s.reprovision_device("p1", &[5], &[4], 2_600).await.unwrap(),
        None,
        "single use"
    );
}

/// Re-provisioning takes every binding, share and bind token of the device, and names the users
/// that lost access.
async fn reprovisioning_removes_every_binding_share_and_bind_token(s: Store) {
    devices_of(&s, "pk2", &[("p1", "hw-p1")]).await;
    crate::accounts::with_users(&s).await;
    s.insert_binding("p1", "u1", "owner", None, 1)
        .await
        .unwrap();
    let share = ShareRow {
        share_id: "sh1".into(),
        did: "p1".into(),
        owner_id: "u1".into(),
        invitee_id: "u3".into(),
        role: "guest".into(),
        status: "pending".into(),
        created_at: 5,
        accepted_at: None,
    };
    s.insert_share(&share).await.unwrap();
    assert!(s.accept_share(&share, 6).await.unwrap());
    s.insert_bind_token(&BindTokenRow {
        token_hash: "t1".into(),
        did: "p1".into(),
        created_by: "u1".into(),
        expires_at: 10_000,
        created_at: 1,
    })
    .await
    .unwrap();
    assert!(s.open_reprovision("p1", 3_000).await.unwrap());
    let mut lost = s
        .reprovision_device("p1", &[7], &[6], 2_500)
        .await
        .unwrap()
        .unwrap();
    lost.sort();
    assert_eq!(lost, vec!["u1".to_string(), "u3".to_string()]);
    assert_eq!(s.device_owner("p1").await.unwrap(), None);
    assert_eq!(s.binding_role("p1", "u3").await.unwrap(), None);
    assert!(s.get_share("sh1").await.unwrap().is_none());
    assert!(s.take_bind_token("t1", "p1", 100).await.unwrap().is_none());
}

fn dids(rows: &[DeviceRow]) -> Vec<&str> {
    rows.iter().map(|r| r.did.as_str()).collect()
}

/// A search is a prefix of the did or of the hardware id, whatever the ASCII case; paging and
/// the total follow the matches, and the product filter still applies.
async fn a_device_search_matches_a_prefix_of_did_or_hardware_id(s: Store) {
    devices_of(
        &s,
        "pk1",
        &[
            ("d_alpha1", "AA:BB:01"),
            ("d_alpha2", "aa:bb:02"),
            ("d_beta", "CC:DD:03"),
            ("d_gamma", "x-d_alpha"),
        ],
    )
    .await;
    devices_of(&s, "pk2", &[("d_alpha3", "AA:BB:04")]).await;

    let (rows, n) = s.list_devices(None, Some("d_al"), 0, 10).await.unwrap();
    assert_eq!(
        (dids(&rows), n),
        (vec!["d_alpha1", "d_alpha2", "d_alpha3"], 3)
    );
    // The hardware id, in either case; a match in the middle of a value is no match.
    let (rows, n) = s.list_devices(None, Some("aa:BB"), 0, 10).await.unwrap();
    assert_eq!(
        (dids(&rows), n),
        (vec!["d_alpha1", "d_alpha2", "d_alpha3"], 3)
    );
    let (rows, n) = s.list_devices(None, Some("D_BETA"), 0, 10).await.unwrap();
    assert_eq!((dids(&rows), n), (vec!["d_beta"], 1));
    let (rows, n) = s.list_devices(None, Some("alpha"), 0, 10).await.unwrap();
    assert_eq!((rows.len(), n), (0, 0));
    // One product's matches; pages of them with the total of all of them.
    let (rows, n) = s
        .list_devices(Some("pk1"), Some("aa:"), 0, 10)
        .await
        .unwrap();
    assert_eq!((dids(&rows), n), (vec!["d_alpha1", "d_alpha2"], 2));
    let (rows, n) = s.list_devices(None, Some("d_"), 1, 2).await.unwrap();
    assert_eq!((dids(&rows), n), (vec!["d_alpha2", "d_alpha3"], 5));
    let (rows, n) = s.list_devices(None, Some("d_"), 4, 2).await.unwrap();
    assert_eq!((dids(&rows), n), (vec!["d_gamma"], 5));
    // No search, or an empty one: every device.
    assert_eq!(s.list_devices(None, None, 0, 10).await.unwrap().1, 5);
    assert_eq!(s.list_devices(None, Some(""), 0, 10).await.unwrap().1, 5);
}

/// `%`, `_` and `\` typed in a search are the characters themselves, never wildcards.
async fn a_device_search_takes_wildcards_literally(s: Store) {
    devices_of(
        &s,
        "pk1",
        &[
            ("dx1", "50%_off"),
            ("dx2", "50ab_off"),
            ("dx3", "a_b"),
            ("dx4", "axb"),
            ("dx5", "c\\d"),
            ("dx6", "cxd"),
        ],
    )
    .await;
    let find = |q: &'static str| {
        let s = s.clone();
        async move {
            let (rows, n) = s.list_devices(None, Some(q), 0, 10).await.unwrap();
            assert_eq!(rows.len() as i64, n);
            rows.into_iter().map(|r| r.did).collect::<Vec<_>>()
        }
    };
    assert_eq!(find("50%").await, ["dx1"]);
    assert_eq!(find("%").await, Vec::<String>::new());
    assert_eq!(find("a_").await, ["dx3"]);
    assert_eq!(find("_").await, Vec::<String>::new());
    assert_eq!(find("c\\").await, ["dx5"]);
    assert_eq!(find("dx").await.len(), 6);
}

/// A developer's search reaches only the devices of the products they may read.
async fn a_developers_device_search_stays_within_their_products(s: Store) {
    s.insert_owned_product(&crate::product("pk_mine"), Some("dev_s"))
        .await
        .unwrap();
    s.insert_device(&crate::device("dm1", "pk_mine", "SN-100"))
        .await
        .unwrap();
    s.insert_device(&crate::device("dm2", "pk_mine", "SN-200"))
        .await
        .unwrap();
    devices_of(&s, "pk_other", &[("do1", "SN-101")]).await;
    let (rows, n) = s
        .list_developer_devices("dev_s", Some("sn-1"), 0, 10)
        .await
        .unwrap();
    assert_eq!((dids(&rows), n), (vec!["dm1"], 1));
    let (rows, n) = s
        .list_developer_devices("dev_s", Some("d"), 1, 1)
        .await
        .unwrap();
    assert_eq!((dids(&rows), n), (vec!["dm2"], 2));
    let (_, n) = s
        .list_developer_devices("dev_s", Some("do"), 0, 10)
        .await
        .unwrap();
    assert_eq!(n, 0);
}

store_cases! {
    a_device_search_matches_a_prefix_of_did_or_hardware_id,
    a_device_search_takes_wildcards_literally,
    a_developers_device_search_stays_within_their_products,
    devices_conflict_on_the_same_hardware_id,
    a_devices_secret_and_presence_are_stored,
    credentials_of_several_devices_come_back_once_each,
    a_devices_public_key_comes_back_with_its_credentials,
    presence_is_reset_for_every_online_device,
    devices_and_those_online_are_counted,
    presence_in_a_batch_keeps_each_devices_last_row,
    states_of_several_devices_come_back_for_those_that_exist,
    last_seen_never_moves_back,
    connect_timestamps_only_move_forward,
    a_reprovisioning_window_is_spent_once_within_its_time,
    reprovisioning_removes_every_binding_share_and_bind_token,
}
