//! Who may do what: the one role matrix for products and enterprises (`tenancy`), users'
//! bindings and shares of devices (`bindings`), enterprises and their members (`enterprises`),
//! enterprise access keys and signed requests (`access_keys`), and the IP networks keys are
//! limited to (`cidr`).
//!
//! Decisions live here and nowhere else; handlers ask, they never re-derive a rule.

pub mod access_keys;
pub mod bindings;
pub mod cidr;
pub mod enterprises;
pub mod tenancy;
