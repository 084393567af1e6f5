//! End-to-end tests: the server on port 0 (in this process, or the real binary where a test needs
//! a process), driven by independent clients.
#![allow(unreachable_pub)]

mod account_settings;
mod accounts;
mod at_rest;
mod backup;
mod certificates;
mod cli;
mod cli_online;
mod cluster;
mod commands;
mod console;
mod deploy;
mod developers;
mod device_identity;
mod durability;
mod ed25519;
mod enterprise_api;
mod erasure;
mod event_stream;
mod factory;
mod idle;
mod in_process;
mod interop;
mod limits;
mod masking;
mod metrics_access;
mod mqtt;
mod mqtt_attacks;
mod mqtt_conformance;
mod mqtt_limits;
mod oauth;
mod openapi;
mod operability;
mod ota;
mod passthrough;
mod readme;
mod refusals;
mod registration;
mod secure_session;
mod shadow;
mod slow_peers;
mod stock_clients;
mod support;
mod uploads;
mod webhooks;
