//! `moocctl pool status|warm|resize|drain|cull|reconcile`: the pools of notebook containers. State
//! lives in the database, so every server, cron job and admin sees the same pool.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use mooc_lti::app::App;
use mooc_lti::config::{PoolConfig, parse_duration};
use mooc_lti::pool;
use mooc_lti::store::ContainerState;
use serde::Serialize;

use crate::ctx::{self, Ctx, OK};

#[derive(Debug, Subcommand)]
pub enum PoolCmd {
    /// Containers per pool and host, by state, against the warm target and max
    Status(Status),
    /// Bring pools up to their warm target of ready containers (idempotent; safe to run concurrently)
    Warm(Warm),
    /// Change a pool's warm target and max for every server (stored in the database)
    Resize(Resize),
    /// Remove a pool's ready, unassigned containers (never a learner's)
    Drain(Drain),
    /// Stop notebooks idle too long (keeping their files) and remove ready ones older than max_age
    Cull(Cull),
    /// Compare each Docker host with the database and repair both
    Reconcile,
}

#[derive(Debug, Args)]
pub struct Status {
    /// Only this pool
    pool: Option<String>,
}

#[derive(Debug, Args)]
pub struct Warm {
    /// Only this pool [default: every pool]
    pool: Option<String>,
    /// Containers created at once
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=64))]
    parallel: u32,
}

#[derive(Debug, Args)]
pub struct Resize {
    /// The pool, as named in pool.yaml
    pool: String,
    /// Ready, unassigned containers to keep
    #[arg(long)]
    warm: Option<u32>,
    /// Most live containers
    #[arg(long)]
    max: Option<u32>,
    /// Forget earlier resizes: the sizes in pool.yaml hold again
    #[arg(long, conflicts_with_all = ["warm", "max"])]
    reset: bool,
}

#[derive(Debug, Args)]
pub struct Drain {
    /// The pool, as named in pool.yaml
    pool: String,
}

#[derive(Debug, Args)]
pub struct Cull {
    /// Stop notebooks idle this long (e.g. 30m, 2h) [default: each pool's idle_cull]
    #[arg(long, value_parser = parse_duration)]
    idle: Option<Duration>,
    /// Only this pool
    #[arg(long)]
    pool: Option<String>,
}

impl PoolCmd {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        match self {
            PoolCmd::Status(s) => s.run(ctx).await,
            PoolCmd::Warm(w) => w.run(ctx).await,
            PoolCmd::Resize(r) => r.run(ctx).await,
            PoolCmd::Drain(d) => d.run(ctx).await,
            PoolCmd::Cull(c) => c.run(ctx).await,
            PoolCmd::Reconcile => reconcile(ctx).await,
        }
    }
}

/// The pools named (or all), failing on an unknown name.
fn pools<'a>(app: &'a App, only: Option<&str>) -> anyhow::Result<Vec<&'a PoolConfig>> {
    match only {
        Some(name) => match app.pool(name) {
            Some(p) => Ok(vec![p]),
            None => bail!(
                "no pool {name:?} in {} (pools: {})",
                app.config.path.display(),
                app.config
                    .pools
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
        None => Ok(app.config.pools.iter().collect()),
    }
}

#[derive(Debug, Serialize)]
pub struct PoolStatus {
    pub pool: String,
    pub image: String,
    pub warm: u32,
    pub max: u32,
    /// True when `pool resize` changed the configured sizes.
    pub resized: bool,
    /// Live containers by state, all hosts.
    pub counts: BTreeMap<String, i64>,
    /// Ready and unassigned: what first launches claim.
    pub ready: i64,
    pub hosts: Vec<HostCounts>,
    /// Age of the oldest ready container, seconds.
    pub oldest_ready_secs: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct HostCounts {
    pub host: String,
    /// As the servers last saw it: `up`, `down`, or `unknown` (no server has checked yet).
    pub health: String,
    /// Why it is down.
    pub error: Option<String>,
    /// Since when it has been in its current health.
    pub since: Option<i64>,
    pub counts: BTreeMap<String, i64>,
}

pub async fn pool_status(app: &App, pool: &PoolConfig) -> anyhow::Result<PoolStatus> {
    let effective = pool::effective(app, pool).await?;
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    let mut hosts: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for h in &app.config.docker_hosts {
        hosts.entry(h.name.clone()).or_default();
    }
    for (host, state, n) in app.store.pool_counts(&pool.name).await? {
        if matches!(state.as_str(), "removed" | "failed") {
            continue;
        }
        *counts.entry(state.clone()).or_default() += n;
        *hosts.entry(host).or_default().entry(state).or_default() += n;
    }
    let now = mooc_lti::now();
    let health: BTreeMap<String, mooc_lti::store::HostStatusRow> = app
        .store
        .host_statuses()
        .await?
        .into_iter()
        .map(|h| (h.name.clone(), h))
        .collect();
    Ok(PoolStatus {
        pool: pool.name.clone(),
        image: pool.image.clone(),
        warm: effective.warm,
        max: effective.max,
        resized: effective.warm != pool.warm || effective.max != pool.max,
        ready: counts.get("ready").copied().unwrap_or(0),
        counts,
        hosts: hosts
            .into_iter()
            .map(|(host, counts)| {
                let h = health.get(&host);
                HostCounts {
                    health: match h {
                        Some(h) if h.up => "up".into(),
                        Some(_) => "down".into(),
                        None => "unknown".into(),
                    },
                    error: h.and_then(|h| h.error.clone()),
                    since: h.map(|h| h.changed_at),
                    host,
                    counts,
                }
            })
            .collect(),
        oldest_ready_secs: app.store.oldest_ready(&pool.name).await?.map(|t| now - t),
    })
}

fn counts_cell(counts: &BTreeMap<String, i64>) -> String {
    let parts: Vec<String> = ContainerState::LIVE
        .iter()
        .filter_map(|s| counts.get(s.as_str()).map(|n| format!("{s} {n}")))
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}

impl Status {
    async fn run(self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        let app = ctx.app().await?;
        let mut all = Vec::new();
        for p in pools(app, self.pool.as_deref())? {
            all.push(pool_status(app, p).await?);
        }
        ctx.emit(&all, || {
            let mut t = ctx::table(&[
                "POOL",
                "HOST",
                "READY/WARM",
                "LIVE/MAX",
                "STATES",
                "OLDEST READY",
                "IMAGE",
            ]);
            for s in &all {
                let live: i64 = s.counts.values().sum();
                t.add_row(vec![
                    s.pool.clone(),
                    "(all)".into(),
                    format!("{}/{}", s.ready, s.warm),
                    format!(
                        "{live}/{}{}",
                        s.max,
                        if s.resized { " (resized)" } else { "" }
                    ),
                    counts_cell(&s.counts),
                    s.oldest_ready_secs
                        .map(|a| {
                            humantime::format_duration(Duration::from_secs(a.max(0) as u64))
                                .to_string()
                        })
                        .unwrap_or_else(|| "-".into()),
                    s.image.clone(),
                ]);
                let any_down = s.hosts.iter().any(|h| h.health == "down");
                if s.hosts.len() > 1 || any_down {
                    for h in &s.hosts {
                        let host = match h.health.as_str() {
                            "down" => format!(
                                "{} (DOWN since {})",
                                h.host,
                                h.since.map(ctx::time).unwrap_or_default()
                            ),
                            _ => h.host.clone(),
                        };
                        t.add_row(vec![
                            String::new(),
                            host,
                            h.counts.get("ready").copied().unwrap_or(0).to_string(),
                            h.counts.values().sum::<i64>().to_string(),
                            counts_cell(&h.counts),
                            String::new(),
                            String::new(),
                        ]);
                    }
                }
            }
            t
        })?;
        Ok(OK)
    }
}

impl Warm {
    async fn run(self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        let app = ctx.app().await?;
        let mut shortfalls = Vec::new();
        let mut reports = Vec::new();
        for configured in pools(app, self.pool.as_deref())? {
            let p = pool::effective(app, configured).await?;
            if p.warm == 0 {
                continue;
            }
            for host in &app.hosts {
                // An unreachable host is skipped (placement avoids it) and reported, not fatal.
                if let Err(e) = tokio::time::timeout(Duration::from_secs(10), host.version())
                    .await
                    .map_err(|_| "did not answer in 10s".to_owned())
                    .and_then(|r| r.map_err(|e| e.to_string()))
                {
                    app.set_host_health(host.name(), Some(e.clone())).await;
                    eprintln!("moocctl: docker host {} skipped: {e}", host.name());
                    continue;
                }
                app.set_host_health(host.name(), None).await;
                // Settle creations a crashed process left behind, so they neither count towards
                // the target nor make this run wait for them.
                if let Err(e) = mooc_lti::reconcile::reconcile_host(app, host).await {
                    eprintln!("moocctl: reconcile of docker host {}: {e}", host.name());
                }
                match host.image_present(&p.image).await {
                    Ok(true) => {}
                    Ok(false) => shortfalls.push(format!(
                        "pool {}: image {} is not on docker host {} (nothing is pulled automatically)",
                        p.name,
                        p.image,
                        host.name()
                    )),
                    Err(e) => shortfalls.push(format!("pool {}: {e}", p.name)),
                }
            }
            let report = warm_one(ctx, app, &p, self.parallel as usize).await?;
            let status = pool_status(app, configured).await?;
            if status.ready < i64::from(p.warm) {
                let live: i64 = status.counts.values().sum();
                let why = if let Some(first) = report.failures.first() {
                    format!(
                        "{} container(s) failed; first: {first}",
                        report.failures.len()
                    )
                } else if live >= i64::from(p.max) {
                    format!("the pool is at its max of {} containers", p.max)
                } else {
                    "containers are still starting elsewhere".into()
                };
                shortfalls.push(format!(
                    "pool {}: {} of {} ready: {why}",
                    p.name, status.ready, p.warm
                ));
            }
            ctx.say(format!(
                "pool {}: {} ready (target {}), {} created",
                p.name, status.ready, p.warm, report.created
            ))?;
            reports.push(serde_json::json!({
                "pool": p.name,
                "target": p.warm,
                "ready": status.ready,
                "created": report.created,
                "failures": report.failures,
            }));
        }
        if ctx.global.json {
            ctx.emit(&reports, || ctx::table(&[]))?;
        }
        shortfalls.dedup();
        if shortfalls.is_empty() {
            Ok(OK)
        } else {
            for s in &shortfalls {
                eprintln!("moocctl: {s}");
            }
            Ok(ExitCode::from(2))
        }
    }
}

async fn warm_one(
    ctx: &Ctx,
    app: &Arc<App>,
    p: &PoolConfig,
    parallel: usize,
) -> anyhow::Result<pool::WarmReport> {
    let interactive = std::io::stderr().is_terminal() && !ctx.global.quiet && !ctx.global.json;
    let bar = if interactive {
        let status = pool_status(app, p).await?;
        let missing = (i64::from(p.warm) - status.ready).max(0) as u64;
        let bar = indicatif::ProgressBar::new(missing);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("warming {}", p.name));
        Some(bar)
    } else {
        None
    };
    let quiet = ctx.global.quiet || ctx.global.json;
    let report = pool::warm(app, p, parallel, |result| match (&bar, result) {
        (Some(bar), Ok(_)) => bar.inc(1),
        (Some(bar), Err(e)) => bar.println(format!("failed: {e}")),
        (None, Ok(row)) if !quiet => eprintln!("pool {}: {} ready", p.name, row.name),
        (None, Err(e)) => eprintln!("pool {}: container failed: {e}", p.name),
        (None, Ok(_)) => {}
    })
    .await
    .with_context(|| format!("warming pool {}", p.name))?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(report)
}

impl Resize {
    async fn run(self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        let app = ctx.app().await?;
        let configured = pools(app, Some(&self.pool))?[0];
        if self.reset {
            app.store.clear_pool_override(&self.pool).await?;
        } else {
            if self.warm.is_none() && self.max.is_none() {
                bail!("give --warm N and/or --max M (or --reset)");
            }
            let current = pool::effective(app, configured).await?;
            let max = self.max.unwrap_or(current.max);
            let warm = self.warm.unwrap_or(current.warm);
            if max == 0 {
                bail!("--max must be at least 1");
            }
            if warm > max {
                bail!("warm target {warm} is more than max {max}");
            }
            app.store
                .set_pool_override(
                    &self.pool,
                    self.warm.map(i64::from),
                    self.max.map(i64::from),
                    mooc_lti::now(),
                    &app.actor,
                )
                .await?;
        }
        let now = pool::effective(app, configured).await?;
        app.event(
            "info",
            "pool-resize",
            &format!("pool {}: warm {} max {}", self.pool, now.warm, now.max),
        )
        .await;
        ctx.say(format!(
            "pool {}: warm {}, max {} (run `moocctl pool warm` or let the server refill)",
            self.pool, now.warm, now.max
        ))?;
        Ok(OK)
    }
}

impl Drain {
    async fn run(self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        let app = ctx.app().await?;
        pools(app, Some(&self.pool))?;
        ctx.confirm(&format!(
            "Remove every ready, unassigned container of pool {}? (learners' containers are kept)",
            self.pool
        ))?;
        let removed = pool::drain(app, &self.pool).await?;
        app.event(
            "info",
            "pool-drain",
            &format!("pool {}: {removed} removed", self.pool),
        )
        .await;
        ctx.say(format!(
            "pool {}: {removed} ready container(s) removed",
            self.pool
        ))?;
        Ok(OK)
    }
}

impl Cull {
    async fn run(self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        let app = ctx.app().await?;
        let selected = pools(app, self.pool.as_deref())?;
        ctx.confirm(&match self.idle {
            Some(d) => format!(
                "Stop notebooks idle for {} or more? (files and mappings are kept)",
                humantime::format_duration(d)
            ),
            None => {
                "Stop notebooks idle past their pool's idle_cull? (files and mappings are kept)"
                    .into()
            }
        })?;
        let mut reports = Vec::new();
        for p in selected {
            let p = pool::effective(app, p).await?;
            if self.idle.is_none() && p.idle_cull.is_none() && p.max_age.is_none() {
                continue;
            }
            let r = pool::cull(app, &p, self.idle).await?;
            ctx.say(format!(
                "pool {}: {} stopped, {} old ready removed{}",
                r.pool,
                r.stopped.len(),
                r.expired.len(),
                if r.unreadable.is_empty() {
                    String::new()
                } else {
                    format!(", {} unreadable (left running)", r.unreadable.len())
                }
            ))?;
            reports.push(r);
        }
        if ctx.global.json {
            ctx.emit(&reports, || ctx::table(&[]))?;
        }
        Ok(OK)
    }
}

async fn reconcile(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let app = ctx.app().await?;
    let reports = mooc_lti::reconcile::reconcile_all(app).await;
    let changed: usize = reports.iter().map(|r| r.changes.len()).sum();
    if changed > 0 {
        app.event("info", "reconcile", &format!("{changed} change(s)"))
            .await;
    }
    ctx.emit(&reports, || {
        let mut t = ctx::table(&["HOST", "CONTAINER", "CHANGE"]);
        for r in &reports {
            if let Some(e) = &r.unreachable {
                t.add_row(vec![
                    r.host.clone(),
                    "-".into(),
                    format!("unreachable: {e}"),
                ]);
            }
            for c in &r.changes {
                t.add_row(vec![r.host.clone(), c.container.clone(), c.action.clone()]);
            }
            if r.unreachable.is_none() && r.changes.is_empty() {
                t.add_row(vec![r.host.clone(), "-".into(), "in step".into()]);
            }
        }
        t
    })?;
    let unreachable = reports.iter().any(|r| r.unreachable.is_some());
    Ok(if unreachable { ExitCode::from(2) } else { OK })
}
