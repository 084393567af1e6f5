//! One module per top-level subcommand: its arguments (with the help text `--help` shows) and
//! what it does.

pub(crate) mod admin;
pub(crate) mod audit;
pub(crate) mod backup;
pub(crate) mod config;
pub(crate) mod device;
pub(crate) mod events;
pub(crate) mod factory;
pub(crate) mod product;
pub(crate) mod serve;
pub(crate) mod status;
