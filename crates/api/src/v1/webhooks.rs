//! Webhooks of the operator event stream over signed enterprise requests:
//! `/v1/enterprise/webhooks` (create, list, get, delete, disable, enable) and their dead letters
//! (list, redrive, delete). Each handler's `#[utoipa::path]` and answer types make its part of
//! the OpenAPI document.
//!
//! No rule lives here: scopes, which webhooks a key sees, URL checks and delivery are
//! `rampart_core::stream::webhooks`'s; this module only maps them to HTTP.

use super::schemas::{Deleted, Millis, Page, PageParams, Sorted};
use crate::extract::EnterpriseKey;
use crate::openapi::ApiRouter;
use crate::v1::PageQuery;
use crate::{AppState, Error};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rampart_core::stream::webhooks::{LetterAct, NewWebhook};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::routes;

pub(crate) fn routes() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(one_hook, remove))
        .routes(routes!(disable))
        .routes(routes!(enable))
        .routes(routes!(letters, delete_letters))
        .routes(routes!(redrive_letters))
        .routes(routes!(delete_letter))
        .routes(routes!(redrive_letter))
}

// A webhook the key does not see (another enterprise's, or with a product the key does not
// name) answers 404 like an unknown one; reading needs `read`, changing needs `control` (403).
crate::signed_errors!(HookErrors: Forbidden, NotFound);
crate::signed_errors!(CreateErrors: InvalidJson, InvalidRequest, WebhookUrlRefused, Forbidden,
    Conflict, NotFound);
crate::signed_errors!(PagedErrors: InvalidRequest, Forbidden, NotFound);

// ---- the bodies and answers ----

/// A new webhook.
// The handler reads `rampart_core::stream::webhooks::NewWebhook`; a test holds the two together.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewWebhook, example = json!({"url": "https://hooks.maker.example/rampart",
    "products": ["pk_1a2b3c"], "events": ["device_online", "device_offline"]}))]
#[allow(dead_code)] // read only by the test that holds it to `NewWebhook`
pub(crate) struct NewWebhookBody {
    #[schema(format = "uri", max_length = 2048)]
    url: String,
    products: Vec<String>,
    /// event kinds; empty or absent: all
    #[serde(default)]
    events: Vec<String>,
}

/// A webhook (never its secret).
#[derive(Serialize, ToSchema)]
#[schema(as = Webhook, example = json!({"webhook_id": "rwh_7d2k9m", "url": "https://hooks.maker.example/rampart",
    "products": ["pk_1a2b3c"], "events": [], "disabled": false, "created_by": "rak_3f9k2m7q",
    "created_at": 1765000000000_i64}))]
pub(crate) struct WebhookView {
    webhook_id: String,
    url: String,
    products: Vec<String>,
    events: Vec<String>,
    disabled: bool,
    /// the access key that created it
    created_by: String,
    #[schema(value_type = Millis)]
    created_at: i64,
}

impl From<rampart_core::stream::webhooks::WebhookView> for WebhookView {
    fn from(w: rampart_core::stream::webhooks::WebhookView) -> WebhookView {
        WebhookView {
            webhook_id: w.webhook_id,
            url: w.url,
            products: w.products,
            events: w.events,
            disabled: w.disabled,
            created_by: w.created_by,
            created_at: w.created_at,
        }
    }
}

/// A new webhook and its signing secret, shown only here.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"webhook_id": "rwh_7d2k9m", "url": "https://hooks.maker.example/rampart",
    "products": ["pk_1a2b3c"], "events": [], "disabled": false, "created_by": "rak_3f9k2m7q",
    "created_at": 1765000000000_i64,
    "secret": "rwhs_0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"}))]
pub(crate) struct CreatedWebhook {
    webhook_id: String,
    url: String,
    products: Vec<String>,
    events: Vec<String>,
    disabled: bool,
    /// the access key that created it
    created_by: String,
    #[schema(value_type = Millis)]
    created_at: i64,
    /// `rwhs_` and 64 hex digits: the HMAC key of the signatures; never shown again
    secret: String,
}

impl From<rampart_core::stream::webhooks::CreatedWebhook> for CreatedWebhook {
    fn from(c: rampart_core::stream::webhooks::CreatedWebhook) -> CreatedWebhook {
        let w = c.webhook;
        CreatedWebhook {
            webhook_id: w.webhook_id,
            url: w.url,
            products: w.products,
            events: w.events,
            disabled: w.disabled,
            created_by: w.created_by,
            created_at: w.created_at,
            secret: c.secret,
        }
    }
}

/// An event a webhook failed to deliver.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": 1, "webhook_id": "rwh_7d2k9m", "delivery_id": 42,
    "product_key": "pk_1a2b3c", "did": "d_0001", "event_type": "device_online",
    "ts": 1765000000000_i64, "data": {}, "attempts": 8, "last_status": 503,
    "last_error": "503 Service Unavailable", "failed_at": 1765000600000_i64}))]
pub(crate) struct DeadLetter {
    id: i64,
    webhook_id: String,
    /// the delivery id the event last had
    delivery_id: i64,
    product_key: String,
    did: String,
    event_type: String,
    #[schema(value_type = Millis)]
    ts: i64,
    #[schema(value_type = Object)]
    data: Value,
    attempts: i64,
    /// the endpoint's last HTTP status; null when it never answered
    #[schema(required = true)]
    last_status: Option<i64>,
    last_error: String,
    #[schema(value_type = Millis)]
    failed_at: i64,
}

impl From<rampart_core::stream::webhooks::DeadLetterView> for DeadLetter {
    fn from(d: rampart_core::stream::webhooks::DeadLetterView) -> DeadLetter {
        DeadLetter {
            id: d.id,
            webhook_id: d.webhook_id,
            delivery_id: d.delivery_id,
            product_key: d.product_key,
            did: d.did,
            event_type: d.event_type,
            ts: d.ts,
            data: d.data,
            attempts: d.attempts,
            last_status: d.last_status,
            last_error: d.last_error,
            failed_at: d.failed_at,
        }
    }
}

// The fields of this answer and of the two below are in the order they have always been sent in
// (keys sorted).

/// A webhook deleted.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"webhook_id": "rwh_7d2k9m", "status": "deleted"}))]
pub(crate) struct WebhookDeleted {
    status: Deleted,
    webhook_id: String,
}

/// How many dead letters were deleted.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"webhook_id": "rwh_7d2k9m", "deleted": 3}))]
pub(crate) struct LettersDeleted {
    #[schema(value_type = i64)]
    deleted: u64,
    webhook_id: String,
}

/// How many dead letters were queued again.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"webhook_id": "rwh_7d2k9m", "redriven": 3}))]
pub(crate) struct LettersRedriven {
    #[schema(value_type = i64)]
    redriven: u64,
    webhook_id: String,
}

// ---- the handlers ----

/// A dead letter's id from the path; anything but a positive integer is an unknown one.
fn letter_id(s: &str) -> Result<i64, Error> {
    s.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| Error::not_found("dead letter"))
}

#[utoipa::path(post, path = "/v1/enterprise/webhooks", tag = "enterprise api",
    summary = "Create a webhook (scope `control`)",
    description = "Events of the named products (of the kinds named, as for a stream login; none: \
        all) are POSTed to `url`, signed with the returned secret, shown only here. Audited \
        (`webhook.create`). The body is read as signed: no `Content-Type` is required.",
    request_body = NewWebhookBody,
    responses((status = 201, description = "the webhook and its secret", body = CreatedWebhook),
        CreateErrors),
    security(("access_key" = [])))]
async fn create(State(s): State<AppState>, k: EnterpriseKey) -> Result<Response, Error> {
    let w: NewWebhook = k.json()?;
    let created = s.core.create_webhook(&k.key, w).await?;
    Ok((StatusCode::CREATED, Json(CreatedWebhook::from(created))).into_response())
}

#[utoipa::path(get, path = "/v1/enterprise/webhooks", tag = "enterprise api",
    summary = "The webhooks the key sees (scope `read`)", params(PageParams),
    responses((status = 200, description = "a page of webhooks", body = Page<WebhookView>),
        PagedErrors),
    security(("access_key" = [])))]
async fn list(
    State(s): State<AppState>,
    k: EnterpriseKey,
) -> Result<Sorted<Page<WebhookView>>, Error> {
    let (page, limit) = k.query::<PageQuery>()?.resolve()?;
    let (rows, total) = s
        .core
        .list_webhooks(&k.key, (page - 1) * limit, limit)
        .await?;
    let rows = rows.into_iter().map(WebhookView::from).collect();
    Ok(Sorted(Page::of(rows, page, limit, total)))
}

#[utoipa::path(get, path = "/v1/enterprise/webhooks/{webhook_id}", tag = "enterprise api",
    summary = "A webhook (scope `read`)",
    responses((status = 200, description = "the webhook", body = WebhookView), HookErrors),
    security(("access_key" = [])))]
async fn one_hook(
    State(s): State<AppState>,
    Path(id): Path<String>,
    k: EnterpriseKey,
) -> Result<Json<WebhookView>, Error> {
    Ok(Json(WebhookView::from(
        s.core.get_webhook(&k.key, &id).await?,
    )))
}

#[utoipa::path(delete, path = "/v1/enterprise/webhooks/{webhook_id}", tag = "enterprise api",
    summary = "Delete a webhook with its queued events and dead letters (scope `control`)",
    description = "Audited (`webhook.delete`).",
    responses((status = 200, description = "deleted", body = WebhookDeleted), HookErrors),
    security(("access_key" = [])))]
async fn remove(
    State(s): State<AppState>,
    Path(id): Path<String>,
    k: EnterpriseKey,
) -> Result<Json<WebhookDeleted>, Error> {
    s.core.delete_webhook(&k.key, &id).await?;
    Ok(Json(WebhookDeleted {
        status: Deleted::Deleted,
        webhook_id: id,
    }))
}

/// Disable (`on`) or enable.
async fn toggle(
    s: &AppState,
    id: &str,
    k: &EnterpriseKey,
    on: bool,
) -> Result<Json<WebhookView>, Error> {
    let w = s.core.set_webhook_disabled(&k.key, id, on).await?;
    Ok(Json(WebhookView::from(w)))
}

#[utoipa::path(post, path = "/v1/enterprise/webhooks/{webhook_id}/disable",
    tag = "enterprise api", summary = "Pause a webhook (scope `control`)",
    description = "Audited (`webhook.disable`). Its events stay queued (within \
        `events.retention_secs`) and are delivered once it is enabled.",
    responses((status = 200, description = "the webhook", body = WebhookView), HookErrors),
    security(("access_key" = [])))]
async fn disable(
    State(s): State<AppState>,
    Path(id): Path<String>,
    k: EnterpriseKey,
) -> Result<Json<WebhookView>, Error> {
    toggle(&s, &id, &k, true).await
}

#[utoipa::path(post, path = "/v1/enterprise/webhooks/{webhook_id}/enable",
    tag = "enterprise api", summary = "Resume a webhook (scope `control`)",
    description = "Audited (`webhook.enable`).",
    responses((status = 200, description = "the webhook", body = WebhookView), HookErrors),
    security(("access_key" = [])))]
async fn enable(
    State(s): State<AppState>,
    Path(id): Path<String>,
    k: EnterpriseKey,
) -> Result<Json<WebhookView>, Error> {
    toggle(&s, &id, &k, false).await
}

#[utoipa::path(get, path = "/v1/enterprise/webhooks/{webhook_id}/dead-letters",
    tag = "enterprise api", summary = "A webhook's dead letters, oldest first (scope `read`)",
    params(PageParams),
    responses((status = 200, description = "a page of dead letters", body = Page<DeadLetter>),
        PagedErrors),
    security(("access_key" = [])))]
async fn letters(
    State(s): State<AppState>,
    Path(id): Path<String>,
    k: EnterpriseKey,
) -> Result<Sorted<Page<DeadLetter>>, Error> {
    let (page, limit) = k.query::<PageQuery>()?.resolve()?;
    let (rows, total) = s
        .core
        .list_dead_letters(&k.key, &id, (page - 1) * limit, limit)
        .await?;
    let rows = rows.into_iter().map(DeadLetter::from).collect();
    Ok(Sorted(Page::of(rows, page, limit, total)))
}

/// Redrive or delete dead letters: the one named by `letter`, or all; how many.
async fn act(
    s: &AppState,
    id: &str,
    letter: Option<&str>,
    k: &EnterpriseKey,
    act: LetterAct,
) -> Result<u64, Error> {
    let letter = letter.map(letter_id).transpose()?;
    Ok(s.core.act_on_dead_letters(&k.key, id, letter, act).await?)
}

#[utoipa::path(delete, path = "/v1/enterprise/webhooks/{webhook_id}/dead-letters",
    tag = "enterprise api", summary = "Delete all of a webhook's dead letters (scope `control`)",
    description = "Audited (`webhook.dead_letters_delete`).",
    responses((status = 200, description = "how many were deleted", body = LettersDeleted),
        HookErrors),
    security(("access_key" = [])))]
async fn delete_letters(
    State(s): State<AppState>,
    Path(id): Path<String>,
    k: EnterpriseKey,
) -> Result<Json<LettersDeleted>, Error> {
    let deleted = act(&s, &id, None, &k, LetterAct::Delete).await?;
    Ok(Json(LettersDeleted {
        deleted,
        webhook_id: id,
    }))
}

#[utoipa::path(post, path = "/v1/enterprise/webhooks/{webhook_id}/dead-letters/redrive",
    tag = "enterprise api",
    summary = "Queue all of a webhook's dead letters again (scope `control`)",
    description = "They are delivered after what is queued already, in their order, with new \
        `delivery_id`s. Audited (`webhook.redrive`).",
    responses((status = 200, description = "how many were queued", body = LettersRedriven),
        HookErrors),
    security(("access_key" = [])))]
async fn redrive_letters(
    State(s): State<AppState>,
    Path(id): Path<String>,
    k: EnterpriseKey,
) -> Result<Json<LettersRedriven>, Error> {
    let redriven = act(&s, &id, None, &k, LetterAct::Redrive).await?;
    Ok(Json(LettersRedriven {
        redriven,
        webhook_id: id,
    }))
}

#[utoipa::path(delete, path = "/v1/enterprise/webhooks/{webhook_id}/dead-letters/{letter_id}",
    tag = "enterprise api", summary = "Delete one dead letter (scope `control`)",
    description = "Audited (`webhook.dead_letters_delete`).",
    responses((status = 200, description = "deleted", body = LettersDeleted), HookErrors),
    security(("access_key" = [])))]
async fn delete_letter(
    State(s): State<AppState>,
    Path((id, letter)): Path<(String, String)>,
    k: EnterpriseKey,
) -> Result<Json<LettersDeleted>, Error> {
    let deleted = act(&s, &id, Some(&letter), &k, LetterAct::Delete).await?;
    Ok(Json(LettersDeleted {
        deleted,
        webhook_id: id,
    }))
}

#[utoipa::path(post,
    path = "/v1/enterprise/webhooks/{webhook_id}/dead-letters/{letter_id}/redrive",
    tag = "enterprise api", summary = "Queue one dead letter again (scope `control`)",
    description = "Audited (`webhook.redrive`).",
    responses((status = 200, description = "queued", body = LettersRedriven), HookErrors),
    security(("access_key" = [])))]
async fn redrive_letter(
    State(s): State<AppState>,
    Path((id, letter)): Path<(String, String)>,
    k: EnterpriseKey,
) -> Result<Json<LettersRedriven>, Error> {
    let redriven = act(&s, &id, Some(&letter), &k, LetterAct::Redrive).await?;
    Ok(Json(LettersRedriven {
        redriven,
        webhook_id: id,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::schemas::assert_sent_as;
    use rampart_core::stream::webhooks as core;
    use utoipa::PartialSchema;

    /// Webhooks and dead letters are sent as the core's values were.
    #[test]
    fn the_views_are_sent_as_the_core_s() {
        let hook = || core::WebhookView {
            webhook_id: "rwh_1".into(),
            url: "https://hooks.maker.example/r".into(),
            products: vec!["pk_1".into()],
            events: vec!["device_online".into()],
            disabled: false,
            created_by: "rak_1".into(),
            created_at: 1765000000000,
        };
        assert_sent_as(&hook(), &WebhookView::from(hook()));
        let created = || core::CreatedWebhook {
            webhook: hook(),
            secret: "rwhs_00".into(),
        };
        assert_sent_as(&created(), &CreatedWebhook::from(created()));
        let letter = |last_status| core::DeadLetterView {
            id: 1,
            webhook_id: "rwh_1".into(),
            delivery_id: 42,
            product_key: "pk_1".into(),
            did: "d_1".into(),
            event_type: "device_online".into(),
            ts: 1765000000000,
            data: serde_json::json!({"online": true}),
            attempts: 8,
            last_status,
            last_error: "timeout".into(),
            failed_at: 1765000600000,
        };
        for status in [Some(503), None] {
            assert_sent_as(&letter(status), &DeadLetter::from(letter(status)));
        }
    }

    /// The documented body is what the handler reads: its example, which names every field,
    /// parses as the core's `NewWebhook`.
    #[test]
    fn the_documented_new_webhook_is_what_the_handler_reads() {
        let schema = serde_json::to_value(NewWebhookBody::schema()).unwrap();
        let example = schema["example"].clone();
        for n in schema["properties"].as_object().unwrap().keys() {
            assert!(example.get(n).is_some(), "the example lacks {n}");
        }
        serde_json::from_value::<NewWebhookBody>(example.clone()).unwrap();
        let w: NewWebhook = serde_json::from_value(example).unwrap();
        assert_eq!(w.events.len(), 2);
    }

    /// The typed answers are sent as the JSON they replaced, byte for byte (keys sorted).
    #[test]
    fn counted_answers_keep_their_bytes() {
        let id = || "rwh_1".to_owned();
        let deleted = WebhookDeleted {
            status: Deleted::Deleted,
            webhook_id: id(),
        };
        let letters = LettersDeleted {
            deleted: 2,
            webhook_id: id(),
        };
        let redriven = LettersRedriven {
            redriven: 3,
            webhook_id: id(),
        };
        for (typed, was) in [
            (
                serde_json::to_string(&deleted),
                serde_json::json!({"webhook_id": id(), "status": "deleted"}),
            ),
            (
                serde_json::to_string(&letters),
                serde_json::json!({"webhook_id": id(), "deleted": 2}),
            ),
            (
                serde_json::to_string(&redriven),
                serde_json::json!({"webhook_id": id(), "redriven": 3}),
            ),
        ] {
            assert_eq!(typed.unwrap(), was.to_string());
        }
    }
}
