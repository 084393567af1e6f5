//! Domain services shared by the MQTT and HTTP edges: products, device registry and provisioning,
//! device authentication, reports and presence, the command bus, audit.
//!
//! No listeners, no HTTP or MQTT types here: the gateway and the API call [`Core`] and map its
//! [`Error`] to their own codes. State that every connection needs (product models, the session
//! map) lives here in shared structures keyed by id, never copied per connection.

pub mod audit;
pub mod bus;
pub mod devices;
mod error;
pub mod products;
pub mod registry;
pub mod secret;
mod writer;

pub use writer::ReportReceipt;

pub use error::{Error, Result};

use rampart_store::Store;
use secret::MasterKey;
use std::sync::Arc;

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Tunables of the domain layer.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// How long `send_command` waits for the device's ack.
    pub command_timeout_ms: u64,
    /// Allowed clock skew for signed timestamps.
    pub clock_window_ms: i64,
    /// How long a command queued for an offline persistent session stays deliverable (sent to MQTT 5
    /// devices as the message expiry).
    pub command_ttl_ms: i64,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            command_timeout_ms: 10_000,
            clock_window_ms: rampart_proto::sign::CLOCK_WINDOW_MS,
            command_ttl_ms: 3_600_000,
        }
    }
}

/// The domain layer; cheap to clone (all state behind `Arc`).
#[derive(Clone)]
pub struct Core {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    key: MasterKey,
    config: CoreConfig,
    products: products::ProductCache,
    bus: bus::Bus,
    replay: devices::ReplayGuard,
    writer: std::sync::OnceLock<writer::ReportWriter>,
}

impl Core {
    pub fn new(store: Store, key: MasterKey, config: CoreConfig) -> Core {
        Core {
            inner: Arc::new(Inner {
                store,
                key,
                config,
                products: Default::default(),
                bus: Default::default(),
                replay: Default::default(),
                writer: Default::default(),
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub(crate) fn key(&self) -> &MasterKey {
        &self.inner.key
    }

    pub fn config(&self) -> &CoreConfig {
        &self.inner.config
    }

    pub fn bus(&self) -> &bus::Bus {
        &self.inner.bus
    }

    /// The group-commit writer, started on first use (always inside the runtime).
    fn writer(&self) -> &writer::ReportWriter {
        self.inner.writer.get_or_init(|| {
            writer::ReportWriter::start(self.inner.store.clone(), self.inner.bus.event_sender())
        })
    }
}
