//! `rampart status`: what a data directory's server is doing, read from the directory itself
//! (listeners.json, the store) and, when the server answers, from `/healthz` and `/metrics`
//! (the unauthenticated metrics listener when there is one, else the API's with `--token`).

use crate::common::{load_config, open_core, AnyResult};
use crate::http::{Api, Remote};
use crate::output;
use clap::Args;
use rampart_core::access::tenancy::Caller;
use serde_json::{json, Value};

#[derive(Args, Debug)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    remote: Remote,
}

/// The listeners of `listeners.json`, in the order they are printed.
const LISTENERS: &[&str] = &["http", "mqtt_tls", "mqtt", "events", "metrics"];

pub(crate) async fn run(a: StatusArgs) -> AnyResult {
    let cfg = load_config(&a.remote.data)?;
    let dir = cfg.data_dir.clone();
    let listeners: Option<Value> = std::fs::read_to_string(dir.join("listeners.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());

    // Whether the server answers, and what its gauges say.
    let token = a.remote.online.token.clone().unwrap_or_default();
    let api = Api::with_token(&a.remote, token.clone())?;
    let health = api.get("/healthz").await;
    let metrics = match health {
        Ok(_) => metrics_text(&a.remote, &api, listeners.as_ref(), &token).await,
        Err(_) => None,
    };
    // A gauge never set since the start is not rendered: it is zero.
    let gauge = |name: &str| metrics.as_deref().map(|m| gauge(m, name).unwrap_or(0.0));

    // The store, opened as every offline command opens it (the server may be running).
    let core = open_core(&cfg).await?;
    let store = async {
        let backend = core.store_health().await?;
        let schema = core.store_schema_version().await?;
        let (_, products) = core.list_products(0, 1).await?;
        let (_, devices) = core
            .list_devices_for(&Caller::operator(), None, None, 0, 1)
            .await?;
        Ok::<_, rampart_core::Error>((backend, schema, products, devices))
    }
    .await;
    core.close_store().await;
    let (backend, schema, products, devices) = store.map_err(|e| e.to_string())?;
    let store_url = if cfg.store.url.is_empty() {
        dir.join("rampart.db").display().to_string()
    } else {
        without_password(&cfg.store.url)
    };

    let v = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "data_dir": dir.display().to_string(),
        "listeners": listeners,
        "api": api.base(),
        "answering": health.is_ok(),
        "health_error": health.as_ref().err(),
        "mqtt_connections": gauge("rampart_mqtt_connections"),
        "devices_online": gauge("rampart_devices_online"),
        "store": {"kind": backend, "location": store_url, "schema_version": schema,
            "products": products, "devices": devices},
    });
    if a.remote.online.json {
        output::json(&v);
        return Ok(());
    }
    let listeners_line = match &listeners {
        Some(l) => LISTENERS
            .iter()
            .map(|k| match l[*k].as_str() {
                Some(addr) => format!("{k} {addr}"),
                None => format!("{k} off"),
            })
            .collect::<Vec<_>>()
            .join(", "),
        None => "unknown (no listeners.json: the server has not run here)".into(),
    };
    let server = match &health {
        Ok(h) => format!(
            "answering at {} (health {})",
            api.base(),
            h["status"].as_str().unwrap_or("?")
        ),
        Err(e) => format!("not answering at {}: {e}", api.base()),
    };
    let count = |n: Option<f64>| match n {
        Some(n) => format!("{n}"),
        None if health.is_err() => "-".into(),
        None => "unknown (give --token, or set http.metrics_listen)".into(),
    };
    output::fields(&[
        ("version", env!("CARGO_PKG_VERSION").into()),
        ("data", dir.display().to_string()),
        ("listeners", listeners_line),
        ("server", server),
        ("mqtt connections", count(gauge("rampart_mqtt_connections"))),
        ("devices online", count(gauge("rampart_devices_online"))),
        (
            "store",
            format!("{backend} {store_url} (schema version {schema})"),
        ),
        ("products", products.to_string()),
        ("devices", devices.to_string()),
    ]);
    Ok(())
}

/// The Prometheus text: from the metrics listener without a token, else from the API with one.
async fn metrics_text(
    remote: &Remote,
    api: &Api,
    listeners: Option<&Value>,
    token: &str,
) -> Option<String> {
    if let Some(addr) = listeners.and_then(|l| l["metrics"].as_str()) {
        let mut r = remote.clone();
        r.online.url = Some(format!("http://{addr}"));
        if let Ok(m) = Api::with_token(&r, String::new()) {
            if let Ok(text) = m.get_text("/metrics").await {
                return Some(text);
            }
        }
    }
    if token.is_empty() {
        return None;
    }
    api.get_text("/metrics").await.ok()
}

/// The value of an unlabelled gauge in Prometheus text.
fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (n, v) = l.split_once(' ')?;
        (n == name).then(|| v.trim().parse().ok())?
    })
}

/// A store URL with its password masked.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (auth, host) = match rest.rsplit_once('@') {
        Some((a, h)) => (a, h),
        None => return url.to_owned(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            without_password("postgres://app:s3cret@db:5432/rampart"),
            "postgres://app:***@db:5432/rampart"
        );
        assert_eq!(
            without_password("postgres://db/rampart"),
            "postgres://db/rampart"
        );
        assert_eq!(without_password("sqlite:///x.db"), "sqlite:///x.db");
    }

    #[test]
    fn gauges_are_read() {
        let t = "# HELP x\nrampart_mqtt_connections 3\nrampart_mqtt_connections_refused_total{reason=\"a\"} 1\n";
        assert_eq!(gauge(t, "rampart_mqtt_connections"), Some(3.0));
        assert_eq!(gauge(t, "rampart_devices_online"), None);
    }
}
