//! Keeping the database true to Docker: `reconcile` compares each host's containers (those with this
//! deployment's label) with the database and repairs both; `watch_host` follows a host's event stream
//! so that a container removed or dead behind our back is noticed within moments, not at the next
//! reconcile. Reconcile runs at server start, when an event stream reconnects, and from
//! `moocctl pool reconcile`.
//!
//! Learners' volumes are never removed here (only `moocctl users purge` does that); a labelled
//! volume the database does not know is reported and kept.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::Serialize;

use crate::app::App;
use crate::docker::{DockerHost, LABEL_DEPLOYMENT, LABEL_HOST};
use crate::jupyter;
use crate::pool::{self, PoolError};
use crate::store::{ContainerFilter, ContainerRow, ContainerState};

/// One repair.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub container: String,
    pub action: String,
}

/// What reconcile did on one host.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HostReport {
    pub host: String,
    /// Set when the host could not be reached; nothing was changed for it.
    pub unreachable: Option<String>,
    pub changes: Vec<Change>,
}

/// Reconciles every configured host; an unreachable host is reported, not fatal.
pub async fn reconcile_all(app: &App) -> Vec<HostReport> {
    let mut reports = Vec::new();
    for host in &app.hosts {
        match reconcile_host(app, host).await {
            Ok(r) => reports.push(r),
            Err(e) => reports.push(HostReport {
                host: host.name().to_owned(),
                unreachable: Some(e.to_string()),
                changes: Vec::new(),
            }),
        }
    }
    reports
}

/// The labels of this deployment's objects on `host`. Two configured hosts may be one engine (two
/// endpoints), so the host label matters as much as the deployment's.
fn ours<'a>(app: &'a App, host: &'a DockerHost) -> [(&'static str, &'a str); 2] {
    [
        (LABEL_DEPLOYMENT, &app.deployment),
        (LABEL_HOST, host.name()),
    ]
}

/// How long a row may stay `creating`/`warming` before reconcile decides its creator is gone.
fn in_progress_grace(app: &App, row: &ContainerRow) -> i64 {
    let ready = app
        .pool(&row.pool)
        .map(|p| p.ready_timeout.as_secs() as i64)
        .unwrap_or(60);
    ready + 120
}

// Repairs are side effects: they stay in the arm bodies, never in guards, where a failed repair
// would fall through to the next arm.
#[allow(clippy::collapsible_match)]
pub async fn reconcile_host(app: &App, host: &Arc<DockerHost>) -> Result<HostReport, PoolError> {
    let mut report = HostReport {
        host: host.name().to_owned(),
        ..Default::default()
    };
    let mut observed: HashMap<String, crate::docker::Observed> = host
        .list_labelled(&ours(app, host))
        .await?
        .into_iter()
        .map(|o| (o.name.clone(), o))
        .collect();
    let rows = app
        .store
        .list_containers(&ContainerFilter {
            host: Some(host.name()),
            live_only: true,
            ..Default::default()
        })
        .await?;
    let now = crate::now();
    let mut change = |container: &str, action: String| {
        tracing::info!(container, "reconcile: {action}");
        report.changes.push(Change {
            container: container.to_owned(),
            action,
        });
    };
    for row in rows {
        let obs = observed.remove(&row.name);
        let state = row.state();
        // A creation is abandoned when its process is gone (a crash on this machine) or, for other
        // machines' processes, when it has taken far longer than any creation can.
        let stale = now - row.updated_at > in_progress_grace(app, &row)
            || row.owner.as_deref().is_some_and(|o| app.owner_is_gone(o));
        match (state, obs) {
            (ContainerState::Creating | ContainerState::Warming, _) if !stale => {}
            (ContainerState::Creating | ContainerState::Warming, Some(o)) => {
                // Its creator died (a crash mid-creation): finish the job if Jupyter answers.
                let pool = app.pool(&row.pool);
                let ready = match (pool, o.running, o.host_port) {
                    (Some(pool), true, Some(port)) => {
                        let base = pool::probe_base(&host.config, pool, &row.name, i64::from(port));
                        jupyter::wait_ready(&app.http, &base, Duration::from_secs(5))
                            .await
                            .is_ok()
                            .then_some(port)
                    }
                    _ => None,
                };
                match ready {
                    Some(port) => {
                        let to = if row.user_id.is_some() {
                            ContainerState::Assigned
                        } else {
                            ContainerState::Ready
                        };
                        app.store
                            .set_container_started(row.id, &o.docker_id, i64::from(port), to, now)
                            .await?;
                        app.store.transition(row.id, &[to], to, now, None).await?;
                        change(&row.name, format!("adopted: {state} -> {to}"));
                    }
                    None => {
                        host.remove_container(&o.docker_id).await?;
                        fail(app, host, &row, "creation did not finish").await?;
                        change(
                            &row.name,
                            format!("{state} -> failed (creation did not finish)"),
                        );
                    }
                }
            }
            (ContainerState::Creating | ContainerState::Warming, None) => {
                fail(app, host, &row, "creation did not finish").await?;
                change(&row.name, format!("{state} -> failed (no container)"));
            }
            (_, None) => {
                if pool::forget(app, &row, "container gone").await? {
                    change(&row.name, format!("{state} -> removed (container gone)"));
                }
            }
            (ContainerState::Ready, Some(o)) if !o.running => {
                if pool::remove(app, &row, &[ContainerState::Ready], "not running").await? {
                    change(&row.name, "ready -> removed (not running)".into());
                }
            }
            (ContainerState::Assigned, Some(o)) if !o.running => {
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
                    change(&row.name, "assigned -> stopped (not running)".into());
                }
            }
            (ContainerState::Stopped, Some(o)) if o.running => {
                if let Some(port) = o.host_port {
                    app.store
                        .set_container_started(
                            row.id,
                            &o.docker_id,
                            i64::from(port),
                            ContainerState::Assigned,
                            now,
                        )
                        .await?;
                    change(&row.name, "stopped -> assigned (running again)".into());
                }
            }
            (ContainerState::Ready | ContainerState::Assigned, Some(o)) => {
                if let Some(port) = o.host_port
                    && row.port != Some(i64::from(port))
                {
                    app.store
                        .set_container_started(row.id, &o.docker_id, i64::from(port), state, now)
                        .await?;
                    change(&row.name, format!("port {:?} -> {port}", row.port));
                }
            }
            _ => {}
        }
    }
    // Labelled containers the database has no live row for: orphans (a crash between a failed
    // creation and its clean-up, or a row an admin removed).
    for (name, o) in observed {
        host.remove_container(&o.docker_id).await?;
        change(&name, "orphan container removed".into());
    }
    // Volumes: unclaimed ones no live container uses are removed; learners' are never touched.
    // `in_use` only saves statements: the delete itself checks again, atomically, since a warm run
    // may reserve a container on a new volume between these reads.
    let in_use: HashSet<String> = app
        .store
        .list_containers(&ContainerFilter {
            host: Some(host.name()),
            live_only: true,
            ..Default::default()
        })
        .await?
        .into_iter()
        .map(|c| c.volume)
        .collect();
    let known: HashMap<String, Option<i64>> = app
        .store
        .list_volumes(Some(host.name()), None)
        .await?
        .into_iter()
        .map(|v| (v.name, v.user_id))
        .collect();
    for name in host.list_labelled_volumes(&ours(app, host)).await? {
        match known.get(&name) {
            None => change(&name, "volume unknown to the database (kept)".into()),
            Some(None) if !in_use.contains(&name) => {
                if app.store.delete_unused_volume(&name).await? {
                    host.remove_volume(&name).await?;
                    change(&name, "unclaimed volume removed".into());
                }
            }
            Some(_) => {}
        }
    }
    Ok(report)
}

/// Marks a row failed and removes its volume when nobody owns it.
async fn fail(
    app: &App,
    host: &DockerHost,
    row: &ContainerRow,
    why: &str,
) -> Result<(), PoolError> {
    app.store
        .transition(
            row.id,
            &[ContainerState::Creating, ContainerState::Warming],
            ContainerState::Failed,
            crate::now(),
            Some(why),
        )
        .await?;
    if app.store.delete_unowned_volume(&row.volume).await? {
        host.remove_volume(&row.volume).await?;
    }
    Ok(())
}

/// Follows a host's container events for this deployment and applies deaths and removals to the
/// database at once. Reconnects with back-off; after each (re)connect, reconciles the host so that
/// nothing missed while disconnected stays wrong.
pub async fn watch_host(app: Arc<App>, host: Arc<DockerHost>) {
    let mut backoff = Duration::from_secs(1);
    loop {
        match reconcile_host(&app, &host).await {
            Ok(_) => app.set_host_health(host.name(), None).await,
            Err(PoolError::Docker(e)) if e.is_unreachable() => {
                app.set_host_health(host.name(), Some(e.to_string())).await;
            }
            Err(e) => tracing::warn!(host = host.name(), "reconcile failed: {e}"),
        }
        if !app.is_down(host.name()) {
            match host.container_events(&ours(&app, &host)).await {
                Ok(mut stream) => {
                    backoff = Duration::from_secs(1);
                    while let Some(event) = stream.next().await {
                        match event {
                            Ok((action, name)) => apply_event(&app, &action, &name).await,
                            Err(e) => {
                                tracing::warn!(host = host.name(), "event stream: {e}");
                                break;
                            }
                        }
                    }
                    // The stream ended: reconnect at once; reconcile decides whether the host is down.
                    continue;
                }
                Err(e) => tracing::warn!(host = host.name(), "cannot follow events: {e}"),
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// One container event: `destroy` forgets the container (the learner's volume stays theirs), `die`
/// of an assigned container marks it stopped (the next launch starts it again).
#[allow(clippy::collapsible_match)]
async fn apply_event(app: &App, action: &str, name: &str) {
    let result: Result<(), PoolError> = async {
        let Some(row) = app.store.container_by_name(name).await? else {
            return Ok(());
        };
        match action {
            "destroy" => {
                if matches!(
                    row.state(),
                    ContainerState::Ready | ContainerState::Assigned | ContainerState::Stopped
                ) && pool::forget(app, &row, "container removed").await?
                {
                    app.event(
                        "warn",
                        "lost",
                        &format!("{} was removed outside mooc-lti", row.name),
                    )
                    .await;
                }
            }
            "die" => match row.state() {
                ContainerState::Assigned => {
                    if app
                        .store
                        .transition(
                            row.id,
                            &[ContainerState::Assigned],
                            ContainerState::Stopped,
                            crate::now(),
                            None,
                        )
                        .await?
                    {
                        app.event(
                            "warn",
                            "died",
                            &format!("{} stopped unexpectedly", row.name),
                        )
                        .await;
                    }
                }
                ContainerState::Ready => {
                    pool::remove(app, &row, &[ContainerState::Ready], "died while ready").await?;
                }
                _ => {}
            },
            _ => {}
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(container = name, "cannot apply {action} event: {e}");
    }
}
