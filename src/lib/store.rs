//! The database: one seam over SQLite (the embedded default) and PostgreSQL (several servers), picked
//! from the URL scheme. Owns every SQL statement, the embedded migrations and the atomic claims.
//!
//! Statements are written once with `$N` placeholders, which both backends accept; where the dialects
//! differ (row locking) each backend gets its own text. Times are UTC seconds since the epoch.

use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

use crate::config::DatabaseUrl;
use crate::secret::Secret;

mod copy;
pub use copy::{CopyError, TableCopy};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("cannot migrate database {url}: {source}")]
    Migrate {
        url: String,
        source: sqlx::migrate::MigrateError,
    },
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    /// A grouped write failed; every launch of the group gets this copy of the error.
    #[error("database error: {message}")]
    Group { message: String, unavailable: bool },
}

impl StoreError {
    /// True when the transaction was rolled back only because it collided with another (deadlock,
    /// serialization failure): running it again is safe and will likely succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Sql(sqlx::Error::Database(e)) => {
                matches!(e.code().as_deref(), Some("40P01" | "40001"))
                    || e.message().contains("deadlock")
            }
            _ => false,
        }
    }

    /// True when the database refused a write because it is locked, read-only or full: the caller
    /// should answer "try again later", not "bug".
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Sql(sqlx::Error::Database(e)) => {
                // PostgreSQL: lock or statement timeout (55P03, 57014), read-only transaction
                // (25006), insufficient resources (53xxx: disk full, out of memory, too many
                // connections), admin shutdown (57P01-57P03). SQLite says it in words (BUSY,
                // LOCKED, READONLY, FULL, IOERR).
                let code = e.code().unwrap_or_default();
                let msg = e.message().to_ascii_lowercase();
                matches!(
                    code.as_ref(),
                    "55P03" | "57014" | "25006" | "57P01" | "57P02" | "57P03"
                ) || code.starts_with("53")
                    || msg.contains("locked")
                    || msg.contains("readonly")
                    || msg.contains("read-only")
                    || msg.contains("disk")
                    || msg.contains("full")
                    || msg.contains("i/o error")
            }
            StoreError::Sql(
                sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed,
            ) => true,
            StoreError::Connect { .. } => true,
            StoreError::Group { unavailable, .. } => *unavailable,
            _ => false,
        }
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A value bound to a built statement.
#[derive(Debug, Clone)]
enum Bind {
    Int(i64),
    Text(String),
}

/// A WHERE clause of the filters actually given, with numbered placeholders; no input ever goes
/// into the text.
#[derive(Debug, Default)]
struct Where {
    conds: Vec<String>,
    binds: Vec<Bind>,
}

impl Where {
    /// Adds a condition whose one `$` is the next placeholder.
    fn cond(&mut self, template: &str, value: Bind) {
        self.binds.push(value);
        self.conds
            .push(template.replacen('$', &format!("${}", self.binds.len()), 1));
    }

    fn raw(&mut self, cond: &str) {
        self.conds.push(cond.to_owned());
    }

    /// Binds the values, in order, to a query built from [`Where::sql`].
    fn bind_to<'q, DB, O>(
        &'q self,
        mut q: sqlx::query::QueryAs<'q, DB, O, <DB as sqlx::Database>::Arguments>,
    ) -> sqlx::query::QueryAs<'q, DB, O, <DB as sqlx::Database>::Arguments>
    where
        DB: sqlx::Database,
        i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
        &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    {
        for b in &self.binds {
            q = match b {
                Bind::Int(i) => q.bind(*i),
                Bind::Text(t) => q.bind(t.as_str()),
            };
        }
        q
    }

    fn sql(&self) -> String {
        if self.conds.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.conds.join(" AND "))
        }
    }
}

/// Most rows in one statement of a launch group.
const GROUP_CHUNK_MAX: usize = 64;

/// The rows `0..n` as consecutive ranges of power-of-two sizes up to [`GROUP_CHUNK_MAX`]
/// (45 -> 32, 8, 4, 1). A group's statements then come in a handful of texts, which stay prepared
/// in each connection's statement cache: one statement text per group size had SQLite parse a
/// new statement for almost every group and the cache hold dozens of large ones (server memory
/// grew from 15 to 39 MiB under load).
fn group_chunks(n: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < n {
        let left = n - start;
        let size = if left >= GROUP_CHUNK_MAX {
            GROUP_CHUNK_MAX
        } else {
            1 << (usize::BITS - 1 - left.leading_zeros())
        };
        out.push(start..start + size);
        start += size;
    }
    out
}

/// `($k,$k+1),($k+2,$k+3),…`: `rows` tuples of `cols` placeholders numbered from `first`, or
/// with `anonymous` all `?` (taken in order).
fn tuples_from(rows: usize, cols: usize, first: usize, anonymous: bool) -> String {
    let mut out = String::with_capacity(rows * cols * 5);
    let mut n = first;
    for r in 0..rows {
        if r > 0 {
            out.push(',');
        }
        out.push('(');
        for c in 0..cols {
            if c > 0 {
                out.push(',');
            }
            if anonymous {
                out.push('?');
            } else {
                out.push('$');
                out.push_str(&n.to_string());
            }
            n += 1;
        }
        out.push(')');
    }
    out
}

/// Life of a notebook container (DESIGN.md section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum ContainerState {
    /// Row reserved, Docker objects being created.
    Creating,
    /// Started; waiting for Jupyter to answer.
    Warming,
    /// Jupyter answers; waiting for a learner.
    Ready,
    /// Serving one learner.
    Assigned,
    /// A learner's container, stopped (culled or died); started again on their next launch.
    Stopped,
    /// Gone from Docker; the row is history.
    Removed,
    /// Could not be created or never became ready; never handed out.
    Failed,
}

impl ContainerState {
    /// Every state but removed and failed.
    pub const LIVE: [ContainerState; 5] = [
        ContainerState::Creating,
        ContainerState::Warming,
        ContainerState::Ready,
        ContainerState::Assigned,
        ContainerState::Stopped,
    ];

    pub const ALL: [ContainerState; 7] = [
        ContainerState::Creating,
        ContainerState::Warming,
        ContainerState::Ready,
        ContainerState::Assigned,
        ContainerState::Stopped,
        ContainerState::Removed,
        ContainerState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ContainerState::Creating => "creating",
            ContainerState::Warming => "warming",
            ContainerState::Ready => "ready",
            ContainerState::Assigned => "assigned",
            ContainerState::Stopped => "stopped",
            ContainerState::Removed => "removed",
            ContainerState::Failed => "failed",
        }
    }

    /// States of a container that exists (or is about to) and counts against a pool's `max`.
    pub fn is_live(self) -> bool {
        !matches!(self, ContainerState::Removed | ContainerState::Failed)
    }
}

impl FromStr for ContainerState {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        ContainerState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "{s:?} is not a state (one of creating, warming, ready, assigned, stopped, removed, failed)"
                )
            })
    }
}

impl std::fmt::Display for ContainerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A registered LMS. The secret is not part of this struct, so listing never exposes it.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct Consumer {
    pub key: String,
    pub name: Option<String>,
    pub enabled: bool,
    pub created_at: i64,
}

/// A container row. `token` is skipped when serialised and hidden in `Debug`.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct ContainerRow {
    pub id: i64,
    pub name: String,
    pub pool: String,
    pub host: String,
    pub docker_id: Option<String>,
    pub port: Option<i64>,
    #[serde(skip)]
    #[sqlx(try_from = "String")]
    pub token: Secret,
    pub volume: String,
    #[sqlx(try_from = "String")]
    pub state: StateColumn,
    pub user_id: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub ready_at: Option<i64>,
    pub assigned_at: Option<i64>,
    pub last_activity: Option<i64>,
    pub error: Option<String>,
    /// The process that reserved it (`host:pid:random`).
    pub owner: Option<String>,
}

/// A state read from the database; an unknown text (a newer version's state) reads as `Failed` so it
/// is never handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct StateColumn(pub ContainerState);

impl From<String> for StateColumn {
    fn from(s: String) -> StateColumn {
        StateColumn(s.parse().unwrap_or(ContainerState::Failed))
    }
}

impl ContainerRow {
    pub fn state(&self) -> ContainerState {
        self.state.0
    }
}

macro_rules! container_cols {
    () => {
        "id, name, pool, host, docker_id, port, token, volume, state, user_id, created_at, updated_at, \
         ready_at, assigned_at, last_activity, error, owner"
    };
}

/// A learner as the LMS identifies them: (consumer, user_id). Name and email only when sent.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct UserRow {
    pub id: i64,
    pub consumer_key: String,
    pub user_id: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub first_seen: i64,
    pub last_seen: i64,
}

/// One launch as recorded, with the learner's LMS id.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct SessionRow {
    pub id: i64,
    pub at: i64,
    pub user_id: Option<i64>,
    pub lms_user_id: Option<String>,
    pub consumer_key: String,
    pub context_id: Option<String>,
    pub resource_link_id: Option<String>,
    pub roles: Option<String>,
    pub remote_addr: Option<String>,
    pub pool: Option<String>,
    pub outcome: String,
    pub container_id: Option<i64>,
}

/// Filters for [`Store::list_sessions`].
#[derive(Debug, Clone, Default)]
pub struct SessionFilter<'a> {
    /// An LMS `user_id`, or `#ID`.
    pub user: Option<&'a str>,
    pub course: Option<&'a str>,
    pub since: Option<i64>,
    pub limit: i64,
}

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct NonceRow {
    pub consumer_key: String,
    pub nonce: String,
    pub ts: i64,
}

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct EventRow {
    pub id: i64,
    pub at: i64,
    pub level: String,
    pub kind: String,
    pub actor: String,
    pub message: String,
}

/// Filters for [`Store::list_events`].
#[derive(Debug, Clone, Default)]
pub struct EventFilter<'a> {
    /// Only events with a larger id (following).
    pub after_id: Option<i64>,
    pub since: Option<i64>,
    /// Lowest level shown: debug, info, warn or error.
    pub min_level: Option<&'a str>,
    pub kind: Option<&'a str>,
    pub limit: i64,
}

/// The rank of a level name, for filtering.
pub fn level_rank(level: &str) -> i64 {
    match level {
        "error" => 3,
        "warn" => 2,
        "info" => 1,
        _ => 0,
    }
}

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct AdminRow {
    pub identity: String,
    pub name: Option<String>,
    pub role: String,
    pub created_at: i64,
    pub created_by: String,
}

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct AuditRow {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub command: String,
    pub outcome: String,
}

/// A Docker host's health as a server last saw it.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct HostStatusRow {
    pub name: String,
    pub up: bool,
    pub error: Option<String>,
    pub checked_at: i64,
    /// When `up` last changed.
    pub changed_at: i64,
}

/// A volume row: a learner's files in one pool, on one host.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct VolumeRow {
    pub name: String,
    pub pool: String,
    pub host: String,
    pub user_id: Option<i64>,
    pub created_at: i64,
    pub claimed_at: Option<i64>,
}

/// What a launch records, whatever its outcome.
#[derive(Debug, Clone, Default)]
pub struct NewSession<'a> {
    pub at: i64,
    pub user_id: Option<i64>,
    pub consumer_key: &'a str,
    pub context_id: Option<&'a str>,
    pub resource_link_id: Option<&'a str>,
    pub roles: Option<&'a str>,
    pub remote_addr: Option<String>,
    pub pool: Option<&'a str>,
    pub outcome: &'a str,
    pub container_id: Option<i64>,
}

/// Filters for [`Store::list_containers`]; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct ContainerFilter<'a> {
    pub pool: Option<&'a str>,
    pub state: Option<ContainerState>,
    pub host: Option<&'a str>,
    pub user_id: Option<i64>,
    /// Only states that exist or are about to (not removed or failed).
    pub live_only: bool,
    pub limit: Option<i64>,
}

/// What the launch path writes for one verified launch.
#[derive(Debug, Clone, Default)]
pub struct LaunchRecord {
    pub consumer_key: String,
    pub nonce: String,
    pub ts: i64,
    pub user_id: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub now: i64,
    /// The pool serving the course; `None` when no pool does (nothing more is recorded here).
    pub pool: Option<String>,
    pub context_id: Option<String>,
    pub resource_link_id: Option<String>,
    pub roles: Option<String>,
    pub remote_addr: Option<String>,
    /// Hosts this process finds unreachable (comma-separated): their containers take the slow path.
    pub down_hosts: Option<String>,
}

/// The outcome of recording a launch.
#[derive(Debug)]
pub enum Recorded {
    /// The nonce was used before: nothing was written.
    Replay,
    /// The learner's row id, and when they have a running container in the pool, the session
    /// recorded for going back to it.
    New {
        user: i64,
        returning: Option<(i64, Box<ContainerRow>)>,
    },
}

/// A container to reserve before any Docker call.
#[derive(Debug, Clone)]
pub struct Reservation<'a> {
    pub name: &'a str,
    pub pool: &'a str,
    pub host: &'a str,
    pub token: &'a Secret,
    pub volume: &'a str,
    /// True when `volume` is new and its row must be created with the container.
    pub new_volume: bool,
    /// Set for an on-demand container made for one learner; `None` for a warm one.
    pub user_id: Option<i64>,
    pub now: i64,
    /// Most live containers in the pool.
    pub max: i64,
    /// For warm reservations: most ready-or-coming unassigned containers in the pool.
    pub warm: i64,
    /// The reserving process (`App::instance`).
    pub owner: &'a str,
}

/// How a reservation went.
#[derive(Debug)]
pub enum Reserved {
    Row(Box<ContainerRow>),
    /// The pool is at `max` (or, for warm reservations, at its warm target).
    Full,
    /// The learner already has a live container in this pool (a concurrent launch made it).
    UserHasOne,
}

#[derive(Debug, Clone)]
enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The database handle. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
}

/// Runs `$body` with `$pool` bound to the backend's concrete pool: the statement is written once and
/// type-checked for each backend.
macro_rules! with_pool {
    ($self:expr, $pool:ident => $body:expr) => {
        match &$self.backend {
            Backend::Sqlite($pool) => $body,
            Backend::Postgres($pool) => $body,
        }
    };
}

/// A 64-bit key for PostgreSQL advisory locks (FNV-1a: stable across processes and versions).
fn lock_key(name: &str) -> i64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h as i64
}

impl Store {
    /// Opens the database named by the URL (creating an SQLite file when missing) and applies the
    /// embedded migrations.
    pub async fn connect(url: &DatabaseUrl) -> Result<Store> {
        let redacted = url.redacted();
        let connect_err = |source| StoreError::Connect {
            url: redacted.clone(),
            source,
        };
        let store = if url.0.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(&url.0)
                .map_err(connect_err)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .pragma("temp_store", "memory")
                // 1 MiB of page cache per connection (SQLite's default is 2): the hot tables'
                // indexes fit, and the server stays small.
                .pragma("cache_size", "-1024");
            // One writer at a time is all SQLite allows, and launches write through one group
            // writer: a few connections serve the reads beside it.
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .acquire_timeout(Duration::from_secs(15))
                .connect_with(options)
                .await
                .map_err(connect_err)?;
            sqlx::migrate!("migrations/sqlite")
                .run(&pool)
                .await
                .map_err(|source| StoreError::Migrate {
                    url: redacted.clone(),
                    source,
                })?;
            Store {
                backend: Backend::Sqlite(pool),
            }
        } else {
            // Bounded waits: a locked table or a stuck statement becomes a clear error (503 for a
            // learner), never a launch that hangs.
            let options = PgConnectOptions::from_str(&url.0)
                .map_err(connect_err)?
                .options([("lock_timeout", "10s"), ("statement_timeout", "30s")]);
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(15))
                .connect_with(options)
                .await
                .map_err(connect_err)?;
            // Two processes starting at once must not both run the migrations.
            sqlx::migrate!("migrations/postgres")
                .run(&pool)
                .await
                .map_err(|source| StoreError::Migrate {
                    url: redacted.clone(),
                    source,
                })?;
            Store {
                backend: Backend::Postgres(pool),
            }
        };
        Ok(store)
    }

    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    pub async fn close(&self) {
        with_pool!(self, pool => pool.close().await)
    }

    /// This deployment's id: made once, stored, and put on every Docker object so that reconcile only
    /// ever touches its own containers.
    pub async fn deployment_id(&self) -> Result<String> {
        let candidate = crate::secret::random_hex(6);
        with_pool!(self, pool => {
            sqlx::query("INSERT INTO meta (key, value) VALUES ('deployment', $1) ON CONFLICT (key) DO NOTHING")
                .bind(&candidate)
                .execute(pool)
                .await?;
            Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = 'deployment'")
                .fetch_one(pool)
                .await?)
        })
    }

    /// A cheap round trip, for health checks.
    pub async fn ping(&self) -> Result<()> {
        with_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await?.rows_affected());
        Ok(())
    }

    // ---- consumers ----

    /// Registers a consumer; false when the key exists already.
    pub async fn add_consumer(
        &self,
        key: &str,
        secret: &Secret,
        name: Option<&str>,
        now: i64,
    ) -> Result<bool> {
        let done = with_pool!(self, pool => sqlx::query(
            "INSERT INTO consumers (key, secret, name, enabled, created_at) VALUES ($1, $2, $3, TRUE, $4) \
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(secret.expose())
        .bind(name)
        .bind(now)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(done == 1)
    }

    pub async fn list_consumers(&self) -> Result<Vec<Consumer>> {
        Ok(with_pool!(self, pool => sqlx::query_as(
            "SELECT key, name, enabled, created_at FROM consumers ORDER BY key",
        )
        .fetch_all(pool)
        .await?))
    }

    /// Removes a consumer; false when there was none.
    pub async fn remove_consumer(&self, key: &str) -> Result<bool> {
        let done = with_pool!(self, pool => sqlx::query("DELETE FROM consumers WHERE key = $1")
            .bind(key)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(done == 1)
    }

    /// Replaces a consumer's secret; false when there is no such consumer.
    pub async fn set_consumer_secret(&self, key: &str, secret: &Secret) -> Result<bool> {
        let done = with_pool!(self, pool => sqlx::query("UPDATE consumers SET secret = $2 WHERE key = $1")
            .bind(key)
            .bind(secret.expose())
            .execute(pool)
            .await?
            .rows_affected());
        Ok(done == 1)
    }

    /// The secret of an enabled consumer.
    pub async fn consumer_secret(&self, key: &str) -> Result<Option<Secret>> {
        let secret: Option<String> = with_pool!(self, pool => sqlx::query_scalar(
            "SELECT secret FROM consumers WHERE key = $1 AND enabled",
        )
        .bind(key)
        .fetch_optional(pool)
        .await?);
        Ok(secret.map(Secret::from))
    }

    // ---- nonces ----

    /// Records a nonce atomically; false when this consumer used it already (a replay).
    pub async fn insert_nonce(&self, consumer_key: &str, nonce: &str, ts: i64) -> Result<bool> {
        let done = with_pool!(self, pool => sqlx::query(
            "INSERT INTO nonces (consumer_key, nonce, ts) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(consumer_key)
        .bind(nonce)
        .bind(ts)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(done == 1)
    }

    /// Deletes nonces whose timestamp is older than `before`; returns how many.
    pub async fn prune_nonces(&self, before: i64) -> Result<u64> {
        Ok(
            with_pool!(self, pool => sqlx::query("DELETE FROM nonces WHERE ts < $1")
            .bind(before)
            .execute(pool)
            .await?
            .rows_affected()),
        )
    }

    // ---- the launch record (the hot path's only write) ----

    /// Records one verified launch in one transaction: the nonce (a replay stops here), the
    /// learner, and, when they already have a running container in the pool, the session that sends
    /// them back to it.
    pub async fn record_launch(&self, r: &LaunchRecord) -> Result<Recorded> {
        Ok(self
            .record_launches(std::slice::from_ref(r))
            .await?
            .remove(0))
    }

    /// Records a batch of launches in one transaction (group commit): one lock and one commit for
    /// many concurrent launches. Each gets its own outcome; a database error fails the batch.
    pub async fn record_launches(&self, batch: &[LaunchRecord]) -> Result<Vec<Recorded>> {
        macro_rules! record {
            ($tx:expr, $returning_sql:literal) => {{
                let mut tx = $tx;
                let mut out = Vec::with_capacity(batch.len());
                for r in batch {
                    let fresh = sqlx::query(
                        "INSERT INTO nonces (consumer_key, nonce, ts) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    )
                    .bind(&r.consumer_key)
                    .bind(&r.nonce)
                    .bind(r.ts)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                        == 1;
                    if !fresh {
                        out.push(Recorded::Replay);
                        continue;
                    }
                    let user: i64 = sqlx::query_scalar(
                        "INSERT INTO users (consumer_key, user_id, name, email, first_seen, last_seen) \
                         VALUES ($1, $2, $3, $4, $5, $5) \
                         ON CONFLICT (consumer_key, user_id) DO UPDATE SET \
                           last_seen = excluded.last_seen, \
                           name = COALESCE(excluded.name, users.name), \
                           email = COALESCE(excluded.email, users.email) \
                         RETURNING id",
                    )
                    .bind(&r.consumer_key)
                    .bind(&r.user_id)
                    .bind(&r.name)
                    .bind(&r.email)
                    .bind(r.now)
                    .fetch_one(&mut *tx)
                    .await?;
                    let mut returning = None;
                    if let Some(pool_name) = &r.pool {
                        let c: Option<ContainerRow> = sqlx::query_as(concat!(
                            "SELECT ", container_cols!(), " FROM containers \
                             WHERE pool = $1 AND user_id = $2 AND state = 'assigned' AND port IS NOT NULL AND ",
                            $returning_sql
                        ))
                        .bind(pool_name)
                        .bind(user)
                        .bind(&r.down_hosts)
                        .fetch_optional(&mut *tx)
                        .await?;
                        if let Some(c) = c {
                            let session: i64 = sqlx::query_scalar(
                                "INSERT INTO sessions (at, user_id, consumer_key, context_id, resource_link_id, roles, \
                                 remote_addr, pool, outcome, container_id) \
                                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'returning', $9) RETURNING id",
                            )
                            .bind(r.now)
                            .bind(user)
                            .bind(&r.consumer_key)
                            .bind(&r.context_id)
                            .bind(&r.resource_link_id)
                            .bind(&r.roles)
                            .bind(&r.remote_addr)
                            .bind(pool_name)
                            .bind(c.id)
                            .fetch_one(&mut *tx)
                            .await?;
                            returning = Some((session, Box::new(c)));
                        }
                    }
                    out.push(Recorded::New { user, returning });
                }
                tx.commit().await?;
                Ok(out)
            }};
        }
        match &self.backend {
            Backend::Sqlite(pool) => record!(
                pool.begin_with("BEGIN IMMEDIATE").await?,
                "($3 IS NULL OR instr(',' || $3 || ',', ',' || host || ',') = 0)"
            ),
            Backend::Postgres(pool) => record!(
                pool.begin().await?,
                "($3 IS NULL OR strpos(',' || $3 || ',', ',' || host || ',') = 0)"
            ),
        }
    }

    /// [`Store::record_launches`] with multi-row statements per step (see [`group_chunks`]): a
    /// group costs a handful of statements (hand-offs to SQLite's thread, round trips to
    /// PostgreSQL) and one commit, instead of four statements per launch.
    pub async fn record_launch_group(&self, batch: &[LaunchRecord]) -> Result<Vec<Recorded>> {
        use std::collections::{HashMap, HashSet};
        // On SQLite the group's statements use anonymous `?` placeholders: sqlx finds each `$N`
        // with sqlite3_bind_parameter_name, a linear scan of the statement's names, so binding a
        // group's hundreds of numbered parameters took time quadratic in the group (6% of the
        // server's CPU under load). Anonymous ones are bound in order, without a look-up.
        let anonymous = matches!(self.backend, Backend::Sqlite(_));
        let tuples = |rows: usize, cols: usize| tuples_from(rows, cols, 1, anonymous);
        // Placeholders only: no input reaches the statement text.
        let text = |s: String| sqlx::AssertSqlSafe(s);
        macro_rules! group {
            ($begin:expr, $not_down:literal, $down_binds:literal) => {{
        let mut tx = $begin;

        // 1. Nonces: the ones that come back are new; a nonce sent twice in the group is new once.
        let mut fresh: HashSet<(String, String)> = HashSet::with_capacity(batch.len());
        for part in group_chunks(batch.len()).into_iter().map(|c| &batch[c]) {
            let mut q = sqlx::query_as::<_, (String, String)>(text(format!(
                "INSERT INTO nonces (consumer_key, nonce, ts) VALUES {} ON CONFLICT DO NOTHING \
                 RETURNING consumer_key, nonce",
                tuples(part.len(), 3)
            )));
            for r in part {
                q = q.bind(&r.consumer_key).bind(&r.nonce).bind(r.ts);
            }
            fresh.extend(q.fetch_all(&mut *tx).await?);
        }
        let is_new: Vec<bool> = batch
            .iter()
            .map(|r| fresh.remove(&(r.consumer_key.clone(), r.nonce.clone())))
            .collect();
        let new: Vec<&LaunchRecord> = batch
            .iter()
            .zip(&is_new)
            .filter(|(_, n)| **n)
            .map(|(r, _)| r)
            .collect();
        // One row per learner in the upsert (PostgreSQL refuses to update a row twice in one
        // statement); the last launch's name and email win.
        let mut learners: Vec<&LaunchRecord> = Vec::with_capacity(new.len());
        {
            let mut seen: HashMap<(&str, &str), usize> = HashMap::new();
            for r in &new {
                match seen.get(&(r.consumer_key.as_str(), r.user_id.as_str())) {
                    Some(&i) => learners[i] = r,
                    None => {
                        seen.insert((r.consumer_key.as_str(), r.user_id.as_str()), learners.len());
                        learners.push(r);
                    }
                }
            }
        }
        // In key order, so that concurrent groups lock learners' rows in the same order and
        // never deadlock each other (PostgreSQL writes several groups at once).
        learners.sort_by(|a, b| (&a.consumer_key, &a.user_id).cmp(&(&b.consumer_key, &b.user_id)));

        // 2. Learners.
        let mut ids: HashMap<(String, String), i64> = HashMap::with_capacity(learners.len());
        for part in group_chunks(learners.len()).into_iter().map(|c| &learners[c]) {
            let mut q = sqlx::query_as::<_, (i64, String, String)>(text(format!(
                "INSERT INTO users (consumer_key, user_id, name, email, first_seen, last_seen) VALUES {} \
                 ON CONFLICT (consumer_key, user_id) DO UPDATE SET last_seen = excluded.last_seen, \
                   name = COALESCE(excluded.name, users.name), email = COALESCE(excluded.email, users.email) \
                 RETURNING id, consumer_key, user_id",
                tuples(part.len(), 6)
            )));
            for r in part {
                q = q
                    .bind(&r.consumer_key)
                    .bind(&r.user_id)
                    .bind(&r.name)
                    .bind(&r.email)
                    .bind(r.now)
                    .bind(r.now);
            }
            for (id, key, user) in q.fetch_all(&mut *tx).await? {
                ids.insert((key, user), id);
            }
        }
        let user_of = |r: &LaunchRecord| {
            ids.get(&(r.consumer_key.clone(), r.user_id.clone()))
                .copied()
        };

        // 3. Their running containers, for those whose course has a pool.
        let wanted: Vec<(&str, i64)> = new
            .iter()
            .filter_map(|r| Some((r.pool.as_deref()?, user_of(r)?)))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let mut running: HashMap<(String, i64), ContainerRow> = HashMap::new();
        let down = batch.last().and_then(|r| r.down_hosts.clone());
        for part in group_chunks(wanted.len()).into_iter().map(|c| &wanted[c]) {
            let mut q = sqlx::query_as::<_, ContainerRow>(text(format!(
                concat!(
                    "SELECT ",
                    container_cols!(),
                    " FROM containers WHERE state = 'assigned' AND port IS NOT NULL AND ",
                    $not_down,
                    " AND (pool, user_id) IN (VALUES {})"
                ),
                tuples_from(part.len(), 2, 2, anonymous)
            )));
            for _ in 0..$down_binds {
                q = q.bind(down.clone());
            }
            for (pool_name, user) in part {
                q = q.bind(*pool_name).bind(*user);
            }
            for c in q.fetch_all(&mut *tx).await? {
                if let Some(u) = c.user_id {
                    running.insert((c.pool.clone(), u), c);
                }
            }
        }

        // 4. Sessions of the returning learners.
        let returning: Vec<(&LaunchRecord, i64, &ContainerRow)> = new
            .iter()
            .filter_map(|r| {
                let user = user_of(r)?;
                let c = running.get(&(r.pool.clone()?, user))?;
                Some((*r, user, c))
            })
            .collect();
        for part in group_chunks(returning.len()).into_iter().map(|c| &returning[c]) {
            let mut q = sqlx::query(text(format!(
                "INSERT INTO sessions (at, user_id, consumer_key, context_id, resource_link_id, roles, \
                 remote_addr, pool, outcome, container_id) VALUES {}",
                tuples(part.len(), 10)
            )));
            for (r, user, c) in part {
                q = q
                    .bind(r.now)
                    .bind(*user)
                    .bind(&r.consumer_key)
                    .bind(&r.context_id)
                    .bind(&r.resource_link_id)
                    .bind(&r.roles)
                    .bind(&r.remote_addr)
                    .bind(&r.pool)
                    .bind("returning")
                    .bind(c.id);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;

        Ok(batch
            .iter()
            .zip(is_new)
            .map(|(r, new)| {
                if !new {
                    return Recorded::Replay;
                }
                let user = user_of(r).unwrap_or_default();
                let returning = r
                    .pool
                    .as_ref()
                    .and_then(|p| running.get(&(p.clone(), user)))
                    .map(|c| (0, Box::new(c.clone())));
                Recorded::New { user, returning }
            })
            .collect())
            }};
        }
        match &self.backend {
            Backend::Sqlite(pool) => group!(
                pool.begin_with("BEGIN IMMEDIATE").await?,
                "(? IS NULL OR instr(',' || ? || ',', ',' || host || ',') = 0)",
                2
            ),
            Backend::Postgres(pool) => group!(
                pool.begin().await?,
                "($1 IS NULL OR strpos(',' || $1 || ',', ',' || host || ',') = 0)",
                1
            ),
        }
    }

    /// True for SQLite, whose single writer gains from grouping concurrent launches.
    pub fn prefers_group_commit(&self) -> bool {
        matches!(self.backend, Backend::Sqlite(_))
    }

    // ---- users and sessions ----

    /// Creates or refreshes the user (consumer, user_id); name and email are updated when sent.
    /// Returns the user's row id.
    pub async fn upsert_user(
        &self,
        consumer_key: &str,
        user_id: &str,
        name: Option<&str>,
        email: Option<&str>,
        now: i64,
    ) -> Result<i64> {
        Ok(with_pool!(self, pool => sqlx::query_scalar(
            "INSERT INTO users (consumer_key, user_id, name, email, first_seen, last_seen) \
             VALUES ($1, $2, $3, $4, $5, $5) \
             ON CONFLICT (consumer_key, user_id) DO UPDATE SET \
               last_seen = excluded.last_seen, \
               name = COALESCE(excluded.name, users.name), \
               email = COALESCE(excluded.email, users.email) \
             RETURNING id",
        )
        .bind(consumer_key)
        .bind(user_id)
        .bind(name)
        .bind(email)
        .bind(now)
        .fetch_one(pool)
        .await?))
    }

    /// Learners matching `who`: `#ID` (internal id) or an LMS `user_id`, optionally of one consumer.
    pub async fn find_users(&self, who: &str, consumer: Option<&str>) -> Result<Vec<UserRow>> {
        let internal: Option<i64> = who.strip_prefix('#').and_then(|n| n.parse().ok());
        Ok(with_pool!(self, pool => sqlx::query_as(
            "SELECT id, consumer_key, user_id, name, email, first_seen, last_seen FROM users \
             WHERE (($1 IS NOT NULL AND id = $1) OR ($1 IS NULL AND user_id = $2)) \
               AND ($3 IS NULL OR consumer_key = $3) ORDER BY id",
        )
        .bind(internal)
        .bind(who)
        .bind(consumer)
        .fetch_all(pool)
        .await?))
    }

    pub async fn insert_session(&self, s: &NewSession<'_>) -> Result<i64> {
        Ok(with_pool!(self, pool => sqlx::query_scalar(
            "INSERT INTO sessions (at, user_id, consumer_key, context_id, resource_link_id, roles, \
             remote_addr, pool, outcome, container_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
        )
        .bind(s.at)
        .bind(s.user_id)
        .bind(s.consumer_key)
        .bind(s.context_id)
        .bind(s.resource_link_id)
        .bind(s.roles)
        .bind(s.remote_addr.as_deref())
        .bind(s.pool)
        .bind(s.outcome)
        .bind(s.container_id)
        .fetch_one(pool)
        .await?))
    }

    // ---- containers ----

    pub async fn container(&self, id: i64) -> Result<Option<ContainerRow>> {
        Ok(with_pool!(self, pool => sqlx::query_as(concat!(
            "SELECT ", container_cols!(), " FROM containers WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(pool)
        .await?))
    }

    /// The learner's live container in a pool, if any.
    pub async fn user_container(
        &self,
        pool_name: &str,
        user_id: i64,
    ) -> Result<Option<ContainerRow>> {
        Ok(with_pool!(self, pool => sqlx::query_as(concat!(
            "SELECT ", container_cols!(), " FROM containers \
             WHERE pool = $1 AND user_id = $2 AND state NOT IN ('removed', 'failed')"
        ))
        .bind(pool_name)
        .bind(user_id)
        .fetch_optional(pool)
        .await?))
    }

    /// The learner's volume in a pool, if they ever had a container there.
    pub async fn user_volume(&self, pool_name: &str, user_id: i64) -> Result<Option<VolumeRow>> {
        Ok(with_pool!(self, pool => sqlx::query_as(
            "SELECT name, pool, host, user_id, created_at, claimed_at FROM volumes \
             WHERE pool = $1 AND user_id = $2",
        )
        .bind(pool_name)
        .bind(user_id)
        .fetch_optional(pool)
        .await?))
    }

    /// Claims one ready, unassigned container of the pool for the learner, and makes its volume
    /// theirs, atomically. `None` when no container is ready. A learner never gets two containers
    /// and a container never gets two learners: the claim is one locked update, and the unique index
    /// on (pool, user) turns a concurrent second claim for the same learner into `None` + retry.
    /// `down_hosts` (comma-separated host names, or `None`) are skipped: their containers cannot be
    /// reached.
    pub async fn claim_ready(
        &self,
        pool_name: &str,
        user_id: i64,
        now: i64,
        down_hosts: Option<&str>,
    ) -> Result<Option<ContainerRow>> {
        macro_rules! claim {
            ($begin:expr, $select:literal) => {{
                let mut tx = $begin;
                let claimed: Option<ContainerRow> = match sqlx::query_as(concat!(
                    "UPDATE containers SET state = 'assigned', user_id = $1, assigned_at = $2, \
                     updated_at = $2, last_activity = $2 \
                     WHERE id = (",
                    $select,
                    ") RETURNING ",
                    container_cols!()
                ))
                .bind(user_id)
                .bind(now)
                .bind(pool_name)
                .bind(down_hosts)
                .fetch_optional(&mut *tx)
                .await
                {
                    Ok(row) => row,
                    Err(e) if is_unique_violation(&e) => return Ok(None),
                    Err(e) => return Err(e.into()),
                };
                if let Some(c) = &claimed {
                    sqlx::query("UPDATE volumes SET user_id = $1, claimed_at = $2 WHERE name = $3")
                        .bind(user_id)
                        .bind(now)
                        .bind(&c.volume)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(claimed)
            }};
        }
        match &self.backend {
            Backend::Sqlite(pool) => claim!(
                pool.begin_with("BEGIN IMMEDIATE").await?,
                "SELECT id FROM containers WHERE pool = $3 AND state = 'ready' AND user_id IS NULL \
                 AND ($4 IS NULL OR instr(',' || $4 || ',', ',' || host || ',') = 0) ORDER BY id LIMIT 1"
            ),
            Backend::Postgres(pool) => claim!(
                pool.begin().await?,
                "SELECT id FROM containers WHERE pool = $3 AND state = 'ready' AND user_id IS NULL \
                 AND ($4 IS NULL OR strpos(',' || $4 || ',', ',' || host || ',') = 0) \
                 ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
            ),
        }
    }

    /// Gives a claim back: the container is marked failed and unassigned, its volume unowned again
    /// (the learner never saw it), in one transaction.
    pub async fn unclaim(
        &self,
        container_id: i64,
        user_id: i64,
        now: i64,
        why: &str,
    ) -> Result<()> {
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let volume: Option<String> = sqlx::query_scalar(
                "UPDATE containers SET state = 'failed', user_id = NULL, error = $3, updated_at = $4 \
                 WHERE id = $1 AND user_id = $2 RETURNING volume",
            )
            .bind(container_id)
            .bind(user_id)
            .bind(why)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(volume) = volume {
                sqlx::query("UPDATE volumes SET user_id = NULL, claimed_at = NULL WHERE name = $1 AND user_id = $2")
                    .bind(volume)
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Reserves a container row (and its volume row when new) before any Docker call, so that two
    /// processes warming or launching at once never pass `max` or the warm target.
    pub async fn reserve_container(&self, r: &Reservation<'_>) -> Result<Reserved> {
        macro_rules! reserve {
            ($tx:expr) => {{
                let mut tx = $tx;
                let row: std::result::Result<Option<ContainerRow>, sqlx::Error> = sqlx::query_as(concat!(
                    "INSERT INTO containers (name, pool, host, token, volume, state, user_id, created_at, updated_at, owner) \
                     SELECT $1, $2, $3, $4, $5, 'creating', $6, $7, $7, $10 \
                     WHERE (SELECT COUNT(*) FROM containers WHERE pool = $2 AND state NOT IN ('removed', 'failed')) < $8 \
                       AND ($6 IS NOT NULL OR (SELECT COUNT(*) FROM containers WHERE pool = $2 AND user_id IS NULL \
                            AND state IN ('creating', 'warming', 'ready')) < $9) \
                     RETURNING ", container_cols!()
                ))
                .bind(r.name)
                .bind(r.pool)
                .bind(r.host)
                .bind(r.token.expose())
                .bind(r.volume)
                .bind(r.user_id)
                .bind(r.now)
                .bind(r.max)
                .bind(r.warm)
                .bind(r.owner)
                .fetch_optional(&mut *tx)
                .await;
                let row = match row {
                    Ok(Some(row)) => row,
                    Ok(None) => return Ok(Reserved::Full),
                    Err(e) if is_unique_violation(&e) => return Ok(Reserved::UserHasOne),
                    Err(e) => return Err(e.into()),
                };
                if r.new_volume {
                    sqlx::query(
                        "INSERT INTO volumes (name, pool, host, user_id, created_at, claimed_at) \
                         VALUES ($1, $2, $3, $4, $5, CASE WHEN $4 IS NULL THEN NULL ELSE $5 END)",
                    )
                    .bind(r.volume)
                    .bind(r.pool)
                    .bind(r.host)
                    .bind(r.user_id)
                    .bind(r.now)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(Reserved::Row(Box::new(row)))
            }};
        }
        match &self.backend {
            Backend::Sqlite(pool) => reserve!(pool.begin_with("BEGIN IMMEDIATE").await?),
            Backend::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                // Serialises reservations per pool across every server: the counts above are only
                // correct if no other transaction inserts between the count and the insert.
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(lock_key(&format!("pool:{}", r.pool)))
                    .execute(&mut *tx)
                    .await?;
                reserve!(tx)
            }
        }
    }

    /// Records the Docker id and published port of a created container and moves it to `state`.
    pub async fn set_container_started(
        &self,
        id: i64,
        docker_id: &str,
        port: i64,
        state: ContainerState,
        now: i64,
    ) -> Result<()> {
        with_pool!(self, pool => sqlx::query(
            "UPDATE containers SET docker_id = $2, port = $3, state = $4, updated_at = $5, error = NULL WHERE id = $1",
        )
        .bind(id)
        .bind(docker_id)
        .bind(port)
        .bind(state.as_str())
        .bind(now)
        .execute(pool)
        .await?.rows_affected());
        Ok(())
    }

    /// Moves a container to `state` when it is in one of `from` (so concurrent actors cannot undo each
    /// other's transitions). Returns whether the row changed.
    pub async fn transition(
        &self,
        id: i64,
        from: &[ContainerState],
        to: ContainerState,
        now: i64,
        error: Option<&str>,
    ) -> Result<bool> {
        // Up to seven source states (every state), padded by repetition so one statement text
        // serves every call.
        debug_assert!(!from.is_empty() && from.len() <= 7);
        if from.is_empty() {
            return Ok(false);
        }
        let pick = |i: usize| from.get(i).unwrap_or(&from[0]).as_str();
        let done = with_pool!(self, pool => sqlx::query(
            "UPDATE containers SET state = $2, updated_at = $3, error = $4, \
               ready_at = CASE WHEN $2 IN ('ready', 'assigned') AND ready_at IS NULL THEN $3 ELSE ready_at END, \
               assigned_at = CASE WHEN $2 = 'assigned' AND assigned_at IS NULL THEN $3 ELSE assigned_at END \
             WHERE id = $1 AND state IN ($5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(id)
        .bind(to.as_str())
        .bind(now)
        .bind(error)
        .bind(pick(0))
        .bind(pick(1))
        .bind(pick(2))
        .bind(pick(3))
        .bind(pick(4))
        .bind(pick(5))
        .bind(pick(6))
        .execute(pool)
        .await?
        .rows_affected());
        Ok(done == 1)
    }

    /// Deletes a volume row nobody owns (a failed warm container's); true when it was deleted, in
    /// which case the caller removes the Docker volume too.
    pub async fn delete_unowned_volume(&self, name: &str) -> Result<bool> {
        let done = with_pool!(self, pool => sqlx::query("DELETE FROM volumes WHERE name = $1 AND user_id IS NULL")
            .bind(name)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(done == 1)
    }

    /// Deletes a volume row nobody owns and no live container mounts, in one statement, so a
    /// container reserved on it meanwhile keeps it; true when deleted (the caller then removes the
    /// Docker volume).
    pub async fn delete_unused_volume(&self, name: &str) -> Result<bool> {
        let done = with_pool!(self, pool => sqlx::query(
            "DELETE FROM volumes WHERE name = $1 AND user_id IS NULL AND NOT EXISTS \
             (SELECT 1 FROM containers WHERE volume = $1 AND state NOT IN ('removed', 'failed'))",
        )
        .bind(name)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(done == 1)
    }

    /// Unassigned containers of a pool still being created or warmed (by anyone).
    pub async fn warm_in_progress(&self, pool_name: &str) -> Result<i64> {
        Ok(with_pool!(self, pool => sqlx::query_scalar(
            "SELECT COUNT(*) FROM containers WHERE pool = $1 AND user_id IS NULL \
             AND state IN ('creating', 'warming')",
        )
        .bind(pool_name)
        .fetch_one(pool)
        .await?))
    }

    /// Counts live containers per state for one pool.
    pub async fn pool_counts(&self, pool_name: &str) -> Result<Vec<(String, String, i64)>> {
        Ok(with_pool!(self, pool => sqlx::query_as(
            "SELECT host, state, COUNT(*) FROM containers WHERE pool = $1 GROUP BY host, state ORDER BY host, state",
        )
        .bind(pool_name)
        .fetch_all(pool)
        .await?))
    }

    /// Live containers per host (all pools), for placement.
    pub async fn host_loads(&self) -> Result<Vec<(String, i64)>> {
        Ok(with_pool!(self, pool => sqlx::query_as(
            "SELECT host, COUNT(*) FROM containers WHERE state NOT IN ('removed', 'failed') GROUP BY host",
        )
        .fetch_all(pool)
        .await?))
    }

    /// Containers matching every given filter, oldest first.
    pub async fn list_containers(&self, f: &ContainerFilter<'_>) -> Result<Vec<ContainerRow>> {
        let mut w = Where::default();
        if let Some(p) = f.pool {
            w.cond("pool = $", Bind::Text(p.to_owned()));
        }
        if let Some(st) = f.state {
            w.cond("state = $", Bind::Text(st.as_str().to_owned()));
        }
        if let Some(h) = f.host {
            w.cond("host = $", Bind::Text(h.to_owned()));
        }
        if let Some(u) = f.user_id {
            w.cond("user_id = $", Bind::Int(u));
        }
        if f.live_only {
            w.raw("state NOT IN ('removed', 'failed')");
        }
        let limit = f
            .limit
            .map(|l| format!(" LIMIT {}", l.max(0)))
            .unwrap_or_default();
        let sql = format!(
            concat!(
                "SELECT ",
                container_cols!(),
                " FROM containers{} ORDER BY id{}"
            ),
            w.sql(),
            limit
        );
        Ok(with_pool!(self, pool => {
            w.bind_to(sqlx::query_as(sqlx::AssertSqlSafe(sql))).fetch_all(pool).await?
        }))
    }

    pub async fn container_by_name(&self, name: &str) -> Result<Option<ContainerRow>> {
        Ok(with_pool!(self, pool => sqlx::query_as(concat!(
            "SELECT ", container_cols!(), " FROM containers WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(pool)
        .await?))
    }

    /// Records the activity time Jupyter reported.
    pub async fn set_last_activity(&self, id: i64, at: i64) -> Result<()> {
        with_pool!(self, pool => sqlx::query("UPDATE containers SET last_activity = $2 WHERE id = $1")
            .bind(id)
            .bind(at)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(())
    }

    /// When the oldest ready container of a pool became ready.
    pub async fn oldest_ready(&self, pool_name: &str) -> Result<Option<i64>> {
        Ok(with_pool!(self, pool => sqlx::query_scalar(
            "SELECT MIN(COALESCE(ready_at, created_at)) FROM containers WHERE pool = $1 AND state = 'ready'",
        )
        .bind(pool_name)
        .fetch_one(pool)
        .await?))
    }

    // ---- volumes ----

    pub async fn volume(&self, name: &str) -> Result<Option<VolumeRow>> {
        Ok(with_pool!(self, pool => sqlx::query_as(
            "SELECT name, pool, host, user_id, created_at, claimed_at FROM volumes WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(pool)
        .await?))
    }

    /// Every volume row on a host, or of a user.
    pub async fn list_volumes(
        &self,
        host: Option<&str>,
        user_id: Option<i64>,
    ) -> Result<Vec<VolumeRow>> {
        Ok(with_pool!(self, pool => sqlx::query_as(
            "SELECT name, pool, host, user_id, created_at, claimed_at FROM volumes \
             WHERE ($1 IS NULL OR host = $1) AND ($2 IS NULL OR user_id = $2) ORDER BY name",
        )
        .bind(host)
        .bind(user_id)
        .fetch_all(pool)
        .await?))
    }

    /// Forgets a volume row (after the Docker volume was removed).
    pub async fn delete_volume(&self, name: &str) -> Result<bool> {
        let done = with_pool!(self, pool => sqlx::query("DELETE FROM volumes WHERE name = $1")
            .bind(name)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(done == 1)
    }

    // ---- pools ----

    /// Sizes set by `moocctl pool resize`: (warm, max), each `None` when the configured value holds.
    pub async fn pool_override(&self, name: &str) -> Result<(Option<i64>, Option<i64>)> {
        let row: Option<(Option<i64>, Option<i64>)> = with_pool!(self, pool => sqlx::query_as(
            "SELECT warm, max FROM pools WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(pool)
        .await?);
        Ok(row.unwrap_or((None, None)))
    }

    /// Sets a pool's sizes; a `None` keeps the current override (or the configured value).
    pub async fn set_pool_override(
        &self,
        name: &str,
        warm: Option<i64>,
        max: Option<i64>,
        now: i64,
        actor: &str,
    ) -> Result<()> {
        with_pool!(self, pool => sqlx::query(
            "INSERT INTO pools (name, warm, max, updated_at, updated_by) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (name) DO UPDATE SET warm = COALESCE(excluded.warm, pools.warm), \
               max = COALESCE(excluded.max, pools.max), updated_at = excluded.updated_at, \
               updated_by = excluded.updated_by",
        )
        .bind(name)
        .bind(warm)
        .bind(max)
        .bind(now)
        .bind(actor)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(())
    }

    /// Drops a pool's overrides: the configured sizes hold again.
    pub async fn clear_pool_override(&self, name: &str) -> Result<()> {
        with_pool!(self, pool => sqlx::query("DELETE FROM pools WHERE name = $1")
            .bind(name)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(())
    }

    // ---- leases ----

    /// Takes or renews the lease `name` for `ttl_secs`; false while another holder's lease runs. Lets
    /// one of several servers do periodic work without shared memory.
    pub async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        ttl_secs: i64,
        now: i64,
    ) -> Result<bool> {
        let done = with_pool!(self, pool => sqlx::query(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leases.expires_at < $4 OR leases.holder = excluded.holder",
        )
        .bind(name)
        .bind(holder)
        .bind(now + ttl_secs)
        .bind(now)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(done == 1)
    }

    /// Gives a lease back early (at shutdown).
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        with_pool!(self, pool => sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(())
    }

    // ---- listings for moocctl ----

    /// Learners, most recent launch first.
    pub async fn list_users(&self, consumer: Option<&str>, limit: i64) -> Result<Vec<UserRow>> {
        Ok(with_pool!(self, pool => sqlx::query_as(
            "SELECT id, consumer_key, user_id, name, email, first_seen, last_seen FROM users \
             WHERE ($1 IS NULL OR consumer_key = $1) ORDER BY last_seen DESC, id DESC LIMIT $2",
        )
        .bind(consumer)
        .bind(limit)
        .fetch_all(pool)
        .await?))
    }

    /// Sessions, newest first.
    pub async fn list_sessions(&self, f: &SessionFilter<'_>) -> Result<Vec<SessionRow>> {
        // Only the filters given go into the statement, so each can use its index (a
        // `$1 IS NULL OR …` form would keep SQLite from using any).
        let mut w = Where::default();
        match f
            .user
            .and_then(|u| u.strip_prefix('#'))
            .and_then(|n| n.parse::<i64>().ok())
        {
            Some(id) => w.cond("s.user_id = $", Bind::Int(id)),
            None => {
                if let Some(u) = f.user {
                    w.cond(
                        "s.user_id IN (SELECT id FROM users WHERE user_id = $)",
                        Bind::Text(u.to_owned()),
                    );
                }
            }
        }
        if let Some(c) = f.course {
            w.cond("s.context_id = $", Bind::Text(c.to_owned()));
        }
        if let Some(t) = f.since {
            w.cond("s.at >= $", Bind::Int(t));
        }
        let sql = format!(
            "SELECT s.id, s.at, s.user_id, u.user_id AS lms_user_id, s.consumer_key, s.context_id, \
                    s.resource_link_id, s.roles, s.remote_addr, s.pool, s.outcome, s.container_id \
             FROM sessions s LEFT JOIN users u ON u.id = s.user_id{} \
             ORDER BY s.at DESC, s.id DESC LIMIT {}",
            w.sql(),
            f.limit.max(0)
        );
        Ok(with_pool!(self, pool => {
            w.bind_to(sqlx::query_as(sqlx::AssertSqlSafe(sql))).fetch_all(pool).await?
        }))
    }

    pub async fn session(&self, id: i64) -> Result<Option<SessionRow>> {
        Ok(with_pool!(self, pool => sqlx::query_as(
            "SELECT s.id, s.at, s.user_id, u.user_id AS lms_user_id, s.consumer_key, s.context_id, \
                    s.resource_link_id, s.roles, s.remote_addr, s.pool, s.outcome, s.container_id \
             FROM sessions s LEFT JOIN users u ON u.id = s.user_id WHERE s.id = $1",
        )
        .bind(id)
        .fetch_optional(pool)
        .await?))
    }

    /// Stored nonces, newest first.
    pub async fn list_nonces(&self, consumer: Option<&str>, limit: i64) -> Result<Vec<NonceRow>> {
        Ok(with_pool!(self, pool => sqlx::query_as(
            "SELECT consumer_key, nonce, ts FROM nonces WHERE ($1 IS NULL OR consumer_key = $1) \
             ORDER BY ts DESC LIMIT $2",
        )
        .bind(consumer)
        .bind(limit)
        .fetch_all(pool)
        .await?))
    }

    pub async fn count_nonces(&self) -> Result<i64> {
        Ok(
            with_pool!(self, pool => sqlx::query_scalar("SELECT COUNT(*) FROM nonces")
            .fetch_one(pool)
            .await?),
        )
    }

    /// Events, oldest first (so a follower prints them in order); with no `after_id`, the last
    /// `limit` matching events.
    pub async fn list_events(&self, f: &EventFilter<'_>) -> Result<Vec<EventRow>> {
        let mut w = Where::default();
        if let Some(id) = f.after_id {
            w.cond("id > $", Bind::Int(id));
        }
        if let Some(t) = f.since {
            w.cond("at >= $", Bind::Int(t));
        }
        if let Some(k) = f.kind {
            w.cond("kind = $", Bind::Text(k.to_owned()));
        }
        if let Some(level) = f.min_level.filter(|l| level_rank(l) > 0) {
            w.cond(
                "(CASE level WHEN 'error' THEN 3 WHEN 'warn' THEN 2 WHEN 'info' THEN 1 ELSE 0 END) >= $",
                Bind::Int(level_rank(level)),
            );
        }
        // Following (after an id): the oldest new events first, so none is skipped; otherwise the
        // latest `limit`, printed oldest first.
        let order = if f.after_id.is_some() { "ASC" } else { "DESC" };
        let sql = format!(
            "SELECT id, at, level, kind, actor, message FROM events{} ORDER BY id {order} LIMIT {}",
            w.sql(),
            f.limit.max(0)
        );
        let mut rows: Vec<EventRow> = with_pool!(self, pool => {
            w.bind_to(sqlx::query_as(sqlx::AssertSqlSafe(sql))).fetch_all(pool).await?
        });
        if f.after_id.is_none() {
            rows.reverse();
        }
        Ok(rows)
    }

    // ---- admins and audit ----

    pub async fn list_admins(&self) -> Result<Vec<AdminRow>> {
        Ok(with_pool!(self, pool => sqlx::query_as(
            "SELECT identity, name, role, created_at, created_by FROM admins ORDER BY identity",
        )
        .fetch_all(pool)
        .await?))
    }

    /// Adds an admin; false when the identity is listed already.
    pub async fn add_admin(
        &self,
        identity: &str,
        name: Option<&str>,
        role: &str,
        now: i64,
        by: &str,
    ) -> Result<bool> {
        let done = with_pool!(self, pool => sqlx::query(
            "INSERT INTO admins (identity, name, role, created_at, created_by) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (identity) DO NOTHING",
        )
        .bind(identity)
        .bind(name)
        .bind(role)
        .bind(now)
        .bind(by)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(done == 1)
    }

    pub async fn remove_admin(&self, identity: &str) -> Result<bool> {
        let done = with_pool!(self, pool => sqlx::query("DELETE FROM admins WHERE identity = $1")
            .bind(identity)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(done == 1)
    }

    pub async fn audit(&self, at: i64, actor: &str, command: &str, outcome: &str) -> Result<()> {
        with_pool!(self, pool => sqlx::query(
            "INSERT INTO audit (at, actor, command, outcome) VALUES ($1, $2, $3, $4)",
        )
        .bind(at)
        .bind(actor)
        .bind(command)
        .bind(outcome)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(())
    }

    /// The audit trail, oldest first, from `since`.
    pub async fn list_audit(&self, since: Option<i64>, limit: i64) -> Result<Vec<AuditRow>> {
        let mut rows: Vec<AuditRow> = with_pool!(self, pool => sqlx::query_as(
            "SELECT id, at, actor, command, outcome FROM audit WHERE ($1 IS NULL OR at >= $1) \
             ORDER BY id DESC LIMIT $2",
        )
        .bind(since)
        .bind(limit)
        .fetch_all(pool)
        .await?);
        rows.reverse();
        Ok(rows)
    }

    /// The database server's clock (UTC seconds); SQLite's is this machine's.
    pub async fn db_now(&self) -> Result<i64> {
        Ok(match &self.backend {
            Backend::Sqlite(pool) => {
                sqlx::query_scalar("SELECT CAST(strftime('%s', 'now') AS INTEGER)")
                    .fetch_one(pool)
                    .await?
            }
            Backend::Postgres(pool) => {
                sqlx::query_scalar("SELECT CAST(EXTRACT(EPOCH FROM now()) AS BIGINT)")
                    .fetch_one(pool)
                    .await?
            }
        })
    }

    /// The applied migration versions (for `moocctl doctor`).
    pub async fn migrations(&self) -> Result<Vec<i64>> {
        Ok(with_pool!(self, pool => sqlx::query_scalar(
            "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version",
        )
        .fetch_all(pool)
        .await?))
    }

    // ---- wait tickets ----

    pub async fn create_wait_ticket(
        &self,
        ticket: &str,
        container_id: i64,
        user_id: i64,
        expires_at: i64,
    ) -> Result<()> {
        with_pool!(self, pool => sqlx::query(
            "INSERT INTO wait_tickets (ticket, container_id, user_id, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(ticket)
        .bind(container_id)
        .bind(user_id)
        .bind(expires_at)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(())
    }

    /// The container a ticket waits for, while the ticket is valid.
    pub async fn wait_ticket(&self, ticket: &str, now: i64) -> Result<Option<i64>> {
        Ok(with_pool!(self, pool => sqlx::query_scalar(
            "SELECT container_id FROM wait_tickets WHERE ticket = $1 AND expires_at > $2",
        )
        .bind(ticket)
        .bind(now)
        .fetch_optional(pool)
        .await?))
    }

    pub async fn prune_wait_tickets(&self, now: i64) -> Result<u64> {
        Ok(
            with_pool!(self, pool => sqlx::query("DELETE FROM wait_tickets WHERE expires_at <= $1")
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()),
        )
    }

    // ---- hosts ----

    /// Records a host's health; `changed_at` moves only when `up` flips.
    pub async fn set_host_status(
        &self,
        name: &str,
        up: bool,
        error: Option<&str>,
        now: i64,
    ) -> Result<()> {
        with_pool!(self, pool => sqlx::query(
            "INSERT INTO hosts (name, up, error, checked_at, changed_at) VALUES ($1, $2, $3, $4, $4) \
             ON CONFLICT (name) DO UPDATE SET \
               changed_at = CASE WHEN hosts.up = excluded.up THEN hosts.changed_at ELSE excluded.changed_at END, \
               up = excluded.up, error = excluded.error, checked_at = excluded.checked_at",
        )
        .bind(name)
        .bind(up)
        .bind(error)
        .bind(now)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(())
    }

    pub async fn host_statuses(&self) -> Result<Vec<HostStatusRow>> {
        Ok(with_pool!(self, pool => sqlx::query_as(
            "SELECT name, up, error, checked_at, changed_at FROM hosts ORDER BY name",
        )
        .fetch_all(pool)
        .await?))
    }

    // ---- events ----

    /// Appends to the event log `moocctl logs` reads. Never pass secrets or unverified identities.
    pub async fn event(
        &self,
        level: &str,
        kind: &str,
        actor: &str,
        message: &str,
        now: i64,
    ) -> Result<()> {
        with_pool!(self, pool => sqlx::query(
            "INSERT INTO events (at, level, kind, actor, message) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(now)
        .bind(level)
        .bind(kind)
        .bind(actor)
        .bind(message)
        .execute(pool)
        .await?.rows_affected());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_chunks_cover_every_row_once_in_power_of_two_sizes() {
        for n in 0..300 {
            let chunks = super::group_chunks(n);
            let mut next = 0;
            for c in &chunks {
                assert_eq!(c.start, next, "{n}: {chunks:?}");
                assert!(c.len().is_power_of_two() && c.len() <= super::GROUP_CHUNK_MAX);
                next = c.end;
            }
            assert_eq!(next, n);
        }
        assert_eq!(super::group_chunks(45), vec![0..32, 32..40, 40..44, 44..45]);
        assert_eq!(super::group_chunks(130), vec![0..64, 64..128, 128..130]);
    }

    #[test]
    fn states_round_trip_through_text() {
        for s in ContainerState::ALL {
            assert_eq!(s.as_str().parse::<ContainerState>().unwrap(), s);
        }
        assert!("running".parse::<ContainerState>().is_err());
        assert_eq!(
            StateColumn::from("future-state".to_string()).0,
            ContainerState::Failed
        );
    }

    #[test]
    fn lock_keys_are_stable() {
        assert_eq!(lock_key("pool:default"), lock_key("pool:default"));
        assert_ne!(lock_key("pool:a"), lock_key("pool:b"));
    }
}
