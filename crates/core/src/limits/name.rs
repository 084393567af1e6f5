//! The name of every limit: what a refusal says (`limit NAME exceeded`, the `X-RateLimit-*`
//! answers), the `limit` label of `rampart_limit_refusals_total` and the configuration it comes
//! from. Documented in `docs/limits.md`; each is a contract.

pub const ACCESS_KEY_DAILY: &str = "access_key.daily";
pub const ACCESS_KEY_HOURLY: &str = "access_key.hourly";
pub const ACCESS_KEY_RATE: &str = "access_key.rate";

pub const APP_RATE: &str = "app.rate";

pub const BIND_USER: &str = "bind.user";

pub const CODES_IP: &str = "codes.ip";
pub const CODES_RECIPIENT: &str = "codes.recipient";

pub const EVENTS_CONNECTIONS_PER_IP: &str = "events.connections_per_ip";

pub const HTTP_CONNECTIONS_PER_IP: &str = "http.connections_per_ip";

pub const IP_RATE: &str = "ip.rate";

pub const MQTT_CONNECT_PER_IP: &str = "mqtt.connect_per_ip";
pub const MQTT_CONNECTIONS_PER_IP: &str = "mqtt.connections_per_ip";
pub const MQTT_DEVICE_CONNECT_PER_MINUTE: &str = "mqtt.device_connect.per_minute";
pub const MQTT_DEVICE_CONNECT_PER_SECOND: &str = "mqtt.device_connect.per_second";
pub const MQTT_DEVICE_RECONNECT_STORM: &str = "mqtt.device_reconnect_storm";
pub const MQTT_INFLIGHT: &str = "mqtt.inflight";
pub const MQTT_PACKET_SIZE: &str = "mqtt.packet_size";
pub const MQTT_REFUSAL_AUDIT_PER_IP: &str = "mqtt.refusal_audit_per_ip";
pub const MQTT_REPORT_ABUSE: &str = "mqtt.report_abuse";
pub const MQTT_REPORT_RATE: &str = "mqtt.report_rate";
pub const MQTT_RETAINED: &str = "mqtt.retained";
pub const MQTT_SUBSCRIPTIONS: &str = "mqtt.subscriptions";
pub const MQTT_TOPIC_LENGTH: &str = "mqtt.topic_length";

pub const REGISTER_FAILURES_IP: &str = "register.failures.ip";
pub const REGISTER_IP: &str = "register.ip";

pub const SIGNUP_GLOBAL: &str = "signup.global";
pub const SIGNUP_IP: &str = "signup.ip";

pub const USER_RATE: &str = "user.rate";
