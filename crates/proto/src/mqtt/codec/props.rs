//! MQTT 5 properties: which identifiers each packet type may carry, their wire types, and the value
//! rules the spec makes Protocol Errors (duplicates, zero where zero is meaningless, bytes that must be
//! 0 or 1). Decoding and encoding apply the same rules, so whatever `encode` accepts `decode` accepts.

use super::{put_bin, put_str, put_varint, Reader, MAX_VARINT};
use crate::mqtt::codec::{DecodeError, EncodeError};
use crate::mqtt::types::Properties;
use bytes::{BufMut, Bytes, BytesMut};

/// Upper bound on user properties accepted in one property block, so a packet full of tiny pairs
/// cannot make us allocate many times its own size.
pub(super) const MAX_USER_PROPERTIES: usize = 1024;

/// The property block a set of properties belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ctx {
    Connect,
    ConnAck,
    Publish,
    Will,
    /// PUBACK, PUBREC, PUBREL, PUBCOMP.
    PubResp,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

impl Ctx {
    const fn bit(self) -> u16 {
        1 << self as u16
    }
}

const PAYLOAD_FORMAT_INDICATOR: u32 = 0x01;
const MESSAGE_EXPIRY_INTERVAL: u32 = 0x02;
const CONTENT_TYPE: u32 = 0x03;
const RESPONSE_TOPIC: u32 = 0x08;
const CORRELATION_DATA: u32 = 0x09;
const SUBSCRIPTION_IDENTIFIER: u32 = 0x0B;
const SESSION_EXPIRY_INTERVAL: u32 = 0x11;
const ASSIGNED_CLIENT_IDENTIFIER: u32 = 0x12;
const SERVER_KEEP_ALIVE: u32 = 0x13;
const AUTHENTICATION_METHOD: u32 = 0x15;
const AUTHENTICATION_DATA: u32 = 0x16;
const REQUEST_PROBLEM_INFORMATION: u32 = 0x17;
const WILL_DELAY_INTERVAL: u32 = 0x18;
const REQUEST_RESPONSE_INFORMATION: u32 = 0x19;
const RESPONSE_INFORMATION: u32 = 0x1A;
const SERVER_REFERENCE: u32 = 0x1C;
const REASON_STRING: u32 = 0x1F;
const RECEIVE_MAXIMUM: u32 = 0x21;
const TOPIC_ALIAS_MAXIMUM: u32 = 0x22;
const TOPIC_ALIAS: u32 = 0x23;
const MAXIMUM_QOS: u32 = 0x24;
const RETAIN_AVAILABLE: u32 = 0x25;
const USER_PROPERTY: u32 = 0x26;
const MAXIMUM_PACKET_SIZE: u32 = 0x27;
const WILDCARD_SUBSCRIPTION_AVAILABLE: u32 = 0x28;
const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u32 = 0x29;
const SHARED_SUBSCRIPTION_AVAILABLE: u32 = 0x2A;

/// Whether property `id` may appear in a `ctx` property block (MQTT 5.0 table 2-4).
pub(super) fn allowed(id: u32, ctx: Ctx) -> bool {
    use Ctx::*;
    let on: &[Ctx] = match id {
        PAYLOAD_FORMAT_INDICATOR
        | MESSAGE_EXPIRY_INTERVAL
        | CONTENT_TYPE
        | RESPONSE_TOPIC
        | CORRELATION_DATA => &[Publish, Will],
        SUBSCRIPTION_IDENTIFIER => &[Publish, Subscribe],
        SESSION_EXPIRY_INTERVAL => &[Connect, ConnAck, Disconnect],
        ASSIGNED_CLIENT_IDENTIFIER
        | SERVER_KEEP_ALIVE
        | RESPONSE_INFORMATION
        | MAXIMUM_QOS
        | RETAIN_AVAILABLE
        | WILDCARD_SUBSCRIPTION_AVAILABLE
        | SUBSCRIPTION_IDENTIFIER_AVAILABLE
        | SHARED_SUBSCRIPTION_AVAILABLE => &[ConnAck],
        AUTHENTICATION_METHOD | AUTHENTICATION_DATA => &[Connect, ConnAck, Auth],
        REQUEST_PROBLEM_INFORMATION | REQUEST_RESPONSE_INFORMATION => &[Connect],
        WILL_DELAY_INTERVAL => &[Will],
        SERVER_REFERENCE => &[ConnAck, Disconnect],
        REASON_STRING => &[ConnAck, PubResp, SubAck, UnsubAck, Disconnect, Auth],
        RECEIVE_MAXIMUM | TOPIC_ALIAS_MAXIMUM | MAXIMUM_PACKET_SIZE => &[Connect, ConnAck],
        TOPIC_ALIAS => &[Publish],
        USER_PROPERTY => &[
            Connect,
            ConnAck,
            Publish,
            Will,
            PubResp,
            Subscribe,
            SubAck,
            Unsubscribe,
            UnsubAck,
            Disconnect,
            Auth,
        ],
        _ => &[],
    };
    on.iter().fold(0, |m, c| m | c.bit()) & ctx.bit() != 0
}

/// Numeric properties for which 0 is a Protocol Error.
fn must_be_nonzero(id: u32) -> bool {
    matches!(
        id,
        RECEIVE_MAXIMUM | TOPIC_ALIAS | MAXIMUM_PACKET_SIZE | SUBSCRIPTION_IDENTIFIER
    )
}

/// Decode a property block (length varint + properties) at the front of `r`.
pub(super) fn decode(r: &mut Reader, ctx: Ctx) -> Result<Properties, DecodeError> {
    let len = r.varint()?;
    let mut r = r.sub(len as usize)?;
    let mut p = Properties::default();
    while !r.is_empty() {
        let id = r.varint()?;
        if !allowed(id, ctx) {
            return Err(DecodeError::Protocol("property not allowed on this packet"));
        }
        match id {
            PAYLOAD_FORMAT_INDICATOR => once(&mut p.payload_format_indicator, flag(r.u8()?)?),
            MESSAGE_EXPIRY_INTERVAL => once(&mut p.message_expiry_interval, r.u32()?),
            CONTENT_TYPE => once(&mut p.content_type, r.string()?),
            RESPONSE_TOPIC => {
                let topic = r.string()?;
                if topic.contains(['+', '#']) {
                    return Err(DecodeError::Protocol("wildcard in response topic"));
                }
                once(&mut p.response_topic, topic)
            }
            CORRELATION_DATA => once(&mut p.correlation_data, r.binary()?),
            SUBSCRIPTION_IDENTIFIER => {
                let v = nonzero(id, r.varint()?)?;
                if ctx == Ctx::Subscribe && !p.subscription_identifiers.is_empty() {
                    return Err(DecodeError::Protocol("duplicate property"));
                }
                p.subscription_identifiers.push(v);
                Ok(())
            }
            SESSION_EXPIRY_INTERVAL => once(&mut p.session_expiry_interval, r.u32()?),
            ASSIGNED_CLIENT_IDENTIFIER => once(&mut p.assigned_client_identifier, r.string()?),
            SERVER_KEEP_ALIVE => once(&mut p.server_keep_alive, r.u16()?),
            AUTHENTICATION_METHOD => once(&mut p.authentication_method, r.string()?),
            AUTHENTICATION_DATA => once(&mut p.authentication_data, r.binary()?),
            REQUEST_PROBLEM_INFORMATION => once(&mut p.request_problem_information, flag(r.u8()?)?),
            WILL_DELAY_INTERVAL => once(&mut p.will_delay_interval, r.u32()?),
            REQUEST_RESPONSE_INFORMATION => {
                once(&mut p.request_response_information, flag(r.u8()?)?)
            }
            RESPONSE_INFORMATION => once(&mut p.response_information, r.string()?),
            SERVER_REFERENCE => once(&mut p.server_reference, r.string()?),
            REASON_STRING => once(&mut p.reason_string, r.string()?),
            RECEIVE_MAXIMUM => once(&mut p.receive_maximum, nonzero(id, r.u16()?)?),
            TOPIC_ALIAS_MAXIMUM => once(&mut p.topic_alias_maximum, r.u16()?),
            TOPIC_ALIAS => once(&mut p.topic_alias, nonzero(id, r.u16()?)?),
            MAXIMUM_QOS => once(&mut p.maximum_qos, flag(r.u8()?)?),
            RETAIN_AVAILABLE => once(&mut p.retain_available, flag(r.u8()?)?),
            USER_PROPERTY => {
                if p.user_properties.len() >= MAX_USER_PROPERTIES {
                    return Err(DecodeError::Protocol("too many user properties"));
                }
                let key = r.string()?;
                let value = r.string()?;
                p.user_properties.push((key, value));
                Ok(())
            }
            MAXIMUM_PACKET_SIZE => once(&mut p.maximum_packet_size, nonzero(id, r.u32()?)?),
            WILDCARD_SUBSCRIPTION_AVAILABLE => {
                once(&mut p.wildcard_subscription_available, flag(r.u8()?)?)
            }
            SUBSCRIPTION_IDENTIFIER_AVAILABLE => {
                once(&mut p.subscription_identifier_available, flag(r.u8()?)?)
            }
            SHARED_SUBSCRIPTION_AVAILABLE => {
                once(&mut p.shared_subscription_available, flag(r.u8()?)?)
            }
            _ => Err(DecodeError::Protocol("property not allowed on this packet")),
        }?;
    }
    Ok(p)
}

fn once<T>(slot: &mut Option<T>, value: T) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::Protocol("duplicate property"));
    }
    *slot = Some(value);
    Ok(())
}

/// Every byte-valued property is a 0/1 flag.
fn flag(v: u8) -> Result<u8, DecodeError> {
    match v {
        0 | 1 => Ok(v),
        _ => Err(DecodeError::Protocol("property value must be 0 or 1")),
    }
}

fn nonzero<T: Default + PartialEq>(id: u32, v: T) -> Result<T, DecodeError> {
    if must_be_nonzero(id) && v == T::default() {
        return Err(DecodeError::Protocol("property value must not be 0"));
    }
    Ok(v)
}

/// Whether `p` has nothing to encode (so short packet forms may omit the property block).
pub(super) fn is_empty(p: &Properties) -> bool {
    *p == Properties::default()
}

/// Append the property block (length varint + properties) for `p` in a `ctx` block to `out`.
/// A property not allowed in `ctx`, or a value `decode` would refuse, is `EncodeError::Invalid`.
pub(super) fn encode(p: &Properties, ctx: Ctx, out: &mut BytesMut) -> Result<(), EncodeError> {
    let mut w = Writer {
        ctx,
        buf: BytesMut::new(),
    };
    w.byte(PAYLOAD_FORMAT_INDICATOR, p.payload_format_indicator)?;
    w.u32(MESSAGE_EXPIRY_INTERVAL, p.message_expiry_interval)?;
    w.string(CONTENT_TYPE, &p.content_type)?;
    if let Some(topic) = &p.response_topic {
        if topic.contains(['+', '#']) {
            return Err(EncodeError::Invalid("wildcard in response topic"));
        }
    }
    w.string(RESPONSE_TOPIC, &p.response_topic)?;
    w.binary(CORRELATION_DATA, &p.correlation_data)?;
    if ctx == Ctx::Subscribe && p.subscription_identifiers.len() > 1 {
        return Err(EncodeError::Invalid(
            "more than one subscription identifier",
        ));
    }
    for &id in &p.subscription_identifiers {
        if id == 0 || id as usize > MAX_VARINT {
            return Err(EncodeError::Invalid("subscription identifier out of range"));
        }
        w.head(SUBSCRIPTION_IDENTIFIER)?;
        put_varint(&mut w.buf, id as usize)?;
    }
    w.u32(SESSION_EXPIRY_INTERVAL, p.session_expiry_interval)?;
    w.string(ASSIGNED_CLIENT_IDENTIFIER, &p.assigned_client_identifier)?;
    w.u16(SERVER_KEEP_ALIVE, p.server_keep_alive)?;
    w.string(AUTHENTICATION_METHOD, &p.authentication_method)?;
    w.binary(AUTHENTICATION_DATA, &p.authentication_data)?;
    w.byte(REQUEST_PROBLEM_INFORMATION, p.request_problem_information)?;
    w.u32(WILL_DELAY_INTERVAL, p.will_delay_interval)?;
    w.byte(REQUEST_RESPONSE_INFORMATION, p.request_response_information)?;
    w.string(RESPONSE_INFORMATION, &p.response_information)?;
    w.string(SERVER_REFERENCE, &p.server_reference)?;
    w.string(REASON_STRING, &p.reason_string)?;
    w.u16(RECEIVE_MAXIMUM, p.receive_maximum)?;
    w.u16(TOPIC_ALIAS_MAXIMUM, p.topic_alias_maximum)?;
    w.u16(TOPIC_ALIAS, p.topic_alias)?;
    w.byte(MAXIMUM_QOS, p.maximum_qos)?;
    w.byte(RETAIN_AVAILABLE, p.retain_available)?;
    if p.user_properties.len() > MAX_USER_PROPERTIES {
        return Err(EncodeError::Invalid("too many user properties"));
    }
    for (key, value) in &p.user_properties {
        w.head(USER_PROPERTY)?;
        put_str(&mut w.buf, key, "user property")?;
        put_str(&mut w.buf, value, "user property")?;
    }
    w.u32(MAXIMUM_PACKET_SIZE, p.maximum_packet_size)?;
    w.byte(
        WILDCARD_SUBSCRIPTION_AVAILABLE,
        p.wildcard_subscription_available,
    )?;
    w.byte(
        SUBSCRIPTION_IDENTIFIER_AVAILABLE,
        p.subscription_identifier_available,
    )?;
    w.byte(
        SHARED_SUBSCRIPTION_AVAILABLE,
        p.shared_subscription_available,
    )?;
    put_varint(out, w.buf.len())?;
    out.extend_from_slice(&w.buf);
    Ok(())
}

struct Writer {
    ctx: Ctx,
    buf: BytesMut,
}

impl Writer {
    /// Check `id` is allowed here and write it (every identifier fits in one varint byte).
    fn head(&mut self, id: u32) -> Result<(), EncodeError> {
        if !allowed(id, self.ctx) {
            return Err(EncodeError::Invalid("property not allowed on this packet"));
        }
        self.buf.put_u8(id as u8);
        Ok(())
    }

    fn nonzero(id: u32, is_zero: bool) -> Result<(), EncodeError> {
        if must_be_nonzero(id) && is_zero {
            return Err(EncodeError::Invalid("property value must not be 0"));
        }
        Ok(())
    }

    fn byte(&mut self, id: u32, v: Option<u8>) -> Result<(), EncodeError> {
        if let Some(v) = v {
            if v > 1 {
                return Err(EncodeError::Invalid("property value must be 0 or 1"));
            }
            self.head(id)?;
            self.buf.put_u8(v);
        }
        Ok(())
    }

    fn u16(&mut self, id: u32, v: Option<u16>) -> Result<(), EncodeError> {
        if let Some(v) = v {
            Self::nonzero(id, v == 0)?;
            self.head(id)?;
            self.buf.put_u16(v);
        }
        Ok(())
    }

    fn u32(&mut self, id: u32, v: Option<u32>) -> Result<(), EncodeError> {
        if let Some(v) = v {
            Self::nonzero(id, v == 0)?;
            self.head(id)?;
            self.buf.put_u32(v);
        }
        Ok(())
    }

    fn string(&mut self, id: u32, v: &Option<String>) -> Result<(), EncodeError> {
        if let Some(v) = v {
            self.head(id)?;
            put_str(&mut self.buf, v, "string property")?;
        }
        Ok(())
    }

    fn binary(&mut self, id: u32, v: &Option<Bytes>) -> Result<(), EncodeError> {
        if let Some(v) = v {
            self.head(id)?;
            put_bin(&mut self.buf, v, "binary property")?;
        }
        Ok(())
    }
}
