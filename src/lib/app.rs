//! The context both binaries build once: configuration, database, Docker hosts, HTTP client and the
//! deployment id. Everything else takes `&App`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use crate::config::{Config, PoolConfig};
use crate::docker::{DockerError, DockerHost};
use crate::http::HttpClient;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::secret::Secret;
use crate::store::{LaunchRecord, Recorded, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Docker(#[from] DockerError),
}

#[derive(Debug)]
pub struct App {
    pub config: Config,
    pub store: Store,
    pub hosts: Vec<Arc<DockerHost>>,
    pub http: HttpClient,
    /// Put on every Docker object as `mooc-lti.deployment`, so reconcile never touches another
    /// deployment's containers on a shared engine.
    pub deployment: String,
    /// The signature base string URI of `{public_url}/lti/launch`, computed once.
    pub launch_base_uri: String,
    /// Who acts, for the event log: `server` or the admin's identity.
    pub actor: String,
    /// This process: `host:pid:random`. Recorded on the containers it reserves, so that a restart
    /// can tell which unfinished creations a crash cut short.
    pub instance: String,
    /// Pools with a background refill running in this process (single flight).
    refilling: Mutex<HashSet<String>>,
    /// Docker hosts this process currently finds unreachable, with the reason. Read on the launch
    /// path (no I/O), written by the event watchers and by failed Docker calls.
    down: RwLock<HashMap<String, String>>,
    /// Consumer secrets read in the last few seconds (`None`: no such enabled consumer).
    secrets: RwLock<HashMap<String, (Option<Secret>, Instant)>>,
    /// The group-commit writers of launch records, started on first use.
    writers: tokio::sync::OnceCell<Vec<mpsc::Sender<PendingRecord>>>,
    next_writer: std::sync::atomic::AtomicUsize,
}

/// A launch record waiting for the group writer, with where to send its outcome.
type PendingRecord = (LaunchRecord, oneshot::Sender<Result<Recorded, StoreError>>);

/// How long a consumer secret is reused before it is read again: a rotated or removed consumer
/// stops working everywhere within this time.
pub const SECRET_CACHE_TTL: Duration = Duration::from_secs(5);

/// Most cached consumer look-ups (unknown keys included) before the cache starts over.
const SECRET_CACHE_MAX: usize = 10_000;

/// Most launches written in one group transaction.
const MAX_GROUP: usize = 256;

impl App {
    /// Connects to the database (migrating it) and prepares a client per Docker host. No Docker call
    /// is made here, so a host that is down does not stop anything from starting.
    pub async fn open(config: Config, actor: &str) -> Result<App, AppError> {
        let store = Store::connect(&config.database_url).await?;
        let deployment = store.deployment_id().await?;
        let hosts = config
            .docker_hosts
            .iter()
            .map(|h| DockerHost::new(h).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let launch_base_uri = crate::lti::base_string_uri(&config.server.public_url.launch_url());
        Ok(App {
            instance: instance_id(),
            launch_base_uri,
            config,
            store,
            hosts,
            http: HttpClient::new(),
            deployment,
            actor: actor.to_owned(),
            refilling: Mutex::new(HashSet::new()),
            down: RwLock::new(HashMap::new()),
            secrets: RwLock::new(HashMap::new()),
            writers: tokio::sync::OnceCell::new(),
            next_writer: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// True when `owner` (an instance id) names a process of this machine that no longer runs.
    pub fn owner_is_gone(&self, owner: &str) -> bool {
        let mut parts = owner.splitn(3, ':');
        let (Some(host), Some(pid)) = (parts.next(), parts.next()) else {
            return false;
        };
        if host != machine_name() {
            return false;
        }
        if owner == self.instance {
            return false;
        }
        match pid.parse::<u32>() {
            Ok(pid) if pid == std::process::id() => true,
            Ok(pid) => !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            Err(_) => false,
        }
    }

    pub fn host(&self, name: &str) -> Option<&Arc<DockerHost>> {
        self.hosts.iter().find(|h| h.name() == name)
    }

    pub fn pool(&self, name: &str) -> Option<&PoolConfig> {
        self.config.pool(name)
    }

    /// Marks a pool as being refilled; false when a refill is already running here.
    pub(crate) fn begin_refill(&self, pool: &str) -> bool {
        self.refilling
            .lock()
            .expect("refill set lock")
            .insert(pool.to_owned())
    }

    pub(crate) fn end_refill(&self, pool: &str) {
        self.refilling.lock().expect("refill set lock").remove(pool);
    }

    /// The secret of an enabled consumer, from a short-lived cache (the launch path reads no
    /// table for it while it is fresh).
    pub async fn consumer_secret(&self, key: &str) -> Result<Option<Secret>, StoreError> {
        if let Some((secret, at)) = self.secrets.read().expect("secret cache lock").get(key)
            && at.elapsed() < SECRET_CACHE_TTL
        {
            return Ok(secret.clone());
        }
        let secret = self.store.consumer_secret(key).await?;
        let mut cache = self.secrets.write().expect("secret cache lock");
        if cache.len() >= SECRET_CACHE_MAX {
            cache.clear();
        }
        cache.insert(key.to_owned(), (secret.clone(), Instant::now()));
        Ok(secret)
    }

    /// Records a verified launch through a group-commit writer: the launches arriving together
    /// share one transaction (one writer on SQLite, four taking turns on PostgreSQL).
    pub async fn record_launch(&self, record: LaunchRecord) -> Result<Recorded, StoreError> {
        let writers = self
            .writers
            .get_or_init(|| async {
                // SQLite has one writer at a time; PostgreSQL commits several groups in parallel.
                let n = if self.store.prefers_group_commit() {
                    1
                } else {
                    4
                };
                (0..n)
                    .map(|_| {
                        let (tx, rx) = mpsc::channel(4 * MAX_GROUP);
                        tokio::spawn(group_writer(self.store.clone(), rx));
                        tx
                    })
                    .collect::<Vec<_>>()
            })
            .await;
        let i = self
            .next_writer
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            % writers.len();
        let (reply, answer) = oneshot::channel();
        writers[i]
            .send((record, reply))
            .await
            .map_err(|_| closed_writer())?;
        answer.await.map_err(|_| closed_writer())?
    }

    /// True when this process last found the host unreachable.
    pub fn is_down(&self, host: &str) -> bool {
        self.down
            .read()
            .expect("host health lock")
            .contains_key(host)
    }

    /// The unreachable hosts, comma-separated, or `None` when all answer.
    pub fn down_hosts(&self) -> Option<String> {
        let down = self.down.read().expect("host health lock");
        if down.is_empty() {
            None
        } else {
            let mut names: Vec<&str> = down.keys().map(String::as_str).collect();
            names.sort_unstable();
            Some(names.join(","))
        }
    }

    /// Records a host as reachable or not, here and in the database (for `pool status`), and logs
    /// an event when it changes.
    pub async fn set_host_health(&self, host: &str, error: Option<String>) {
        let changed = {
            let mut down = self.down.write().expect("host health lock");
            match &error {
                Some(e) => down.insert(host.to_owned(), e.clone()).is_none(),
                None => down.remove(host).is_some(),
            }
        };
        if let Err(e) = self
            .store
            .set_host_status(host, error.is_none(), error.as_deref(), crate::now())
            .await
        {
            tracing::warn!("cannot record health of docker host {host}: {e}");
        }
        if changed {
            match &error {
                Some(e) => {
                    tracing::warn!(host, "docker host down: {e}");
                    self.event("error", "host-down", &format!("docker host {host}: {e}"))
                        .await;
                }
                None => {
                    tracing::info!(host, "docker host up again");
                    self.event(
                        "info",
                        "host-up",
                        &format!("docker host {host} answers again"),
                    )
                    .await;
                }
            }
        }
    }

    /// Appends to the event log; a failure to log is reported on stderr, never fatal.
    pub async fn event(&self, level: &str, kind: &str, message: &str) {
        if let Err(e) = self
            .store
            .event(level, kind, &self.actor, message, crate::now())
            .await
        {
            tracing::warn!("cannot write event {kind}: {e}");
        }
    }
}

/// This machine's name, for instance ids.
fn machine_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".into())
}

/// `host:pid:random`: unique per process, and says where it ran.
fn instance_id() -> String {
    format!(
        "{}:{}:{}",
        machine_name(),
        std::process::id(),
        crate::secret::random_hex(3)
    )
}

fn closed_writer() -> StoreError {
    StoreError::Group {
        message: "the launch writer stopped".into(),
        unavailable: true,
    }
}

/// Writes launch records in groups: whatever is waiting when a write starts goes into the same
/// transaction.
async fn group_writer(store: Store, mut rx: mpsc::Receiver<PendingRecord>) {
    let mut records = Vec::with_capacity(MAX_GROUP);
    let mut replies = Vec::with_capacity(MAX_GROUP);
    while let Some((record, reply)) = rx.recv().await {
        records.push(record);
        replies.push(reply);
        while records.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok((record, reply)) => {
                    records.push(record);
                    replies.push(reply);
                }
                Err(_) => break,
            }
        }
        let mut result = store.record_launch_group(&records).await;
        for _ in 0..3 {
            match &result {
                Err(e) if e.is_retryable() => {
                    tracing::debug!("launch group collided, retrying: {e}");
                    result = store.record_launch_group(&records).await;
                }
                _ => break,
            }
        }
        match result {
            Ok(outcomes) => {
                for (outcome, reply) in outcomes.into_iter().zip(replies.drain(..)) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                let message = e.to_string();
                let unavailable = e.is_unavailable();
                for reply in replies.drain(..) {
                    let _ = reply.send(Err(StoreError::Group {
                        message: message.clone(),
                        unavailable,
                    }));
                }
            }
        }
        records.clear();
    }
}
