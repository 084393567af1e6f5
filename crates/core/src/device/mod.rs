//! Devices, from the factory to the live session: products and their data-point models
//! (`products`), identity issuance and registration (`registry`), the CONNECT credential lookups
//! (`credentials`), the live side of a device — authentication, presence, reports, commands and
//! acks (`runtime`) —, the secure-session layer's PSK and failures (`secure_session`), desired state and command records (`shadow`), the group-commit writer behind reports and presence (`writer`), the bus
//! between the two edges (`bus`) and uploaded files such as allowlists (`uploads`).
//! Factory credentials, with which a production line issues identities over the API, are in
//! `factory`. Devices pre-registered with an Ed25519 public key and the challenge they answer at CONNECT
//! are in `keys`.
//!
//! Nothing here speaks MQTT or HTTP: the gateway and the API call these services and map their
//! answers to their own codes.

pub mod bus;
pub mod certificates;
pub(crate) mod credentials;
pub mod factory;
pub mod keys;
pub mod products;
pub mod registry;
pub mod runtime;
pub mod secure_session;
pub mod shadow;
pub mod uploads;
pub(crate) mod writer;
