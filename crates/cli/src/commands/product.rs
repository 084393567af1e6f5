//! `rampart product`: products, through the running server's API (`list`, `show`, `create`), or
//! written straight into the data directory (`create` without a token).

use crate::common::{load_config, open_core, AnyResult};
use crate::http::{segment, Api, Remote};
use crate::output::{self, cell, time};
use clap::{Args, Subcommand};
use rampart_core::audit::{Actor, AuditEvent};
use serde_json::Value;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub(crate) enum ProductCmd {
    /// List the products (through the API).
    List(ListArgs),
    /// Show one product and its data points (through the API).
    Show {
        #[command(flatten)]
        remote: Remote,
        /// Product key.
        product_key: String,
    },
    /// Create a product from a model file (the same JSON as `POST /v1/products`): through the
    /// API with a token (`--token` or RAMPART_TOKEN), else directly in the data directory.
    Create {
        #[command(flatten)]
        remote: Remote,
        /// JSON file with the product: name, identity, report limit and data points.
        #[arg(long)]
        model: PathBuf,
    },
}

/// Paging of a list.
#[derive(Args, Debug)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    pub(crate) remote: Remote,
    /// Page to show, from 1.
    #[arg(long, default_value_t = 1)]
    pub(crate) page: u32,
    /// Items per page (at most 200).
    #[arg(long, default_value_t = 50)]
    pub(crate) limit: u32,
}

pub(crate) async fn run(cmd: ProductCmd) -> AnyResult {
    match cmd {
        ProductCmd::List(a) => {
            let api = Api::new(&a.remote)?;
            let v = api
                .get(&format!("/v1/products?page={}&limit={}", a.page, a.limit))
                .await?;
            if api.json {
                output::json(&v);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = items(&v)
                .iter()
                .map(|p| {
                    vec![
                        cell(&p["product_key"]),
                        cell(&p["name"]),
                        p["datapoints"].as_array().map_or(0, Vec::len).to_string(),
                        cell(&p["enterprise_id"]),
                        time(&p["created_at"]),
                    ]
                })
                .collect();
            output::table(
                &["PRODUCT_KEY", "NAME", "POINTS", "ENTERPRISE", "CREATED"],
                &rows,
            );
            footer(&v);
            Ok(())
        }
        ProductCmd::Show {
            remote,
            product_key,
        } => {
            let api = Api::new(&remote)?;
            let p = api
                .get(&format!("/v1/products/{}", segment(&product_key)))
                .await?;
            if api.json {
                output::json(&p);
                return Ok(());
            }
            output::fields(&[
                ("product_key", cell(&p["product_key"])),
                ("name", cell(&p["name"])),
                ("identity", cell(&p["identity"])),
                ("report_limit_per_min", cell(&p["report_limit_per_min"])),
                ("enterprise", cell(&p["enterprise_id"])),
                ("created", time(&p["created_at"])),
            ]);
            println!();
            let rows: Vec<Vec<String>> = p["datapoints"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|d| {
                    let mut rest = d.clone();
                    if let Some(o) = rest.as_object_mut() {
                        for k in ["name", "type", "writable"] {
                            o.remove(k);
                        }
                    }
                    vec![
                        cell(&d["name"]),
                        cell(&d["type"]),
                        d["writable"].as_bool().unwrap_or(false).to_string(),
                        if rest.as_object().is_some_and(|o| !o.is_empty()) {
                            rest.to_string()
                        } else {
                            String::new()
                        },
                    ]
                })
                .collect();
            output::table(&["POINT", "TYPE", "WRITABLE", "MORE"], &rows);
            Ok(())
        }
        ProductCmd::Create { remote, model } => {
            let text =
                std::fs::read_to_string(&model).map_err(|e| format!("{}: {e}", model.display()))?;
            if remote
                .online
                .token
                .as_deref()
                .is_some_and(|t| !t.is_empty())
            {
                let body: Value =
                    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", model.display()))?;
                let api = Api::new(&remote)?;
                let v = api.post("/v1/products", &body).await?;
                output::json(&v);
                return Ok(());
            }
            let cfg = load_config(&remote.data)?;
            let core = open_core(&cfg).await?;
            let p = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", model.display()))?;
            let created = core.create_product(p).await.map_err(|e| e.to_string())?;
            core.audit(
                AuditEvent::new(&Actor::cli(), "product.create", "ok")
                    .target(format!("product:{}", created.product_key)),
            )
            .await;
            println!(
                "{}",
                serde_json::to_string_pretty(&created).map_err(|e| e.to_string())?
            );
            Ok(())
        }
    }
}

/// The items of a page (`{"data": [...], "meta": {...}}`).
pub(crate) fn items(v: &Value) -> &[Value] {
    v["data"].as_array().map(Vec::as_slice).unwrap_or_default()
}

/// "page P of N (T in all)" under a table, when the list has more than one page.
pub(crate) fn footer(v: &Value) {
    let m = &v["meta"];
    if let (Some(page), Some(limit), Some(total)) =
        (m["page"].as_i64(), m["limit"].as_i64(), m["total"].as_i64())
    {
        let pages = if limit > 0 {
            (total + limit - 1) / limit
        } else {
            1
        };
        if pages > 1 {
            println!("page {page} of {pages} ({total} in all; --page for more)");
        }
    }
}
