//! Quota counters: saved, loaded while their window lasts, never lowered, purged after it;
//! claimed atomically within a window.

use rampart_store::*;

fn row(counter: &str, start: i64, used: i64) -> QuotaCounterRow {
    QuotaCounterRow {
        counter: counter.into(),
        window_start: start,
        window_ms: 1000,
        used,
    }
}

async fn quota_counters_are_never_lowered_and_end_with_their_window(s: Store) {
    s.save_quota_counters(&[row("ak:k1:h", 1000, 3), row("ip:x:d", 1000, 1)], 1500)
        .await
        .unwrap();
    let mut got = s.load_quota_counters(1500).await.unwrap();
    got.sort_by(|a, b| a.counter.cmp(&b.counter));
    assert_eq!(got, vec![row("ak:k1:h", 1000, 3), row("ip:x:d", 1000, 1)]);
    // A smaller count (an older flush arriving late) never lowers the stored one.
    s.save_quota_counters(&[row("ak:k1:h", 1000, 2)], 1500)
        .await
        .unwrap();
    s.save_quota_counters(&[row("ip:x:d", 1000, 5)], 1500)
        .await
        .unwrap();
    let mut got = s.load_quota_counters(1999).await.unwrap();
    got.sort_by(|a, b| a.counter.cmp(&b.counter));
    assert_eq!(got, vec![row("ak:k1:h", 1000, 3), row("ip:x:d", 1000, 5)]);
    // The window [1000, 2000) has ended at 2000: not loaded, and purged by the next save.
    assert!(s.load_quota_counters(2000).await.unwrap().is_empty());
    s.save_quota_counters(&[row("ak:k1:h", 2000, 1)], 2000)
        .await
        .unwrap();
    assert_eq!(
        s.load_quota_counters(0).await.unwrap(),
        vec![row("ak:k1:h", 2000, 1)]
    );
}

/// 80 concurrent claims of a counter allowing 10 in its window: exactly 10 granted, and the
/// next window starts afresh.
async fn concurrent_claims_take_at_most_the_window(s: Store) {
    let claims: Vec<_> = (0..80)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                s.claim_counter("bind:u1", 60_000, 60_000, 10)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut granted = 0;
    for c in claims {
        granted += usize::from(c.await.unwrap());
    }
    assert_eq!(granted, 10);
    assert!(!s
        .claim_counter("bind:u1", 60_000, 60_000, 10)
        .await
        .unwrap());
    assert!(s
        .claim_counter("bind:u1", 120_000, 60_000, 10)
        .await
        .unwrap());
    assert!(s
        .claim_counter("bind:u2", 60_000, 60_000, 10)
        .await
        .unwrap());
    assert!(!s.claim_counter("bind:u3", 60_000, 60_000, 0).await.unwrap());
}

store_cases! {
    quota_counters_are_never_lowered_and_end_with_their_window,
    concurrent_claims_take_at_most_the_window,
}
