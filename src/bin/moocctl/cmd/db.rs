//! `moocctl db copy --to URL`: moves everything (consumers, learners, volumes, containers, sessions,
//! events, admins, audit) into a fresh database of either backend, for the day a deployment
//! outgrows one machine (SQLite to PostgreSQL) or the way back. Stop the servers first: launches
//! during the copy would not be in it, and the row counts would not verify.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use mooc_lti::config::DatabaseUrl;
use mooc_lti::store::Store;

use crate::ctx::{self, Ctx, OK};

#[derive(Debug, Subcommand)]
pub enum DbCmd {
    /// Copy the whole database into a fresh one (sqlite://… or postgres://…), verifying row counts
    Copy(Copy),
}

#[derive(Debug, Args)]
pub struct Copy {
    /// The target database URL; it is created and migrated, and must hold no data yet
    #[arg(long, value_name = "URL")]
    to: String,
}

impl DbCmd {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        let DbCmd::Copy(c) = self;
        let app = ctx.app().await?;
        let target_url = DatabaseUrl(c.to.clone());
        if !(c.to.starts_with("sqlite:")
            || c.to.starts_with("postgres://")
            || c.to.starts_with("postgresql://"))
        {
            anyhow::bail!(
                "--to {} must start with sqlite:// or postgres://",
                target_url.redacted()
            );
        }
        if target_url == app.config.database_url {
            anyhow::bail!("--to is the database in use");
        }
        ctx.confirm(&format!(
            "Copy everything from {} to {}? Stop the servers first.",
            app.config.database_url.redacted(),
            target_url.redacted()
        ))?;
        let target = Store::connect(&target_url)
            .await
            .with_context(|| format!("opening {}", target_url.redacted()))?;
        let quiet = ctx.global.quiet || ctx.global.json;
        let report = app
            .store
            .copy_to(&target, |table, rows| {
                if !quiet && rows % 100_000 == 0 {
                    eprintln!("moocctl: {table}: {rows} rows");
                }
            })
            .await?;
        target.close().await;
        ctx.emit(&report, || {
            let mut t = ctx::table(&["TABLE", "SOURCE ROWS", "COPIED"]);
            for r in &report {
                t.add_row(vec![
                    r.table.clone(),
                    r.source_rows.to_string(),
                    r.target_rows.to_string(),
                ]);
            }
            t
        })?;
        app.event(
            "info",
            "db-copy",
            &format!(
                "copied to {} ({} tables verified)",
                target_url.redacted(),
                report.len()
            ),
        )
        .await;
        ctx.say(format!(
            "Copied and verified. Point database_url (or MOOC_DATABASE_URL) at {} and start the servers.",
            target_url.redacted()
        ))?;
        Ok(OK)
    }
}
