//! MQTT 5 reason codes and MQTT 3.1.1 CONNACK return codes used by Rampart.

pub const SUCCESS: u8 = 0x00;
pub const GRANTED_QOS_1: u8 = 0x01;
pub const GRANTED_QOS_2: u8 = 0x02;
pub const NO_MATCHING_SUBSCRIBERS: u8 = 0x10;
pub const NO_SUBSCRIPTION_EXISTED: u8 = 0x11;
/// AUTH: the exchange goes on (enhanced authentication).
pub const CONTINUE_AUTHENTICATION: u8 = 0x18;
/// AUTH from the client: authenticate again on the open connection.
pub const RE_AUTHENTICATE: u8 = 0x19;
pub const UNSPECIFIED_ERROR: u8 = 0x80;
pub const MALFORMED_PACKET: u8 = 0x81;
pub const PROTOCOL_ERROR: u8 = 0x82;
pub const IMPLEMENTATION_SPECIFIC_ERROR: u8 = 0x83;
pub const UNSUPPORTED_PROTOCOL_VERSION: u8 = 0x84;
pub const CLIENT_IDENTIFIER_NOT_VALID: u8 = 0x85;
pub const BAD_USER_NAME_OR_PASSWORD: u8 = 0x86;
pub const NOT_AUTHORIZED: u8 = 0x87;
pub const SERVER_UNAVAILABLE: u8 = 0x88;
pub const SERVER_BUSY: u8 = 0x89;
pub const BANNED: u8 = 0x8A;
pub const SERVER_SHUTTING_DOWN: u8 = 0x8B;
/// CONNACK: the CONNECT's Authentication Method is not one the server supports.
pub const BAD_AUTHENTICATION_METHOD: u8 = 0x8C;
pub const KEEP_ALIVE_TIMEOUT: u8 = 0x8D;
pub const SESSION_TAKEN_OVER: u8 = 0x8E;
pub const TOPIC_FILTER_INVALID: u8 = 0x8F;
pub const TOPIC_NAME_INVALID: u8 = 0x90;
pub const PACKET_IDENTIFIER_IN_USE: u8 = 0x91;
pub const PACKET_IDENTIFIER_NOT_FOUND: u8 = 0x92;
pub const RECEIVE_MAXIMUM_EXCEEDED: u8 = 0x93;
pub const TOPIC_ALIAS_INVALID: u8 = 0x94;
pub const PACKET_TOO_LARGE: u8 = 0x95;
pub const MESSAGE_RATE_TOO_HIGH: u8 = 0x96;
pub const QUOTA_EXCEEDED: u8 = 0x97;
pub const ADMINISTRATIVE_ACTION: u8 = 0x98;
pub const PAYLOAD_FORMAT_INVALID: u8 = 0x99;
pub const RETAIN_NOT_SUPPORTED: u8 = 0x9A;
pub const QOS_NOT_SUPPORTED: u8 = 0x9B;
pub const CONNECTION_RATE_EXCEEDED: u8 = 0x9F;
pub const SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED: u8 = 0xA1;
pub const WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED: u8 = 0xA2;
/// Disconnect reason 0x04: disconnect with will message.
pub const DISCONNECT_WITH_WILL: u8 = 0x04;

/// MQTT 3.1.1 CONNACK return codes.
pub mod v311 {
    pub const ACCEPTED: u8 = 0x00;
    pub const UNACCEPTABLE_PROTOCOL_VERSION: u8 = 0x01;
    pub const IDENTIFIER_REJECTED: u8 = 0x02;
    pub const SERVER_UNAVAILABLE: u8 = 0x03;
    pub const BAD_USER_NAME_OR_PASSWORD: u8 = 0x04;
    pub const NOT_AUTHORIZED: u8 = 0x05;
    /// SUBACK failure return code.
    pub const SUBACK_FAILURE: u8 = 0x80;
}

/// The MQTT 5 packet types that carry reason codes. Each accepts only the codes its section of
/// the specification lists; the codec refuses any other in both directions, so no path of the
/// server can put, say, the DISCONNECT-only 0x96 on a PUBACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    ConnAck,
    PubAck,
    PubRec,
    PubRel,
    PubComp,
    SubAck,
    UnsubAck,
    Disconnect,
    Auth,
}

impl Carrier {
    /// The reason codes the MQTT 5.0 specification lists for this packet type (sections
    /// 3.2.2.2, 3.4.2.1, 3.5.2.1, 3.6.2.1, 3.7.2.1, 3.9.3, 3.11.3, 3.14.2.1 and 3.15.2.1).
    pub const fn allowed(self) -> &'static [u8] {
        match self {
            Carrier::ConnAck => &[
                0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90,
                0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
            ],
            Carrier::PubAck | Carrier::PubRec => {
                &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99]
            }
            Carrier::PubRel | Carrier::PubComp => &[0x00, 0x92],
            Carrier::SubAck => &[
                0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
            ],
            Carrier::UnsubAck => &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91],
            Carrier::Disconnect => &[
                0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93,
                0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1,
                0xA2,
            ],
            Carrier::Auth => &[0x00, 0x18, 0x19],
        }
    }

    pub fn allows(self, code: u8) -> bool {
        self.allowed().contains(&code)
    }

    pub const fn name(self) -> &'static str {
        match self {
            Carrier::ConnAck => "CONNACK",
            Carrier::PubAck => "PUBACK",
            Carrier::PubRec => "PUBREC",
            Carrier::PubRel => "PUBREL",
            Carrier::PubComp => "PUBCOMP",
            Carrier::SubAck => "SUBACK",
            Carrier::UnsubAck => "UNSUBACK",
            Carrier::Disconnect => "DISCONNECT",
            Carrier::Auth => "AUTH",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The named constants sit where the specification puts them: a refused publish has a PUBACK
    /// code, abuse a DISCONNECT one.
    #[test]
    fn codes_belong_to_their_packets() {
        assert!(Carrier::PubAck.allows(QUOTA_EXCEEDED));
        assert!(!Carrier::PubAck.allows(MESSAGE_RATE_TOO_HIGH));
        assert!(!Carrier::PubRec.allows(MESSAGE_RATE_TOO_HIGH));
        assert!(Carrier::Disconnect.allows(MESSAGE_RATE_TOO_HIGH));
        assert!(Carrier::SubAck.allows(QUOTA_EXCEEDED));
        assert!(!Carrier::PubComp.allows(UNSPECIFIED_ERROR));
        assert!(Carrier::ConnAck.allows(CONNECTION_RATE_EXCEEDED));
        assert!(!Carrier::ConnAck.allows(MESSAGE_RATE_TOO_HIGH));
        assert!(Carrier::ConnAck.allows(BAD_AUTHENTICATION_METHOD));
        assert!(Carrier::Auth.allows(CONTINUE_AUTHENTICATION));
        assert!(Carrier::Auth.allows(RE_AUTHENTICATE));
        assert!(!Carrier::ConnAck.allows(CONTINUE_AUTHENTICATION));
        assert!(Carrier::Disconnect.allows(NOT_AUTHORIZED));
        for c in [
            Carrier::ConnAck,
            Carrier::PubAck,
            Carrier::PubRec,
            Carrier::PubRel,
            Carrier::PubComp,
            Carrier::SubAck,
            Carrier::UnsubAck,
            Carrier::Disconnect,
            Carrier::Auth,
        ] {
            assert!(c.allows(SUCCESS), "{}", c.name());
            assert!(
                c.allowed().windows(2).all(|w| w[0] < w[1]),
                "{} sorted",
                c.name()
            );
        }
    }
}
