//! Device shadows: versioned, compare-and-set writes.

use rampart_store::*;

async fn desired_writes_are_versioned_and_compare_and_set(s: Store) {
    assert!(s.get_shadow("d1").await.unwrap().is_none());
    assert_eq!(
        s.write_desired("d1", r#"{"power":true}"#, 0, 10)
            .await
            .unwrap(),
        Some(1)
    );
    // A second first write lost the race.
    assert_eq!(s.write_desired("d1", "{}", 0, 11).await.unwrap(), None);
    assert_eq!(
        s.write_desired("d1", r#"{"power":false}"#, 1, 12)
            .await
            .unwrap(),
        Some(2)
    );
    // A writer that read version 1 is refused.
    assert_eq!(s.write_desired("d1", "{}", 1, 13).await.unwrap(), None);
    let got = s.get_shadow("d1").await.unwrap().unwrap();
    assert_eq!(
        got,
        ShadowRow {
            did: "d1".into(),
            desired: r#"{"power":false}"#.into(),
            version: 2,
            updated_at: 12,
        }
    );
    s.write_desired("d2", "{}", 0, 14).await.unwrap();
    s.write_desired("d3", r#"{"level":3}"#, 0, 15)
        .await
        .unwrap();
    let dids: Vec<String> = s
        .desired_shadows()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.did)
        .collect();
    assert_eq!(dids, ["d1", "d3"], "empty desired states are left out");
}

store_cases! { desired_writes_are_versioned_and_compare_and_set }
