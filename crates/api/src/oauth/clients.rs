//! Third-party client management by its owner: register, list, read, update, rotate the
//! secret of and delete OAuth2 clients (the operator: every client; a developer: their own).
//!
//! [`ClientOwner`] is the one owner check; what an owner may change is `rampart_core::federation::oauth`'s.

use crate::extract::{client_ip, Body, Manager, Q};
use crate::v1::{page_of, PageQuery};
use crate::{AppState, ClientAddr, Error};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use rampart_core::audit::Actor;
use rampart_core::federation::oauth::{ClientManager, ClientUpdate, NewClient};
use serde_json::{json, Value};

type Addr = Option<Extension<ClientAddr>>;

/// Who may register and manage third-party clients: the operator (admin token: every client) or
/// a developer (`rdt_` token: the clients they registered). This is the one owner check.
pub(crate) struct ClientOwner(ClientManager);

impl axum::extract::FromRequestParts<AppState> for ClientOwner {
    type Rejection = Error;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<ClientOwner, Error> {
        Ok(ClientOwner(
            match Manager::from_request_parts(parts, state).await? {
                Manager::Operator => ClientManager {
                    actor: Actor::admin(),
                    operator: true,
                },
                Manager::Developer(d) => ClientManager {
                    actor: d.actor(),
                    operator: false,
                },
            },
        ))
    }
}

pub(crate) async fn register_client(
    State(s): State<AppState>,
    ClientOwner(by): ClientOwner,
    addr: Addr,
    Body(b): Body<NewClient>,
) -> Result<Response, Error> {
    let c = s
        .core
        .register_oauth_client(b, &by, client_ip(&addr))
        .await?;
    Ok((StatusCode::CREATED, Json(c)).into_response())
}

pub(crate) async fn list_clients(
    State(s): State<AppState>,
    ClientOwner(by): ClientOwner,
    Q(q): Q<PageQuery>,
) -> Result<Json<Value>, Error> {
    let (page, limit) = q.resolve()?;
    let (rows, total) = s
        .core
        .list_oauth_clients(&by, (page - 1) * limit, limit)
        .await?;
    Ok(page_of(rows, page, limit, total))
}

pub(crate) async fn get_client(
    State(s): State<AppState>,
    ClientOwner(by): ClientOwner,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    Ok(Json(s.core.get_oauth_client(&by, &id).await?).into_response())
}

pub(crate) async fn update_client(
    State(s): State<AppState>,
    ClientOwner(by): ClientOwner,
    addr: Addr,
    Path(id): Path<String>,
    Body(b): Body<ClientUpdate>,
) -> Result<Response, Error> {
    let c = s
        .core
        .update_oauth_client(&by, &id, b, client_ip(&addr))
        .await?;
    Ok(Json(c).into_response())
}

pub(crate) async fn rotate_client_secret(
    State(s): State<AppState>,
    ClientOwner(by): ClientOwner,
    addr: Addr,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let r = s
        .core
        .rotate_oauth_client_secret(&by, &id, client_ip(&addr))
        .await?;
    Ok(Json(r).into_response())
}

pub(crate) async fn delete_client(
    State(s): State<AppState>,
    ClientOwner(by): ClientOwner,
    addr: Addr,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    let n = s
        .core
        .delete_oauth_client(&by, &id, client_ip(&addr))
        .await?;
    Ok(Json(
        json!({"client_id": id, "status": "deleted", "grants_revoked": n}),
    ))
}
