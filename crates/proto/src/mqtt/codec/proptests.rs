//! Property tests: every valid packet of either version survives encode -> decode unchanged, and
//! `decode` on arbitrary or corrupted bytes never panics and only yields packets that re-encode.

use super::props::Ctx;
use super::*;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use ProtocolVersion::{V311, V5};

const MAX: usize = 1 << 20;

/// UTF-8 strings without U+0000 (`\PC` excludes control characters), multi-byte ones included.
fn string() -> impl Strategy<Value = String> {
    "\\PC{0,6}"
}

fn topic() -> impl Strategy<Value = String> {
    "[a-z0-9/é$]{1,8}"
}

fn filter() -> impl Strategy<Value = String> {
    "[a-z0-9/+#]{1,8}"
}

fn bytes() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..12).prop_map(Bytes::from)
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn some<S: Strategy>(s: S) -> impl Strategy<Value = Option<S::Value>> {
    option::weighted(0.25, s)
}

/// Any valid value for every property; `restrict` then keeps what a packet type allows.
fn all_properties() -> BoxedStrategy<Properties> {
    let flag = || some(0u8..=1);
    (
        (
            flag(),
            some(any::<u32>()),
            some(string()),
            some(topic()),
            some(bytes()),
        ),
        (
            vec(1u32..=268_435_455, 0..3),
            some(any::<u32>()),
            some(string()),
            some(any::<u16>()),
        ),
        (
            some(string()),
            some(bytes()),
            flag(),
            some(any::<u32>()),
            flag(),
            some(string()),
        ),
        (
            some(string()),
            some(string()),
            some(1u16..),
            some(any::<u16>()),
            some(1u16..),
        ),
        (
            flag(),
            flag(),
            vec((string(), string()), 0..3),
            some(1u32..),
            flag(),
            flag(),
            flag(),
        ),
    )
        .prop_map(|(a, b, c, d, e)| Properties {
            payload_format_indicator: a.0,
            message_expiry_interval: a.1,
            content_type: a.2,
            response_topic: a.3,
            correlation_data: a.4,
            subscription_identifiers: b.0,
            session_expiry_interval: b.1,
            assigned_client_identifier: b.2,
            server_keep_alive: b.3,
            authentication_method: c.0,
            authentication_data: c.1,
            request_problem_information: c.2,
            will_delay_interval: c.3,
            request_response_information: c.4,
            response_information: c.5,
            server_reference: d.0,
            reason_string: d.1,
            receive_maximum: d.2,
            topic_alias_maximum: d.3,
            topic_alias: d.4,
            maximum_qos: e.0,
            retain_available: e.1,
            user_properties: e.2,
            maximum_packet_size: e.3,
            wildcard_subscription_available: e.4,
            subscription_identifier_available: e.5,
            shared_subscription_available: e.6,
        })
        .boxed()
}

/// Keep only the properties MQTT 5.0 (table 2-4) allows on `ctx`, restated field by field here
/// independently of the codec's own table.
fn restrict(p: Properties, ctx: Ctx) -> Properties {
    use Ctx::*;
    let on = |ctxs: &[Ctx]| ctxs.contains(&ctx);
    fn keep<T>(v: Option<T>, on: bool) -> Option<T> {
        v.filter(|_| on)
    }
    let message = on(&[Publish, Will]);
    let connack = on(&[ConnAck]);
    let mut subscription_identifiers = if on(&[Publish, Subscribe]) {
        p.subscription_identifiers
    } else {
        vec![]
    };
    if ctx == Subscribe {
        subscription_identifiers.truncate(1);
    }
    Properties {
        payload_format_indicator: keep(p.payload_format_indicator, message),
        message_expiry_interval: keep(p.message_expiry_interval, message),
        content_type: keep(p.content_type, message),
        response_topic: keep(p.response_topic, message),
        correlation_data: keep(p.correlation_data, message),
        subscription_identifiers,
        session_expiry_interval: keep(
            p.session_expiry_interval,
            on(&[Connect, ConnAck, Disconnect]),
        ),
        assigned_client_identifier: keep(p.assigned_client_identifier, connack),
        server_keep_alive: keep(p.server_keep_alive, connack),
        authentication_method: keep(p.authentication_method, on(&[Connect, ConnAck, Auth])),
        authentication_data: keep(p.authentication_data, on(&[Connect, ConnAck, Auth])),
        request_problem_information: keep(p.request_problem_information, on(&[Connect])),
        will_delay_interval: keep(p.will_delay_interval, on(&[Will])),
        request_response_information: keep(p.request_response_information, on(&[Connect])),
        response_information: keep(p.response_information, connack),
        server_reference: keep(p.server_reference, on(&[ConnAck, Disconnect])),
        reason_string: keep(
            p.reason_string,
            on(&[ConnAck, PubResp, SubAck, UnsubAck, Disconnect, Auth]),
        ),
        receive_maximum: keep(p.receive_maximum, on(&[Connect, ConnAck])),
        topic_alias_maximum: keep(p.topic_alias_maximum, on(&[Connect, ConnAck])),
        topic_alias: keep(p.topic_alias, on(&[Publish])),
        maximum_qos: keep(p.maximum_qos, connack),
        retain_available: keep(p.retain_available, connack),
        user_properties: p.user_properties,
        maximum_packet_size: keep(p.maximum_packet_size, on(&[Connect, ConnAck])),
        wildcard_subscription_available: keep(p.wildcard_subscription_available, connack),
        subscription_identifier_available: keep(p.subscription_identifier_available, connack),
        shared_subscription_available: keep(p.shared_subscription_available, connack),
    }
}

/// Properties valid on `ctx` in MQTT 5; none in 3.1.1.
fn props(v: ProtocolVersion, ctx: Ctx) -> BoxedStrategy<Properties> {
    if v == V311 {
        return Just(Properties::default()).boxed();
    }
    all_properties().prop_map(move |p| restrict(p, ctx)).boxed()
}

/// A reason code: any that `carrier` may carry in MQTT 5, 0 in 3.1.1 where the packet has none.
fn code(v: ProtocolVersion, carrier: Carrier) -> BoxedStrategy<u8> {
    if v == V5 {
        prop::sample::select(carrier.allowed()).boxed()
    } else {
        Just(0).boxed()
    }
}

fn will(v: ProtocolVersion) -> impl Strategy<Value = Will> {
    (topic(), bytes(), qos(), any::<bool>(), props(v, Ctx::Will)).prop_map(
        |(topic, payload, qos, retain, properties)| Will {
            topic,
            payload,
            qos,
            retain,
            properties,
        },
    )
}

fn connect(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let fields = (
        any::<bool>(),
        any::<u16>(),
        string(),
        option::of(string()),
        option::of(bytes()),
    );
    (fields, option::of(will(v)), props(v, Ctx::Connect))
        .prop_map(
            move |(
                (clean_start, keep_alive, client_id, username, mut password),
                will,
                mut properties,
            )| {
                if v == V311 && username.is_none() {
                    password = None;
                }
                if properties.authentication_method.is_none() {
                    properties.authentication_data = None;
                }
                Packet::Connect(Box::new(Connect {
                    protocol: v,
                    clean_start,
                    keep_alive,
                    client_id,
                    username,
                    password,
                    will,
                    properties,
                }))
            },
        )
        .boxed()
}

fn publish(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let topic = if v == V5 {
        "[a-z0-9/é]{0,8}"
    } else {
        "[a-z0-9/é]{1,8}"
    };
    (
        any::<bool>(),
        qos(),
        any::<bool>(),
        topic,
        1u16..,
        bytes(),
        props(v, Ctx::Publish),
    )
        .prop_map(|(dup, qos, retain, topic, id, payload, properties)| {
            let qos0 = qos == QoS::AtMostOnce;
            Packet::Publish(Publish {
                dup: dup && !qos0,
                qos,
                retain,
                topic,
                packet_id: (!qos0).then_some(id),
                payload,
                properties,
            })
        })
        .boxed()
}

fn pub_resp(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let one = move |carrier: Carrier, make: fn(PubResp) -> Packet| {
        (1u16.., code(v, carrier), props(v, Ctx::PubResp)).prop_map(
            move |(packet_id, code, properties)| {
                make(PubResp {
                    packet_id,
                    code,
                    properties,
                })
            },
        )
    };
    prop_oneof![
        one(Carrier::PubAck, Packet::PubAck),
        one(Carrier::PubRec, Packet::PubRec),
        one(Carrier::PubRel, Packet::PubRel),
        one(Carrier::PubComp, Packet::PubComp),
    ]
    .boxed()
}

fn subscribe(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let v5 = v == V5;
    let one = (filter(), qos(), any::<bool>(), any::<bool>(), 0u8..=2).prop_map(
        move |(filter, qos, nl, rap, rh)| SubscriptionFilter {
            filter,
            qos,
            no_local: nl && v5,
            retain_as_published: rap && v5,
            retain_handling: if v5 { rh } else { 0 },
        },
    );
    (1u16.., vec(one, 1..4), props(v, Ctx::Subscribe))
        .prop_map(|(packet_id, filters, properties)| {
            Packet::Subscribe(Subscribe {
                packet_id,
                filters,
                properties,
            })
        })
        .boxed()
}

fn acks(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let suback_codes = if v == V5 {
        vec(code(v, Carrier::SubAck), 1..5).boxed()
    } else {
        vec(prop::sample::select(vec![0u8, 1, 2, 0x80]), 1..5).boxed()
    };
    let unsuback_codes = if v == V5 {
        vec(code(v, Carrier::UnsubAck), 1..5).boxed()
    } else {
        Just(vec![]).boxed()
    };
    prop_oneof![
        (1u16.., suback_codes, props(v, Ctx::SubAck)).prop_map(|(packet_id, codes, properties)| {
            Packet::SubAck(SubAck {
                packet_id,
                codes,
                properties,
            })
        }),
        (1u16.., vec(filter(), 1..4), props(v, Ctx::Unsubscribe)).prop_map(
            |(packet_id, filters, properties)| {
                Packet::Unsubscribe(Unsubscribe {
                    packet_id,
                    filters,
                    properties,
                })
            }
        ),
        (1u16.., unsuback_codes, props(v, Ctx::UnsubAck)).prop_map(
            |(packet_id, codes, properties)| Packet::UnsubAck(UnsubAck {
                packet_id,
                codes,
                properties
            })
        ),
    ]
    .boxed()
}

fn connack(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let codes = if v == V5 {
        code(v, Carrier::ConnAck)
    } else {
        (0u8..=5).boxed()
    };
    (any::<bool>(), codes, props(v, Ctx::ConnAck))
        .prop_map(|(sp, code, properties)| {
            Packet::ConnAck(ConnAck {
                session_present: sp && code == 0,
                code,
                properties,
            })
        })
        .boxed()
}

/// Any valid packet of version `v`.
fn packet(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let disconnect = (code(v, Carrier::Disconnect), props(v, Ctx::Disconnect))
        .prop_map(|(code, properties)| Packet::Disconnect(Disconnect { code, properties }))
        .boxed();
    let common = prop_oneof![
        connect(v),
        connack(v),
        publish(v),
        pub_resp(v),
        subscribe(v),
        acks(v),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        disconnect,
    ];
    if v == V5 {
        let auth = (code(v, Carrier::Auth), props(v, Ctx::Auth))
            .prop_map(|(code, properties)| Packet::Auth(Auth { code, properties }));
        prop_oneof![9 => common, 1 => auth].boxed()
    } else {
        common.boxed()
    }
}

fn version() -> impl Strategy<Value = ProtocolVersion> {
    prop_oneof![Just(V311), Just(V5)]
}

fn versioned_packet() -> impl Strategy<Value = (ProtocolVersion, Packet)> {
    version().prop_flat_map(|v| (Just(v), packet(v)))
}

/// Decode packets from `bytes` until error or incomplete; every packet decoded must re-encode and
/// decode to itself.
fn decode_loop(bytes: &[u8], v: ProtocolVersion) -> Result<(), TestCaseError> {
    let mut buf = BytesMut::from(bytes);
    while let Ok(Some(p)) = decode(&mut buf, v, MAX) {
        let mut out = BytesMut::new();
        encode(&p, v, &mut out)
            .map_err(|e| TestCaseError::fail(format!("{p:?} does not re-encode: {e}")))?;
        prop_assert_eq!(decode(&mut out, v, MAX), Ok(Some(p)));
        prop_assert!(out.is_empty());
    }
    Ok(())
}

/// 1024 cases unless `PROPTEST_CASES` says otherwise.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(1024)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn round_trip((v, p) in versioned_packet()) {
        let mut out = BytesMut::new();
        encode(&p, v, &mut out).map_err(|e| TestCaseError::fail(format!("encode: {e}")))?;
        prop_assert_eq!(frame_len(&out, MAX), Ok(Some(out.len())));
        let mut short = BytesMut::from(&out[..out.len() - 1]);
        prop_assert_eq!(decode(&mut short, v, MAX), Ok(None));
        prop_assert_eq!(decode(&mut out, v, MAX), Ok(Some(p)));
        prop_assert!(out.is_empty());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..256)) {
        decode_loop(&bytes, V311)?;
        decode_loop(&bytes, V5)?;
        let _ = frame_len(&bytes, 64);
    }

    #[test]
    fn corrupted_packets_never_panic(
        (v, p) in versioned_packet(),
        edits in vec((any::<usize>(), any::<u8>()), 1..4),
        cut in any::<usize>(),
    ) {
        let mut out = BytesMut::new();
        encode(&p, v, &mut out).map_err(|e| TestCaseError::fail(format!("encode: {e}")))?;
        let mut bytes = out.to_vec();
        for (at, byte) in edits {
            let len = bytes.len();
            bytes[at % len] = byte;
        }
        decode_loop(&bytes, v)?;
        // Also as a truncated frame with a patched remaining length.
        bytes.truncate(2 + cut % bytes.len().max(1));
        decode_loop(&bytes, v)?;
    }
}
