//! Pools of notebook containers: placement, creating a reserved container on its Docker host and
//! waiting for its Jupyter, starting a learner's stopped container again, and warming a pool up to its
//! target (`moocctl pool warm` and the server's background refill).
//!
//! Every container is reserved as a database row before any Docker call, so that concurrent warmers
//! and launches on any number of servers never pass a pool's `max` or warm target.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::task::JoinSet;

use crate::app::App;
use crate::config::{DockerHostConfig, PoolConfig};
use crate::docker::{
    DockerError, DockerHost, LABEL_CONTAINER, LABEL_DEPLOYMENT, LABEL_HOST, LABEL_POOL,
    NotebookSpec,
};
use crate::jupyter::{self, JupyterError};
use crate::secret::{self, Secret};
use crate::store::{
    ContainerFilter, ContainerRow, ContainerState, Reservation, Reserved, StoreError,
};

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    Jupyter(#[from] JupyterError),
    #[error("no docker host is configured under the name {0:?}")]
    UnknownHost(String),
    #[error("no docker host has room for another container")]
    NoHostCapacity,
    #[error("docker host {0} is not answering")]
    HostDown(String),
}

impl PoolError {
    /// True when the cause is an unreachable Docker host or an unavailable database.
    pub fn is_unavailable(&self) -> bool {
        match self {
            PoolError::Store(e) => e.is_unavailable(),
            PoolError::Docker(e) => e.is_unreachable(),
            PoolError::HostDown(_) | PoolError::NoHostCapacity => true,
            _ => false,
        }
    }
}

/// The labels on a container and its volume.
pub fn labels(app: &App, pool: &str, host: &str, name: &str) -> HashMap<String, String> {
    let mut labels: HashMap<String, String> = app
        .config
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert(LABEL_POOL.into(), pool.into());
    labels.insert(LABEL_HOST.into(), host.into());
    labels.insert(LABEL_CONTAINER.into(), name.into());
    labels.insert(LABEL_DEPLOYMENT.into(), app.deployment.clone());
    labels
}

/// The URL path a container's Jupyter serves under.
pub fn base_url(pool: &PoolConfig, name: &str) -> String {
    pool.base_url.replace("{name}", name)
}

/// Where this server reaches a container's Jupyter: the published address itself, or the host's
/// public name when ports are published on every interface.
pub fn probe_base(host: &DockerHostConfig, pool: &PoolConfig, name: &str, port: i64) -> String {
    let addr = if host.publish_ip.is_unspecified() {
        host.public_host.clone()
    } else if host.publish_ip.is_ipv6() {
        format!("[{}]", host.publish_ip)
    } else {
        host.publish_ip.to_string()
    };
    format!("http://{addr}:{port}{}", base_url(pool, name))
}

/// The URL a learner is redirected to: the container's Jupyter with its token, which logs the browser
/// in (Jupyter then sets its own cookie).
pub fn notebook_url(
    host: &DockerHostConfig,
    pool: &PoolConfig,
    name: &str,
    port: i64,
    token: &Secret,
) -> String {
    format!(
        "{}://{}:{port}{}?token={}",
        host.public_scheme,
        host.public_host,
        base_url(pool, name),
        token.expose()
    )
}

fn spec(app: &App, pool: &PoolConfig, row: &ContainerRow) -> NotebookSpec {
    let base = base_url(pool, &row.name);
    let fill = |s: &String| {
        s.replace("{token}", row.token.expose())
            .replace("{base_url}", &base)
            .replace("{port}", &pool.port.to_string())
            .replace("{name}", &row.name)
    };
    let mut env: Vec<String> = pool.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    env.push(format!("JUPYTER_TOKEN={}", row.token.expose()));
    NotebookSpec {
        name: row.name.clone(),
        image: pool.image.clone(),
        cmd: pool.command.as_ref().map(|c| c.iter().map(fill).collect()),
        env,
        labels: labels(app, &pool.name, &row.host, &row.name),
        volume: row.volume.clone(),
        home: pool.home.clone(),
        port: pool.port,
        memory: pool.memory,
        nano_cpus: pool.cpus.map(|c| (c * 1e9) as i64),
        pids: pool.pids,
    }
}

/// The host for a new container: `pinned` when the learner's volume lives there, else the host with
/// the most free capacity.
pub async fn choose_host(app: &App, pinned: Option<&str>) -> Result<Arc<DockerHost>, PoolError> {
    if let Some(name) = pinned {
        if app.is_down(name) {
            return Err(PoolError::HostDown(name.to_owned()));
        }
        return app
            .host(name)
            .cloned()
            .ok_or_else(|| PoolError::UnknownHost(name.to_owned()));
    }
    let loads: HashMap<String, i64> = app.store.host_loads().await?.into_iter().collect();
    app.hosts
        .iter()
        .filter(|h| !app.is_down(h.name()))
        .map(|h| {
            (
                i64::from(h.config.capacity) - loads.get(h.name()).copied().unwrap_or(0),
                h,
            )
        })
        .filter(|(free, _)| *free > 0)
        .max_by_key(|(free, _)| *free)
        .map(|(_, h)| h.clone())
        .ok_or(PoolError::NoHostCapacity)
}

/// A fresh container name: `mooc-<pool>-<random>`, unique across deployments sharing an engine.
pub fn new_container_name(pool: &str) -> String {
    format!("mooc-{pool}-{}", secret::random_hex(5))
}

/// Reserves a warm container row (with a new volume) if the pool is below its warm target and max.
pub async fn reserve_warm(app: &App, pool: &PoolConfig) -> Result<Option<ContainerRow>, PoolError> {
    let pool = &effective(app, pool).await?;
    let host = choose_host(app, None).await?;
    let name = new_container_name(&pool.name);
    let volume = format!("{name}-home");
    let token = secret::new_token();
    let reserved = app
        .store
        .reserve_container(&Reservation {
            name: &name,
            pool: &pool.name,
            host: host.name(),
            token: &token,
            volume: &volume,
            new_volume: true,
            user_id: None,
            now: crate::now(),
            max: i64::from(pool.max),
            warm: i64::from(pool.warm),
            owner: &app.instance,
        })
        .await?;
    Ok(match reserved {
        Reserved::Row(row) => Some(*row),
        Reserved::Full | Reserved::UserHasOne => None,
    })
}

/// Creates the Docker objects for a reserved row, starts the container and waits for its Jupyter.
/// Ends `ready` (warm) or `assigned` (made for a learner). On failure the row is marked `failed`,
/// the container removed, and a volume nobody owns removed too.
pub async fn start_reserved(
    app: &App,
    pool: &PoolConfig,
    row: ContainerRow,
) -> Result<ContainerRow, PoolError> {
    let result = create_and_wait(app, pool, &row).await;
    match result {
        Ok(()) => {
            let to = if row.user_id.is_some() {
                ContainerState::Assigned
            } else {
                ContainerState::Ready
            };
            app.store
                .transition(row.id, &[ContainerState::Warming], to, crate::now(), None)
                .await?;
            let row = app.store.container(row.id).await?.unwrap_or(row);
            Ok(row)
        }
        Err(e) => {
            let message = e.to_string();
            tracing::warn!(container = %row.name, "container failed: {message}");
            let _ = app
                .store
                .transition(
                    row.id,
                    &[ContainerState::Creating, ContainerState::Warming],
                    ContainerState::Failed,
                    crate::now(),
                    Some(&message),
                )
                .await;
            app.event(
                "error",
                "spawn-failed",
                &format!("{} on {}: {message}", row.name, row.host),
            )
            .await;
            if let Some(host) = app.host(&row.host) {
                let _ = host.remove_container(&row.name).await;
                if row.user_id.is_none()
                    && app
                        .store
                        .delete_unowned_volume(&row.volume)
                        .await
                        .unwrap_or(false)
                {
                    let _ = host.remove_volume(&row.volume).await;
                }
            }
            Err(e)
        }
    }
}

async fn create_and_wait(
    app: &App,
    pool: &PoolConfig,
    row: &ContainerRow,
) -> Result<(), PoolError> {
    let host = app
        .host(&row.host)
        .ok_or_else(|| PoolError::UnknownHost(row.host.clone()))?;
    host.create_volume(&row.volume, &labels(app, &pool.name, &row.host, &row.name))
        .await?;
    let (docker_id, port) = host.create_and_start(&spec(app, pool, row)).await?;
    app.store
        .set_container_started(
            row.id,
            &docker_id,
            i64::from(port),
            ContainerState::Warming,
            crate::now(),
        )
        .await?;
    let base = probe_base(&host.config, pool, &row.name, i64::from(port));
    jupyter::wait_ready(&app.http, &base, pool.ready_timeout).await?;
    Ok(())
}

/// Starts a learner's stopped container again (Docker may give it a new port) and waits for Jupyter.
pub async fn restart_stopped(
    app: &App,
    pool: &PoolConfig,
    row: &ContainerRow,
) -> Result<ContainerRow, PoolError> {
    let host = app
        .host(&row.host)
        .ok_or_else(|| PoolError::UnknownHost(row.host.clone()))?;
    let docker_id = row.docker_id.clone().unwrap_or_else(|| row.name.clone());
    let port = host.start(&docker_id, pool.port).await?;
    let base = probe_base(&host.config, pool, &row.name, i64::from(port));
    jupyter::wait_ready(&app.http, &base, pool.ready_timeout).await?;
    app.store
        .set_container_started(
            row.id,
            &docker_id,
            i64::from(port),
            ContainerState::Assigned,
            crate::now(),
        )
        .await?;
    Ok(app
        .store
        .container(row.id)
        .await?
        .unwrap_or_else(|| row.clone()))
}

/// What a warm run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WarmReport {
    pub pool: String,
    pub target: u32,
    pub created: usize,
    pub failures: Vec<String>,
}

/// Brings a pool up to its warm target, creating up to `parallel` containers at once. Safe to run
/// concurrently anywhere: each container is a reserved row first. `on_ready` is called as each
/// container becomes ready (progress output).
pub async fn warm(
    app: &Arc<App>,
    pool: &PoolConfig,
    parallel: usize,
    on_ready: impl Fn(&Result<ContainerRow, String>),
) -> Result<WarmReport, PoolError> {
    let mut report = WarmReport {
        pool: pool.name.clone(),
        target: pool.warm,
        ..Default::default()
    };
    // A pool whose containers keep failing (missing image, broken command) must not loop forever.
    let max_failures = (pool.warm as usize).clamp(1, 3);
    let mut tasks = JoinSet::new();
    let mut exhausted = false;
    // Containers another process is creating count towards the target; wait for them (they may
    // fail, and then this run makes up for them) rather than report a shortfall that is not one.
    let deadline = tokio::time::Instant::now() + pool.ready_timeout + Duration::from_secs(30);
    loop {
        while !exhausted && tasks.len() < parallel.max(1) && report.failures.len() < max_failures {
            match reserve_warm(app, pool).await? {
                Some(row) => {
                    let app = app.clone();
                    let pool = pool.clone();
                    tasks.spawn(async move { start_reserved(&app, &pool, row).await });
                }
                None => exhausted = true,
            }
        }
        let Some(joined) = tasks.join_next().await else {
            if report.failures.len() >= max_failures
                || tokio::time::Instant::now() >= deadline
                || app.store.warm_in_progress(&pool.name).await? == 0
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            exhausted = false;
            continue;
        };
        let result = match joined {
            Ok(Ok(row)) => Ok(row),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(format!("task failed: {e}")),
        };
        match &result {
            Ok(_) => report.created += 1,
            Err(e) => report.failures.push(e.clone()),
        }
        on_ready(&result);
    }
    Ok(report)
}

/// Refills a pool in the background after a claim: at most one refill per pool in this process, and
/// the database reservations keep several processes from overshooting.
pub fn refill_in_background(app: Arc<App>, pool: &PoolConfig) {
    if !app.begin_refill(&pool.name) {
        return;
    }
    let pool = pool.clone();
    tokio::spawn(async move {
        let result = match effective(&app, &pool).await {
            Ok(pool) if pool.warm > 0 => warm(&app, &pool, 2, |_| {}).await,
            Ok(_) => Ok(WarmReport::default()),
            Err(e) => Err(e),
        };
        match result {
            Ok(report) if !report.failures.is_empty() => {
                tracing::warn!(pool = %pool.name, "refill: {} failures, first: {}", report.failures.len(), report.failures[0]);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(pool = %pool.name, "refill failed: {e}"),
        }
        app.end_refill(&pool.name);
    });
}

/// Time Jupyter gets to shut down cleanly when a container is stopped.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// The pool's configuration with the sizes `moocctl pool resize` stored in the database, which every
/// server and cron job sees.
pub async fn effective(app: &App, pool: &PoolConfig) -> Result<PoolConfig, PoolError> {
    let (warm, max) = app.store.pool_override(&pool.name).await?;
    let mut p = pool.clone();
    if let Some(max) = max {
        p.max = u32::try_from(max).unwrap_or(u32::MAX);
    }
    if let Some(warm) = warm {
        p.warm = u32::try_from(warm).unwrap_or(0).min(p.max);
    }
    Ok(p)
}

/// Removes a container from Docker and marks its row `removed`; its volume goes too unless a learner
/// owns it. Only rows still in one of `from` are touched, so a concurrent claim wins over a drain.
pub async fn remove(
    app: &App,
    row: &ContainerRow,
    from: &[ContainerState],
    why: &str,
) -> Result<bool, PoolError> {
    if !app
        .store
        .transition(
            row.id,
            from,
            ContainerState::Removed,
            crate::now(),
            Some(why),
        )
        .await?
    {
        return Ok(false);
    }
    let host = app
        .host(&row.host)
        .ok_or_else(|| PoolError::UnknownHost(row.host.clone()))?;
    host.remove_container(row.docker_id.as_deref().unwrap_or(&row.name))
        .await?;
    if app.store.delete_unowned_volume(&row.volume).await? {
        host.remove_volume(&row.volume).await?;
    }
    Ok(true)
}

/// Marks a container whose Docker container is already gone as `removed`; an unclaimed volume goes
/// too, a learner's stays theirs for the next container. True when the row changed.
pub async fn forget(app: &App, row: &ContainerRow, why: &str) -> Result<bool, PoolError> {
    if !app
        .store
        .transition(
            row.id,
            &[
                ContainerState::Ready,
                ContainerState::Assigned,
                ContainerState::Stopped,
            ],
            ContainerState::Removed,
            crate::now(),
            Some(why),
        )
        .await?
    {
        return Ok(false);
    }
    if app.store.delete_unowned_volume(&row.volume).await?
        && let Some(host) = app.host(&row.host)
    {
        host.remove_volume(&row.volume).await?;
    }
    Ok(true)
}

/// Removes the Docker container of a row already marked failed or removed, and its volume when
/// nobody owns it.
pub async fn discard(app: &App, row: &ContainerRow) -> Result<(), PoolError> {
    let host = app
        .host(&row.host)
        .ok_or_else(|| PoolError::UnknownHost(row.host.clone()))?;
    host.remove_container(row.docker_id.as_deref().unwrap_or(&row.name))
        .await?;
    if app.store.delete_unowned_volume(&row.volume).await? {
        host.remove_volume(&row.volume).await?;
    }
    Ok(())
}

/// Removes every ready, unassigned container of a pool (never an assigned one).
pub async fn drain(app: &App, pool: &str) -> Result<usize, PoolError> {
    let ready = app
        .store
        .list_containers(&ContainerFilter {
            pool: Some(pool),
            state: Some(ContainerState::Ready),
            ..Default::default()
        })
        .await?;
    let mut removed = 0;
    for row in ready.iter().filter(|r| r.user_id.is_none()) {
        if remove(app, row, &[ContainerState::Ready], "drained").await? {
            removed += 1;
        }
    }
    Ok(removed)
}

/// What a cull did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CullReport {
    pub pool: String,
    /// Assigned containers stopped for idleness.
    pub stopped: Vec<String>,
    /// Ready containers removed for age (`max_age`).
    pub expired: Vec<String>,
    /// Containers whose activity could not be read (left running).
    pub unreadable: Vec<String>,
}

/// Stops assigned containers whose Jupyter reports no activity for `idle` (keeping container,
/// volume and mapping, so the next launch starts the same container again) and removes ready
/// containers older than the pool's `max_age`.
pub async fn cull(
    app: &App,
    pool: &PoolConfig,
    idle: Option<Duration>,
) -> Result<CullReport, PoolError> {
    let mut report = CullReport {
        pool: pool.name.clone(),
        ..Default::default()
    };
    let now = crate::now();
    if let Some(idle) = idle.or(pool.idle_cull) {
        let assigned = app
            .store
            .list_containers(&ContainerFilter {
                pool: Some(&pool.name),
                state: Some(ContainerState::Assigned),
                ..Default::default()
            })
            .await?;
        for row in assigned {
            let (Some(port), Some(host)) = (row.port, app.config.host(&row.host)) else {
                continue;
            };
            let base = probe_base(host, pool, &row.name, port);
            let last = match jupyter::last_activity(&app.http, &base, &row.token).await {
                Ok(Some(t)) => t,
                Ok(None) => row.last_activity.unwrap_or(row.updated_at),
                Err(e) => {
                    tracing::warn!(container = %row.name, "cannot read activity: {e}");
                    report.unreadable.push(row.name.clone());
                    continue;
                }
            };
            app.store.set_last_activity(row.id, last).await?;
            if now - last < idle.as_secs() as i64 {
                continue;
            }
            if app
                .store
                .transition(
                    row.id,
                    &[ContainerState::Assigned],
                    ContainerState::Stopped,
                    now,
                    None,
                )
                .await?
            {
                let docker = app
                    .host(&row.host)
                    .ok_or_else(|| PoolError::UnknownHost(row.host.clone()))?;
                docker
                    .stop(row.docker_id.as_deref().unwrap_or(&row.name), STOP_GRACE)
                    .await?;
                // A launch during the stop found the row stopped, "started" the still running
                // container and redirected its learner, whose notebook the stop then ended: start
                // it again (its port may have changed) rather than leave a row that says assigned.
                if let Some(now_row) = app.store.container(row.id).await?
                    && now_row.state() == ContainerState::Assigned
                {
                    restart_stopped(app, pool, &now_row).await?;
                    app.event(
                        "info",
                        "cull",
                        &format!("{} launched while being stopped; started again", row.name),
                    )
                    .await;
                    continue;
                }
                app.event(
                    "info",
                    "cull",
                    &format!("{} stopped after {}s idle", row.name, now - last),
                )
                .await;
                report.stopped.push(row.name.clone());
            }
        }
    }
    if let Some(max_age) = pool.max_age {
        let ready = app
            .store
            .list_containers(&ContainerFilter {
                pool: Some(&pool.name),
                state: Some(ContainerState::Ready),
                ..Default::default()
            })
            .await?;
        for row in ready {
            if row.user_id.is_none()
                && now - row.created_at > max_age.as_secs() as i64
                && remove(app, &row, &[ContainerState::Ready], "older than max_age").await?
            {
                report.expired.push(row.name.clone());
            }
        }
    }
    Ok(report)
}
