//! Settings: set once, never overwritten.

use rampart_store::*;

async fn settings_are_initialised_once(s: Store) {
    assert!(s.init_setting("k", "v1").await.unwrap());
    assert!(!s.init_setting("k", "v2").await.unwrap());
    assert_eq!(s.get_setting("k").await.unwrap().as_deref(), Some("v1"));
    assert_eq!(s.get_setting("missing").await.unwrap(), None);
}

store_cases! { settings_are_initialised_once }
