//! `GET /v1/admin/activity`: the fleet at a glance for the operator: devices and how many are
//! online now, and the last hour by minute (reports stored, refusals by limit) from
//! `rampart_core::pulse`. The console's overview page reads it; `/metrics` stays the scraper's.
//!
//! Server-wide numbers, so admin only: a developer's overview is built from their own devices.

use crate::extract::Admin;
use crate::openapi::ApiRouter;
use crate::{AppState, Error};
use axum::extract::State;
use axum::Json;
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;
use utoipa_axum::routes;

pub(crate) fn routes() -> ApiRouter {
    ApiRouter::new().routes(routes!(activity))
}

crate::errors!(ActivityErrors: Unauthorized, Internal);

/// The fleet now and its last hour.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"devices": 120, "online": 97, "minutes": [
    {"start": 1765000020000_i64, "reports": 512,
        "refusals": {(rampart_core::limits::name::MQTT_REPORT_RATE): 3}}]}))]
pub(crate) struct Activity {
    /// every registered device
    devices: i64,
    /// devices with an MQTT session now
    online: i64,
    /// the last 60 minutes, oldest first, the current (partial) minute last; minutes without
    /// activity are present with zeros
    minutes: Vec<ActivityMinute>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ActivityMinute {
    /// the minute's start, unix ms
    start: i64,
    /// reports stored in this minute (this server)
    reports: u64,
    /// calls, connects and publishes refused in this minute by each limit (this server; the
    /// names of `rampart_limit_refusals_total{limit}`)
    refusals: BTreeMap<String, u64>,
}

#[utoipa::path(get, path = "/v1/admin/activity", tag = "operator",
    summary = "Devices online now and the last hour's reports and refusals by minute",
    responses((status = 200, description = "the fleet's activity", body = Activity), ActivityErrors),
    security(("admin" = [])))]
async fn activity(State(s): State<AppState>, _admin: Admin) -> Result<Json<Activity>, Error> {
    let (devices, online) = s.core.fleet_counts().await?;
    let minutes = rampart_core::pulse::PULSE
        .last_hour(s.core.now_ms())
        .into_iter()
        .map(|m| ActivityMinute {
            start: m.start_ms,
            reports: m.reports,
            refusals: m
                .refusals
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        })
        .collect();
    Ok(Json(Activity {
        devices,
        online,
        minutes,
    }))
}
