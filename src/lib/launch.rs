//! The launch flow of DESIGN.md section 1, top to bottom: verify the signed LTI launch, and only
//! then record the learner and find, claim or make their container, and answer with its URL.
//!
//! The returning-learner and warm-claim paths touch only the database; Docker is called only to make
//! a container on demand or to start a stopped one.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::app::App;
use crate::config::PoolConfig;
use crate::lti::{self, LtiError, SignedRequest};
use crate::pool::{self, PoolError};
use crate::secret;
use crate::store::{
    ContainerRow, ContainerState, LaunchRecord, NewSession, Recorded, Reservation, Reserved,
    StoreError,
};

/// What the server received, as far as the launch is concerned.
#[derive(Debug, Clone, Copy)]
pub struct LaunchRequest<'a> {
    pub query: Option<&'a str>,
    pub body: &'a [u8],
    pub authorization: Option<&'a str>,
    pub remote_addr: Option<IpAddr>,
}

/// A successful launch: where to send the learner.
#[derive(Debug, Clone)]
pub struct Redirect {
    /// The notebook URL, token included: only ever sent to the verified learner.
    pub url: String,
    pub container_id: i64,
    pub outcome: &'static str,
}

/// Why a launch did not end in a redirect. Each maps to one status and page in the server.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(transparent)]
    Lti(#[from] LtiError),
    #[error("no pool serves this course")]
    NoPool,
    #[error("pool {0} is at its maximum")]
    NoCapacity(String),
    /// The learner's container is being made; the page refreshes to `/lti/wait/<ticket>`.
    #[error("the notebook is still starting")]
    StillStarting {
        container_id: i64,
        ticket: Option<String>,
    },
    #[error("temporarily unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for LaunchError {
    fn from(e: StoreError) -> LaunchError {
        if e.is_unavailable() {
            LaunchError::Unavailable(e.to_string())
        } else {
            LaunchError::Internal(e.to_string())
        }
    }
}

impl From<PoolError> for LaunchError {
    fn from(e: PoolError) -> LaunchError {
        match e {
            PoolError::Store(e) => e.into(),
            PoolError::NoHostCapacity => LaunchError::Unavailable(e.to_string()),
            e => LaunchError::Unavailable(e.to_string()),
        }
    }
}

impl LaunchError {
    /// The outcome recorded in the session row.
    fn outcome(&self) -> &'static str {
        match self {
            LaunchError::Lti(_) => "rejected",
            LaunchError::NoPool => "no-pool",
            LaunchError::NoCapacity(_) => "no-capacity",
            LaunchError::StillStarting { .. } => "starting",
            LaunchError::Unavailable(_) => "unavailable",
            LaunchError::Internal(_) => "error",
        }
    }
}

/// Verifies and serves one launch.
pub async fn launch(app: &Arc<App>, req: LaunchRequest<'_>) -> Result<Redirect, LaunchError> {
    let now = crate::now();

    // 1-5, 7: nothing is trusted or written until the signature checks out and the launch is
    // complete. (The parameters are checked before the nonce is stored, so that the one write
    // below records everything at once; a refused launch writes nothing either way.)
    let signed = SignedRequest::from_parts(req.query, req.body, req.authorization)?;
    let window = app.config.server.timestamp_window.as_secs() as i64;
    let fields = signed.check_oauth_fields(now, window)?;
    let secret = app
        .consumer_secret(&fields.consumer_key)
        .await?
        .ok_or(LtiError::UnknownConsumer)?;
    signed.verify_signature(&app.launch_base_uri, secret.expose())?;
    let launch = lti::launch_from_params(&signed.params, &fields.consumer_key)?;
    let pool = app.config.pool_for_course(launch.context_id.as_deref());

    // 6, 8 and, for a returning learner, 9: the nonce (a replay stops here), the learner and the
    // session, in one transaction shared with the launches arriving at the same moment.
    let recorded = app
        .record_launch(LaunchRecord {
            consumer_key: launch.consumer_key.clone(),
            nonce: fields.nonce,
            ts: fields.timestamp,
            user_id: launch.user_id.clone(),
            name: launch.name.clone(),
            email: launch.email.clone(),
            now,
            pool: pool.map(|p| p.name.clone()),
            context_id: launch.context_id.clone(),
            resource_link_id: Some(launch.resource_link_id.clone()),
            roles: launch.roles.clone(),
            remote_addr: req.remote_addr.map(|a| a.to_string()),
            down_hosts: app.down_hosts(),
        })
        .await?;
    let (user_id, returning) = match recorded {
        Recorded::Replay => return Err(LtiError::Replay.into()),
        Recorded::New { user, returning } => (user, returning),
    };
    if let (Some(pool), Some((_, c))) = (pool, &returning) {
        // The hot path: a returning learner with a running container. Database only.
        return redirect(app, pool, c, "returning");
    }

    // 9, everything else: a claim, a new container, a restart; then its session.
    let result = match pool {
        Some(pool) => assign(app, pool, user_id).await,
        None => Err(LaunchError::NoPool),
    };
    // A learner whose notebook is still starting gets a page that refreshes until it is ready.
    let result = match result {
        Err(LaunchError::StillStarting { container_id, .. }) => {
            let ticket = crate::secret::random_hex(16);
            app.store
                .create_wait_ticket(&ticket, container_id, user_id, now + WAIT_TICKET_SECS)
                .await?;
            Err(LaunchError::StillStarting {
                container_id,
                ticket: Some(ticket),
            })
        }
        other => other,
    };
    let (outcome, container_id) = match &result {
        Ok(r) => (r.outcome, Some(r.container_id)),
        Err(e) => (e.outcome(), None),
    };
    app.store
        .insert_session(&NewSession {
            at: now,
            user_id: Some(user_id),
            consumer_key: &launch.consumer_key,
            context_id: launch.context_id.as_deref(),
            resource_link_id: Some(&launch.resource_link_id),
            roles: launch.roles.as_deref(),
            remote_addr: req.remote_addr.map(|a| a.to_string()),
            pool: pool.map(|p| p.name.as_str()),
            outcome,
            container_id,
        })
        .await?;
    if let Err(
        e @ (LaunchError::NoCapacity(_) | LaunchError::Unavailable(_) | LaunchError::Internal(_)),
    ) = &result
    {
        app.event("warn", "launch-failed", &format!("user #{user_id}: {e}"))
            .await;
    }
    result
}

/// How long a "starting your notebook" page keeps refreshing.
pub const WAIT_TICKET_SECS: i64 = 600;

/// Where a "starting your notebook" page goes next.
#[derive(Debug)]
pub enum Waited {
    /// Ready: the notebook URL.
    Ready(String),
    /// Still starting: refresh again.
    Starting,
    /// Unknown or expired ticket.
    Expired,
    /// The container could not be started.
    Failed,
}

/// Follows a wait ticket: the learner's notebook once it is ready. A ticket is as good as the
/// redirect it stands for (random, 128 bits, short-lived), so only the learner's browser has it.
pub async fn wait(app: &App, ticket: &str) -> Result<Waited, LaunchError> {
    if ticket.len() != 32 || !ticket.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(Waited::Expired);
    }
    let Some(id) = app.store.wait_ticket(ticket, crate::now()).await? else {
        return Ok(Waited::Expired);
    };
    let Some(c) = app.store.container(id).await? else {
        return Ok(Waited::Expired);
    };
    let Some(pool) = app.pool(&c.pool) else {
        return Ok(Waited::Failed);
    };
    Ok(match c.state() {
        ContainerState::Creating | ContainerState::Warming => Waited::Starting,
        ContainerState::Assigned if c.port.is_some() => {
            Waited::Ready(redirect(app, pool, &c, "waited")?.url)
        }
        _ => Waited::Failed,
    })
}

/// Step 9: the learner's container in the pool, whatever it takes.
async fn assign(app: &Arc<App>, pool: &PoolConfig, user_id: i64) -> Result<Redirect, LaunchError> {
    let deadline = Instant::now() + app.config.server.launch_wait;
    // A few rounds cover the races: a concurrent launch of the same learner reserving or claiming
    // between our look-up and our write sends us around again to find what it made; a claimed
    // container that does not answer sends us around for another.
    for _ in 0..6 {
        if let Some(c) = app.store.user_container(&pool.name, user_id).await? {
            let host_down = app.is_down(&c.host);
            match c.state() {
                ContainerState::Assigned | ContainerState::Ready if c.port.is_some() => {
                    // With the engine unreachable the notebook itself may still be up: a learner
                    // keeps working while Docker is away, and only gets "unavailable" if it is not.
                    if host_down && !notebook_answers(app, pool, &c).await {
                        return Err(host_unavailable(&c.host));
                    }
                    return redirect(app, pool, &c, "returning");
                }
                _ if host_down => return Err(host_unavailable(&c.host)),
                ContainerState::Stopped => {
                    let c = pool::restart_stopped(app, pool, &c).await?;
                    app.event(
                        "info",
                        "restart",
                        &format!("{} for user #{user_id}", c.name),
                    )
                    .await;
                    return redirect(app, pool, &c, "restarted");
                }
                _ => {
                    wait_until_settled(app, c.id, deadline).await?;
                    continue;
                }
            }
        }
        if let Some(volume) = app.store.user_volume(&pool.name, user_id).await? {
            // A returning learner whose container is gone: a new container on their own volume.
            match reserve_for_user(app, pool, user_id, &volume.name, false, Some(&volume.host))
                .await?
            {
                Some(row) => return start_for_user(app, pool, row, deadline, "recreated").await,
                None => continue,
            }
        }
        let down = app.down_hosts();
        if let Some(c) = app
            .store
            .claim_ready(&pool.name, user_id, crate::now(), down.as_deref())
            .await?
        {
            pool::refill_in_background(app.clone(), pool);
            // A warm container may have died since it became ready (before its event arrived):
            // hand it out only if Jupyter answers, else give the claim back and take another.
            if !notebook_answers(app, pool, &c).await {
                app.store
                    .unclaim(c.id, user_id, crate::now(), "did not answer when claimed")
                    .await?;
                app.event(
                    "warn",
                    "claim-failed",
                    &format!("{} did not answer; discarded", c.name),
                )
                .await;
                let app = app.clone();
                tokio::spawn(async move {
                    if let Err(e) = pool::discard(&app, &c).await {
                        tracing::warn!(container = %c.name, "cannot remove: {e}");
                    }
                });
                continue;
            }
            app.event("info", "claim", &format!("{} for user #{user_id}", c.name))
                .await;
            return redirect(app, pool, &c, "claimed");
        }
        let name = pool::new_container_name(&pool.name);
        let volume = format!("{name}-home");
        if let Some(row) = reserve_for_user(app, pool, user_id, &volume, true, None).await? {
            pool::refill_in_background(app.clone(), pool);
            return start_for_user(app, pool, row, deadline, "created").await;
        }
    }
    Err(LaunchError::Unavailable(
        "could not settle the learner's container".into(),
    ))
}

fn host_unavailable(host: &str) -> LaunchError {
    LaunchError::Unavailable(format!("docker host {host} is not answering"))
}

/// Whether the container's Jupyter answers `GET {base_url}api` (a quick HTTP call, not Docker).
async fn notebook_answers(app: &App, pool: &PoolConfig, c: &ContainerRow) -> bool {
    let (Some(host), Some(port)) = (app.config.host(&c.host), c.port) else {
        return false;
    };
    let url = format!("{}api", pool::probe_base(host, pool, &c.name, port));
    matches!(
        app.http.get(&url, &[], Duration::from_secs(3)).await,
        Ok(r) if r.status.is_success()
    )
}

/// Reserves an on-demand container row for the learner. `None` when a concurrent launch of the
/// same learner got there first.
async fn reserve_for_user(
    app: &App,
    pool: &PoolConfig,
    user_id: i64,
    volume: &str,
    new_volume: bool,
    pinned_host: Option<&str>,
) -> Result<Option<ContainerRow>, LaunchError> {
    let pool = &pool::effective(app, pool).await?;
    let host = pool::choose_host(app, pinned_host).await?;
    let name = volume
        .strip_suffix("-home")
        .filter(|_| new_volume)
        .map(str::to_owned);
    let name = name.unwrap_or_else(|| pool::new_container_name(&pool.name));
    let token = secret::new_token();
    let reserved = app
        .store
        .reserve_container(&Reservation {
            name: &name,
            pool: &pool.name,
            host: host.name(),
            token: &token,
            volume,
            new_volume,
            user_id: Some(user_id),
            now: crate::now(),
            max: i64::from(pool.max),
            warm: i64::from(pool.warm),
            owner: &app.instance,
        })
        .await?;
    match reserved {
        Reserved::Row(row) => Ok(Some(*row)),
        Reserved::UserHasOne => Ok(None),
        Reserved::Full => Err(LaunchError::NoCapacity(pool.name.clone())),
    }
}

/// Starts a container made for the learner, waiting at most until `deadline`; past it the learner
/// is told the notebook is starting while the work goes on in the background.
async fn start_for_user(
    app: &Arc<App>,
    pool: &PoolConfig,
    row: ContainerRow,
    deadline: Instant,
    outcome: &'static str,
) -> Result<Redirect, LaunchError> {
    app.event(
        "info",
        "spawn",
        &format!(
            "{} on {} for user #{}",
            row.name,
            row.host,
            row.user_id.unwrap_or(0)
        ),
    )
    .await;
    let row_id = row.id;
    let task = {
        let app = app.clone();
        let pool = pool.clone();
        tokio::spawn(async move { pool::start_reserved(&app, &pool, row).await })
    };
    match tokio::time::timeout_at(deadline.into(), task).await {
        Ok(Ok(Ok(c))) => redirect(app, pool, &c, outcome),
        Ok(Ok(Err(e))) => Err(e.into()),
        Ok(Err(e)) => Err(LaunchError::Internal(format!("container task: {e}"))),
        Err(_) => Err(LaunchError::StillStarting {
            container_id: row_id,
            ticket: None,
        }),
    }
}

/// Waits while a container is being created or warmed by someone else.
async fn wait_until_settled(app: &App, id: i64, deadline: Instant) -> Result<(), LaunchError> {
    loop {
        match app.store.container(id).await? {
            Some(c)
                if matches!(
                    c.state(),
                    ContainerState::Creating | ContainerState::Warming
                ) => {}
            _ => return Ok(()),
        }
        if Instant::now() >= deadline {
            return Err(LaunchError::StillStarting {
                container_id: id,
                ticket: None,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn redirect(
    app: &App,
    pool: &PoolConfig,
    c: &ContainerRow,
    outcome: &'static str,
) -> Result<Redirect, LaunchError> {
    let host = app.config.host(&c.host).ok_or_else(|| {
        LaunchError::Unavailable(format!("docker host {} is no longer configured", c.host))
    })?;
    let port = c
        .port
        .ok_or_else(|| LaunchError::Internal(format!("container {} has no port", c.name)))?;
    Ok(Redirect {
        url: pool::notebook_url(host, pool, &c.name, port, &c.token),
        container_id: c.id,
        outcome,
    })
}
