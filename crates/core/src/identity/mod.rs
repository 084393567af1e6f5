//! Who someone is: end users (`accounts`), the developers of manufacturers (`developers`),
//! password policy and hashing (`password`), the TOTP second factor (`totp`), and the channels
//! that carry one-time codes to people (`notify`).
//!
//! Proving identity only: what an identity may do to a product or device is decided in
//! [`crate::access`].

pub mod accounts;
pub mod admin_tokens;
pub mod developers;
pub mod notify;
pub mod password;
pub mod totp;
