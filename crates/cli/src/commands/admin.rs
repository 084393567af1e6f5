//! `rampart admin`: the operator's own credentials. `token create|list|revoke` go through the
//! running server's API with an admin token; `recover` mints a new admin token straight in the
//! data directory, for when every admin token is lost (the server may keep running: the store
//! takes concurrent writers).

use crate::common::{load_config, open_core, AnyResult, DataArgs};
use crate::http::{segment, Api, Remote};
use crate::output::{self, cell, time};
use clap::{Args, Subcommand};
use rampart_core::audit::Actor;
use rampart_core::identity::admin_tokens::{Minted, PREFIX};
use serde_json::json;

#[derive(Subcommand, Debug)]
pub(crate) enum AdminCmd {
    /// Named admin tokens, through the API.
    Token {
        #[command(subcommand)]
        cmd: TokenCmd,
    },
    /// Mint a new admin token from the data directory, without any token (audited as
    /// `admin_token.recover`); prints it once.
    Recover(RecoverArgs),
}

#[derive(Subcommand, Debug)]
pub(crate) enum TokenCmd {
    /// Create a named admin token and print it (shown once; only its hash is kept).
    Create {
        #[command(flatten)]
        remote: Remote,
        /// What the token is for (1-64 characters), e.g. "deploy pipeline".
        #[arg(long)]
        name: String,
    },
    /// List the named admin tokens (the bootstrap token is not listed).
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// Revoke a named admin token: it is refused from now on.
    Revoke {
        #[command(flatten)]
        remote: Remote,
        /// The token's id (`atk_...`, as `list` shows).
        id: String,
    },
}

#[derive(Args, Debug)]
pub(crate) struct RecoverArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Name of the new token.
    #[arg(long, default_value = "recovered")]
    name: String,
}

pub(crate) async fn run(cmd: AdminCmd) -> AnyResult {
    match cmd {
        AdminCmd::Token { cmd } => token(cmd).await,
        AdminCmd::Recover(a) => recover(a).await,
    }
}

async fn token(cmd: TokenCmd) -> AnyResult {
    match cmd {
        TokenCmd::Create { remote, name } => {
            let api = Api::new(&remote)?;
            let v = api
                .post("/v1/admin/tokens", &json!({ "name": name }))
                .await?;
            if api.json {
                output::json(&v);
                return Ok(());
            }
            println!(
                "admin token {} ({}), shown once; only its hash is kept:",
                cell(&v["id"]),
                cell(&v["name"])
            );
            println!("{}", cell(&v["token"]));
            Ok(())
        }
        TokenCmd::List { remote } => {
            let api = Api::new(&remote)?;
            let v = api.get("/v1/admin/tokens").await?;
            if api.json {
                output::json(&v);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = v["data"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|t| {
                    vec![
                        cell(&t["id"]),
                        cell(&t["name"]),
                        format!("{PREFIX}…{}", cell(&t["hint"])),
                        cell(&t["created_by"]),
                        time(&t["created_at"]),
                    ]
                })
                .collect();
            output::table(&["ID", "NAME", "TOKEN", "CREATED_BY", "CREATED"], &rows);
            Ok(())
        }
        TokenCmd::Revoke { remote, id } => {
            let api = Api::new(&remote)?;
            let v = api
                .delete(&format!("/v1/admin/tokens/{}", segment(&id)))
                .await?;
            if api.json {
                output::json(&v);
                return Ok(());
            }
            println!(
                "revoked admin token {} ({})",
                cell(&v["id"]),
                cell(&v["name"])
            );
            Ok(())
        }
    }
}

async fn recover(a: RecoverArgs) -> AnyResult {
    let cfg = load_config(&a.data)?;
    let core = open_core(&cfg).await?;
    let r = core
        .create_admin_token(&a.name, &Actor::cli(), Minted::Recovered, None)
        .await;
    core.close_store().await;
    let (info, token) = r.map_err(|e| e.to_string())?;
    println!(
        "admin token {} ({}), shown once; only its hash is kept:",
        info.id, info.name
    );
    println!("{}", token.expose());
    Ok(())
}
