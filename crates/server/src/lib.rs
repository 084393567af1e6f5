//! The Rampart server as a library: typed configuration ([`Config`]), and [`App`], which opens a
//! data directory, binds every listener and serves until a shutdown future resolves.
//!
//! ```no_run
//! # async fn demo() -> Result<(), rampart_server::ServerError> {
//! let config = rampart_server::Config::load_from(None, [("RAMPART_HTTP__LISTEN", "127.0.0.1:0")])?;
//! let app = rampart_server::App::build(config).await?;
//! println!("API on {}", app.listeners().http);
//! app.run(async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```
//!
//! `rampart serve`, the bench and the end-to-end tests all start the server through [`App`], so
//! there is one wiring. This crate never reads the process environment behind its caller's back
//! ([`Config::load`] is the one explicit exception), never installs a tracing subscriber and never
//! handles signals: those belong to the binary.

mod app;
mod client_cert;
pub mod config;
mod error;
mod tls;

pub use app::{open_core, AdminToken, App, Listeners, OpenFor};
pub use config::{Config, ConfigError};
pub use error::ServerError;
