//! `moocctl audit [--since]`: the trail of every mutating command: who, when, what, and the outcome.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use mooc_lti::config::parse_duration;

use crate::ctx::{self, Ctx, OK};

#[derive(Debug, Args)]
pub struct AuditCmd {
    /// Only entries this recent (e.g. 15m, 2h, 7d)
    #[arg(long, value_parser = parse_duration)]
    since: Option<Duration>,
    /// At most this many entries (the latest)
    #[arg(long, default_value_t = 100)]
    limit: i64,
}

impl AuditCmd {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        let app = ctx.app().await?;
        let since = self.since.map(|d| mooc_lti::now() - d.as_secs() as i64);
        let rows = app.store.list_audit(since, self.limit).await?;
        ctx.emit(&rows, || {
            let mut t = ctx::table(&["AT", "ACTOR", "COMMAND", "OUTCOME"]);
            for r in &rows {
                t.add_row(vec![
                    ctx::time(r.at),
                    r.actor.clone(),
                    r.command.clone(),
                    r.outcome.clone(),
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
}
