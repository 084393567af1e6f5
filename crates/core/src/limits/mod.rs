//! Every limit in one place: the HTTP API's GCRA rates and window quotas (`api`), the MQTT
//! edge's connect rates and storm ban (`connect`), a device session's report rate (`report`),
//! fixed-window counters that survive a restart (`quotas`), and small sliding windows for
//! notices and login starts (`window`).
//!
//! Limits decide and count; they never sleep or do I/O on the request path (`quotas` is
//! written to the store by a flusher task, off that path).

pub mod api;
pub mod connect;
pub mod name;
pub mod quotas;
pub mod report;
mod window;

pub use window::SlidingWindow;
