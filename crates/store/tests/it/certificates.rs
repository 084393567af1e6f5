//! Certificate devices' rows: a product's CAs (found by subject), each CA's newest CRL, and the
//! certificate a device last connected with.

use crate::devices_of;
use rampart_store::*;

fn ca(id: &str, pk: &str, sha: &str, subject: &str) -> CaRow {
    CaRow {
        ca_id: id.into(),
        product_key: pk.into(),
        sha256: sha.into(),
        subject: subject.into(),
        not_after: 2_000,
        der: vec![1, 2, 3],
        created_at: 10,
    }
}

fn crl(ca_id: &str, number: &str) -> CrlRow {
    CrlRow {
        ca_id: ca_id.into(),
        crl_number: number.into(),
        der: number.as_bytes().to_vec(),
        this_update: 5,
        created_at: 6,
    }
}

fn greater(a: &str, b: &str) -> bool {
    a.parse::<u64>().unwrap() > b.parse::<u64>().unwrap()
}

async fn cas_are_kept_per_product_and_found_by_subject(s: Store) {
    devices_of(&s, "pk1", &[]).await;
    devices_of(&s, "pk2", &[]).await;
    s.insert_ca(&ca("ca_a", "pk1", "h1", "CN=A")).await.unwrap();
    s.insert_ca(&ca("ca_b", "pk2", "h1", "CN=A")).await.unwrap();
    // The same CA twice in one product is a conflict; in two products it is not.
    assert!(matches!(
        s.insert_ca(&ca("ca_c", "pk1", "h1", "CN=A")).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        s.list_cas("pk1").await.unwrap(),
        [ca("ca_a", "pk1", "h1", "CN=A")]
    );
    let found = s.cas_by_subject("CN=A").await.unwrap();
    let ids: Vec<&str> = found.iter().map(|(c, _)| c.ca_id.as_str()).collect();
    assert_eq!(ids, ["ca_a", "ca_b"]);
    assert!(found.iter().all(|(_, l)| l.is_none()));
    assert!(s.cas_by_subject("CN=B").await.unwrap().is_empty());
    assert_eq!(s.delete_ca("pk2", "ca_a").await.unwrap(), None);
    assert_eq!(
        s.delete_ca("pk1", "ca_a").await.unwrap(),
        Some(ca("ca_a", "pk1", "h1", "CN=A"))
    );
    assert!(s.list_cas("pk1").await.unwrap().is_empty());
}

async fn a_crl_replaces_only_an_older_one_and_goes_with_its_ca(s: Store) {
    devices_of(&s, "pk1", &[]).await;
    s.insert_ca(&ca("ca_a", "pk1", "h1", "CN=A")).await.unwrap();
    assert!(s
        .put_crl(&crl("ca_a", "2"), |o| greater("2", o))
        .await
        .unwrap());
    assert!(!s
        .put_crl(&crl("ca_a", "2"), |o| greater("2", o))
        .await
        .unwrap());
    assert!(!s
        .put_crl(&crl("ca_a", "1"), |o| greater("1", o))
        .await
        .unwrap());
    assert!(s
        .put_crl(&crl("ca_a", "10"), |o| greater("10", o))
        .await
        .unwrap());
    assert_eq!(s.list_crls("pk1").await.unwrap(), [crl("ca_a", "10")]);
    let found = s.cas_by_subject("CN=A").await.unwrap();
    assert_eq!(found[0].1, Some(crl("ca_a", "10")));
    s.delete_ca("pk1", "ca_a").await.unwrap();
    assert!(s.list_crls("pk1").await.unwrap().is_empty());
}

async fn a_device_keeps_the_certificate_it_last_connected_with(s: Store) {
    devices_of(&s, "pk1", &[("d1", "hw1"), ("d2", "hw2")]).await;
    let seen = |did: &str, serial: &str, at: i64| DeviceCertRow {
        did: did.into(),
        ca_id: "ca_a".into(),
        serial: serial.into(),
        sha256: format!("sha-{serial}"),
        not_after: 99,
        seen_at: at,
    };
    assert_eq!(s.device_cert("d1").await.unwrap(), None);
    s.put_device_cert(&seen("d1", "01", 1)).await.unwrap();
    s.put_device_cert(&seen("d1", "02", 2)).await.unwrap();
    s.put_device_cert(&seen("d2", "03", 3)).await.unwrap();
    assert_eq!(
        s.device_cert("d1").await.unwrap(),
        Some(seen("d1", "02", 2))
    );
    let serials = ["01".to_owned(), "02".to_owned(), "03".to_owned()];
    let mut dids = s.devices_with_serials("ca_a", &serials).await.unwrap();
    dids.sort();
    assert_eq!(dids, ["d1", "d2"]);
    assert!(s
        .devices_with_serials("ca_b", &serials)
        .await
        .unwrap()
        .is_empty());
}

store_cases! {
    cas_are_kept_per_product_and_found_by_subject,
    a_crl_replaces_only_an_older_one_and_goes_with_its_ca,
    a_device_keeps_the_certificate_it_last_connected_with,
}
