//! Hand-written wire vectors for every packet type in both versions, every malformed case the decoder
//! must refuse, partial input, and encoder refusals.

use super::*;
use crate::mqtt::reason;
use ProtocolVersion::{V311, V5};

const MAX: usize = 1 << 20;

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn decode_all(bytes: &[u8], v: ProtocolVersion) -> Result<Option<Packet>, DecodeError> {
    decode(&mut BytesMut::from(bytes), v, MAX)
}

/// Decodes `bytes` as exactly one packet.
fn dec(bytes: &[u8], v: ProtocolVersion) -> Packet {
    let mut buf = BytesMut::from(bytes);
    let p = decode(&mut buf, v, MAX).expect("decode").expect("complete");
    assert!(buf.is_empty(), "left {} bytes", buf.len());
    p
}

fn enc(p: &Packet, v: ProtocolVersion) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(p, v, &mut out).expect("encode");
    out.to_vec()
}

fn err(bytes: &[u8], v: ProtocolVersion) -> DecodeError {
    decode_all(bytes, v).expect_err("must be refused")
}

fn enc_err(p: &Packet, v: ProtocolVersion) -> EncodeError {
    let mut out = BytesMut::from(&b"keep"[..]);
    let e = encode(p, v, &mut out).expect_err("must be refused");
    assert_eq!(&out[..], b"keep", "encode wrote on error");
    e
}

/// `bytes` decodes to `packet`, `packet` encodes to `bytes`, and every strict prefix is incomplete.
fn vector(bytes: &[u8], v: ProtocolVersion, packet: Packet) {
    assert_eq!(dec(bytes, v), packet);
    assert_eq!(enc(&packet, v), bytes);
    prefixes(bytes, v);
}

fn prefixes(bytes: &[u8], v: ProtocolVersion) {
    for i in 0..bytes.len() {
        let mut buf = BytesMut::from(&bytes[..i]);
        assert_eq!(decode(&mut buf, v, MAX), Ok(None), "prefix of {i} bytes");
        assert_eq!(&buf[..], &bytes[..i]);
    }
}

fn malformed(e: DecodeError) {
    assert!(matches!(e, DecodeError::Malformed(_)), "{e:?}");
    assert_eq!(e.reason_code(), reason::MALFORMED_PACKET);
}

fn protocol(e: DecodeError) {
    assert!(matches!(e, DecodeError::Protocol(_)), "{e:?}");
    assert_eq!(e.reason_code(), reason::PROTOCOL_ERROR);
}

fn none() -> Properties {
    Properties::default()
}

fn s(v: &str) -> String {
    v.to_owned()
}

fn b(v: &'static [u8]) -> Bytes {
    Bytes::from_static(v)
}

fn resp(packet_id: u16, code: u8, properties: Properties) -> PubResp {
    PubResp {
        packet_id,
        code,
        properties,
    }
}

// ---- valid vectors ----

#[test]
fn connect_v311_will_username_password() {
    let bytes = cat(&[
        &[0x10, 31, 0, 4],
        b"MQTT",
        &[4, 0xEE, 0, 60], // user, password, will retain, will QoS 1, will, clean
        &[0, 3],
        b"cid",
        &[0, 3],
        b"w/t",
        &[0, 2],
        b"by",
        &[0, 1],
        b"u",
        &[0, 2],
        b"pw",
    ]);
    let packet = Packet::Connect(Box::new(Connect {
        protocol: V311,
        clean_start: true,
        keep_alive: 60,
        client_id: s("cid"),
        username: Some(s("u")),
        password: Some(b(b"pw")),
        will: Some(Will {
            topic: s("w/t"),
            payload: b(b"by"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: none(),
        }),
        properties: none(),
    }));
    vector(&bytes, V311, packet.clone());
    // CONNECT carries its own level, whatever the caller expects.
    assert_eq!(dec(&bytes, V5), packet);
}

#[test]
fn connect_v311_minimal() {
    let bytes = cat(&[&[0x10, 12, 0, 4], b"MQTT", &[4, 0, 0, 0], &[0, 0]]);
    let packet = Packet::Connect(Box::new(Connect {
        protocol: V311,
        clean_start: false,
        keep_alive: 0,
        client_id: s(""),
        username: None,
        password: None,
        will: None,
        properties: none(),
    }));
    vector(&bytes, V311, packet);
}

#[test]
fn connect_v5_will_username_password_properties() {
    let bytes = cat(&[
        &[0x10, 52, 0, 4],
        b"MQTT",
        &[5, 0xD6, 0, 10], // user, password, will QoS 2, will, clean
        &[
            15, 0x11, 0, 0, 0, 120, 0x21, 0, 20, 0x26, 0, 1, b'k', 0, 1, b'v',
        ],
        &[0, 2],
        b"c5",
        &[7, 0x01, 1, 0x18, 0, 0, 0, 5], // will: payload format 1, will delay 5
        &[0, 1, b't'],
        &[0, 0],
        &[0, 2],
        b"us",
        &[0, 3, 1, 2, 3],
    ]);
    let packet = Packet::Connect(Box::new(Connect {
        protocol: V5,
        clean_start: true,
        keep_alive: 10,
        client_id: s("c5"),
        username: Some(s("us")),
        password: Some(b(&[1, 2, 3])),
        will: Some(Will {
            topic: s("t"),
            payload: Bytes::new(),
            qos: QoS::ExactlyOnce,
            retain: false,
            properties: Properties {
                payload_format_indicator: Some(1),
                will_delay_interval: Some(5),
                ..none()
            },
        }),
        properties: Properties {
            session_expiry_interval: Some(120),
            receive_maximum: Some(20),
            user_properties: vec![(s("k"), s("v"))],
            ..none()
        },
    }));
    vector(&bytes, V5, packet.clone());
    assert_eq!(dec(&bytes, V311), packet);
}

#[test]
fn connect_v5_password_without_username_is_fine() {
    let bytes = cat(&[
        &[0x10, 17, 0, 4],
        b"MQTT",
        &[5, 0x40, 0, 0, 0],
        &[0, 0],
        &[0, 2, 9, 9],
    ]);
    let Packet::Connect(c) = dec(&bytes, V5) else {
        panic!()
    };
    assert_eq!((&c.username, &c.password), (&None, &Some(b(&[9, 9]))));
    assert_eq!(enc(&Packet::Connect(c), V5), bytes);
}

#[test]
fn connack() {
    let p = |sp, code| {
        Packet::ConnAck(ConnAck {
            session_present: sp,
            code,
            properties: none(),
        })
    };
    vector(&[0x20, 2, 1, 0], V311, p(true, 0));
    vector(
        &[0x20, 2, 0, reason::v311::NOT_AUTHORIZED],
        V311,
        p(false, 5),
    );
    vector(
        &[0x20, 3, 0, reason::BANNED, 0],
        V5,
        p(false, reason::BANNED),
    );
    let bytes = cat(&[
        &[0x20, 24, 0, 0, 21],
        &[0x12, 0, 3],
        b"abc",
        &[0x13, 0, 30, 0x22, 0, 10, 0x24, 1, 0x25, 0, 0x27, 0, 1, 0, 0],
    ]);
    let properties = Properties {
        assigned_client_identifier: Some(s("abc")),
        server_keep_alive: Some(30),
        topic_alias_maximum: Some(10),
        maximum_qos: Some(1),
        retain_available: Some(0),
        maximum_packet_size: Some(65536),
        ..none()
    };
    vector(
        &bytes,
        V5,
        Packet::ConnAck(ConnAck {
            session_present: false,
            code: 0,
            properties,
        }),
    );
}

#[test]
fn publish_v311() {
    vector(
        &cat(&[&[0x30, 7, 0, 3], b"a/b", b"hi"]),
        V311,
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: s("a/b"),
            packet_id: None,
            payload: b(b"hi"),
            properties: none(),
        }),
    );
    vector(
        &cat(&[&[0x3B, 7, 0, 1], b"t", &[0, 10], b"xy"]),
        V311,
        Packet::Publish(Publish {
            dup: true,
            qos: QoS::AtLeastOnce,
            retain: true,
            topic: s("t"),
            packet_id: Some(10),
            payload: b(b"xy"),
            properties: none(),
        }),
    );
    vector(
        &cat(&[&[0x34, 5, 0, 1], b"t", &[0xFF, 0xFF]]),
        V311,
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::ExactlyOnce,
            retain: false,
            topic: s("t"),
            packet_id: Some(0xFFFF),
            payload: Bytes::new(),
            properties: none(),
        }),
    );
}

#[test]
fn publish_v5_with_properties() {
    let qos0 = cat(&[
        &[0x30, 23, 0, 1],
        b"t",
        &[17, 0x01, 1, 0x02, 0, 0, 0, 60, 0x03, 0, 4],
        b"json",
        &[0x23, 0, 5],
        b"{}",
    ]);
    vector(
        &qos0,
        V5,
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: s("t"),
            packet_id: None,
            payload: b(b"{}"),
            properties: Properties {
                payload_format_indicator: Some(1),
                message_expiry_interval: Some(60),
                content_type: Some(s("json")),
                topic_alias: Some(5),
                ..none()
            },
        }),
    );
    let qos1 = cat(&[
        &[0x32, 29, 0, 1],
        b"t",
        &[0, 7],
        &[
            20, 0x08, 0, 1, b'r', 0x09, 0, 2, 0xCA, 0xFE, 0x0B, 0x96, 0x01, 0x0B, 5,
        ],
        &[0x26, 0, 1, b'a', 0, 0],
        &[1, 2, 3],
    ]);
    vector(
        &qos1,
        V5,
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: s("t"),
            packet_id: Some(7),
            payload: b(&[1, 2, 3]),
            properties: Properties {
                response_topic: Some(s("r")),
                correlation_data: Some(b(&[0xCA, 0xFE])),
                subscription_identifiers: vec![150, 5],
                user_properties: vec![(s("a"), s(""))],
                ..none()
            },
        }),
    );
    // QoS 2, retain, empty topic with a topic alias.
    vector(
        &[0x35, 8, 0, 0, 0, 9, 3, 0x23, 0, 1],
        V5,
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::ExactlyOnce,
            retain: true,
            topic: s(""),
            packet_id: Some(9),
            payload: Bytes::new(),
            properties: Properties {
                topic_alias: Some(1),
                ..none()
            },
        }),
    );
}

#[test]
fn publish_payload_is_zero_copy() {
    let bytes = cat(&[&[0x30, 13, 0, 1], b"t", b"0123456789"]);
    let mut buf = BytesMut::from(&bytes[..]);
    let range = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
    let Some(Packet::Publish(p)) = decode(&mut buf, V311, MAX).unwrap() else {
        panic!()
    };
    assert_eq!(&p.payload[..], b"0123456789");
    assert!(range.contains(&(p.payload.as_ptr() as usize)));
}

#[test]
fn pub_resp_v311() {
    vector(&[0x40, 2, 0, 7], V311, Packet::PubAck(resp(7, 0, none())));
    vector(&[0x50, 2, 1, 0], V311, Packet::PubRec(resp(256, 0, none())));
    vector(&[0x62, 2, 0, 1], V311, Packet::PubRel(resp(1, 0, none())));
    vector(&[0x70, 2, 0, 1], V311, Packet::PubComp(resp(1, 0, none())));
    // No reason codes or properties on 3.1.1.
    let p = Packet::PubAck(resp(
        7,
        0x80,
        Properties {
            reason_string: Some(s("x")),
            ..none()
        },
    ));
    assert_eq!(enc(&p, V311), [0x40, 2, 0, 7]);
}

#[test]
fn pub_resp_v5_short_and_long() {
    vector(&[0x40, 2, 0, 7], V5, Packet::PubAck(resp(7, 0, none())));
    vector(
        &[0x40, 3, 0, 7, 0x10],
        V5,
        Packet::PubAck(resp(7, 0x10, none())),
    );
    vector(
        &cat(&[&[0x40, 9, 0, 7, 0x87, 5, 0x1F, 0, 2], b"no"]),
        V5,
        Packet::PubAck(resp(
            7,
            0x87,
            Properties {
                reason_string: Some(s("no")),
                ..none()
            },
        )),
    );
    // Success with an empty property block decodes to the same thing as the short form.
    assert_eq!(
        dec(&[0x40, 4, 0, 7, 0, 0], V5),
        Packet::PubAck(resp(7, 0, none()))
    );
    vector(
        &[0x50, 3, 0, 1, 0x10],
        V5,
        Packet::PubRec(resp(1, 0x10, none())),
    );
    vector(
        &[0x62, 3, 0, 1, 0x92],
        V5,
        Packet::PubRel(resp(1, 0x92, none())),
    );
    vector(
        &[0x70, 10, 0, 1, 0, 6, 0x26, 0, 1, b'k', 0, 0],
        V5,
        Packet::PubComp(resp(
            1,
            0,
            Properties {
                user_properties: vec![(s("k"), s(""))],
                ..none()
            },
        )),
    );
}

#[test]
fn subscribe() {
    let filter =
        |f: &str, qos, no_local, retain_as_published, retain_handling| SubscriptionFilter {
            filter: s(f),
            qos,
            no_local,
            retain_as_published,
            retain_handling,
        };
    vector(
        &cat(&[&[0x82, 12, 0, 10, 0, 3], b"a/#", &[1, 0, 1], b"b", &[2]]),
        V311,
        Packet::Subscribe(Subscribe {
            packet_id: 10,
            filters: vec![
                filter("a/#", QoS::AtLeastOnce, false, false, 0),
                filter("b", QoS::ExactlyOnce, false, false, 0),
            ],
            properties: none(),
        }),
    );
    vector(
        &cat(&[
            &[0x82, 15, 0, 11, 2, 0x0B, 7, 0, 3],
            b"a/+",
            &[0x2D, 0, 1],
            b"c",
            &[0x10],
        ]),
        V5,
        Packet::Subscribe(Subscribe {
            packet_id: 11,
            filters: vec![
                filter("a/+", QoS::AtLeastOnce, true, true, 2),
                filter("c", QoS::AtMostOnce, false, false, 1),
            ],
            properties: Properties {
                subscription_identifiers: vec![7],
                ..none()
            },
        }),
    );
}

#[test]
fn suback() {
    vector(
        &[0x90, 4, 0, 10, 1, 0x80],
        V311,
        Packet::SubAck(SubAck {
            packet_id: 10,
            codes: vec![1, 0x80],
            properties: none(),
        }),
    );
    vector(
        &[0x90, 10, 0, 11, 4, 0x1F, 0, 1, b'x', 1, 0, 0x87],
        V5,
        Packet::SubAck(SubAck {
            packet_id: 11,
            codes: vec![1, 0, 0x87],
            properties: Properties {
                reason_string: Some(s("x")),
                ..none()
            },
        }),
    );
    // MQTT 5 refusal codes collapse to the 3.1.1 failure code.
    let p = Packet::SubAck(SubAck {
        packet_id: 1,
        codes: vec![2, 0x87],
        properties: none(),
    });
    assert_eq!(enc(&p, V311), [0x90, 4, 0, 1, 2, 0x80]);
}

#[test]
fn unsubscribe_and_unsuback() {
    vector(
        &cat(&[&[0xA2, 10, 0, 12, 0, 3], b"a/b", &[0, 1], b"c"]),
        V311,
        Packet::Unsubscribe(Unsubscribe {
            packet_id: 12,
            filters: vec![s("a/b"), s("c")],
            properties: none(),
        }),
    );
    vector(
        &cat(&[
            &[0xA2, 13, 0, 12, 7, 0x26, 0, 1, b'k', 0, 1, b'v', 0, 1],
            b"c",
        ]),
        V5,
        Packet::Unsubscribe(Unsubscribe {
            packet_id: 12,
            filters: vec![s("c")],
            properties: Properties {
                user_properties: vec![(s("k"), s("v"))],
                ..none()
            },
        }),
    );
    vector(
        &[0xB0, 2, 0, 12],
        V311,
        Packet::UnsubAck(UnsubAck {
            packet_id: 12,
            codes: vec![],
            properties: none(),
        }),
    );
    vector(
        &[0xB0, 5, 0, 12, 0, 0, 0x11],
        V5,
        Packet::UnsubAck(UnsubAck {
            packet_id: 12,
            codes: vec![0, 0x11],
            properties: none(),
        }),
    );
    // 3.1.1 has no UNSUBACK codes.
    let p = Packet::UnsubAck(UnsubAck {
        packet_id: 12,
        codes: vec![0x11],
        properties: none(),
    });
    assert_eq!(enc(&p, V311), [0xB0, 2, 0, 12]);
}

#[test]
fn ping() {
    for v in [V311, V5] {
        vector(&[0xC0, 0], v, Packet::PingReq);
        vector(&[0xD0, 0], v, Packet::PingResp);
    }
}

#[test]
fn disconnect() {
    let d = |code, properties| Packet::Disconnect(Disconnect { code, properties });
    vector(&[0xE0, 0], V311, d(0, none()));
    assert_eq!(enc(&d(reason::SERVER_BUSY, none()), V311), [0xE0, 0]);
    vector(&[0xE0, 0], V5, d(0, none()));
    vector(&[0xE0, 1, reason::DISCONNECT_WITH_WILL], V5, d(4, none()));
    vector(
        &cat(&[
            &[
                0xE0,
                13,
                reason::SESSION_TAKEN_OVER,
                11,
                0x11,
                0,
                0,
                0,
                0,
                0x1F,
                0,
                3,
            ],
            b"bye",
        ]),
        V5,
        d(
            reason::SESSION_TAKEN_OVER,
            Properties {
                session_expiry_interval: Some(0),
                reason_string: Some(s("bye")),
                ..none()
            },
        ),
    );
    assert_eq!(dec(&[0xE0, 2, 0, 0], V5), d(0, none()));
}

#[test]
fn auth() {
    let a = |code, properties| Packet::Auth(Auth { code, properties });
    vector(&[0xF0, 0], V5, a(0, none()));
    vector(&[0xF0, 2, 0x18, 0], V5, a(0x18, none()));
    vector(
        &cat(&[
            &[0xF0, 14, 0x19, 12, 0x15, 0, 4],
            b"SCRM",
            &[0x16, 0, 2, 1, 2],
        ]),
        V5,
        a(
            0x19,
            Properties {
                authentication_method: Some(s("SCRM")),
                authentication_data: Some(b(&[1, 2])),
                ..none()
            },
        ),
    );
    malformed(err(&[0xF0, 1, 0x18], V5)); // property length may only go with the reason code
}

#[test]
fn two_packets_back_to_back() {
    let publish = cat(&[&[0x32, 6, 0, 1], b"t", &[0, 1], b"x"]);
    let mut buf = BytesMut::from(&cat(&[&publish, &[0xC0, 0], &[0x40, 2, 0]])[..]);
    let Some(Packet::Publish(p)) = decode(&mut buf, V311, MAX).unwrap() else {
        panic!()
    };
    assert_eq!((p.packet_id, &p.payload[..]), (Some(1), &b"x"[..]));
    assert_eq!(decode(&mut buf, V311, MAX), Ok(Some(Packet::PingReq)));
    // The third packet is incomplete: nothing consumed until the rest arrives.
    assert_eq!(decode(&mut buf, V311, MAX), Ok(None));
    assert_eq!(&buf[..], [0x40, 2, 0]);
    buf.extend_from_slice(&[1]);
    assert_eq!(
        decode(&mut buf, V311, MAX),
        Ok(Some(Packet::PubAck(resp(1, 0, none()))))
    );
    assert!(buf.is_empty());
}

// ---- framing ----

#[test]
fn frame_len_cases() {
    assert_eq!(frame_len(&[], MAX), Ok(None));
    assert_eq!(frame_len(&[0x30], MAX), Ok(None));
    assert_eq!(frame_len(&[0x30, 0x80], MAX), Ok(None));
    assert_eq!(frame_len(&[0x30, 0xFF, 0xFF, 0xFF], MAX), Ok(None));
    assert_eq!(frame_len(&[0x30, 0x0A], MAX), Ok(Some(12)));
    assert_eq!(frame_len(&[0xC0, 0], MAX), Ok(Some(2)));
    assert_eq!(frame_len(&[0x30, 0x80, 0x01], MAX), Ok(Some(131)));
    assert_eq!(
        frame_len(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F], usize::MAX),
        Ok(Some(5 + 268_435_455))
    );
    malformed(frame_len(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF], usize::MAX).unwrap_err());
    malformed(frame_len(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], usize::MAX).unwrap_err());
    // Not in shortest form.
    malformed(frame_len(&[0x30, 0x80, 0x00], MAX).unwrap_err());
    let e = frame_len(&[0x30, 0x0A], 11).unwrap_err();
    assert_eq!(e, DecodeError::TooLarge { size: 12, max: 11 });
    assert_eq!(e.reason_code(), reason::PACKET_TOO_LARGE);
    assert_eq!(frame_len(&[0x30, 0x0A], 12), Ok(Some(12)));
}

#[test]
fn too_large_is_refused_before_the_body_arrives() {
    let mut buf = BytesMut::from(&[0x30, 0x80, 0x80, 0x01][..]);
    assert_eq!(
        decode(&mut buf, V5, 1000),
        Err(DecodeError::TooLarge {
            size: 16388,
            max: 1000
        })
    );
}

// ---- malformed and protocol errors ----

#[test]
fn fixed_header_flags() {
    for bytes in [
        &[0x41, 2, 0, 1][..],
        &[0x52, 2, 0, 1],
        &[0x60, 2, 0, 1],
        &[0x72, 2, 0, 1],
        &[0x80, 6, 0, 1, 0, 1, b'a', 0],
        &[0x91, 3, 0, 1, 0],
        &[0xA0, 5, 0, 1, 0, 1, b'a'],
        &[0xA3, 5, 0, 1, 0, 1, b'a'],
        &[0xB2, 2, 0, 1],
        &[0xC1, 0],
        &[0xD8, 0],
        &[0xE1, 0],
        &[0x21, 2, 0, 0],
        &[0x12, 0],
    ] {
        for v in [V311, V5] {
            malformed(err(bytes, v));
        }
    }
    malformed(err(&[0xF1, 0], V5));
}

#[test]
fn reserved_packet_types() {
    malformed(err(&[0x00, 0], V311));
    malformed(err(&[0x00, 0], V5));
    malformed(err(&[0xF0, 0], V311)); // AUTH does not exist in 3.1.1
}

#[test]
fn publish_flags() {
    for v in [V311, V5] {
        malformed(err(&cat(&[&[0x36, 5, 0, 1], b"t", &[0, 1]]), v)); // QoS 3
        malformed(err(&cat(&[&[0x38, 3, 0, 1], b"t"]), v)); // DUP on QoS 0
    }
}

/// A CONNECT with the given protocol name, level and flags, keep alive 0, then `rest`.
fn connect_bytes(name: &[u8], level: u8, flags: u8, rest: &[u8]) -> Vec<u8> {
    let body = cat(&[&[0, name.len() as u8], name, &[level, flags, 0, 0], rest]);
    cat(&[&[0x10, body.len() as u8], &body])
}

#[test]
fn connect_errors() {
    let id = &[0, 1, b'c'][..];
    assert_eq!(
        err(&connect_bytes(b"MQIsdp", 3, 2, id), V311),
        DecodeError::UnsupportedVersion(3)
    );
    let e = err(&connect_bytes(b"MQTT", 6, 2, id), V5);
    assert_eq!(e, DecodeError::UnsupportedVersion(6));
    assert_eq!(e.reason_code(), reason::UNSUPPORTED_PROTOCOL_VERSION);
    assert_eq!(
        err(&connect_bytes(b"MQTT", 3, 2, id), V311),
        DecodeError::UnsupportedVersion(3)
    );
    protocol(err(&connect_bytes(b"MQTX", 4, 2, id), V311));
    // Reserved flag.
    malformed(err(&connect_bytes(b"MQTT", 4, 0x03, id), V311));
    malformed(err(
        &connect_bytes(b"MQTT", 5, 0x01, &[&[0], id].concat()),
        V5,
    ));
    // Will QoS / retain without the will flag, will QoS 3.
    malformed(err(&connect_bytes(b"MQTT", 4, 0x08, id), V311));
    malformed(err(&connect_bytes(b"MQTT", 4, 0x20, id), V311));
    let will = &[0, 1, b'c', 0, 1, b't', 0, 0][..];
    malformed(err(&connect_bytes(b"MQTT", 4, 0x1C, will), V311));
    assert!(matches!(
        dec(&connect_bytes(b"MQTT", 4, 0x14, will), V311),
        Packet::Connect(_)
    ));
    // Password without user name is fine in 5.0 only.
    malformed(err(
        &connect_bytes(b"MQTT", 4, 0x40, &[0, 1, b'c', 0, 0]),
        V311,
    ));
    // Will topic with a wildcard or empty.
    protocol(err(
        &connect_bytes(b"MQTT", 4, 0x04, &[0, 1, b'c', 0, 1, b'#', 0, 0]),
        V311,
    ));
    protocol(err(
        &connect_bytes(b"MQTT", 4, 0x04, &[0, 1, b'c', 0, 0, 0, 0]),
        V311,
    ));
    // Fields past the end, trailing bytes.
    malformed(err(&connect_bytes(b"MQTT", 4, 0x80, id), V311)); // user name missing
    malformed(err(
        &connect_bytes(b"MQTT", 4, 0xC0, &[0, 1, b'c', 0, 0, 0, 5, 1]),
        V311,
    ));
    malformed(err(&connect_bytes(b"MQTT", 4, 0, &[0, 1, b'c', 0]), V311));
    malformed(err(&[0x10, 3, 0, 4, b'M'], V311));
    // MQTT 5 properties: receive maximum 0, request problem information 2, duplicate, not allowed,
    // authentication data without a method.
    protocol(err(
        &connect_bytes(b"MQTT", 5, 0, &[&[3, 0x21, 0, 0], id].concat()),
        V5,
    ));
    protocol(err(
        &connect_bytes(b"MQTT", 5, 0, &[&[2, 0x17, 2], id].concat()),
        V5,
    ));
    protocol(err(
        &connect_bytes(b"MQTT", 5, 0, &[&[4, 0x17, 1, 0x17, 1], id].concat()),
        V5,
    ));
    protocol(err(
        &connect_bytes(b"MQTT", 5, 0, &[&[3, 0x23, 0, 1], id].concat()),
        V5,
    ));
    protocol(err(
        &connect_bytes(b"MQTT", 5, 0, &[&[5, 0x27, 0, 0, 0, 0], id].concat()),
        V5,
    ));
    protocol(err(
        &connect_bytes(b"MQTT", 5, 0, &[&[3, 0x16, 0, 0], id].concat()),
        V5,
    ));
    // Will property not allowed in the will block.
    let will5 = &[0, 1, b'c', 3, 0x11, 0, 0, 0, 1, b't', 0, 0][..];
    protocol(err(
        &connect_bytes(b"MQTT", 5, 0x04, &[&[0], will5].concat()),
        V5,
    ));
}

#[test]
fn connack_errors() {
    malformed(err(&[0x20, 2, 2, 0], V311));
    protocol(err(&[0x20, 2, 1, 5], V311));
    malformed(err(&[0x20, 3, 0, 0, 0], V311));
    malformed(err(&[0x20, 2, 0, 0], V5)); // property length missing
    protocol(err(&[0x20, 5, 0, 0, 2, 0x24, 2], V5)); // maximum QoS 2
    protocol(err(&[0x20, 5, 0, 0, 2, 0x28, 7], V5));
    protocol(err(&[0x20, 8, 0, 0, 5, 0x27, 0, 0, 0, 0], V5)); // maximum packet size 0
    protocol(err(&[0x20, 6, 0, 0, 3, 0x23, 0, 1], V5)); // topic alias
}

#[test]
fn strings() {
    for v in [V311, V5] {
        let tail: &[u8] = if v == V5 { &[0] } else { &[] };
        malformed(err(
            &cat(&[&[0x30, 4 + tail.len() as u8, 0, 2, 0xC3, 0x28], tail]),
            v,
        ));
        malformed(err(
            &cat(&[&[0x30, 3 + tail.len() as u8, 0, 1, 0], tail]),
            v,
        ));
        malformed(err(
            &cat(&[&[0x30, 4 + tail.len() as u8, 0, 2, 0xED, 0xA0], tail]),
            v,
        )); // surrogate
        malformed(err(&[0x30, 3, 0, 5, b'a'], v)); // length past the end
        malformed(err(&[0x30, 1, 0], v));
        // Wildcards in a topic name.
        protocol(err(
            &cat(&[&[0x30, 3 + tail.len() as u8, 0, 1, b'+'], tail]),
            v,
        ));
        protocol(err(
            &cat(&[&[0x30, 5 + tail.len() as u8, 0, 3], b"a/#", tail]),
            v,
        ));
        // Bad filter in SUBSCRIBE / UNSUBSCRIBE.
        malformed(err(
            &cat(&[&[0x82, 6 + tail.len() as u8, 0, 1], tail, &[0, 1, 0xFF, 0]]),
            v,
        ));
        protocol(err(
            &cat(&[&[0x82, 5 + tail.len() as u8, 0, 1], tail, &[0, 0, 0]]),
            v,
        ));
        protocol(err(
            &cat(&[&[0xA2, 4 + tail.len() as u8, 0, 1], tail, &[0, 0]]),
            v,
        ));
    }
    protocol(err(&[0x30, 2, 0, 0], V311)); // empty topic needs an alias, which 3.1.1 lacks
    assert!(matches!(dec(&[0x30, 3, 0, 0, 0], V5), Packet::Publish(_)));
    // Invalid UTF-8 in a user property.
    malformed(err(&[0x40, 10, 0, 1, 0, 6, 0x26, 0, 1, 0xFF, 0, 0], V5));
}

#[test]
fn trailing_bytes() {
    for v in [V311, V5] {
        malformed(err(&[0xC0, 1, 0], v));
        malformed(err(&[0xD0, 1, 0], v));
    }
    malformed(err(&[0x40, 3, 0, 1, 0], V311));
    malformed(err(&[0xB0, 3, 0, 1, 0], V311));
    malformed(err(&[0xE0, 1, 0], V311));
    malformed(err(&[0x20, 4, 0, 0, 0, 0], V5));
    malformed(err(&[0x40, 5, 0, 1, 0, 0, 0], V5));
    malformed(err(&[0xE0, 3, 0, 0, 0], V5));
    malformed(err(&[0xF0, 3, 0, 0, 0], V5));
    malformed(err(&connect_bytes(b"MQTT", 4, 0, &[0, 1, b'c', 0]), V311));
}

#[test]
fn packet_id_zero() {
    for v in [V311, V5] {
        for bytes in [
            &[0x40, 2, 0, 0][..],
            &[0x50, 2, 0, 0],
            &[0x62, 2, 0, 0],
            &[0x70, 2, 0, 0],
            &[0x90, 3, 0, 0, 0],
        ] {
            protocol(err(bytes, v));
        }
        protocol(err(&[0x32, 5, 0, 1, b't', 0, 0], v));
    }
    protocol(err(&[0x82, 6, 0, 0, 0, 1, b'a', 0], V311));
    protocol(err(&[0xA2, 5, 0, 0, 0, 1, b'a'], V311));
    protocol(err(&[0xB0, 2, 0, 0], V311));
}

#[test]
fn empty_subscribe_unsubscribe_and_acks() {
    protocol(err(&[0x82, 2, 0, 1], V311));
    protocol(err(&[0x82, 3, 0, 1, 0], V5));
    protocol(err(&[0xA2, 2, 0, 1], V311));
    protocol(err(&[0xA2, 3, 0, 1, 0], V5));
    protocol(err(&[0x90, 2, 0, 1], V311));
    protocol(err(&[0x90, 3, 0, 1, 0], V5));
    protocol(err(&[0xB0, 3, 0, 1, 0], V5));
    malformed(err(&[0xB0, 2, 0, 1], V5)); // property length missing
    protocol(err(&[0x90, 3, 0, 1, 3], V311)); // reserved 3.1.1 return code
    assert!(matches!(
        dec(&[0x90, 4, 0, 1, 0, 0x87], V5),
        Packet::SubAck(_)
    ));
}

#[test]
fn subscription_options() {
    let sub = |v: ProtocolVersion, options: u8| {
        let tail: &[u8] = if v == V5 { &[0] } else { &[] };
        cat(&[
            &[0x82, 6 + tail.len() as u8, 0, 1],
            tail,
            &[0, 1, b'a', options],
        ])
    };
    malformed(err(&sub(V311, 0x04), V311)); // no local is a reserved bit in 3.1.1
    malformed(err(&sub(V311, 0x03), V311));
    malformed(err(&sub(V5, 0x40), V5));
    malformed(err(&sub(V5, 0x80), V5));
    malformed(err(&sub(V5, 0x03), V5));
    protocol(err(&sub(V5, 0x30), V5));
    assert!(matches!(dec(&sub(V5, 0x2E), V5), Packet::Subscribe(_)));
    // Option byte missing.
    malformed(err(&[0x82, 5, 0, 1, 0, 1, b'a'], V311));
}

#[test]
fn property_errors() {
    // Property length past the packet end.
    malformed(err(&[0x40, 4, 0, 1, 0, 5], V5));
    malformed(err(&[0x40, 4, 0, 1, 0, 0x80], V5));
    // Property value past the property length.
    malformed(err(&[0x40, 6, 0, 1, 0, 2, 0x1F, 0], V5));
    malformed(err(&[0x40, 7, 0, 1, 0, 3, 0x1F, 0, 2], V5));
    // Not allowed here, unknown.
    protocol(err(&[0x40, 7, 0, 1, 0, 3, 0x23, 0, 1], V5));
    protocol(err(&[0x40, 6, 0, 1, 0, 2, 0x7F, 0], V5));
    protocol(err(&[0xA2, 9, 0, 1, 3, 0x1F, 0, 0, 0, 1, b'a'], V5)); // reason string on UNSUBSCRIBE
                                                                    // Duplicates.
    protocol(err(&[0x40, 10, 0, 1, 0, 6, 0x1F, 0, 0, 0x1F, 0, 0], V5));
    protocol(err(&[0x30, 8, 0, 1, b't', 4, 0x01, 0, 0x01, 1], V5));
    protocol(err(
        &[0x82, 10, 0, 1, 4, 0x0B, 1, 0x0B, 2, 0, 1, b'a', 0],
        V5,
    ));
    // Repeatable.
    let Packet::Publish(p) = dec(&[0x30, 8, 0, 1, b't', 4, 0x0B, 1, 0x0B, 1], V5) else {
        panic!()
    };
    assert_eq!(p.properties.subscription_identifiers, [1, 1]);
    // Zero values and non-flag bytes.
    protocol(err(&[0x30, 7, 0, 1, b't', 3, 0x23, 0, 0], V5));
    protocol(err(&[0x30, 6, 0, 1, b't', 2, 0x0B, 0], V5));
    protocol(err(&[0x30, 6, 0, 1, b't', 2, 0x01, 2], V5));
    // Response topic with a wildcard.
    protocol(err(&[0x30, 9, 0, 1, b't', 5, 0x08, 0, 2, b'a', b'+'], V5));
    // Subscription identifier varint truncated / too long.
    malformed(err(&[0x30, 6, 0, 1, b't', 2, 0x0B, 0x80], V5));
    malformed(err(
        &[0x30, 10, 0, 1, b't', 6, 0x0B, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
        V5,
    ));
}

fn user_props_packet(n: usize) -> Vec<u8> {
    let props: Vec<u8> = (0..n).flat_map(|_| [0x26, 0, 0, 0, 0]).collect();
    let mut len = BytesMut::new();
    put_varint(&mut len, props.len()).unwrap();
    let body = cat(&[&[0, 1], &[0], &len, &props]);
    let mut rl = BytesMut::new();
    put_varint(&mut rl, body.len()).unwrap();
    cat(&[&[0x40], &rl, &body])
}

#[test]
fn user_property_cap() {
    let Packet::PubAck(p) = dec(&user_props_packet(1024), V5) else {
        panic!()
    };
    assert_eq!(p.properties.user_properties.len(), 1024);
    assert_eq!(
        err(&user_props_packet(1025), V5),
        DecodeError::Protocol("too many user properties")
    );
}

// ---- encoder refusals ----

fn publish(qos: QoS, packet_id: Option<u16>) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: s("t"),
        packet_id,
        payload: Bytes::new(),
        properties: none(),
    }
}

/// A reason code outside its packet type's table is refused by the encoder and by the decoder:
/// 0x96 (message rate too high) is a DISCONNECT code, never a PUBACK or PUBREC one.
#[test]
fn reason_codes_outside_their_packet_tables() {
    let refused = |p: Packet, v, packet: &'static str, code: u8| {
        assert_eq!(
            enc_err(&p, v),
            EncodeError::Reason { packet, code },
            "{p:?}"
        );
    };
    refused(Packet::PubAck(resp(1, 0x96, none())), V5, "PUBACK", 0x96);
    refused(Packet::PubRec(resp(1, 0x96, none())), V5, "PUBREC", 0x96);
    refused(Packet::PubComp(resp(1, 0x80, none())), V5, "PUBCOMP", 0x80);
    refused(Packet::PubRel(resp(1, 0x87, none())), V5, "PUBREL", 0x87);
    let suback = SubAck {
        packet_id: 1,
        codes: vec![0, 0x96],
        properties: none(),
    };
    refused(Packet::SubAck(suback), V5, "SUBACK", 0x96);
    let unsuback = UnsubAck {
        packet_id: 1,
        codes: vec![0x97],
        properties: none(),
    };
    refused(Packet::UnsubAck(unsuback), V5, "UNSUBACK", 0x97);
    let connack = |code| ConnAck {
        session_present: false,
        code,
        properties: none(),
    };
    refused(Packet::ConnAck(connack(0x96)), V5, "CONNACK", 0x96);
    refused(Packet::ConnAck(connack(6)), V311, "CONNACK", 6);
    let disconnect = Disconnect {
        code: 0x10,
        properties: none(),
    };
    refused(Packet::Disconnect(disconnect), V5, "DISCONNECT", 0x10);
    let auth = Auth {
        code: 0x80,
        properties: none(),
    };
    refused(Packet::Auth(auth), V5, "AUTH", 0x80);
    // In 3.1.1 the PUBACK family carries no code, so there is nothing to refuse.
    let mut out = BytesMut::new();
    encode(&Packet::PubAck(resp(1, 0x96, none())), V311, &mut out).unwrap();
    assert_eq!(&out[..], &[0x40, 2, 0, 1]);

    let not_allowed = DecodeError::Protocol("reason code not allowed in this packet type");
    assert_eq!(err(&[0x40, 3, 0, 1, 0x96], V5), not_allowed); // PUBACK 0x96
    assert_eq!(err(&[0x50, 3, 0, 1, 0x9F], V5), not_allowed); // PUBREC 0x9F
    assert_eq!(err(&[0x70, 3, 0, 1, 0x80], V5), not_allowed); // PUBCOMP 0x80
    assert_eq!(err(&[0x90, 4, 0, 1, 0, 0x96], V5), not_allowed); // SUBACK 0x96
    assert_eq!(err(&[0xE0, 1, 0x10], V5), not_allowed); // DISCONNECT 0x10
    assert_eq!(err(&[0x20, 2, 0, 6], V311), not_allowed); // CONNACK return code 6
                                                          // The same packets with codes from their tables decode.
    for ok in [
        &[0x40, 3, 0, 1, 0x97][..],
        &[0x50, 3, 0, 1, 0x99],
        &[0x70, 3, 0, 1, 0x92],
        &[0x90, 4, 0, 1, 0, 0x97],
        &[0xE0, 1, 0x96],
    ] {
        let mut buf = BytesMut::from(ok);
        assert!(
            decode(&mut buf, V5, 1 << 20).unwrap().is_some(),
            "{ok:02x?}"
        );
    }
}

#[test]
fn encode_errors() {
    let invalid = |p: Packet, v| assert!(matches!(enc_err(&p, v), EncodeError::Invalid(_)));
    for v in [V311, V5] {
        invalid(Packet::Publish(publish(QoS::AtLeastOnce, None)), v);
        invalid(Packet::Publish(publish(QoS::AtMostOnce, Some(1))), v);
        invalid(Packet::Publish(publish(QoS::AtLeastOnce, Some(0))), v);
        invalid(
            Packet::Publish(Publish {
                dup: true,
                ..publish(QoS::AtMostOnce, None)
            }),
            v,
        );
        invalid(
            Packet::Publish(Publish {
                topic: s("a/+"),
                ..publish(QoS::AtMostOnce, None)
            }),
            v,
        );
        invalid(
            Packet::Publish(Publish {
                topic: s("a\0"),
                ..publish(QoS::AtMostOnce, None)
            }),
            v,
        );
        invalid(Packet::PubAck(resp(0, 0, none())), v);
        invalid(
            Packet::Subscribe(Subscribe {
                packet_id: 1,
                filters: vec![],
                properties: none(),
            }),
            v,
        );
        invalid(
            Packet::Unsubscribe(Unsubscribe {
                packet_id: 1,
                filters: vec![s("")],
                properties: none(),
            }),
            v,
        );
        invalid(
            Packet::SubAck(SubAck {
                packet_id: 1,
                codes: vec![],
                properties: none(),
            }),
            v,
        );
        invalid(
            Packet::ConnAck(ConnAck {
                session_present: true,
                code: if v == V5 { 0x80 } else { 5 },
                properties: none(),
            }),
            v,
        );
    }
    invalid(
        Packet::Publish(Publish {
            topic: s(""),
            ..publish(QoS::AtMostOnce, None)
        }),
        V311,
    );
    invalid(
        Packet::Auth(Auth {
            code: 0,
            properties: none(),
        }),
        V311,
    );
    invalid(
        Packet::SubAck(SubAck {
            packet_id: 1,
            codes: vec![3],
            properties: none(),
        }),
        V311,
    );
    invalid(
        Packet::UnsubAck(UnsubAck {
            packet_id: 1,
            codes: vec![],
            properties: none(),
        }),
        V5,
    );
    let sub = |retain_handling| {
        Packet::Subscribe(Subscribe {
            packet_id: 1,
            filters: vec![SubscriptionFilter {
                filter: s("a"),
                qos: QoS::AtMostOnce,
                no_local: false,
                retain_as_published: false,
                retain_handling,
            }],
            properties: Properties {
                subscription_identifiers: vec![1, 2],
                ..none()
            },
        })
    };
    invalid(sub(3), V5);
    invalid(sub(0), V5); // two subscription identifiers
                         // Properties: not allowed on the packet, zero where forbidden, byte not a flag.
    invalid(
        Packet::PubAck(resp(
            1,
            0,
            Properties {
                topic_alias: Some(1),
                ..none()
            },
        )),
        V5,
    );
    invalid(
        Packet::Publish(Publish {
            properties: Properties {
                topic_alias: Some(0),
                ..none()
            },
            ..publish(QoS::AtMostOnce, None)
        }),
        V5,
    );
    invalid(
        Packet::Publish(Publish {
            properties: Properties {
                payload_format_indicator: Some(2),
                ..none()
            },
            ..publish(QoS::AtMostOnce, None)
        }),
        V5,
    );
    invalid(
        Packet::Publish(Publish {
            properties: Properties {
                subscription_identifiers: vec![268_435_456],
                ..none()
            },
            ..publish(QoS::AtMostOnce, None)
        }),
        V5,
    );
    invalid(
        Packet::Disconnect(Disconnect {
            code: 0,
            properties: Properties {
                receive_maximum: Some(5),
                ..none()
            },
        }),
        V5,
    );
    let connect = Connect {
        protocol: V311,
        clean_start: true,
        keep_alive: 0,
        client_id: s("c"),
        username: None,
        password: Some(Bytes::new()),
        will: None,
        properties: none(),
    };
    invalid(Packet::Connect(Box::new(connect.clone())), V311);
    let connect = Connect {
        protocol: V5,
        password: None,
        ..connect
    };
    let auth_data = Properties {
        authentication_data: Some(Bytes::new()),
        ..none()
    };
    invalid(
        Packet::Connect(Box::new(Connect {
            properties: auth_data,
            ..connect.clone()
        })),
        V5,
    );
    let will = Will {
        topic: s("a/#"),
        payload: Bytes::new(),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: none(),
    };
    invalid(
        Packet::Connect(Box::new(Connect {
            will: Some(will),
            ..connect.clone()
        })),
        V5,
    );

    // Too long.
    let long = "x".repeat(65536);
    let e = enc_err(
        &Packet::Publish(Publish {
            topic: long.clone(),
            ..publish(QoS::AtMostOnce, None)
        }),
        V5,
    );
    assert_eq!(e, EncodeError::TooLong("topic name"));
    let e = enc_err(
        &Packet::Connect(Box::new(Connect {
            client_id: long.clone(),
            ..connect.clone()
        })),
        V5,
    );
    assert_eq!(e, EncodeError::TooLong("client identifier"));
    let props = Properties {
        reason_string: Some(long),
        ..none()
    };
    let e = enc_err(
        &Packet::Disconnect(Disconnect {
            code: 0,
            properties: props,
        }),
        V5,
    );
    assert!(matches!(e, EncodeError::TooLong(_)));
    // Calloc'd, never touched: the encoder refuses before copying.
    let huge = Bytes::from(vec![0u8; MAX_VARINT]);
    let e = enc_err(
        &Packet::Publish(Publish {
            payload: huge,
            ..publish(QoS::AtMostOnce, None)
        }),
        V5,
    );
    assert_eq!(e, EncodeError::TooLong("remaining length"));
}

#[test]
fn encode_appends() {
    let mut out = BytesMut::from(&b"x"[..]);
    encode(&Packet::PingReq, V5, &mut out).unwrap();
    encode(&Packet::PingResp, V311, &mut out).unwrap();
    assert_eq!(&out[..], [b'x', 0xC0, 0, 0xD0, 0]);
}

#[test]
fn large_remaining_length_round_trips() {
    let p = Packet::Publish(Publish {
        payload: Bytes::from(vec![7u8; 20_000]),
        ..publish(QoS::AtMostOnce, None)
    });
    let bytes = enc(&p, V5);
    assert_eq!(&bytes[..4], [0x30, 0xA4, 0x9C, 0x01]); // 3 + 1 + 20000 = 20004
    assert_eq!(dec(&bytes, V5), p);
}
