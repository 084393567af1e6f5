//! Micro-benchmarks of the per-message work the gateway does with `rampart-proto`: the MQTT codec
//! (one packet of each common kind in 3.1.1 and 5.0, and a read buffer of 100 PUBLISH packets
//! drained the way a session drains its socket buffer), the CONNECT signature check, and report
//! validation against a product model in JSON and binary form.
//!
//! Run: `cargo bench -p rampart-proto --bench hot_paths` (see `bench/README.md`).

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rampart_proto::model::{DataPoint, Model};
use rampart_proto::mqtt::{
    decode, encode, frame_len, Connect, Packet, Properties, ProtocolVersion, PubResp, Publish, QoS,
};
use rampart_proto::sign::{
    connect_string, connect_username, hmac_hex, parse_connect_username, verify_hex,
};
use std::hint::black_box;

/// The gateway's default maximum packet size (256 KiB).
const MAX_PACKET: usize = 256 * 1024;
const DID: &str = "a1b2c3d4e5f6g7h8i9j0";
const SECRET: &str = "0123456789abcdef0123456789abcdef";
const TS: i64 = 1_795_616_567_115;
const VERSIONS: [(ProtocolVersion, &str); 2] =
    [(ProtocolVersion::V311, "v311"), (ProtocolVersion::V5, "v5")];

fn connect(v: ProtocolVersion) -> Packet {
    let password = hmac_hex(SECRET.as_bytes(), &connect_string(DID, TS));
    let properties = match v {
        ProtocolVersion::V311 => Properties::default(),
        ProtocolVersion::V5 => Properties {
            session_expiry_interval: Some(3600),
            receive_maximum: Some(16),
            maximum_packet_size: Some(65_536),
            topic_alias_maximum: Some(8),
            ..Properties::default()
        },
    };
    Packet::Connect(Box::new(Connect {
        protocol: v,
        clean_start: true,
        keep_alive: 60,
        client_id: DID.to_owned(),
        username: Some(connect_username(DID, TS)),
        password: Some(Bytes::from(password)),
        will: None,
        properties,
    }))
}

/// A QoS 1 report on `dev/{did}/up` with a 64-byte payload.
fn publish(packet_id: u16) -> Packet {
    let mut payload = br#"{"power":true,"mode":"cool","target":22,"temp":23.5}"#.to_vec();
    payload.resize(64, b' ');
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: format!("dev/{DID}/up"),
        packet_id: Some(packet_id),
        payload: Bytes::from(payload),
        properties: Properties::default(),
    })
}

fn puback() -> Packet {
    Packet::PubAck(PubResp {
        packet_id: 1,
        code: 0,
        properties: Properties::default(),
    })
}

fn wire(p: &Packet, v: ProtocolVersion) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(p, v, &mut out).expect("benchmark packet encodes");
    out.to_vec()
}

fn mqtt_packets(c: &mut Criterion) {
    let mut g = c.benchmark_group("mqtt");
    for (v, vname) in VERSIONS {
        let packets = [
            ("connect", connect(v)),
            ("publish_qos1_64b", publish(1)),
            ("puback", puback()),
            ("pingreq", Packet::PingReq),
        ];
        for (name, packet) in packets {
            let bytes = wire(&packet, v);
            g.throughput(Throughput::Bytes(bytes.len() as u64));
            g.bench_function(format!("decode/{vname}/{name}"), |b| {
                // The buffer is built outside the timed part; the packet and the emptied buffer are
                // returned so that dropping them is not timed either.
                b.iter_batched(
                    || BytesMut::from(&bytes[..]),
                    |mut buf| {
                        let p = decode(&mut buf, v, MAX_PACKET).expect("decodes");
                        (p, buf)
                    },
                    BatchSize::SmallInput,
                )
            });
            g.bench_function(format!("encode/{vname}/{name}"), |b| {
                let mut out = BytesMut::with_capacity(256);
                b.iter(|| {
                    out.clear();
                    encode(black_box(&packet), v, &mut out).expect("encodes");
                    black_box(out.len())
                })
            });
        }
    }
    let publish_wire = wire(&publish(1), ProtocolVersion::V5);
    g.throughput(Throughput::Elements(1));
    g.bench_function("frame_len/publish_qos1_64b", |b| {
        b.iter(|| frame_len(black_box(&publish_wire), MAX_PACKET))
    });
    g.finish();
}

/// 100 PUBLISH packets back to back in one read buffer, decoded until the buffer is empty (as a
/// session drains what one socket read brought), and encoded into one write buffer.
fn mqtt_stream(c: &mut Criterion) {
    const N: u16 = 100;
    let mut g = c.benchmark_group("mqtt_stream");
    g.throughput(Throughput::Elements(u64::from(N)));
    for (v, vname) in VERSIONS {
        let packets: Vec<Packet> = (1..=N).map(publish).collect();
        let mut stream = BytesMut::new();
        for p in &packets {
            encode(p, v, &mut stream).expect("encodes");
        }
        let stream = stream.freeze();
        g.bench_function(format!("decode_100_publish/{vname}"), |b| {
            b.iter_batched(
                || BytesMut::from(&stream[..]),
                |mut buf| {
                    let mut out = Vec::with_capacity(usize::from(N));
                    while let Some(p) = decode(&mut buf, v, MAX_PACKET).expect("decodes") {
                        out.push(p);
                    }
                    assert_eq!(out.len(), usize::from(N));
                    (out, buf)
                },
                BatchSize::SmallInput,
            )
        });
        g.bench_function(format!("encode_100_publish/{vname}"), |b| {
            let mut out = BytesMut::with_capacity(stream.len());
            b.iter(|| {
                out.clear();
                for p in &packets {
                    encode(black_box(p), v, &mut out).expect("encodes");
                }
                black_box(out.len())
            })
        });
    }
    g.finish();
}

/// The server's CONNECT credential check: parse the username, rebuild the signed string, verify the
/// HMAC password in constant time. (The device lookup and secret unsealing are not included.)
fn server_check(secret: &[u8], username: &str, password: &str) -> bool {
    let Some((did, ts)) = parse_connect_username(username) else {
        return false;
    };
    verify_hex(secret, &connect_string(did, ts), password)
}

fn sign(c: &mut Criterion) {
    let username = connect_username(DID, TS);
    let password = hmac_hex(SECRET.as_bytes(), &connect_string(DID, TS));
    let wrong = hmac_hex(b"another-secret", &connect_string(DID, TS));
    assert!(server_check(SECRET.as_bytes(), &username, &password));
    assert!(!server_check(SECRET.as_bytes(), &username, &wrong));

    let mut g = c.benchmark_group("sign");
    g.throughput(Throughput::Elements(1));
    g.bench_function("connect_check/ok", |b| {
        b.iter(|| {
            server_check(
                black_box(SECRET.as_bytes()),
                black_box(&username),
                black_box(&password),
            )
        })
    });
    g.bench_function("connect_check/bad_password", |b| {
        b.iter(|| {
            server_check(
                black_box(SECRET.as_bytes()),
                black_box(&username),
                black_box(&wrong),
            )
        })
    });
    g.bench_function("device_sign", |b| {
        b.iter(|| {
            hmac_hex(
                black_box(SECRET.as_bytes()),
                &connect_string(black_box(DID), TS),
            )
        })
    });
    g.finish();
}

fn model() -> Model {
    let points: Vec<DataPoint> = serde_json::from_str(
        r#"[
            {"name": "power", "type": "bool", "writable": true},
            {"name": "mode", "type": "enum", "values": ["auto", "cool", "heat", "fan"], "writable": true},
            {"name": "target", "type": "int", "min": 16, "max": 30, "step": 1, "writable": true},
            {"name": "temp", "type": "float", "min": -40, "max": 85}
        ]"#,
    )
    .expect("model JSON");
    Model::new(points).expect("valid model")
}

fn report(c: &mut Criterion) {
    let model = model();
    let json = br#"{"power":true,"mode":"cool","target":22,"temp":23.5}"#.to_vec();
    let values = model.parse_report(&json).expect("valid report");
    let binary = model.encode_binary(&values).expect("encodes");
    assert_eq!(model.parse_report(&binary).expect("valid binary"), values);

    let mut g = c.benchmark_group("report");
    for (name, payload) in [("json_4_points", &json), ("binary_4_points", &binary)] {
        g.throughput(Throughput::Bytes(payload.len() as u64));
        g.bench_function(format!("parse/{name}"), |b| {
            b.iter(|| model.parse_report(black_box(payload)).expect("valid"))
        });
    }
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode_binary/4_points", |b| {
        b.iter(|| model.encode_binary(black_box(&values)).expect("encodes"))
    });
    g.finish();
}

criterion_group!(benches, mqtt_packets, mqtt_stream, sign, report);
criterion_main!(benches);
