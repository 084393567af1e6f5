//! The service endpoints outside `/v1`: `GET /healthz` and `GET /metrics` (the API listener's,
//! with authentication, and the private metrics listener's, without).
//!
//! Nothing here touches a device or an account; it must never answer a secret.

use crate::extract::{Admin, EnterpriseKey};
use crate::openapi::ApiRouter;
use crate::{AppState, Error};
use axum::extract::{FromRequest, FromRequestParts, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::routes;

pub(crate) fn routes() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(metrics))
        .routes(routes!(readyz))
}

/// The store answers.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"status": "ok", "store": "postgres", "node": "node-3f9a12c0",
    "cluster": "connected"}))]
pub(crate) struct Healthy {
    status: HealthyStatus,
    /// the store's backend
    #[schema(value_type = StoreBackend)]
    store: &'static str,
    /// this node's name (`cluster.node_id`, or one made up at start)
    node: String,
    /// the cluster state: `off` (a single node), `connected` or `disconnected` (from NATS)
    cluster: ClusterState,
}

#[derive(Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ClusterState {
    Off,
    Connected,
    Disconnected,
}

fn cluster_state(s: &AppState) -> ClusterState {
    match s.core.cluster() {
        None => ClusterState::Off,
        Some(c) if c.connected() => ClusterState::Connected,
        Some(_) => ClusterState::Disconnected,
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum HealthyStatus {
    Ok,
}

/// The backends `rampart_store::Store::backend` names.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // only described
pub(crate) enum StoreBackend {
    Sqlite,
    Postgres,
}

/// The store does not answer.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"status": "unavailable"}))]
pub(crate) struct Unhealthy {
    status: UnhealthyStatus,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum UnhealthyStatus {
    Unavailable,
}

#[utoipa::path(get, path = "/healthz", tag = "service",
    summary = "Health of the server and its store",
    responses((status = 200, description = "the store answers", body = Healthy),
        (status = 503, description = "the store is unavailable", body = Unhealthy)))]
pub(crate) async fn healthz(State(s): State<AppState>) -> Response {
    match s.core.store_health().await {
        Ok(backend) => Json(Healthy {
            status: HealthyStatus::Ok,
            store: backend,
            node: s.core.node_id().to_owned(),
            cluster: cluster_state(&s),
        })
        .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health check: store unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(Unhealthy {
                    status: UnhealthyStatus::Unavailable,
                }),
            )
                .into_response()
        }
    }
}

/// Ready for traffic: what a load balancer or an orchestrator's readiness probe asks.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"status": "ready", "store": "postgres", "bus": "nats"}))]
pub(crate) struct Ready {
    status: ReadyStatus,
    /// the store's backend, which answered a query just now
    #[schema(value_type = StoreBackend)]
    store: &'static str,
    /// the device bus: `local` (one node, in process; nothing to reach) or `nats` (a cluster's
    /// node; NATS answered a round trip just now)
    bus: BusKind,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ReadyStatus {
    Ready,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum BusKind {
    Local,
    Nats,
}

/// Not ready, and which dependency is the reason.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"status": "unavailable", "bus": "unreachable"}))]
pub(crate) struct NotReady {
    status: UnhealthyStatus,
    /// present when the store did not answer
    #[serde(skip_serializing_if = "Option::is_none")]
    store: Option<Unreachable>,
    /// present when a cluster's NATS did not answer
    #[serde(skip_serializing_if = "Option::is_none")]
    bus: Option<Unreachable>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Unreachable {
    Unreachable,
}

/// Readiness: the store answers a query and the bus is up. `/healthz` says the process lives;
/// this says it can serve (an orchestrator stops sending traffic on a 503).
#[utoipa::path(get, path = "/readyz", tag = "service",
    summary = "Readiness of the server: its store and bus reachable",
    responses((status = 200, description = "ready for traffic", body = Ready),
        (status = 503, description = "a dependency is unreachable", body = NotReady)))]
pub(crate) async fn readyz(State(s): State<AppState>) -> Response {
    let store = s.core.store_health().await;
    if let Err(e) = &store {
        tracing::warn!(error = %e, "readiness: store unreachable");
    }
    // The bus is in process on a single node; a cluster's node needs its NATS.
    let bus = match s.core.cluster() {
        None => Ok(BusKind::Local),
        Some(c) => c.ping().await.map(|()| BusKind::Nats).map_err(|e| {
            tracing::warn!(error = %e, "readiness: NATS unreachable");
        }),
    };
    match (store, bus) {
        (Ok(backend), Ok(bus)) => Json(Ready {
            status: ReadyStatus::Ready,
            store: backend,
            bus,
        })
        .into_response(),
        (store, bus) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(NotReady {
                status: UnhealthyStatus::Unavailable,
                store: store.is_err().then_some(Unreachable::Unreachable),
                bus: bus.is_err().then_some(Unreachable::Unreachable),
            }),
        )
            .into_response(),
    }
}

crate::errors!(MetricsErrors: Unauthorized, InvalidAuthorization, StaleTimestamp,
    SignatureMismatch, KeyDisabled, KeyExpired, EnterpriseSuspended, IpNotAllowed, NonceReused,
    Forbidden, NotFound, PayloadTooLarge, Internal);

/// `/metrics` on the API listener: the admin token, or a request signed with an access key that
/// has the `metrics` scope. (The optional metrics listener serves it without either:
/// [`crate::metrics_router`].)
#[utoipa::path(get, path = "/metrics", tag = "service", summary = "Prometheus metrics",
    description = "The admin token, or a request signed with an access key that has the `metrics` \
        scope (which only the operator grants). `http.metrics_listen` serves the same text \
        without authentication on a separate, private listener.",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain",
        body = String), MetricsErrors),
    security(("admin" = []), ("access_key" = [])))]
async fn metrics(State(s): State<AppState>, req: axum::extract::Request) -> Response {
    let (mut parts, body) = req.into_parts();
    if crate::extract::bearer(&parts).is_some() {
        if let Err(e) = Admin::from_request_parts(&mut parts, &s).await {
            return e.into_response();
        }
    } else {
        let req = axum::extract::Request::from_parts(parts, body);
        let k = match EnterpriseKey::from_request(req, &s).await {
            Ok(k) => k,
            Err(refused) => return refused,
        };
        if let Err(e) = rampart_core::Core::require_scope(
            &k.key,
            rampart_core::access::access_keys::Scope::Metrics,
        ) {
            return Error::from(e).into_response();
        }
    }
    render_metrics(&s)
}

/// The metrics without any check, for the private metrics listener.
pub(crate) async fn open_metrics(State(s): State<AppState>) -> Response {
    render_metrics(&s)
}

fn render_metrics(s: &AppState) -> Response {
    match &s.metrics {
        Some(h) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            h.render(),
        )
            .into_response(),
        None => Error::not_found("metrics recorder").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The typed answers write the bytes the `json!` answers they replace wrote.
    #[test]
    fn health_answers_keep_their_bytes() {
        let up = Healthy {
            status: HealthyStatus::Ok,
            store: "sqlite",
            node: "n1".into(),
            cluster: ClusterState::Off,
        };
        assert_eq!(
            serde_json::to_value(&up).unwrap(),
            json!({"status": "ok", "store": "sqlite", "node": "n1", "cluster": "off"})
        );
        let down = NotReady {
            status: UnhealthyStatus::Unavailable,
            store: None,
            bus: Some(Unreachable::Unreachable),
        };
        assert_eq!(
            serde_json::to_value(&down).unwrap(),
            json!({"status": "unavailable", "bus": "unreachable"})
        );
        let down = Unhealthy {
            status: UnhealthyStatus::Unavailable,
        };
        assert_eq!(
            serde_json::to_string(&down).unwrap(),
            json!({"status": "unavailable"}).to_string()
        );
    }
}
