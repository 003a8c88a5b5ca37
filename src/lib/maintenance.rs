//! Background work of the server: following each Docker host's events (with a reconcile at start and
//! after every reconnect), and a periodic round of refilling pools, culling idle notebooks and
//! pruning nonces. With several servers, a database lease lets one of them do the periodic round.

use std::sync::Arc;
use std::time::Duration;

use crate::app::App;
use crate::pool;
use crate::reconcile;

/// Time between periodic rounds.
pub const ROUND_INTERVAL: Duration = Duration::from_secs(30);

/// Starts the event watchers and the periodic round; they run until the process ends.
pub fn spawn(app: Arc<App>) {
    for host in &app.hosts {
        tokio::spawn(reconcile::watch_host(app.clone(), host.clone()));
    }
    tokio::spawn(periodic(app));
}

async fn periodic(app: Arc<App>) {
    let holder = app.instance.clone();
    let mut tick = tokio::time::interval(ROUND_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let ttl = (ROUND_INTERVAL.as_secs() * 3) as i64;
        match app
            .store
            .try_lease("maintenance", &holder, ttl, crate::now())
            .await
        {
            Ok(true) => round(&app).await,
            Ok(false) => {}
            Err(e) => tracing::warn!("maintenance lease: {e}"),
        }
    }
}

/// One round: reconcile every host, prune nonces past the window, cull, then refill each pool.
pub async fn round(app: &Arc<App>) {
    for report in crate::reconcile::reconcile_all(app).await {
        if let Some(e) = report.unreachable {
            tracing::warn!(host = %report.host, "reconcile: {e}");
        }
    }
    let window = app.config.server.timestamp_window.as_secs() as i64;
    // A nonce only needs remembering while its timestamp is acceptable (twice the window, for
    // timestamps from the future).
    match app.store.prune_nonces(crate::now() - 2 * window).await {
        Ok(n) if n > 0 => tracing::debug!("pruned {n} nonces"),
        Ok(_) => {}
        Err(e) => tracing::warn!("pruning nonces: {e}"),
    }
    if let Err(e) = app.store.prune_wait_tickets(crate::now()).await {
        tracing::warn!("pruning wait tickets: {e}");
    }
    for pool in &app.config.pools {
        let pool = match pool::effective(app, pool).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(pool = %pool.name, "{e}");
                continue;
            }
        };
        if pool.idle_cull.is_some() || pool.max_age.is_some() {
            match pool::cull(app, &pool, None).await {
                Ok(r) if !r.stopped.is_empty() || !r.expired.is_empty() => tracing::info!(
                    pool = %pool.name,
                    "culled {} idle, removed {} old",
                    r.stopped.len(),
                    r.expired.len()
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(pool = %pool.name, "cull: {e}"),
            }
        }
        pool::refill_in_background(app.clone(), &pool);
    }
}
