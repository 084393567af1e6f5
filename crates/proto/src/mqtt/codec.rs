//! Encoder and decoder (being written).
use super::types::*;
use bytes::BytesMut;

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
}

/// Total length (fixed header + remaining) of the packet at the front of `buf`, if its fixed header
/// is complete. Errors on a malformed Remaining Length or a packet larger than `max_packet_size`.
pub fn frame_len(_buf: &[u8], _max_packet_size: usize) -> Result<Option<usize>, DecodeError> {
    unimplemented!()
}

/// Decode one packet from the front of `buf`; `Ok(None)` when more bytes are needed (buf untouched).
/// CONNECT is decoded whatever `version` says (it carries its own level).
pub fn decode(
    _buf: &mut BytesMut,
    _version: ProtocolVersion,
    _max_packet_size: usize,
) -> Result<Option<Packet>, DecodeError> {
    unimplemented!()
}

/// Append the wire form of `packet` to `out`.
pub fn encode(_packet: &Packet, _version: ProtocolVersion, _out: &mut BytesMut) -> Result<(), EncodeError> {
    unimplemented!()
}
