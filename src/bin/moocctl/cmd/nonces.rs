//! `moocctl nonces list|prune`: the replay guard. A nonce is kept while its timestamp could still
//! be accepted; the server prunes older ones itself, `prune` does it now.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::ctx::{self, Ctx, OK};

#[derive(Debug, Subcommand)]
pub enum NoncesCmd {
    /// List stored nonces, newest first
    List(List),
    /// Delete nonces older than the timestamp window allows (reports how many)
    Prune,
}

#[derive(Debug, Args)]
pub struct List {
    /// Only nonces of this consumer key
    #[arg(long)]
    consumer: Option<String>,
    /// At most this many nonces (the latest)
    #[arg(long, default_value_t = 100)]
    limit: i64,
}

impl NoncesCmd {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        let app = ctx.app().await?;
        match self {
            NoncesCmd::List(l) => {
                let rows = app
                    .store
                    .list_nonces(l.consumer.as_deref(), l.limit.max(0))
                    .await?;
                ctx.emit(&rows, || {
                    let mut t = ctx::table(&["CONSUMER", "NONCE", "TIMESTAMP"]);
                    for n in &rows {
                        t.add_row(vec![
                            n.consumer_key.clone(),
                            n.nonce.clone(),
                            ctx::time(n.ts),
                        ]);
                    }
                    t
                })?;
                Ok(if rows.is_empty() {
                    ctx::not_found()
                } else {
                    OK
                })
            }
            NoncesCmd::Prune => {
                ctx.confirm("Delete nonces older than the timestamp window?")?;
                // Twice the window: a timestamp up to one window in the future stays acceptable
                // for two windows.
                let window = app.config.server.timestamp_window.as_secs() as i64;
                let removed = app.store.prune_nonces(mooc_lti::now() - 2 * window).await?;
                let left = app.store.count_nonces().await?;
                if ctx.global.json {
                    ctx.emit(
                        &serde_json::json!({"removed": removed, "kept": left}),
                        || ctx::table(&[]),
                    )?;
                } else {
                    ctx.say(format!("{removed} nonce(s) removed, {left} kept"))?;
                }
                Ok(OK)
            }
        }
    }
}
