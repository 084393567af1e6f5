//! Third-party client management by its owner: register, list, read, update, rotate the
//! secret of and delete OAuth2 clients (the operator: every client; a developer: their own).
//!
//! [`ClientOwner`] is the one owner check; what an owner may change is `rampart_core::federation::oauth`'s.
//! Each handler's `#[utoipa::path]` and answer types make its part of the OpenAPI document.

use crate::extract::{client_ip, Body, Manager, Q};
use crate::v1::schemas::{string_enum, Millis, Page, PageParams, Sorted};
use crate::v1::{page_of, PageQuery};
use crate::{AppState, ClientAddr, Error};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use rampart_core::federation::oauth::{ClientManager, ClientUpdate, NewClient};
use serde::Serialize;
use utoipa::ToSchema;

type Addr = Option<Extension<ClientAddr>>;

// ---- the answers and bodies ----

string_enum!(
    /// A scope a third party may ask for.
    OAuthScope,
    "OAuthScope",
    ["devices:read", "devices:control", "devices:admin"]
);

string_enum!(
    /// How a client authenticates at `/oauth/token`: a confidential client by its secret, a
    /// public one by PKCE alone.
    TokenEndpointAuthMethod,
    "TokenEndpointAuthMethod",
    ["client_secret_basic", "none"]
);

/// `rampart_core::federation::oauth::NewClient`: a third-party client to register.
// Deserialize only for the test that holds it to the core's `NewClient`.
#[derive(serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewOAuthClient, example = json!({"name": "Home dashboard",
    "redirect_uris": ["https://dash.example.com/callback"], "scopes": ["devices:read"], "public": false}))]
#[allow(dead_code)] // only described: the handler reads the core's `NewClient`
pub(crate) struct NewClientSchema {
    name: String,
    redirect_uris: Vec<String>,
    #[schema(value_type = Vec<OAuthScope>)]
    scopes: Vec<String>,
    /// a public client: no secret, PKCE alone (`token_endpoint_auth_method: none`)
    #[serde(default)]
    #[schema(required = false, default = false)]
    public: bool,
}

/// `rampart_core::federation::oauth::ClientUpdate`: the fields given replace the old ones.
// Deserialize only for the test that holds it to the core's `ClientUpdate`.
#[derive(serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = OAuthClientUpdate, example = json!({"name": "Home dashboard 2",
    "redirect_uris": ["https://dash.example.com/callback"]}))]
#[allow(dead_code)] // only described: the handler reads the core's `ClientUpdate`
pub(crate) struct ClientUpdateSchema {
    #[serde(default)]
    #[schema(required = false)]
    name: String,
    #[serde(default)]
    #[schema(required = false)]
    redirect_uris: Vec<String>,
}

/// `rampart_core::federation::oauth::CreatedClient`: a registered client; a confidential
/// client's secret is shown this once.
#[derive(ToSchema)]
#[schema(as = OAuthClient, example = created_client)]
#[allow(dead_code)] // only described: the handler answers the core's `CreatedClient`
pub(crate) struct CreatedClientSchema {
    client_id: String,
    /// confidential clients only; shown once
    #[schema(required = false)]
    client_secret: String,
    name: String,
    redirect_uris: Vec<String>,
    scopes: Vec<String>,
    public: bool,
    token_endpoint_auth_method: TokenEndpointAuthMethod,
}

fn created_client() -> rampart_core::federation::oauth::CreatedClient {
    rampart_core::federation::oauth::CreatedClient {
        client_id: "rcl_9d1e".into(),
        client_secret: Some("rcs_0f3a...".into()),
        name: "Home dashboard".into(),
        redirect_uris: vec!["https://dash.example.com/callback".into()],
        scopes: vec!["devices:read".into()],
        public: false,
        token_endpoint_auth_method: "client_secret_basic",
    }
}

/// `rampart_core::federation::oauth::ClientView`: a client as its owner sees it (never its
/// secret).
#[derive(ToSchema)]
#[schema(as = OAuthClientView, example = client_view)]
#[allow(dead_code)] // only described: the handlers answer the core's `ClientView`
pub(crate) struct ClientViewSchema {
    client_id: String,
    name: String,
    redirect_uris: Vec<String>,
    scopes: Vec<String>,
    public: bool,
    token_endpoint_auth_method: TokenEndpointAuthMethod,
    /// who registered it: `admin:bootstrap` or `developer:DEVELOPER_ID`
    owner: String,
    #[schema(value_type = Millis)]
    created_at: i64,
    /// the last change of name, redirect URIs or secret; null when never changed
    #[schema(required = true)]
    updated_at: Option<Millis>,
}

fn client_view() -> rampart_core::federation::oauth::ClientView {
    rampart_core::federation::oauth::ClientView {
        client_id: "rcl_9d1e".into(),
        name: "Home dashboard".into(),
        redirect_uris: vec!["https://dash.example.com/callback".into()],
        scopes: vec!["devices:read".into()],
        public: false,
        token_endpoint_auth_method: "client_secret_basic",
        owner: "developer:dev_4k2p".into(),
        created_at: 1765000000000,
        updated_at: Some(1765000600000),
    }
}

/// `rampart_core::federation::oauth::RotatedSecret`: a confidential client's new secret,
/// shown once.
#[derive(ToSchema)]
#[schema(as = RotatedClientSecret, example = json!({"client_id": "rcl_9d1e", "client_secret": "rcs_77b0..."}))]
#[allow(dead_code)] // only described: the handler answers the core's `RotatedSecret`
pub(crate) struct RotatedSecretSchema {
    client_id: String,
    client_secret: String,
}

/// A deleted client, and how many grants ended with it.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"client_id": "rcl_9d1e", "grants_revoked": 2, "status": "deleted"}))]
pub(crate) struct ClientDeleted {
    client_id: String,
    #[schema(value_type = i64)]
    grants_revoked: u64,
    status: DeletedStatus,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DeletedStatus {
    Deleted,
}

crate::errors!(RegisterErrors: Unauthorized, InvalidJson, PayloadTooLarge, UnsupportedMediaType,
    InvalidRequest, Conflict, Internal);
crate::errors!(ListErrors: Unauthorized, InvalidRequest, Internal);
crate::errors!(ReadErrors: Unauthorized, NotFound, Internal);
crate::errors!(UpdateErrors: Unauthorized, InvalidJson, PayloadTooLarge, UnsupportedMediaType,
    InvalidRequest, NotFound, Internal);
crate::errors!(RotateErrors: Unauthorized, Conflict, NotFound, Internal);

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
                Manager::Operator(actor) => ClientManager {
                    actor,
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

#[utoipa::path(post, path = "/v1/oauth/clients", tag = "oauth",
    summary = "Register a third-party client",
    description = "By the operator or a developer (the client's owner). `public: true` registers a \
        public client: no secret, PKCE alone (`token_endpoint_auth_method: none`).",
    request_body = NewClientSchema,
    responses((status = 201, description = "the client; a confidential client's secret is shown once",
        body = CreatedClientSchema), RegisterErrors),
    security(("admin" = []), ("developer" = [])))]
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

#[utoipa::path(get, path = "/v1/oauth/clients", tag = "oauth",
    summary = "The clients the caller manages",
    description = "The operator sees every client, a developer the clients they registered.",
    params(PageParams),
    responses((status = 200, description = "a page of clients, oldest first",
        body = Page<ClientViewSchema>), ListErrors),
    security(("admin" = []), ("developer" = [])))]
pub(crate) async fn list_clients(
    State(s): State<AppState>,
    ClientOwner(by): ClientOwner,
    Q(q): Q<PageQuery>,
) -> Result<Sorted<Page<impl serde::Serialize>>, Error> {
    let (page, limit) = q.resolve()?;
    let (rows, total) = s
        .core
        .list_oauth_clients(&by, (page - 1) * limit, limit)
        .await?;
    Ok(page_of(rows, page, limit, total))
}

#[utoipa::path(get, path = "/v1/oauth/clients/{client_id}", tag = "oauth",
    summary = "One client the caller manages",
    responses((status = 200, description = "the client (never its secret)", body = ClientViewSchema),
        ReadErrors),
    security(("admin" = []), ("developer" = [])))]
pub(crate) async fn get_client(
    State(s): State<AppState>,
    ClientOwner(by): ClientOwner,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    Ok(Json(s.core.get_oauth_client(&by, &id).await?).into_response())
}

#[utoipa::path(patch, path = "/v1/oauth/clients/{client_id}", tag = "oauth",
    summary = "Change a client's name or redirect URIs", request_body = ClientUpdateSchema,
    responses((status = 200, description = "the changed client", body = ClientViewSchema),
        UpdateErrors),
    security(("admin" = []), ("developer" = [])))]
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

#[utoipa::path(post, path = "/v1/oauth/clients/{client_id}/secret/rotate", tag = "oauth",
    summary = "A new secret for a confidential client",
    description = "The old secret stops working at once; the new one is shown once.",
    responses((status = 200, description = "the new secret", body = RotatedSecretSchema),
        RotateErrors),
    security(("admin" = []), ("developer" = [])))]
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

#[utoipa::path(delete, path = "/v1/oauth/clients/{client_id}", tag = "oauth",
    summary = "Delete a client, its grants and tokens",
    responses((status = 200, description = "deleted; every token issued to it stops working",
        body = ClientDeleted), ReadErrors),
    security(("admin" = []), ("developer" = [])))]
pub(crate) async fn delete_client(
    State(s): State<AppState>,
    ClientOwner(by): ClientOwner,
    addr: Addr,
    Path(id): Path<String>,
) -> Result<Json<ClientDeleted>, Error> {
    let n = s
        .core
        .delete_oauth_client(&by, &id, client_ip(&addr))
        .await?;
    Ok(Json(ClientDeleted {
        client_id: id,
        grants_revoked: n,
        status: DeletedStatus::Deleted,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use utoipa::PartialSchema;

    /// The documented bodies are what the handlers read (the core's `NewClient` and
    /// `ClientUpdate`).
    #[test]
    fn the_documented_bodies_are_what_the_handlers_read() {
        let example = |s: utoipa::openapi::RefOr<utoipa::openapi::Schema>| {
            serde_json::to_value(s).unwrap()["example"].clone()
        };
        let new = example(NewClientSchema::schema());
        serde_json::from_value::<NewClientSchema>(new.clone()).unwrap();
        serde_json::from_value::<NewClient>(new).unwrap();
        let update = example(ClientUpdateSchema::schema());
        serde_json::from_value::<ClientUpdateSchema>(update.clone()).unwrap();
        serde_json::from_value::<ClientUpdate>(update).unwrap();
    }

    #[test]
    fn the_deletion_answer_keeps_its_bytes() {
        let typed = ClientDeleted {
            client_id: "c".into(),
            grants_revoked: 2,
            status: DeletedStatus::Deleted,
        };
        assert_eq!(
            serde_json::to_string(&typed).unwrap(),
            json!({"client_id": "c", "status": "deleted", "grants_revoked": 2}).to_string()
        );
    }
}
