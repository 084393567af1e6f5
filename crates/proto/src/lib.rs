//! The device<->cloud contract: topic grammar, signatures, the data-point model, command payloads
//! and the MQTT codec. No I/O, no tokio: both the server and the device SDK link this crate.
pub mod command;
pub mod ids;
pub mod model;
pub mod mqtt;
pub mod ota;
pub mod secure_session;
pub mod sign;
pub mod topic;
