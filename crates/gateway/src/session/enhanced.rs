//! MQTT 5 enhanced authentication with the Ed25519 challenge (`rampart-ed25519`): the AUTH
//! exchange between a CONNECT that names an Authentication Method and its CONNACK, and
//! re-authentication (AUTH `0x19`) on a live session.
//!
//! The server sends AUTH `0x18` with a fresh nonce; the device answers AUTH `0x18` with its
//! signature. The core checks it (`Core::authenticate_ed25519`); this file only moves packets
//! and maps refusals to reason codes. Over MQTT 3.1.1 there is no AUTH packet, so none of this
//! applies there.

use super::*;
use bytes::Bytes;
use rampart_core::device::keys::challenge_nonce;
use rampart_proto::mqtt::{Auth, Connect};
use rampart_proto::sign::ED25519_METHOD;

/// How a CONNECT's enhanced authentication went.
pub(super) enum Exchange {
    /// The CONNECT names no Authentication Method (or is MQTT 3.1.1): the password paths apply.
    NotAsked,
    /// The device answered the challenge.
    Accepted(DeviceAuth),
    /// Refused (the CONNACK is written) or gone.
    Refused,
}

/// The AUTH packet of our method with `code` and, if any, `data`.
fn auth(code: u8, data: Option<Bytes>) -> Packet {
    Packet::Auth(Auth {
        code,
        properties: Properties {
            authentication_method: Some(ED25519_METHOD.to_owned()),
            authentication_data: data,
            ..Default::default()
        },
    })
}

/// Write `p` (MQTT 5) within the write timeout; false when it could not be written.
async fn send_now<S: Conn>(io: &mut S, p: &Packet, shared: &Shared) -> bool {
    let mut w = BytesMut::new();
    if mqtt::encode(p, ProtocolVersion::V5, &mut w).is_err() {
        return false;
    }
    let wrote = async {
        io.write_all(&w).await?;
        io.flush().await
    };
    matches!(
        tokio::time::timeout(shared.config.write_timeout, wrote).await,
        Ok(Ok(()))
    )
}

/// A refused exchange's CONNACK.
async fn refuse<S: Conn>(io: &mut S, code: u8, why: Option<&str>, shared: &Shared) {
    let ack = ConnAck {
        session_present: false,
        code,
        properties: Properties {
            reason_string: why.map(str::to_owned),
            ..Default::default()
        },
    };
    send_now(io, &Packet::ConnAck(ack), shared).await;
}

/// Run the exchange a CONNECT asked for, within `mqtt.connect_timeout_secs` from here.
pub(super) async fn exchange<S: Conn>(
    io: &mut S,
    rbuf: &mut BytesMut,
    connect: &Connect,
    peer: SocketAddr,
    shared: &Shared,
) -> Exchange {
    let Some(method) = connect
        .properties
        .authentication_method
        .as_deref()
        .filter(|_| connect.protocol == ProtocolVersion::V5)
    else {
        return Exchange::NotAsked;
    };
    let ip = peer.ip().to_string();
    if method != ED25519_METHOD {
        rampart_core::auth_refusal::record(
            shared.listener,
            &rampart_core::auth_refusal::RefusalReason::AuthMethod,
            &connect.client_id,
            Some(&ip),
        );
        refuse(
            io,
            reason::BAD_AUTHENTICATION_METHOD,
            Some("the only authentication method is rampart-ed25519"),
            shared,
        )
        .await;
        return Exchange::Refused;
    }
    let deadline = Instant::now() + shared.config.connect_timeout;
    let nonce = challenge_nonce();
    let challenge = auth(
        reason::CONTINUE_AUTHENTICATION,
        Some(Bytes::copy_from_slice(&nonce)),
    );
    if !send_now(io, &challenge, shared).await {
        return Exchange::Refused;
    }
    let max = shared.config.max_packet_size;
    let answer =
        tokio::time::timeout_at(deadline, read_packet(io, rbuf, ProtocolVersion::V5, max)).await;
    let signature = match answer {
        Ok(Ok(Some(Packet::Auth(a))))
            if a.code == reason::CONTINUE_AUTHENTICATION
                && a.properties.authentication_method.as_deref() == Some(ED25519_METHOD) =>
        {
            a.properties.authentication_data.unwrap_or_default()
        }
        Ok(Ok(Some(Packet::Disconnect(_)))) | Ok(Ok(None)) => return Exchange::Refused,
        Ok(Ok(Some(_))) => {
            tracing::debug!(%peer, "enhanced authentication: no AUTH answer to the challenge");
            refuse(
                io,
                reason::PROTOCOL_ERROR,
                Some("expected AUTH 0x18 with method rampart-ed25519"),
                shared,
            )
            .await;
            return Exchange::Refused;
        }
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "enhanced authentication: bad packet");
            refuse(io, e.reason_code(), None, shared).await;
            return Exchange::Refused;
        }
        Err(_) => {
            tracing::debug!(%peer, "enhanced authentication: no answer within the connect timeout");
            return Exchange::Refused;
        }
    };
    let res = Box::pin(shared.core.authenticate_ed25519(
        &connect.client_id,
        &nonce,
        &signature,
        &ip,
        shared.listener,
    ))
    .await;
    match res {
        Ok(dev) => Exchange::Accepted(dev),
        Err(ConnectRefusal::Limited(r)) => {
            let why = r.to_string();
            refuse(io, reason::CONNECTION_RATE_EXCEEDED, Some(&why), shared).await;
            Exchange::Refused
        }
        Err(ConnectRefusal::BadCredentials | ConnectRefusal::NotAuthorized) => {
            refuse(io, reason::NOT_AUTHORIZED, None, shared).await;
            Exchange::Refused
        }
    }
}

impl<S: Conn> Session<S> {
    /// An AUTH packet on a live session: re-authentication (`0x19`, answered with a fresh
    /// challenge), then the signature (`0x18`, answered with AUTH `0x00`, or DISCONNECT `0x87`).
    /// AUTH on a session that did not authenticate with our method at CONNECT, with another
    /// method, or out of turn is a protocol error.
    pub(super) async fn on_auth(&mut self, a: Auth) -> Option<Close> {
        if !self.enhanced {
            return Some(Close::Violation(
                reason::PROTOCOL_ERROR,
                "AUTH on a connection without enhanced authentication",
            ));
        }
        if a.properties.authentication_method.as_deref() != Some(ED25519_METHOD) {
            return Some(Close::Violation(
                reason::PROTOCOL_ERROR,
                "AUTH with another authentication method than the CONNECT's",
            ));
        }
        match a.code {
            reason::RE_AUTHENTICATE => {
                let nonce = challenge_nonce();
                self.rare().reauth_nonce = Some(nonce);
                self.send(auth(
                    reason::CONTINUE_AUTHENTICATION,
                    Some(Bytes::copy_from_slice(&nonce)),
                ));
                None
            }
            reason::CONTINUE_AUTHENTICATION => {
                let Some(nonce) = self.rare.as_mut().and_then(|r| r.reauth_nonce.take()) else {
                    return Some(Close::Violation(
                        reason::PROTOCOL_ERROR,
                        "AUTH 0x18 without a re-authentication under way",
                    ));
                };
                self.trim_rare();
                let signature = a.properties.authentication_data.unwrap_or_default();
                let res = self
                    .shared
                    .core
                    .reauthenticate_ed25519(
                        self.dev.did.as_str(),
                        &nonce,
                        &signature,
                        None,
                        self.shared.listener,
                    )
                    .await;
                match res {
                    Ok(_) => {
                        self.send(auth(reason::SUCCESS, None));
                        None
                    }
                    Err(_) => Some(Close::Violation(
                        reason::NOT_AUTHORIZED,
                        "re-authentication refused",
                    )),
                }
            }
            _ => Some(Close::Violation(
                reason::PROTOCOL_ERROR,
                "AUTH with a reason code only the server sends",
            )),
        }
    }
}
