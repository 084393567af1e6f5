//! Webhooks of the operator event stream over signed enterprise requests:
//! `/v1/enterprise/webhooks` (create, list, get, delete, disable, enable) and their dead letters
//! (list, redrive, delete).
//!
//! No rule lives here: scopes, which webhooks a key sees, URL checks and delivery are
//! `rampart_core::stream::webhooks`'s; this module only maps them to HTTP.

use crate::extract::EnterpriseKey;
use crate::openapi::ApiRouter;
use crate::v1::{page_of, PageQuery};
use crate::{AppState, Error};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Json;
use rampart_core::stream::webhooks::{LetterAct, NewWebhook};
use serde_json::{json, Value};

pub(crate) fn routes() -> ApiRouter {
    use LetterAct::{Delete, Redrive};
    let hook = "/v1/enterprise/webhooks/{webhook_id}";
    let all = "/v1/enterprise/webhooks/{webhook_id}/dead-letters";
    let one = "/v1/enterprise/webhooks/{webhook_id}/dead-letters/{letter_id}";
    ApiRouter::new()
        .described("/v1/enterprise/webhooks", post(create).get(list))
        .described(hook, get(one_hook).delete(remove))
        .described(
            "/v1/enterprise/webhooks/{webhook_id}/disable",
            post(|s: State<AppState>, p: Path<String>, k: EnterpriseKey| toggle(s, p, k, true)),
        )
        .described(
            "/v1/enterprise/webhooks/{webhook_id}/enable",
            post(|s: State<AppState>, p: Path<String>, k: EnterpriseKey| toggle(s, p, k, false)),
        )
        .described(
            all,
            get(letters).delete(
                |s: State<AppState>, Path(id): Path<String>, k: EnterpriseKey| {
                    act(s, id, None, k, Delete)
                },
            ),
        )
        .described(
            "/v1/enterprise/webhooks/{webhook_id}/dead-letters/redrive",
            post(
                |s: State<AppState>, Path(id): Path<String>, k: EnterpriseKey| {
                    act(s, id, None, k, Redrive)
                },
            ),
        )
        .described(
            one,
            delete(
                |s: State<AppState>, Path((id, l)): Path<(String, String)>, k: EnterpriseKey| {
                    act(s, id, Some(l), k, Delete)
                },
            ),
        )
        .described(
            "/v1/enterprise/webhooks/{webhook_id}/dead-letters/{letter_id}/redrive",
            post(
                |s: State<AppState>, Path((id, l)): Path<(String, String)>, k: EnterpriseKey| {
                    act(s, id, Some(l), k, Redrive)
                },
            ),
        )
}

/// A dead letter's id from the path; anything but a positive integer is an unknown one.
fn letter_id(s: &str) -> Result<i64, Error> {
    s.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| Error::not_found("dead letter"))
}

async fn create(State(s): State<AppState>, k: EnterpriseKey) -> Result<Response, Error> {
    let w: NewWebhook = k.json()?;
    let created = s.core.create_webhook(&k.key, w).await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn list(State(s): State<AppState>, k: EnterpriseKey) -> Result<Json<Value>, Error> {
    let (page, limit) = k.query::<PageQuery>()?.resolve()?;
    let (rows, total) = s
        .core
        .list_webhooks(&k.key, (page - 1) * limit, limit)
        .await?;
    Ok(page_of(rows, page, limit, total))
}

async fn one_hook(
    State(s): State<AppState>,
    Path(id): Path<String>,
    k: EnterpriseKey,
) -> Result<Response, Error> {
    Ok(Json(s.core.get_webhook(&k.key, &id).await?).into_response())
}

async fn remove(
    State(s): State<AppState>,
    Path(id): Path<String>,
    k: EnterpriseKey,
) -> Result<Json<Value>, Error> {
    s.core.delete_webhook(&k.key, &id).await?;
    Ok(Json(json!({"webhook_id": id, "status": "deleted"})))
}

/// Disable (`on`) or enable.
async fn toggle(
    State(s): State<AppState>,
    Path(id): Path<String>,
    k: EnterpriseKey,
    on: bool,
) -> Result<Response, Error> {
    Ok(Json(s.core.set_webhook_disabled(&k.key, &id, on).await?).into_response())
}

async fn letters(
    State(s): State<AppState>,
    Path(id): Path<String>,
    k: EnterpriseKey,
) -> Result<Json<Value>, Error> {
    let (page, limit) = k.query::<PageQuery>()?.resolve()?;
    let (rows, total) = s
        .core
        .list_dead_letters(&k.key, &id, (page - 1) * limit, limit)
        .await?;
    Ok(page_of(rows, page, limit, total))
}

/// Redrive or delete dead letters: the one named by `letter`, or all.
async fn act(
    State(s): State<AppState>,
    id: String,
    letter: Option<String>,
    k: EnterpriseKey,
    act: LetterAct,
) -> Result<Json<Value>, Error> {
    let letter = letter.as_deref().map(letter_id).transpose()?;
    let n = s.core.act_on_dead_letters(&k.key, &id, letter, act).await?;
    let what = match act {
        LetterAct::Redrive => "redriven",
        LetterAct::Delete => "deleted",
    };
    Ok(Json(json!({"webhook_id": id, what: n})))
}
