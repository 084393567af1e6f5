//! Fuzz the secure-session layer's reading of network bytes: frames cut from a byte stream,
//! frame 0 as a did, a frame as handshake message 1 (server side), and frames as transport
//! messages of an established session. None may panic; nothing forged may decrypt.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rampart_proto::secure_session::{parse_did_frame, psk, take_frame, Handshake, Opened};

fuzz_target!(|data: &[u8]| {
    let key = psk(b"00112233445566778899aabbccddeeff", "d0123456789abcdefghi");
    let mut stream = BytesMut::from(data);
    let mut frames = Vec::new();
    while let Some(body) = take_frame(&mut stream) {
        frames.push(body);
    }
    // Whatever is left is shorter than the frame its length announces.
    if stream.len() >= 2 {
        assert!(usize::from(u16::from_be_bytes([stream[0], stream[1]])) > stream.len() - 2);
    }
    let mut frames = frames.into_iter();
    if let Some(f0) = frames.next() {
        if let Ok(did) = parse_did_frame(&f0) {
            assert!(!did.is_empty() && did.len() <= 64);
        }
    }
    if let Some(f1) = frames.next() {
        let mut server = Handshake::responder("d0123456789abcdefghi", &key).unwrap();
        assert!(server.read(&f1).is_err(), "a forged message 1 verified");
    }
    // A real session, then the remaining frames as the device's transport messages.
    let mut device = Handshake::initiator("d0123456789abcdefghi", &key).unwrap();
    let mut server = Handshake::responder("d0123456789abcdefghi", &key).unwrap();
    server.read(&device.write().unwrap()).unwrap();
    device.read(&server.write().unwrap()).unwrap();
    let mut server = server.into_transport(0).unwrap();
    let mut out = BytesMut::new();
    for f in frames {
        match server.open(&f, &mut out) {
            Ok(Opened::Data(_)) | Ok(Opened::Rekeyed) => {
                panic!("a forged transport message decrypted")
            }
            Err(_) => assert!(out.is_empty()),
        }
    }
});
