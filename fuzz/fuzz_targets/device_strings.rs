//! Fuzz the small parsers of device-supplied strings: the MQTT CONNECT username, command acks,
//! topic classification and filter checks, and hardware ids. None may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_proto::{command, ids, sign, topic};

fuzz_target!(|data: &[u8]| {
    let _ = command::Ack::parse(data);
    if let Ok(s) = std::str::from_utf8(data) {
        if let Some((did, ts)) = sign::parse_connect_username(s) {
            assert_eq!(sign::connect_username(did, ts).split('|').count(), 3);
        }
        let _ = ids::Did::parse(s);
        let _ = ids::valid_hardware_id(s);
        let mid = (0..=s.len() / 2).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
        let (a, b) = s.split_at(mid);
        let _ = topic::classify(a, b);
        let _ = topic::filter_allowed(a, b);
        if topic::valid_topic_filter(a) && topic::valid_topic_name(b) {
            let _ = topic::matches(a, b);
        }
    }
});
