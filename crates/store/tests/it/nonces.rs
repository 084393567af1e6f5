//! Nonces: used once per scope until they expire.

use rampart_store::*;

async fn a_nonce_is_used_once_per_scope_until_it_expires(s: Store) {
    assert!(s.use_nonce("reg", "n1", 1000, 0).await.unwrap());
    assert!(!s.use_nonce("reg", "n1", 1000, 10).await.unwrap());
    assert!(s.use_nonce("other", "n1", 1000, 10).await.unwrap());
    // expired nonces are purged
    assert!(s.use_nonce("reg", "n1", 3000, 2000).await.unwrap());
}

store_cases! { a_nonce_is_used_once_per_scope_until_it_expires }
