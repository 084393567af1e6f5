//! Device events delivered durably to enterprises' business systems: the event hub with its
//! subscription groups, acknowledgements and prefetch (`hub`), and webhooks, the hub's HTTPS
//! consumers (`webhooks`).
//!
//! The lossy live push to apps is not here: it reads the bus's broadcast in the API.

pub mod hub;
pub mod webhooks;
