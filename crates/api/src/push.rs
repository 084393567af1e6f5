//! Live push: `GET /v1/ws` upgrades to a WebSocket that streams `{"did", "kind", ...}` messages
//! (`status`, `presence`, `ack`) for every device the user may read. The connection subscribes
//! before answering the upgrade, so every event after the 101 reaches the client.
//!
//! Each connection keeps its own set of readable devices, updated from the core's access-change
//! broadcast before any device event is forwarded, so an unbind or a revoked share stops the
//! stream for that device at once. The token is checked again whenever the user's sessions change,
//! and the socket closes when the token expires or is revoked.
//!
//! `GET /v1/developers/ws` is the same stream for a developer: the devices of every product the
//! developer may read (`tenancy::decide` with `Act::Read`: personal products, and the products of
//! enterprises where they are a member). Decisions are cached per product and dropped whenever the
//! core's tenancy epoch moves (a membership, role or suspension change, a logout), before the next
//! event is forwarded; the token is checked again then.

use crate::extract::bearer;
use crate::openapi::ApiRouter;
use crate::{AppState, Error};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::response::Response;
use rampart_core::access::bindings::{AccessChange, Role};
use rampart_core::device::bus::DeviceEvent;
use rampart_core::identity::accounts::UserSession;
use rampart_core::identity::developers::DeveloperSession;
use rampart_core::secret::Secret;
use rampart_core::Core;
use serde_json::{json, Value};
use std::borrow::Cow;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use utoipa::openapi::{RefOr, Schema};
use utoipa_axum::routes;

pub(crate) fn routes() -> ApiRouter {
    // The messages are no HTTP answer, so no operation names their schema: it is added here.
    let (mut schemas, paths, methods) = routes!(ws);
    schemas.push((
        <LiveEvent as utoipa::ToSchema>::name().into_owned(),
        <LiveEvent as utoipa::PartialSchema>::schema(),
    ));
    ApiRouter::new()
        .routes((schemas, paths, methods))
        .routes(routes!(developer_ws))
}

/// Close code for an expired or revoked token (the 4000-4999 range is for applications).
const CLOSE_UNAUTHORIZED: u16 = 4401;

/// A message of the live push: what [`event_json`] sends.
pub(crate) struct LiveEvent;

impl utoipa::ToSchema for LiveEvent {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("LiveEvent")
    }
}

impl utoipa::PartialSchema for LiveEvent {
    fn schema() -> RefOr<Schema> {
        let millis = json!({"$ref": "#/components/schemas/Millis"});
        let kind = |k: &str| json!({"type": "string", "enum": [k]});
        let example = event_json(&DeviceEvent::Report {
            did: "d_0001".into(),
            ts: 1765000000000,
            values: serde_json::from_value(json!({"power": true})).unwrap_or_default(),
        })
        .map(|(_, v)| v);
        let v = json!({"description": "a message of the live push (`GET /v1/ws`, `GET /v1/developers/ws`)",
            "oneOf": [
                {"type": "object", "required": ["did", "kind", "ts", "values"], "properties": {
                    "did": {"type": "string"}, "kind": kind("status"), "ts": millis,
                    "values": {"type": "object", "description": "data point name -> value",
                        "additionalProperties": true}}},
                {"type": "object", "required": ["did", "kind", "online", "ts"], "properties": {
                    "did": {"type": "string"}, "kind": kind("presence"), "online": {"type": "boolean"},
                    "ts": millis, "reason": {"type": "string"}}},
                {"type": "object", "required": ["did", "kind", "id", "status", "ts"], "properties": {
                    "did": {"type": "string"}, "kind": kind("ack"), "id": {"type": "string"},
                    "status": {"type": "string", "enum": ["ok", "error"]}, "ts": millis}},
                {"type": "object", "required": ["did", "kind", "created", "ts"], "properties": {
                    "did": {"type": "string"}, "kind": kind("registered"),
                    "created": {"type": "boolean",
                        "description": "a new device (false: a known one registered again)"},
                    "ts": millis}}],
            "example": example});
        serde_json::from_value(v).expect("a valid schema")
    }
}

crate::errors!(LivePushErrors: Unauthorized, UpgradeRequired, RateLimited, Internal);

/// The access token from `Authorization: Bearer` or `?access_token=` (percent-decoded, as a
/// browser's `URLSearchParams` encodes it): a browser's WebSocket cannot send a header. The
/// query is read only here and never logged (no layer of the router records request URIs).
pub(crate) struct WsToken(pub(crate) Secret);

#[derive(serde::Deserialize)]
struct TokenQuery {
    access_token: Option<String>,
}

impl FromRequestParts<AppState> for WsToken {
    type Rejection = Error;
    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<WsToken, Error> {
        if let Some(t) = bearer(parts) {
            return Ok(WsToken(Secret::new(t.to_owned())));
        }
        // A query that does not parse carries no token: the same 401 as none.
        Query::<TokenQuery>::try_from_uri(&parts.uri)
            .ok()
            .and_then(|Query(q)| q.access_token)
            .filter(|t| !t.is_empty())
            .map(|t| WsToken(Secret::new(t)))
            .ok_or_else(Error::unauthorized)
    }
}

/// The answer to a live-push request that asked for no WebSocket upgrade.
fn upgrade_required(r: WebSocketUpgradeRejection) -> Error {
    Error::new(
        crate::error::ErrorCode::UpgradeRequired,
        format!("a WebSocket upgrade is required: {}", r.body_text()),
    )
}

#[utoipa::path(get, path = "/v1/ws", tag = "bindings",
    summary = "Live push of device events (WebSocket)",
    description = "Upgrades to a WebSocket streaming one `LiveEvent` JSON text message per event, \
        for every device the user may read. Closes with 4401 when the token expires or is revoked.",
    responses((status = 101, description = "switching to the WebSocket; messages are `LiveEvent`"),
        LivePushErrors),
    security(("user" = []), ("user_query" = [])))]
pub(crate) async fn ws(
    State(s): State<AppState>,
    WsToken(token): WsToken,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, Error> {
    let session = s.core.authenticate_user(token.expose()).await?;
    let upgrade = upgrade.map_err(upgrade_required)?;
    let slot = s.core.live_push_slot(&session.user_id)?;
    // Subscribe (and read the set after subscribing, so no change between the two is missed)
    // before answering 101: every event after the client sees the upgrade reaches it.
    let subs = Subscriptions {
        access: s.core.subscribe_access(),
        events: s.core.bus().subscribe_events(),
    };
    let allowed = load(&s.core, &session.user_id).await?;
    let core = s.core.clone();
    Ok(upgrade
        .max_message_size(64 * 1024)
        .on_upgrade(move |socket| async move {
            if let Err(e) = run(socket, core, session, token, subs, allowed).await {
                tracing::debug!(error = %e, "live push connection ended");
            }
            drop(slot);
        }))
}

struct Subscriptions {
    access: tokio::sync::broadcast::Receiver<AccessChange>,
    events: tokio::sync::broadcast::Receiver<DeviceEvent>,
}

/// The devices the user may read, with the role.
async fn load(core: &Core, user_id: &str) -> Result<HashMap<String, Role>, rampart_core::Error> {
    Ok(core.user_devices(user_id).await?.into_iter().collect())
}

/// The JSON pushed for a device event; `None` for the kinds that only the operator event stream
/// carries (the live broadcast never sends them; see `DeviceEvent::is_live`).
pub(crate) fn event_json(ev: &DeviceEvent) -> Option<(&str, Value)> {
    Some(match ev {
        DeviceEvent::Report { did, ts, values } => (
            did,
            json!({"did": did, "kind": "status", "ts": ts, "values": values}),
        ),
        DeviceEvent::Online { did, ts } => (
            did,
            json!({"did": did, "kind": "presence", "online": true, "ts": ts}),
        ),
        DeviceEvent::Offline { did, ts, reason } => (
            did,
            json!({"did": did, "kind": "presence", "online": false, "ts": ts, "reason": reason}),
        ),
        DeviceEvent::Ack {
            did,
            ts,
            id,
            status,
        } => (
            did,
            json!({"did": did, "kind": "ack", "id": id, "status": status, "ts": ts}),
        ),
        DeviceEvent::Registered {
            did, ts, created, ..
        } => (
            did,
            json!({"did": did, "kind": "registered", "created": created, "ts": ts}),
        ),
        DeviceEvent::Delta {
            did,
            ts,
            version,
            delta,
        } => (
            did,
            json!({"did": did, "kind": "delta", "version": version, "delta": delta, "ts": ts}),
        ),
        DeviceEvent::Raw { .. }
        | DeviceEvent::Changed { .. }
        | DeviceEvent::Alarm { .. }
        | DeviceEvent::OtaStatus { .. } => return None,
    })
}

/// Apply an access change to this connection's set; true when the user's sessions changed and
/// the token must be checked again.
fn apply(allowed: &mut HashMap<String, Role>, me: &str, c: AccessChange) -> bool {
    match c {
        AccessChange::Device { did, user_id, role } if user_id == me => {
            match role {
                Some(r) => allowed.insert(did, r),
                None => allowed.remove(&did),
            };
            false
        }
        AccessChange::DeviceCleared { did } => {
            allowed.remove(&did);
            false
        }
        AccessChange::Sessions { user_id } => user_id == me,
        AccessChange::Device { .. } => false,
    }
}

async fn close(socket: &mut WebSocket, reason: &'static str) {
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: CLOSE_UNAUTHORIZED,
            reason: reason.into(),
        })))
        .await;
}

async fn run(
    mut socket: WebSocket,
    core: Core,
    session: UserSession,
    token: Secret,
    subs: Subscriptions,
    mut allowed: HashMap<String, Role>,
) -> Result<(), String> {
    let Subscriptions {
        mut access,
        mut events,
    } = subs;
    let me = session.user_id.clone();
    let left = (session.expires_at - core.now_ms()).max(0) as u64;
    let expiry = tokio::time::sleep(Duration::from_millis(left));
    tokio::pin!(expiry);
    loop {
        let mut recheck = false;
        let mut reload = false;
        tokio::select! {
            _ = &mut expiry => {
                close(&mut socket, "token expired").await;
                return Ok(());
            }
            msg = socket.recv() => match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Ok(()),
                // Pings are answered by the library; client data is ignored.
                Some(Ok(_)) => {}
            },
            c = access.recv() => match c {
                Ok(c) => recheck |= apply(&mut allowed, &me, c),
                Err(RecvError::Lagged(_)) => reload = true,
                Err(RecvError::Closed) => return Ok(()),
            },
            ev = events.recv() => match ev {
                Ok(ev) => {
                    // Changes announced before this event apply to it.
                    loop {
                        match access.try_recv() {
                            Ok(c) => recheck |= apply(&mut allowed, &me, c),
                            Err(TryRecvError::Lagged(_)) => reload = true,
                            Err(_) => break,
                        }
                    }
                    if reload {
                        allowed = load(&core, &me).await.map_err(|e| e.to_string())?;
                        reload = false;
                    }
                    if recheck {
                        if core.authenticate_user(token.expose()).await.is_err() {
                            close(&mut socket, "token revoked").await;
                            return Ok(());
                        }
                        recheck = false;
                    }
                    let Some((did, body)) = event_json(&ev) else {
                        continue;
                    };
                    if allowed.contains_key(did) {
                        socket
                            .send(Message::Text(body.to_string().into()))
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::debug!(missed = n, "live push fell behind");
                }
                Err(RecvError::Closed) => return Ok(()),
            },
        }
        if reload {
            allowed = load(&core, &me).await.map_err(|e| e.to_string())?;
        }
        if recheck && core.authenticate_user(token.expose()).await.is_err() {
            close(&mut socket, "token revoked").await;
            return Ok(());
        }
    }
}

// ---- developers ----

#[utoipa::path(get, path = "/v1/developers/ws", tag = "developers",
    summary = "Live push of the developer's devices (WebSocket)",
    description = "Upgrades to a WebSocket streaming one `LiveEvent` JSON text message per event, \
        for every device of a product the developer may read (personal products, and enterprise \
        products for any member role). A membership, role or suspension change applies before the \
        next event. Closes with 4401 when the token expires or is revoked.",
    responses((status = 101, description = "switching to the WebSocket; messages are `LiveEvent`"),
        LivePushErrors),
    security(("developer" = []), ("user_query" = [])))]
pub(crate) async fn developer_ws(
    State(s): State<AppState>,
    WsToken(token): WsToken,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, Error> {
    let session = s.core.authenticate_developer(token.expose()).await?;
    let upgrade = upgrade.map_err(upgrade_required)?;
    let slot = s.core.live_push_slot(&session.developer_id)?;
    // Subscribed before the 101, like the user's stream.
    let events = s.core.bus().subscribe_events();
    let core = s.core.clone();
    Ok(upgrade
        .max_message_size(64 * 1024)
        .on_upgrade(move |socket| async move {
            if let Err(e) = run_developer(socket, core, session, token, events).await {
                tracing::debug!(error = %e, "developer live push connection ended");
            }
            drop(slot);
        }))
}

/// What a developer's stream knows about devices and products, valid for one tenancy epoch
/// (device to product does not change; product decisions do).
struct DeveloperView {
    epoch: u64,
    product_of: HashMap<String, Option<String>>,
    readable: HashMap<String, bool>,
}

/// Most devices and products a stream remembers before it starts over.
const VIEW_MAX: usize = 100_000;

impl DeveloperView {
    async fn may_read(
        &mut self,
        core: &Core,
        developer_id: &str,
        did: &str,
    ) -> Result<bool, String> {
        if self.product_of.len() >= VIEW_MAX || self.readable.len() >= VIEW_MAX {
            self.product_of.clear();
            self.readable.clear();
        }
        let pk = match self.product_of.get(did) {
            Some(pk) => pk.clone(),
            None => {
                let pk = core.device_product(did).await.map_err(|e| e.to_string())?;
                self.product_of.insert(did.to_owned(), pk.clone());
                pk
            }
        };
        let Some(pk) = pk else {
            return Ok(false);
        };
        if let Some(ok) = self.readable.get(&pk) {
            return Ok(*ok);
        }
        let ok = core
            .developer_reads_product(developer_id, &pk)
            .await
            .map_err(|e| e.to_string())?;
        self.readable.insert(pk, ok);
        Ok(ok)
    }
}

async fn run_developer(
    mut socket: WebSocket,
    core: Core,
    session: DeveloperSession,
    token: Secret,
    mut events: tokio::sync::broadcast::Receiver<DeviceEvent>,
) -> Result<(), String> {
    let me = session.developer_id.clone();
    let mut view = DeveloperView {
        epoch: core.tenancy_epoch(),
        product_of: HashMap::new(),
        readable: HashMap::new(),
    };
    let left = (session.expires_at - core.now_ms()).max(0) as u64;
    let expiry = tokio::time::sleep(Duration::from_millis(left));
    tokio::pin!(expiry);
    loop {
        tokio::select! {
            _ = &mut expiry => {
                close(&mut socket, "token expired").await;
                return Ok(());
            }
            msg = socket.recv() => match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Ok(()),
                Some(Ok(_)) => {}
            },
            ev = events.recv() => match ev {
                Ok(ev) => {
                    // Changes stored before this event apply to it.
                    let epoch = core.tenancy_epoch();
                    if epoch != view.epoch {
                        view.epoch = epoch;
                        view.readable.clear();
                        if core.authenticate_developer(token.expose()).await.is_err() {
                            close(&mut socket, "token revoked").await;
                            return Ok(());
                        }
                    }
                    let Some((did, body)) = event_json(&ev) else {
                        continue;
                    };
                    if view.may_read(&core, &me, did).await? {
                        socket
                            .send(Message::Text(body.to_string().into()))
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::debug!(missed = n, "developer live push fell behind");
                }
                Err(RecvError::Closed) => return Ok(()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_changes_update_the_set() {
        let mut set = HashMap::new();
        let dev = |did: &str, user: &str, role| AccessChange::Device {
            did: did.into(),
            user_id: user.into(),
            role,
        };
        apply(&mut set, "u1", dev("d1", "u1", Some(Role::Guest)));
        apply(&mut set, "u1", dev("d2", "u2", Some(Role::Owner)));
        assert_eq!(set.len(), 1);
        apply(&mut set, "u1", dev("d3", "u1", Some(Role::Member)));
        apply(&mut set, "u1", dev("d1", "u1", None));
        assert!(!set.contains_key("d1") && set.contains_key("d3"));
        apply(
            &mut set,
            "u1",
            AccessChange::DeviceCleared { did: "d3".into() },
        );
        assert!(set.is_empty());
        assert!(apply(
            &mut set,
            "u1",
            AccessChange::Sessions {
                user_id: "u1".into()
            }
        ));
        assert!(!apply(
            &mut set,
            "u1",
            AccessChange::Sessions {
                user_id: "u2".into()
            }
        ));
    }

    /// The wire format of every message kind, pinned.
    #[test]
    fn event_shapes() {
        let mut values = serde_json::Map::new();
        values.insert("power".into(), json!(true));
        let cases = [
            (
                DeviceEvent::Online {
                    did: "d".into(),
                    ts: 1,
                },
                json!({"did": "d", "kind": "presence", "online": true, "ts": 1}),
            ),
            (
                DeviceEvent::Offline {
                    did: "d".into(),
                    ts: 2,
                    reason: "keepalive".into(),
                },
                json!({"did": "d", "kind": "presence", "online": false, "ts": 2, "reason": "keepalive"}),
            ),
            (
                DeviceEvent::Report {
                    did: "d".into(),
                    ts: 3,
                    values,
                },
                json!({"did": "d", "kind": "status", "ts": 3, "values": {"power": true}}),
            ),
            (
                DeviceEvent::Ack {
                    did: "d".into(),
                    ts: 4,
                    id: "c1".into(),
                    status: "ok".into(),
                },
                json!({"did": "d", "kind": "ack", "id": "c1", "status": "ok", "ts": 4}),
            ),
            (
                DeviceEvent::Registered {
                    did: "d".into(),
                    ts: 5,
                    hardware_id: "hw".into(),
                    mode: "product".into(),
                    created: true,
                },
                json!({"did": "d", "kind": "registered", "created": true, "ts": 5}),
            ),
            (
                DeviceEvent::Delta {
                    did: "d".into(),
                    ts: 6,
                    version: 2,
                    delta: json!({"power": true}).as_object().unwrap().clone(),
                },
                json!({"did": "d", "kind": "delta", "version": 2, "delta": {"power": true}, "ts": 6}),
            ),
        ];
        for (ev, want) in cases {
            let (did, v) = event_json(&ev).unwrap();
            assert_eq!(did, "d");
            assert_eq!(v, want);
        }
    }
}
