//! MQTT 3.1.1 and 5.0 packet model and codec (server and client side).
//!
//! Owns the byte-level wire format only: no sockets, no sessions, no topic policy. The gateway and the
//! device SDK drive it. Every decoder path returns an error instead of panicking; a decode error names
//! the MQTT 5 reason code the server should close the connection with.

mod codec;
pub mod reason;
mod types;

pub use codec::{decode, encode, frame_len, DecodeError, EncodeError};
pub use types::*;
