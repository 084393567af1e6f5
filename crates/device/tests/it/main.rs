//! Integration tests of the device SDK against scripted fake peers (MQTT and HTTPS).

mod client;
mod fake;
mod simulate;
