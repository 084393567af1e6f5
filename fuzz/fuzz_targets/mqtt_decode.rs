//! Fuzz the MQTT decoder: arbitrary bytes are decoded as a stream of packets in both protocol
//! versions until an error or an incomplete packet. Every packet that decodes must re-encode, and
//! the re-encoded bytes must decode to the same packet.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rampart_proto::mqtt::{decode, encode, ProtocolVersion};

const MAX_PACKET_SIZE: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let mut buf = BytesMut::from(data);
        while let Ok(Some(packet)) = decode(&mut buf, version, MAX_PACKET_SIZE) {
            let mut out = BytesMut::new();
            encode(&packet, version, &mut out).expect("a decoded packet must re-encode");
            let again = decode(&mut out, version, MAX_PACKET_SIZE).expect("re-encoded packet must decode");
            assert_eq!(again, Some(packet));
            assert!(out.is_empty(), "re-encoded packet must be exactly one frame");
        }
    }
});
