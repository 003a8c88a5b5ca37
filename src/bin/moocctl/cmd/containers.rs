//! `moocctl containers list|show|restart|release|logs`: single notebook containers. A container is
//! named by its id (`42` or `#42`) or its name (`mooc-default-…`); `show` also takes a learner.

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use futures_util::StreamExt;
use mooc_lti::app::App;
use mooc_lti::pool;
use mooc_lti::store::{ContainerFilter, ContainerRow, ContainerState};

use crate::cmd::users::{self, Who};
use crate::ctx::{self, Ctx, OK};

#[derive(Debug, Subcommand)]
pub enum ContainersCmd {
    /// List containers (live ones unless --state or --all)
    List(List),
    /// Show one container, or the containers of a learner
    Show(Show),
    /// Restart a container (Jupyter restarts; files are kept)
    Restart(Target),
    /// Remove a learner's container but keep their volume; their next launch gets a new container
    Release(Who),
    /// Print a container's output (Jupyter's log)
    Logs(Logs),
}

#[derive(Debug, Args)]
pub struct List {
    /// Only containers of this pool
    #[arg(long)]
    pool: Option<String>,
    /// creating, warming, ready, assigned, stopped, removed or failed
    #[arg(long)]
    state: Option<ContainerState>,
    /// Only containers on this Docker host (a name from docker_hosts)
    #[arg(long)]
    host: Option<String>,
    /// Include removed and failed containers
    #[arg(long)]
    all: bool,
    /// At most this many rows
    #[arg(long)]
    limit: Option<i64>,
}

#[derive(Debug, Args)]
pub struct Show {
    /// Container id, name, or a learner's user_id
    what: String,
    /// The consumer key, when the same user id exists under several consumers
    #[arg(long)]
    consumer: Option<String>,
}

#[derive(Debug, Args)]
pub struct Target {
    /// Container id or name
    id: String,
}

#[derive(Debug, Args)]
pub struct Logs {
    /// Container id or name
    id: String,
    /// Keep printing new output
    #[arg(long, short = 'f')]
    follow: bool,
    /// Lines from the end
    #[arg(long, default_value_t = 100)]
    tail: usize,
}

impl ContainersCmd {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        match self {
            ContainersCmd::List(l) => l.run(ctx).await,
            ContainersCmd::Show(s) => s.run(ctx).await,
            ContainersCmd::Restart(t) => restart(ctx, t).await,
            ContainersCmd::Release(w) => release(ctx, w).await,
            ContainersCmd::Logs(l) => logs(ctx, l).await,
        }
    }
}

/// The container named by id (`42`, `#42`) or name.
async fn find(app: &App, id: &str) -> anyhow::Result<Option<ContainerRow>> {
    if let Ok(n) = id.trim_start_matches('#').parse::<i64>() {
        return Ok(app.store.container(n).await?);
    }
    Ok(app.store.container_by_name(id).await?)
}

pub fn containers_table(rows: &[ContainerRow]) -> comfy_table::Table {
    let mut t = ctx::table(&[
        "ID", "NAME", "POOL", "HOST", "STATE", "USER", "PORT", "CREATED",
    ]);
    for c in rows {
        t.add_row(vec![
            c.id.to_string(),
            c.name.clone(),
            c.pool.clone(),
            c.host.clone(),
            c.state().to_string(),
            c.user_id.map(|u| format!("#{u}")).unwrap_or_default(),
            c.port.map(|p| p.to_string()).unwrap_or_default(),
            ctx::time(c.created_at),
        ]);
    }
    t
}

impl List {
    async fn run(self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        let app = ctx.app().await?;
        let rows = app
            .store
            .list_containers(&ContainerFilter {
                pool: self.pool.as_deref(),
                state: self.state,
                host: self.host.as_deref(),
                user_id: None,
                live_only: !self.all && self.state.is_none(),
                limit: self.limit,
            })
            .await?;
        ctx.emit(&rows, || containers_table(&rows))?;
        Ok(if rows.is_empty() {
            ctx::not_found()
        } else {
            OK
        })
    }
}

impl Show {
    async fn run(self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        let app = ctx.app().await?;
        let rows = match find(app, &self.what).await? {
            Some(c) => vec![c],
            None => {
                let who = Who {
                    user: self.what.clone(),
                    consumer: self.consumer.clone(),
                };
                match users::resolve(app, &who).await? {
                    Some(u) => {
                        app.store
                            .list_containers(&ContainerFilter {
                                user_id: Some(u.id),
                                ..Default::default()
                            })
                            .await?
                    }
                    None => Vec::new(),
                }
            }
        };
        if rows.is_empty() {
            eprintln!("moocctl: no container or learner {:?}", self.what);
            return Ok(ctx::not_found());
        }
        ctx.emit(&rows, || {
            let mut t = ctx::table(&["FIELD", "VALUE"]);
            for c in &rows {
                let mut row = |k: &str, v: String| {
                    t.add_row(vec![k.to_owned(), v]);
                };
                row("id", c.id.to_string());
                row("name", c.name.clone());
                row("pool", c.pool.clone());
                row("host", c.host.clone());
                row("state", c.state().to_string());
                row(
                    "user",
                    c.user_id
                        .map(|u| format!("#{u}"))
                        .unwrap_or_else(|| "-".into()),
                );
                row("volume", c.volume.clone());
                row(
                    "docker id",
                    c.docker_id
                        .clone()
                        .unwrap_or_default()
                        .chars()
                        .take(12)
                        .collect(),
                );
                row("port", c.port.map(|p| p.to_string()).unwrap_or_default());
                row("created", ctx::time(c.created_at));
                row("assigned", c.assigned_at.map(ctx::time).unwrap_or_default());
                row(
                    "last activity",
                    c.last_activity.map(ctx::time).unwrap_or_default(),
                );
                if let Some(e) = &c.error {
                    row("error", e.clone());
                }
            }
            t
        })?;
        Ok(OK)
    }
}

async fn restart(ctx: &Ctx, t: Target) -> anyhow::Result<ExitCode> {
    let app = ctx.app().await?;
    let Some(c) = find(app, &t.id).await? else {
        eprintln!("moocctl: no container {:?}", t.id);
        return Ok(ctx::not_found());
    };
    if !matches!(
        c.state(),
        ContainerState::Ready | ContainerState::Assigned | ContainerState::Stopped
    ) {
        bail!(
            "container {} is {}; only ready, assigned or stopped containers restart",
            c.name,
            c.state()
        );
    }
    ctx.confirm(&format!(
        "Restart {}? Open notebooks lose their running kernels.",
        c.name
    ))?;
    let pool_cfg = app
        .pool(&c.pool)
        .with_context(|| format!("pool {} is no longer configured", c.pool))?;
    let host = app
        .host(&c.host)
        .with_context(|| format!("docker host {} is no longer configured", c.host))?;
    let docker_id = c.docker_id.clone().unwrap_or_else(|| c.name.clone());
    host.stop(&docker_id, pool::STOP_GRACE).await?;
    let restarted = if c.user_id.is_some() {
        app.store
            .transition(
                c.id,
                &[ContainerState::Assigned, ContainerState::Stopped],
                ContainerState::Stopped,
                mooc_lti::now(),
                None,
            )
            .await?;
        let row = app.store.container(c.id).await?.unwrap_or(c.clone());
        pool::restart_stopped(app, pool_cfg, &row).await?
    } else {
        let port = host.start(&docker_id, pool_cfg.port).await?;
        let base = pool::probe_base(&host.config, pool_cfg, &c.name, i64::from(port));
        mooc_lti::jupyter::wait_ready(&app.http, &base, pool_cfg.ready_timeout).await?;
        app.store
            .set_container_started(
                c.id,
                &docker_id,
                i64::from(port),
                ContainerState::Ready,
                mooc_lti::now(),
            )
            .await?;
        app.store.container(c.id).await?.unwrap_or(c.clone())
    };
    app.event("info", "restart", &format!("{} restarted by admin", c.name))
        .await;
    ctx.say(format!(
        "{} restarted ({}, port {})",
        restarted.name,
        restarted.state(),
        restarted.port.unwrap_or(0)
    ))?;
    Ok(OK)
}

async fn release(ctx: &Ctx, who: Who) -> anyhow::Result<ExitCode> {
    let app = ctx.app().await?;
    let Some(user) = users::resolve(app, &who).await? else {
        eprintln!("moocctl: no learner {:?}", who.user);
        return Ok(ctx::not_found());
    };
    let rows = app
        .store
        .list_containers(&ContainerFilter {
            user_id: Some(user.id),
            live_only: true,
            ..Default::default()
        })
        .await?;
    if rows.is_empty() {
        eprintln!("moocctl: learner #{} has no container", user.id);
        return Ok(ctx::not_found());
    }
    ctx.confirm(&format!(
        "Remove the container(s) of learner #{} ({})? Their files stay on their volume.",
        user.id, user.user_id
    ))?;
    for c in &rows {
        pool::remove(app, c, &ContainerState::LIVE, "released by admin").await?;
        ctx.say(format!("{} removed; volume {} kept", c.name, c.volume))?;
    }
    app.event(
        "info",
        "release",
        &format!("learner #{}: {} container(s) released", user.id, rows.len()),
    )
    .await;
    Ok(OK)
}

async fn logs(ctx: &Ctx, l: Logs) -> anyhow::Result<ExitCode> {
    let app = ctx.app().await?;
    let Some(c) = find(app, &l.id).await? else {
        eprintln!("moocctl: no container {:?}", l.id);
        return Ok(ctx::not_found());
    };
    let host = app
        .host(&c.host)
        .with_context(|| format!("docker host {} is no longer configured", c.host))?;
    let docker_id = c.docker_id.clone().unwrap_or_else(|| c.name.clone());
    let mut stream = host.logs(&docker_id, l.tail, l.follow).await?;
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        // Jupyter prints login URLs with the token; never echo it.
        let text = chunk.replace(c.token.expose(), "***");
        out.write_all(text.as_bytes())?;
        out.flush()?;
    }
    Ok(OK)
}
