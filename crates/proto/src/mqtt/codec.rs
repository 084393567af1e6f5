//! MQTT 3.1.1 / 5.0 wire codec: framing ([`frame_len`]), [`decode`] and [`encode`] for every control
//! packet. MQTT 5 properties live in `props`.
//!
//! The decoder is strict (it refuses anything the specs call a Malformed Packet or Protocol Error that
//! can be seen from one packet alone), never panics, and allocates at most a small multiple of the
//! packet's size. Payloads, passwords and binary properties are zero-copy slices of the input frame.
//! The encoder refuses packets the decoder would refuse and writes nothing to `out` on error.

mod props;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use super::reason::Carrier;
use super::types::*;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use props::Ctx;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    #[error("packet of {size} bytes exceeds the maximum of {max}")]
    TooLarge { size: usize, max: usize },
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u8),
}

impl DecodeError {
    pub fn reason_code(&self) -> u8 {
        match self {
            DecodeError::Malformed(_) => super::reason::MALFORMED_PACKET,
            DecodeError::Protocol(_) => super::reason::PROTOCOL_ERROR,
            DecodeError::TooLarge { .. } => super::reason::PACKET_TOO_LARGE,
            DecodeError::UnsupportedVersion(_) => super::reason::UNSUPPORTED_PROTOCOL_VERSION,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EncodeError {
    #[error("field too long: {0}")]
    TooLong(&'static str),
    #[error("invalid packet: {0}")]
    Invalid(&'static str),
    #[error("reason code {code:#04x} is not allowed in {packet}")]
    Reason { packet: &'static str, code: u8 },
}

/// Largest value a Variable Byte Integer (and so a Remaining Length) can carry.
const MAX_VARINT: usize = 268_435_455;

const CONNECT: u8 = 1;
const CONNACK: u8 = 2;
const PUBLISH: u8 = 3;
const PUBACK: u8 = 4;
const PUBREC: u8 = 5;
const PUBREL: u8 = 6;
const PUBCOMP: u8 = 7;
const SUBSCRIBE: u8 = 8;
const SUBACK: u8 = 9;
const UNSUBSCRIBE: u8 = 10;
const UNSUBACK: u8 = 11;
const PINGREQ: u8 = 12;
const PINGRESP: u8 = 13;
const DISCONNECT: u8 = 14;
const AUTH: u8 = 15;

const TRUNCATED: DecodeError = DecodeError::Malformed("field runs past the end of the packet");

/// Total length (fixed header + remaining) of the packet at the front of `buf`, if its fixed header
/// is complete. Errors on a malformed Remaining Length or a packet larger than `max_packet_size`.
pub fn frame_len(buf: &[u8], max_packet_size: usize) -> Result<Option<usize>, DecodeError> {
    Ok(fixed_header(buf, max_packet_size)?.map(|(header, remaining)| header + remaining))
}

/// `(fixed header length, remaining length)` of the packet at the front of `buf`.
fn fixed_header(buf: &[u8], max: usize) -> Result<Option<(usize, usize)>, DecodeError> {
    let Some((remaining, n)) = read_varint(buf.get(1..).unwrap_or_default())? else {
        return Ok(None);
    };
    let size = 1 + n + remaining;
    if size > max {
        return Err(DecodeError::TooLarge { size, max });
    }
    Ok(Some((1 + n, remaining)))
}

/// A Variable Byte Integer at the front of `buf` as `(value, bytes used)`; `None` if `buf` ends
/// before it does. Longer than 4 bytes or not in its shortest form is malformed.
fn read_varint(buf: &[u8]) -> Result<Option<(usize, usize)>, DecodeError> {
    let mut value = 0;
    for (i, &b) in buf.iter().take(4).enumerate() {
        value |= usize::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            if i > 0 && b == 0 {
                return Err(DecodeError::Malformed(
                    "variable byte integer not in shortest form",
                ));
            }
            return Ok(Some((value, i + 1)));
        }
    }
    if buf.len() >= 4 {
        return Err(DecodeError::Malformed(
            "variable byte integer longer than 4 bytes",
        ));
    }
    Ok(None)
}

/// Decode one packet from the front of `buf`; `Ok(None)` when more bytes are needed (buf untouched).
/// CONNECT is decoded whatever `version` says (it carries its own level).
///
/// On an error found after framing the offending frame has been consumed from `buf`; errors are
/// meant to close the connection, so the rest of `buf` is of no further interest.
pub fn decode(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    max_packet_size: usize,
) -> Result<Option<Packet>, DecodeError> {
    let Some((header_len, remaining)) = fixed_header(buf, max_packet_size)? else {
        return Ok(None);
    };
    if buf.len() < header_len + remaining {
        return Ok(None);
    }
    let mut frame = buf.split_to(header_len + remaining).freeze();
    let header = frame.get_u8();
    frame.advance(header_len - 1);
    let mut r = Reader { buf: frame };
    let packet = decode_body(header, &mut r, version)?;
    r.finish()?;
    check_reasons(&packet, version)
        .map_err(|_| DecodeError::Protocol("reason code not allowed in this packet type"))?;
    Ok(Some(packet))
}

/// The packet type's body, given its fixed header byte.
fn decode_body(
    header: u8,
    r: &mut Reader,
    version: ProtocolVersion,
) -> Result<Packet, DecodeError> {
    let (kind, flags) = (header >> 4, header & 0x0F);
    let expected = match kind {
        PUBLISH => flags,
        PUBREL | SUBSCRIBE | UNSUBSCRIBE => 0b0010,
        _ => 0,
    };
    if flags != expected {
        return Err(DecodeError::Malformed("invalid fixed header flags"));
    }
    let v5 = version == ProtocolVersion::V5;
    Ok(match kind {
        CONNECT => Packet::Connect(Box::new(decode_connect(r)?)),
        CONNACK => Packet::ConnAck(decode_connack(r, v5)?),
        PUBLISH => Packet::Publish(decode_publish(flags, r, v5)?),
        PUBACK => Packet::PubAck(decode_pub_resp(r, v5)?),
        PUBREC => Packet::PubRec(decode_pub_resp(r, v5)?),
        PUBREL => Packet::PubRel(decode_pub_resp(r, v5)?),
        PUBCOMP => Packet::PubComp(decode_pub_resp(r, v5)?),
        SUBSCRIBE => Packet::Subscribe(decode_subscribe(r, v5)?),
        SUBACK => Packet::SubAck(decode_suback(r, v5)?),
        UNSUBSCRIBE => Packet::Unsubscribe(decode_unsubscribe(r, v5)?),
        UNSUBACK => Packet::UnsubAck(decode_unsuback(r, v5)?),
        PINGREQ => Packet::PingReq,
        PINGRESP => Packet::PingResp,
        DISCONNECT => {
            let (code, properties) = if v5 {
                short_tail(r, Ctx::Disconnect)?
            } else {
                (0, Properties::default())
            };
            Packet::Disconnect(Disconnect { code, properties })
        }
        // Unlike DISCONNECT, AUTH may drop its reason code only together with the property length.
        AUTH if v5 && r.is_empty() => Packet::Auth(Auth {
            code: 0,
            properties: Properties::default(),
        }),
        AUTH if v5 => {
            let code = r.u8()?;
            let properties = props::decode(r, Ctx::Auth)?;
            Packet::Auth(Auth { code, properties })
        }
        _ => return Err(DecodeError::Malformed("reserved packet type")),
    })
}

fn decode_connect(r: &mut Reader) -> Result<Connect, DecodeError> {
    let name = r.binary()?;
    let level = r.u8()?;
    let protocol = match (&name[..], level) {
        (b"MQTT", 4) => ProtocolVersion::V311,
        (b"MQTT", 5) => ProtocolVersion::V5,
        (b"MQTT" | b"MQIsdp", _) => return Err(DecodeError::UnsupportedVersion(level)),
        _ => return Err(DecodeError::Protocol("unknown protocol name")),
    };
    let v5 = protocol == ProtocolVersion::V5;
    let flags = r.u8()?;
    if flags & 0x01 != 0 {
        return Err(DecodeError::Malformed("reserved CONNECT flag set"));
    }
    let has_will = flags & 0x04 != 0;
    let will_qos = QoS::from_u8((flags >> 3) & 0x03).ok_or(DecodeError::Malformed("will QoS 3"))?;
    let will_retain = flags & 0x20 != 0;
    if !has_will && (will_qos != QoS::AtMostOnce || will_retain) {
        return Err(DecodeError::Malformed(
            "will QoS or retain set without the will flag",
        ));
    }
    let (has_password, has_username) = (flags & 0x40 != 0, flags & 0x80 != 0);
    if !v5 && has_password && !has_username {
        return Err(DecodeError::Malformed("password without user name"));
    }
    let keep_alive = r.u16()?;
    let properties = props_if(v5, r, Ctx::Connect)?;
    if properties.authentication_data.is_some() && properties.authentication_method.is_none() {
        return Err(DecodeError::Protocol(
            "authentication data without authentication method",
        ));
    }
    let client_id = r.string()?;
    let will = if has_will {
        let properties = props_if(v5, r, Ctx::Will)?;
        let topic = r.string()?;
        check_topic_name(&topic, false).map_err(DecodeError::Protocol)?;
        let payload = r.binary()?;
        Some(Will {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
            properties,
        })
    } else {
        None
    };
    let username = if has_username {
        Some(r.string()?)
    } else {
        None
    };
    let password = if has_password {
        Some(r.binary()?)
    } else {
        None
    };
    Ok(Connect {
        protocol,
        clean_start: flags & 0x02 != 0,
        keep_alive,
        client_id,
        username,
        password,
        will,
        properties,
    })
}

fn decode_connack(r: &mut Reader, v5: bool) -> Result<ConnAck, DecodeError> {
    let flags = r.u8()?;
    if flags & 0xFE != 0 {
        return Err(DecodeError::Malformed("reserved CONNACK flag set"));
    }
    let session_present = flags == 1;
    let code = r.u8()?;
    if session_present && code != 0 {
        return Err(DecodeError::Protocol(
            "session present on a refused connection",
        ));
    }
    let properties = props_if(v5, r, Ctx::ConnAck)?;
    Ok(ConnAck {
        session_present,
        code,
        properties,
    })
}

fn decode_publish(flags: u8, r: &mut Reader, v5: bool) -> Result<Publish, DecodeError> {
    let dup = flags & 0x08 != 0;
    let retain = flags & 0x01 != 0;
    let qos = QoS::from_u8((flags >> 1) & 0x03).ok_or(DecodeError::Malformed("PUBLISH QoS 3"))?;
    if dup && qos == QoS::AtMostOnce {
        return Err(DecodeError::Malformed("DUP set on a QoS 0 PUBLISH"));
    }
    let topic = r.string()?;
    // MQTT 5 allows an empty topic with a topic alias; whether the alias is there is the caller's call.
    check_topic_name(&topic, v5).map_err(DecodeError::Protocol)?;
    let packet_id = if qos == QoS::AtMostOnce {
        None
    } else {
        Some(r.packet_id()?)
    };
    let properties = props_if(v5, r, Ctx::Publish)?;
    let payload = r.rest();
    Ok(Publish {
        dup,
        qos,
        retain,
        topic,
        packet_id,
        payload,
        properties,
    })
}

fn decode_pub_resp(r: &mut Reader, v5: bool) -> Result<PubResp, DecodeError> {
    let packet_id = r.packet_id()?;
    let (code, properties) = if v5 {
        short_tail(r, Ctx::PubResp)?
    } else {
        (0, Properties::default())
    };
    Ok(PubResp {
        packet_id,
        code,
        properties,
    })
}

fn decode_subscribe(r: &mut Reader, v5: bool) -> Result<Subscribe, DecodeError> {
    let packet_id = r.packet_id()?;
    let properties = props_if(v5, r, Ctx::Subscribe)?;
    let reserved = if v5 { 0xC0 } else { 0xFC };
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = r.filter()?;
        let options = r.u8()?;
        if options & reserved != 0 {
            return Err(DecodeError::Malformed(
                "reserved subscription option bits set",
            ));
        }
        let qos =
            QoS::from_u8(options & 0x03).ok_or(DecodeError::Malformed("subscription QoS 3"))?;
        let retain_handling = (options >> 4) & 0x03;
        if retain_handling == 3 {
            return Err(DecodeError::Protocol("retain handling 3"));
        }
        filters.push(SubscriptionFilter {
            filter,
            qos,
            no_local: options & 0x04 != 0,
            retain_as_published: options & 0x08 != 0,
            retain_handling,
        });
    }
    if filters.is_empty() {
        return Err(DecodeError::Protocol("SUBSCRIBE without topic filters"));
    }
    Ok(Subscribe {
        packet_id,
        filters,
        properties,
    })
}

fn decode_suback(r: &mut Reader, v5: bool) -> Result<SubAck, DecodeError> {
    let packet_id = r.packet_id()?;
    let properties = props_if(v5, r, Ctx::SubAck)?;
    let codes = r.rest().to_vec();
    if codes.is_empty() {
        return Err(DecodeError::Protocol("SUBACK without return codes"));
    }
    if !v5 && codes.iter().any(|c| !matches!(c, 0 | 1 | 2 | 0x80)) {
        return Err(DecodeError::Protocol("invalid SUBACK return code"));
    }
    Ok(SubAck {
        packet_id,
        codes,
        properties,
    })
}

fn decode_unsubscribe(r: &mut Reader, v5: bool) -> Result<Unsubscribe, DecodeError> {
    let packet_id = r.packet_id()?;
    let properties = props_if(v5, r, Ctx::Unsubscribe)?;
    let mut filters = Vec::new();
    while !r.is_empty() {
        filters.push(r.filter()?);
    }
    if filters.is_empty() {
        return Err(DecodeError::Protocol("UNSUBSCRIBE without topic filters"));
    }
    Ok(Unsubscribe {
        packet_id,
        filters,
        properties,
    })
}

fn decode_unsuback(r: &mut Reader, v5: bool) -> Result<UnsubAck, DecodeError> {
    let packet_id = r.packet_id()?;
    if !v5 {
        return Ok(UnsubAck {
            packet_id,
            codes: Vec::new(),
            properties: Properties::default(),
        });
    }
    let properties = props::decode(r, Ctx::UnsubAck)?;
    let codes = r.rest().to_vec();
    if codes.is_empty() {
        return Err(DecodeError::Protocol("UNSUBACK without reason codes"));
    }
    Ok(UnsubAck {
        packet_id,
        codes,
        properties,
    })
}

/// Properties in MQTT 5, nothing in 3.1.1.
fn props_if(v5: bool, r: &mut Reader, ctx: Ctx) -> Result<Properties, DecodeError> {
    if v5 {
        props::decode(r, ctx)
    } else {
        Ok(Properties::default())
    }
}

/// The MQTT 5 reason code + properties that may be cut short: nothing left means success and no
/// properties, a lone byte is the reason code with no properties.
fn short_tail(r: &mut Reader, ctx: Ctx) -> Result<(u8, Properties), DecodeError> {
    if r.is_empty() {
        return Ok((0, Properties::default()));
    }
    let code = r.u8()?;
    let properties = if r.is_empty() {
        Properties::default()
    } else {
        props::decode(r, ctx)?
    };
    Ok((code, properties))
}

/// Topic name rules a codec can check: no wildcards, and non-empty unless `may_be_empty`.
fn check_topic_name(topic: &str, may_be_empty: bool) -> Result<(), &'static str> {
    if topic.contains(['+', '#']) {
        return Err("wildcard in topic name");
    }
    if topic.is_empty() && !may_be_empty {
        return Err("empty topic name");
    }
    Ok(())
}

/// Cursor over a packet body. Every read checks the bounds and fails as Malformed.
struct Reader {
    buf: Bytes,
}

impl Reader {
    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn take(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        if n > self.buf.len() {
            return Err(TRUNCATED);
        }
        Ok(self.buf.split_to(n))
    }

    /// A reader over the next `n` bytes, which this one skips.
    fn sub(&mut self, n: usize) -> Result<Reader, DecodeError> {
        Ok(Reader { buf: self.take(n)? })
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        if self.buf.is_empty() {
            return Err(TRUNCATED);
        }
        Ok(self.buf.get_u8())
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        if self.buf.len() < 2 {
            return Err(TRUNCATED);
        }
        Ok(self.buf.get_u16())
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        if self.buf.len() < 4 {
            return Err(TRUNCATED);
        }
        Ok(self.buf.get_u32())
    }

    fn varint(&mut self) -> Result<u32, DecodeError> {
        let (value, n) = read_varint(&self.buf)?.ok_or(TRUNCATED)?;
        self.buf.advance(n);
        // At most 28 bits.
        Ok(value as u32)
    }

    fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    /// A UTF-8 Encoded String: valid UTF-8 without U+0000.
    fn string(&mut self) -> Result<String, DecodeError> {
        let raw = self.binary()?;
        let s = std::str::from_utf8(&raw)
            .map_err(|_| DecodeError::Malformed("invalid UTF-8 string"))?;
        if s.contains('\0') {
            return Err(DecodeError::Malformed("U+0000 in a UTF-8 string"));
        }
        Ok(s.to_owned())
    }

    /// A topic filter: a non-empty string (wildcard placement is topic policy, not codec).
    fn filter(&mut self) -> Result<String, DecodeError> {
        let filter = self.string()?;
        if filter.is_empty() {
            return Err(DecodeError::Protocol("empty topic filter"));
        }
        Ok(filter)
    }

    fn packet_id(&mut self) -> Result<u16, DecodeError> {
        match self.u16()? {
            0 => Err(DecodeError::Protocol("packet identifier 0")),
            id => Ok(id),
        }
    }

    fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    fn finish(&self) -> Result<(), DecodeError> {
        if !self.buf.is_empty() {
            return Err(DecodeError::Malformed(
                "trailing bytes after the packet contents",
            ));
        }
        Ok(())
    }
}

/// Append the wire form of `packet` to `out`.
///
/// CONNECT is written in its own `protocol` version whatever `version` says, mirroring [`decode`].
/// In 3.1.1, MQTT 5-only fields (properties, PUBACK/DISCONNECT/UNSUBACK reason codes, subscription
/// options other than QoS) are left out; SUBACK failure codes (0x80 and up) become 0x80.
pub fn encode(
    packet: &Packet,
    version: ProtocolVersion,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let v5 = version == ProtocolVersion::V5;
    check_reasons(packet, version).map_err(|(carrier, code)| EncodeError::Reason {
        packet: carrier.name(),
        code,
    })?;
    let mut body = BytesMut::new();
    let b = &mut body;
    let mut flags = 0;
    let mut payload: &[u8] = &[];
    let kind = match packet {
        Packet::Connect(c) => encode_connect(c, b).map(|()| CONNECT)?,
        Packet::ConnAck(c) => encode_connack(c, v5, b).map(|()| CONNACK)?,
        Packet::Publish(p) => {
            flags = encode_publish(p, v5, b)?;
            payload = &p.payload;
            PUBLISH
        }
        Packet::PubAck(p) => encode_pub_resp(p, v5, b).map(|()| PUBACK)?,
        Packet::PubRec(p) => encode_pub_resp(p, v5, b).map(|()| PUBREC)?,
        Packet::PubRel(p) => {
            flags = 0b0010;
            encode_pub_resp(p, v5, b).map(|()| PUBREL)?
        }
        Packet::PubComp(p) => encode_pub_resp(p, v5, b).map(|()| PUBCOMP)?,
        Packet::Subscribe(s) => {
            flags = 0b0010;
            encode_subscribe(s, v5, b).map(|()| SUBSCRIBE)?
        }
        Packet::SubAck(s) => encode_suback(s, v5, b).map(|()| SUBACK)?,
        Packet::Unsubscribe(u) => {
            flags = 0b0010;
            encode_unsubscribe(u, v5, b).map(|()| UNSUBSCRIBE)?
        }
        Packet::UnsubAck(u) => encode_unsuback(u, v5, b).map(|()| UNSUBACK)?,
        Packet::PingReq => PINGREQ,
        Packet::PingResp => PINGRESP,
        Packet::Disconnect(d) => {
            if v5 {
                put_short_tail(b, d.code, &d.properties, Ctx::Disconnect)?;
            }
            DISCONNECT
        }
        Packet::Auth(a) => encode_auth(a, v5, b).map(|()| AUTH)?,
    };
    let remaining = body.len() + payload.len();
    if remaining > MAX_VARINT {
        return Err(EncodeError::TooLong("remaining length"));
    }
    out.reserve(5 + remaining);
    out.put_u8(kind << 4 | flags);
    put_varint(out, remaining)?;
    out.extend_from_slice(&body);
    out.extend_from_slice(payload);
    Ok(())
}

/// Every reason code of `p` is one its packet type may carry: MQTT 5's per-packet tables, and
/// MQTT 3.1.1's CONNACK return codes 0-5 (its other acknowledgements carry no code, or have their
/// codes mapped by the encoder).
fn check_reasons(p: &Packet, version: ProtocolVersion) -> Result<(), (Carrier, u8)> {
    let one = |carrier: Carrier, code: u8| {
        if carrier.allows(code) {
            Ok(())
        } else {
            Err((carrier, code))
        }
    };
    if version == ProtocolVersion::V311 {
        return match p {
            Packet::ConnAck(c) if c.code > 5 => Err((Carrier::ConnAck, c.code)),
            _ => Ok(()),
        };
    }
    match p {
        Packet::ConnAck(c) => one(Carrier::ConnAck, c.code),
        Packet::PubAck(r) => one(Carrier::PubAck, r.code),
        Packet::PubRec(r) => one(Carrier::PubRec, r.code),
        Packet::PubRel(r) => one(Carrier::PubRel, r.code),
        Packet::PubComp(r) => one(Carrier::PubComp, r.code),
        Packet::SubAck(s) => s.codes.iter().try_for_each(|&c| one(Carrier::SubAck, c)),
        Packet::UnsubAck(u) => u.codes.iter().try_for_each(|&c| one(Carrier::UnsubAck, c)),
        Packet::Disconnect(d) => one(Carrier::Disconnect, d.code),
        Packet::Auth(a) => one(Carrier::Auth, a.code),
        Packet::Connect(_)
        | Packet::Publish(_)
        | Packet::Subscribe(_)
        | Packet::Unsubscribe(_)
        | Packet::PingReq
        | Packet::PingResp => Ok(()),
    }
}

fn encode_connect(c: &Connect, body: &mut BytesMut) -> Result<(), EncodeError> {
    let v5 = c.protocol == ProtocolVersion::V5;
    put_bin(body, b"MQTT", "protocol name")?;
    body.put_u8(c.protocol.level());
    let mut flags = u8::from(c.clean_start) << 1;
    if let Some(w) = &c.will {
        flags |= 0x04 | (w.qos as u8) << 3 | u8::from(w.retain) << 5;
    }
    if c.password.is_some() {
        if !v5 && c.username.is_none() {
            return Err(EncodeError::Invalid("password without user name"));
        }
        flags |= 0x40;
    }
    if c.username.is_some() {
        flags |= 0x80;
    }
    body.put_u8(flags);
    body.put_u16(c.keep_alive);
    if v5 {
        let p = &c.properties;
        if p.authentication_data.is_some() && p.authentication_method.is_none() {
            return Err(EncodeError::Invalid(
                "authentication data without authentication method",
            ));
        }
        props::encode(p, Ctx::Connect, body)?;
    }
    put_str(body, &c.client_id, "client identifier")?;
    if let Some(w) = &c.will {
        if v5 {
            props::encode(&w.properties, Ctx::Will, body)?;
        }
        check_topic_name(&w.topic, false).map_err(EncodeError::Invalid)?;
        put_str(body, &w.topic, "will topic")?;
        put_bin(body, &w.payload, "will payload")?;
    }
    if let Some(username) = &c.username {
        put_str(body, username, "user name")?;
    }
    if let Some(password) = &c.password {
        put_bin(body, password, "password")?;
    }
    Ok(())
}

/// Writes everything but the payload; returns the fixed header flags.
fn encode_publish(p: &Publish, v5: bool, body: &mut BytesMut) -> Result<u8, EncodeError> {
    if p.dup && p.qos == QoS::AtMostOnce {
        return Err(EncodeError::Invalid("DUP set on a QoS 0 publish"));
    }
    check_topic_name(&p.topic, v5).map_err(EncodeError::Invalid)?;
    put_str(body, &p.topic, "topic name")?;
    match (p.qos, p.packet_id) {
        (QoS::AtMostOnce, None) => {}
        (QoS::AtMostOnce, Some(_)) => {
            return Err(EncodeError::Invalid("packet identifier on a QoS 0 publish"))
        }
        (_, Some(id)) => put_packet_id(body, id)?,
        (_, None) => {
            return Err(EncodeError::Invalid(
                "QoS > 0 publish without packet identifier",
            ))
        }
    }
    if v5 {
        props::encode(&p.properties, Ctx::Publish, body)?;
    }
    Ok(u8::from(p.dup) << 3 | (p.qos as u8) << 1 | u8::from(p.retain))
}

fn encode_pub_resp(p: &PubResp, v5: bool, body: &mut BytesMut) -> Result<(), EncodeError> {
    put_packet_id(body, p.packet_id)?;
    if v5 {
        put_short_tail(body, p.code, &p.properties, Ctx::PubResp)?;
    }
    Ok(())
}

fn encode_connack(c: &ConnAck, v5: bool, body: &mut BytesMut) -> Result<(), EncodeError> {
    if c.session_present && c.code != 0 {
        return Err(EncodeError::Invalid(
            "session present on a refused connection",
        ));
    }
    body.put_u8(u8::from(c.session_present));
    body.put_u8(c.code);
    if v5 {
        props::encode(&c.properties, Ctx::ConnAck, body)?;
    }
    Ok(())
}

fn encode_subscribe(s: &Subscribe, v5: bool, body: &mut BytesMut) -> Result<(), EncodeError> {
    put_packet_id(body, s.packet_id)?;
    if s.filters.is_empty() {
        return Err(EncodeError::Invalid("SUBSCRIBE without topic filters"));
    }
    if v5 {
        props::encode(&s.properties, Ctx::Subscribe, body)?;
    }
    for f in &s.filters {
        put_filter(body, &f.filter)?;
        let mut options = f.qos as u8;
        if v5 {
            if f.retain_handling > 2 {
                return Err(EncodeError::Invalid("retain handling above 2"));
            }
            options |= u8::from(f.no_local) << 2
                | u8::from(f.retain_as_published) << 3
                | f.retain_handling << 4;
        }
        body.put_u8(options);
    }
    Ok(())
}

fn encode_suback(s: &SubAck, v5: bool, body: &mut BytesMut) -> Result<(), EncodeError> {
    put_packet_id(body, s.packet_id)?;
    if s.codes.is_empty() {
        return Err(EncodeError::Invalid("SUBACK without return codes"));
    }
    if v5 {
        props::encode(&s.properties, Ctx::SubAck, body)?;
        body.extend_from_slice(&s.codes);
        return Ok(());
    }
    for &code in &s.codes {
        body.put_u8(match code {
            0..=2 => code,
            0x80.. => 0x80,
            _ => return Err(EncodeError::Invalid("SUBACK code has no MQTT 3.1.1 form")),
        });
    }
    Ok(())
}

fn encode_unsubscribe(u: &Unsubscribe, v5: bool, body: &mut BytesMut) -> Result<(), EncodeError> {
    put_packet_id(body, u.packet_id)?;
    if u.filters.is_empty() {
        return Err(EncodeError::Invalid("UNSUBSCRIBE without topic filters"));
    }
    if v5 {
        props::encode(&u.properties, Ctx::Unsubscribe, body)?;
    }
    for f in &u.filters {
        put_filter(body, f)?;
    }
    Ok(())
}

fn encode_unsuback(u: &UnsubAck, v5: bool, body: &mut BytesMut) -> Result<(), EncodeError> {
    put_packet_id(body, u.packet_id)?;
    if v5 {
        if u.codes.is_empty() {
            return Err(EncodeError::Invalid("UNSUBACK without reason codes"));
        }
        props::encode(&u.properties, Ctx::UnsubAck, body)?;
        body.extend_from_slice(&u.codes);
    }
    Ok(())
}

fn encode_auth(a: &Auth, v5: bool, body: &mut BytesMut) -> Result<(), EncodeError> {
    if !v5 {
        return Err(EncodeError::Invalid("AUTH does not exist in MQTT 3.1.1"));
    }
    // Reason code and property length go together, or not at all on success without properties.
    if a.code != 0 || !props::is_empty(&a.properties) {
        body.put_u8(a.code);
        props::encode(&a.properties, Ctx::Auth, body)?;
    }
    Ok(())
}

/// Reason code + properties in their shortest allowed form (PUBACK family and DISCONNECT): nothing
/// for success without properties, a lone reason code without properties.
fn put_short_tail(
    body: &mut BytesMut,
    code: u8,
    p: &Properties,
    ctx: Ctx,
) -> Result<(), EncodeError> {
    if props::is_empty(p) {
        if code != 0 {
            body.put_u8(code);
        }
        return Ok(());
    }
    body.put_u8(code);
    props::encode(p, ctx, body)
}

fn put_packet_id(out: &mut BytesMut, id: u16) -> Result<(), EncodeError> {
    if id == 0 {
        return Err(EncodeError::Invalid("packet identifier 0"));
    }
    out.put_u16(id);
    Ok(())
}

fn put_filter(out: &mut BytesMut, filter: &str) -> Result<(), EncodeError> {
    if filter.is_empty() {
        return Err(EncodeError::Invalid("empty topic filter"));
    }
    put_str(out, filter, "topic filter")
}

fn put_str(out: &mut BytesMut, s: &str, what: &'static str) -> Result<(), EncodeError> {
    if s.contains('\0') {
        return Err(EncodeError::Invalid("U+0000 in a UTF-8 string"));
    }
    put_bin(out, s.as_bytes(), what)
}

fn put_bin(out: &mut BytesMut, b: &[u8], what: &'static str) -> Result<(), EncodeError> {
    let len = u16::try_from(b.len()).map_err(|_| EncodeError::TooLong(what))?;
    out.put_u16(len);
    out.extend_from_slice(b);
    Ok(())
}

fn put_varint(out: &mut BytesMut, mut v: usize) -> Result<(), EncodeError> {
    if v > MAX_VARINT {
        return Err(EncodeError::TooLong("variable byte integer"));
    }
    loop {
        let byte = (v & 0x7F) as u8;
        v >>= 7;
        if v == 0 {
            out.put_u8(byte);
            return Ok(());
        }
        out.put_u8(byte | 0x80);
    }
}
