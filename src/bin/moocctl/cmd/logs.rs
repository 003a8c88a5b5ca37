//! `moocctl logs [-f]`: the event log the server and moocctl write to the database (launch
//! failures, claims, spawns, culls, errors, admin actions), so it reads the same from any host.
//! A returning learner's launch writes only its session row (the hot path's one write), so it is
//! in `moocctl sessions list`, not here.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use mooc_lti::config::parse_duration;
use mooc_lti::store::{EventFilter, EventRow};

use crate::ctx::{self, Ctx, OK};

#[derive(Debug, Args)]
pub struct LogsCmd {
    /// Keep printing new events
    #[arg(long, short = 'f')]
    follow: bool,
    /// Only events this recent (e.g. 15m, 2h, 7d)
    #[arg(long, value_parser = parse_duration)]
    since: Option<Duration>,
    /// Lowest level shown
    #[arg(long, value_parser = ["debug", "info", "warn", "error"])]
    level: Option<String>,
    /// Only this kind (e.g. spawn, claim, cull, launch-failed, lost)
    #[arg(long)]
    kind: Option<String>,
    /// How many of the latest events to start with
    #[arg(long, short = 'n', default_value_t = 100)]
    lines: i64,
}

fn line(e: &EventRow) -> String {
    format!(
        "{} {:5} {:14} {:10} {}",
        ctx::time(e.at),
        e.level,
        e.kind,
        e.actor,
        e.message
    )
}

impl LogsCmd {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        let app = ctx.app().await?;
        let mut filter = EventFilter {
            after_id: None,
            since: self.since.map(|d| mooc_lti::now() - d.as_secs() as i64),
            min_level: self.level.as_deref(),
            kind: self.kind.as_deref(),
            limit: self.lines.max(0),
        };
        let first = app.store.list_events(&filter).await?;
        if !self.follow {
            if ctx.global.json {
                ctx.emit(&first, || ctx::table(&[]))?;
            } else {
                let mut out = std::io::stdout().lock();
                for e in &first {
                    writeln!(out, "{}", line(e))?;
                }
            }
            return Ok(if first.is_empty() {
                ctx::not_found()
            } else {
                OK
            });
        }
        // Following: one line (or one JSON object) per event, as they arrive.
        let mut last_id = print(ctx, &first)?.unwrap_or(0);
        if last_id == 0 {
            // Start after whatever exists now, even when filtered out.
            last_id = app
                .store
                .list_events(&EventFilter {
                    limit: 1,
                    ..Default::default()
                })
                .await?
                .last()
                .map(|e| e.id)
                .unwrap_or(0);
        }
        filter.since = None;
        filter.limit = 1000;
        loop {
            filter.after_id = Some(last_id);
            let rows = app.store.list_events(&filter).await?;
            if let Some(id) = print(ctx, &rows)? {
                last_id = id;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Prints events one per line; returns the last id printed.
fn print(ctx: &Ctx, rows: &[EventRow]) -> anyhow::Result<Option<i64>> {
    let mut out = std::io::stdout().lock();
    for e in rows {
        if ctx.global.json {
            serde_json::to_writer(&mut out, e)?;
            writeln!(out)?;
        } else {
            writeln!(out, "{}", line(e))?;
        }
    }
    out.flush()?;
    Ok(rows.last().map(|e| e.id))
}
