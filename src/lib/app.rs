//! The context both binaries build once: configuration, database, Docker hosts, HTTP client and the
//! deployment id. Everything else takes `&App`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use crate::config::{Config, PoolConfig};
use crate::docker::{DockerError, DockerHost};
use crate::http::HttpClient;
use crate::store::{Store, StoreError};

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
}

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
