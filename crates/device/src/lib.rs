//! Rampart device SDK and fleet simulator.
//!
//! This crate is what a device links to talk to a Rampart cloud; it never links the server.
//! The wire contract itself (topics, signature strings) lives in `rampart-proto`; this crate
//! only speaks it.
//!
//! | module | owns |
//! |---|---|
//! | [`secret`] | [`Secret`], the string wrapper for device/product secrets: zeroized on drop, `***` in `Debug` |
//! | [`error`] | [`Error`], the one error type of the crate |
//! | [`register`] | HTTPS registration (`POST /v1/device/register`): signing the request, reading the answer |
//! | [`command`] | the payloads on `dev/{did}/down` ([`Command`]) and `dev/{did}/ack` ([`Ack`]) |
//! | [`client`] | [`DeviceClient`] + [`DeviceEvents`]: a handle and an event loop over `rumqttc`, with signed CONNECT, TLS with a custom CA, re-signing reconnects and exponential back-off |
//! | [`ota`] | the OTA client: manifest and image verification, A/B [`ota::Slots`] with a health deadline, [`ota::HttpOta`] (check, reports, resumable download), [`ota::update`] |
//! | [`simulate`] | the fleet simulator behind `rampart device simulate`: reads a factory batch, registers and connects devices, reports random valid values, answers commands |
//!
//! Nothing in this crate logs a secret: secrets only ever leave a [`Secret`] to be hashed
//! or sent to the server they belong to.

pub mod client;
pub mod command;
pub mod error;
pub mod ota;
pub mod register;
pub mod secret;
pub mod simulate;

mod model;

pub use client::{
    Backoff, ConnectOptions, DeviceClient, DeviceEvents, Event, Protocol, TlsSettings, Transport,
};
pub use command::{Ack, AckStatus, Action, BadCommand, Command, Desired};
pub use error::Error;
pub use register::{register, RegisterMode, RegisterParams, Registration};
pub use secret::Secret;
pub use simulate::{simulate, SimulateOptions, SimulateReport};

/// Milliseconds since the Unix epoch, as signed timestamps use.
pub(crate) fn now_ms() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
