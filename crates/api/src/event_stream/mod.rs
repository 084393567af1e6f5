//! The operator event stream's messages and session, shared by its two transports:
//! the TLS socket of newline-delimited JSON ([`tcp`], login by challenge) and the WebSocket
//! `GET /v1/enterprise/events` (login by a signed upgrade, handled here).
//!
//! After login both speak the same JSON messages, one per line or text frame (documented in
//! `docs/enterprise-api.md`): the server sends `event_push`, `pong`, `remote_control_res`,
//! `invalid_msg` and, before it closes a session whose credential ended (enterprise suspended, key
//! disabled, expired, deleted, or rotated past the secret the session proved), `session_end`; the
//! client sends `event_ack`, `ping` and `remote_control_req`. Input that is not
//! one of these gets an `invalid_msg` with a code and the connection goes on.
//!
//! Delivery, acknowledgement and ordering are `rampart_core::stream::hub`; this module only frames
//! messages and never holds an event beyond handing it to the socket.

pub(crate) mod tcp;

use crate::extract::EnterpriseKey;
use crate::openapi::ApiRouter;
use crate::{AppState, Error};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use rampart_core::access::access_keys::{KeySession, Scope};
use rampart_core::device::runtime::CommandRequest;
use rampart_core::stream::hub::{self, Consumer, Delivery, Subscription};
use rampart_core::{Core, Error as CoreError};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use utoipa_axum::routes;

pub(crate) fn routes() -> ApiRouter {
    ApiRouter::new().routes(routes!(ws))
}

/// Longest message a client may send (bytes).
pub(crate) const MAX_LINE: usize = 64 * 1024;
/// Most commands one connection may have waiting for their devices.
const MAX_COMMANDS: usize = 16;

/// What a connection's reader hands to its session.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    Text(String),
    /// A message longer than [`MAX_LINE`] (dropped) or not text.
    Unreadable(&'static str),
}

/// Where a session writes its messages.
pub(crate) enum Outgoing {
    Tcp(
        tokio::io::WriteHalf<
            tokio_rustls::server::TlsStream<
                crate::server::deadline::WriteDeadline<tokio::net::TcpStream>,
            >,
        >,
    ),
    Ws(futures_util::stream::SplitSink<WebSocket, Message>),
}

impl Outgoing {
    pub(crate) async fn send(&mut self, v: &Value) -> std::io::Result<()> {
        match self {
            Outgoing::Tcp(w) => {
                use tokio::io::AsyncWriteExt;
                let mut line = v.to_string();
                line.push('\n');
                w.write_all(line.as_bytes()).await?;
                w.flush().await
            }
            Outgoing::Ws(w) => w
                .send(Message::Text(v.to_string().into()))
                .await
                .map_err(std::io::Error::other),
        }
    }
}

/// `{"cmd":"invalid_msg","code","message"}`.
pub(crate) fn invalid_msg(code: &str, message: impl Into<String>) -> Value {
    json!({"cmd": "invalid_msg", "code": code, "message": message.into()})
}

/// The subscription named by a login (TCP `login_req` fields or the WebSocket query).
#[derive(Debug, serde::Deserialize)]
pub(crate) struct LoginFields {
    pub(crate) products: Vec<String>,
    #[serde(default)]
    pub(crate) events: Vec<String>,
    pub(crate) subkey: String,
    #[serde(default)]
    pub(crate) prefetch: Option<i64>,
}

impl LoginFields {
    pub(crate) fn subscription(self) -> Result<Subscription, CoreError> {
        Ok(Subscription {
            products: self.products,
            subkey: hub::parse_subkey(&self.subkey)?,
            kinds: hub::parse_kinds(&self.events)?,
            prefetch: hub::parse_prefetch(self.prefetch)?,
        })
    }
}

/// `login_res` for a consumer that is in.
pub(crate) fn login_ok(
    sub_products: &[String],
    subkey: &str,
    kinds: &[String],
    prefetch: u16,
) -> Value {
    json!({
        "cmd": "login_res",
        "result": true,
        "products": sub_products,
        "subkey": subkey,
        "events": kinds,
        "prefetch": prefetch,
    })
}

/// `{"cmd":"session_end","code","message"}`: the server closes the session.
pub(crate) fn session_end(code: &str, message: &str) -> Value {
    json!({"cmd": "session_end", "code": code, "message": message})
}

/// `login_res` for a refusal.
pub(crate) fn login_refused(code: &str, message: impl Into<String>) -> Value {
    json!({"cmd": "login_res", "result": false, "code": code, "message": message.into()})
}

fn push(d: Delivery) -> Value {
    let data: Value = serde_json::from_str(&d.data).unwrap_or_else(|_| json!({}));
    json!({
        "cmd": "event_push",
        "delivery_id": d.delivery_id,
        "event_type": d.kind,
        "product_key": d.product_key,
        "did": d.did,
        "ts": d.ts,
        "data": data,
    })
}

/// Whether the session's key still stands: `Ok(Some(t))` until `t`, `Ok(None)` until the next
/// change, `Err` with the `session_end` to close with. A failed check keeps the session (a store
/// outage should not drop every operator) and is tried again within a few seconds.
async fn standing(core: &Core, key: &KeySession) -> Result<Option<tokio::time::Instant>, Value> {
    use rampart_core::access::access_keys::KeyAuthError as E;
    let at = |ms: i64| {
        let wait = u64::try_from(ms - core.now_ms()).unwrap_or(0);
        tokio::time::Instant::now() + std::time::Duration::from_millis(wait)
    };
    match core.key_session_standing(key).await {
        Ok(until) => Ok(until.map(at)),
        Err(E::Internal(e)) => {
            tracing::error!(key_id = %key.key_id, error = %e, "checking a key session failed");
            Ok(Some(at(core.now_ms() + 2_000)))
        }
        Err(E::SignatureMismatch) => Err(session_end(
            "KEY_REVOKED",
            "the key was deleted, or the secret this session proved was rotated out",
        )),
        Err(e) => Err(session_end(e.code(), &e.to_string())),
    }
}

/// Run a logged-in session until the client leaves, the socket fails or `shutdown` resolves.
pub(crate) async fn run_session(
    core: Core,
    key: KeySession,
    mut consumer: Consumer,
    mut incoming: mpsc::Receiver<Incoming>,
    mut out: Outgoing,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let (done_tx, mut done_rx) = mpsc::channel::<Value>(MAX_COMMANDS);
    let mut commands = 0usize;
    // Suspensions and key changes (disable, delete, rotate) made by this process.
    let mut changes = core.suspensions();
    // Checked once at the start too: a change between the login's checks and this subscription
    // is not missed.
    changes.mark_changed();
    // When the proved secret stops working (a rotation's overlap) or the key expires.
    let mut ends_at: Option<tokio::time::Instant> = None;
    loop {
        let recheck = async {
            match ends_at {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        // Biased: events already handed to this consumer go out before any answer to a later
        // message (a `pong` means everything pushed before it was written).
        let msg = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            r = changes.changed() => {
                if r.is_err() {
                    break;
                }
                // A session whose credential ended closes (its unacknowledged events go back to
                // the group, for another session or after reinstatement).
                match standing(&core, &key).await {
                    Ok(t) => ends_at = t,
                    Err(end) => {
                        let _ = out.send(&end).await;
                        break;
                    }
                }
                continue;
            }
            _ = recheck => {
                match standing(&core, &key).await {
                    Ok(t) => ends_at = t,
                    Err(end) => {
                        let _ = out.send(&end).await;
                        break;
                    }
                }
                continue;
            }
            d = consumer.next() => match d {
                Some(d) => push(d),
                None => break,
            },
            r = done_rx.recv() => match r {
                Some(v) => {
                    commands -= 1;
                    v
                }
                None => break,
            },
            m = incoming.recv() => match m {
                None => break,
                Some(Incoming::Unreadable(why)) => invalid_msg("INVALID_MESSAGE", why),
                Some(Incoming::Text(t)) => match handle(&core, &key, &mut consumer, &t, &mut commands, &done_tx) {
                    Some(v) => v,
                    None => continue,
                },
            },
        };
        if out.send(&msg).await.is_err() {
            break;
        }
    }
    // Dropping the consumer gives its unacknowledged events back to the group.
    drop(consumer);
}

/// A client message after login, parsed (the session decides what it does).
#[derive(Debug)]
pub enum ClientMessage {
    Ping,
    /// `event_ack` with one or more delivery ids.
    Ack(Vec<i64>),
    /// `remote_control_req`: a command for `did`, answered with `req_id`.
    Control {
        req_id: Value,
        did: String,
        req: CommandRequest,
    },
}

/// Parse one message a logged-in client sent; `Err` is the `invalid_msg` to answer with. Public
/// for the fuzz targets.
pub fn parse_client_message(text: &str) -> Result<ClientMessage, Value> {
    let v: Value = match serde_json::from_str(text.trim()) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return Err(invalid_msg("INVALID_MESSAGE", "expected a JSON object")),
        Err(e) => return Err(invalid_msg("INVALID_JSON", e.to_string())),
    };
    match v.get("cmd").and_then(Value::as_str) {
        Some("ping") => Ok(ClientMessage::Ping),
        Some("event_ack") => ack_ids(&v).map(ClientMessage::Ack),
        Some("remote_control_req") => {
            let req_id = v.get("req_id").cloned().unwrap_or(Value::Null);
            let Some(did) = v.get("did").and_then(Value::as_str).map(str::to_owned) else {
                return Err(invalid_msg(
                    "INVALID_MESSAGE",
                    "`remote_control_req` needs `did`",
                ));
            };
            let req: CommandRequest = serde_json::from_value(json!({
                "set": v.get("set"),
                "action": v.get("action"),
            }))
            .map_err(|e| invalid_msg("INVALID_MESSAGE", e.to_string()))?;
            Ok(ClientMessage::Control { req_id, did, req })
        }
        Some("login_req") => Err(invalid_msg(
            "ALREADY_LOGGED_IN",
            "this connection is logged in",
        )),
        Some(other) => Err(invalid_msg(
            "UNKNOWN_CMD",
            format!(
                "unknown cmd `{}` (expected event_ack, ping or remote_control_req)",
                other.chars().take(40).collect::<String>()
            ),
        )),
        None => Err(invalid_msg("INVALID_MESSAGE", "missing `cmd`")),
    }
}

/// Answer one client message (`None`: nothing to answer now).
fn handle(
    core: &Core,
    key: &KeySession,
    consumer: &mut Consumer,
    text: &str,
    commands: &mut usize,
    done: &mpsc::Sender<Value>,
) -> Option<Value> {
    match parse_client_message(text) {
        Err(answer) => Some(answer),
        Ok(ClientMessage::Ping) => Some(json!({"cmd": "pong"})),
        Ok(ClientMessage::Ack(ids)) => ack(consumer, ids),
        Ok(ClientMessage::Control { req_id, did, req }) => {
            if *commands >= MAX_COMMANDS {
                return Some(control_res(
                    &req_id,
                    &did,
                    Err(Error::new(
                        crate::error::ErrorCode::TooManyCommands,
                        format!("at most {MAX_COMMANDS} commands may wait on one connection"),
                    )),
                ));
            }
            *commands += 1;
            let (core, key, done) = (core.clone(), key.clone(), done.clone());
            tokio::spawn(async move {
                let res = command(&core, &key, &did, req).await;
                let _ = done.send(control_res(&req_id, &did, res)).await;
            });
            None
        }
    }
}

/// The ids of an `event_ack`: `delivery_id` (one) or `delivery_ids` (1 to 32,767).
fn ack_ids(v: &Value) -> Result<Vec<i64>, Value> {
    match (v.get("delivery_id"), v.get("delivery_ids")) {
        (Some(id), None) => match id.as_i64() {
            Some(id) => Ok(vec![id]),
            None => Err(invalid_msg(
                "INVALID_MESSAGE",
                "`delivery_id` must be an integer",
            )),
        },
        (None, Some(Value::Array(a))) if !a.is_empty() && a.len() <= 32767 => a
            .iter()
            .map(Value::as_i64)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| invalid_msg("INVALID_MESSAGE", "`delivery_ids` must be integers")),
        _ => Err(invalid_msg(
            "INVALID_MESSAGE",
            "`event_ack` needs `delivery_id` or a non-empty `delivery_ids`",
        )),
    }
}

/// Acknowledge `ids`; answers only when some are not this connection's.
fn ack(consumer: &mut Consumer, ids: Vec<i64>) -> Option<Value> {
    let unknown: Vec<i64> = ids
        .into_iter()
        .filter(|id| consumer.ack(*id).is_err())
        .collect();
    if unknown.is_empty() {
        None
    } else {
        Some(json!({
            "cmd": "invalid_msg",
            "code": "UNKNOWN_DELIVERY",
            "message": "no unacknowledged event with this delivery_id on this connection",
            "delivery_ids": unknown,
        }))
    }
}

/// A command, authorised and validated exactly like `POST /v1/enterprise/devices/{did}/commands`.
async fn command(
    core: &Core,
    key: &KeySession,
    did: &str,
    req: CommandRequest,
) -> Result<Value, Error> {
    let did = rampart_proto::ids::Did::parse(did).map_err(|_| Error::not_found("device"))?;
    core.authorize_key_device(key, did.as_str(), Scope::Control)
        .await?;
    let outcome = core
        .send_command(did.as_str(), req, &key.actor(), Some(key.source_ip.clone()))
        .await?;
    Ok(match outcome {
        rampart_core::device::runtime::CommandOutcome::Acked(ack) => json!({"ack": ack}),
        rampart_core::device::runtime::CommandOutcome::Queued { id } => {
            json!({"ack": {"id": id, "status": "queued"}})
        }
        rampart_core::device::runtime::CommandOutcome::Desired { version } => {
            json!({"ack": {"status": "desired", "version": version}})
        }
    })
}

fn control_res(req_id: &Value, did: &str, res: Result<Value, Error>) -> Value {
    match res {
        Ok(mut v) => {
            v["cmd"] = json!("remote_control_res");
            v["req_id"] = req_id.clone();
            v["did"] = json!(did);
            v["result"] = json!(true);
            v
        }
        Err(e) => json!({
            "cmd": "remote_control_res",
            "req_id": req_id,
            "did": did,
            "result": false,
            "code": e.code,
            "message": e.message,
        }),
    }
}

// ---- the WebSocket transport ----

/// The WebSocket query: `products` and `events` are comma-separated.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct WsQuery {
    /// comma-separated product keys of the key's enterprise
    products: String,
    /// comma-separated event kinds; empty: all
    #[serde(default)]
    #[param(required = false)]
    events: String,
    /// the subscription group: 1-32 of A-Z a-z 0-9 _
    subkey: String,
    /// most unacknowledged events at once
    #[serde(default)]
    #[param(value_type = i64, minimum = 1, maximum = 32767, default = 50)]
    prefetch: Option<i64>,
}

crate::errors!(EventsErrors: InvalidAuthorization, StaleTimestamp, SignatureMismatch, KeyDisabled,
    KeyExpired, EnterpriseSuspended, IpNotAllowed, NonceReused, PayloadTooLarge, InvalidRequest,
    Forbidden, NotFound, UpgradeRequired, Internal);

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `GET /v1/enterprise/events`: a WebSocket upgrade signed with an access key.
#[utoipa::path(get, path = "/v1/enterprise/events", tag = "enterprise api",
    summary = "The operator event stream (WebSocket, scope `read`)",
    description = "Upgrades to a WebSocket carrying the event stream's JSON messages (see \
        docs/enterprise-api.md): first `login_res`, then `event_push` messages to acknowledge with \
        `event_ack`; `ping`, `remote_control_req` (scope `control`). The same stream is served as \
        JSON lines on the TLS socket (`events.listen`, default port 2017). `products` and \
        `subkey` are required.",
    params(WsQuery),
    responses((status = 101, description = "switching to the WebSocket"), EventsErrors),
    security(("access_key" = [])))]
pub(crate) async fn ws(
    State(s): State<AppState>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    k: EnterpriseKey,
) -> Result<Response, Error> {
    let q: WsQuery = k.query()?;
    let login = LoginFields {
        products: split_list(&q.products),
        events: split_list(&q.events),
        subkey: q.subkey,
        prefetch: q.prefetch,
    };
    let sub = login.subscription()?;
    let upgrade =
        upgrade.map_err(|e| Error::new(crate::error::ErrorCode::UpgradeRequired, e.body_text()))?;
    let key = k.key;
    let consumer = s.core.open_event_stream(&key, sub.clone()).await?;
    let hello = login_ok(&sub.products, &sub.subkey, &sub.kinds, sub.prefetch);
    let core = s.core.clone();
    Ok(upgrade
        .max_message_size(MAX_LINE)
        .on_upgrade(move |socket| async move {
            let (mut sink, mut stream) = socket.split();
            if sink
                .send(Message::Text(hello.to_string().into()))
                .await
                .is_err()
            {
                return;
            }
            let (tx, rx) = mpsc::channel(16);
            let reader = tokio::spawn(async move {
                while let Some(Ok(m)) = stream.next().await {
                    let item = match m {
                        Message::Text(t) => Incoming::Text(t.to_string()),
                        Message::Binary(_) => Incoming::Unreadable("expected a text message"),
                        Message::Close(_) => break,
                        _ => continue,
                    };
                    if tx.send(item).await.is_err() {
                        break;
                    }
                }
            });
            run_session(
                core,
                key,
                consumer,
                rx,
                Outgoing::Ws(sink),
                std::future::pending(),
            )
            .await;
            reader.abort();
        })
        .into_response())
}
