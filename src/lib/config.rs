//! Configuration: the `pool.yaml` schema, where it is found, the environment overrides, and validation.
//!
//! The file is found at `--config PATH`, else `$MOOC_CONFIG`, else `./pool.yaml`. Unknown keys and bad
//! values are errors naming the key. `MOOC_LISTEN`, `MOOC_PUBLIC_URL` and `MOOC_DATABASE_URL` override
//! the deployment values so one file can serve several machines.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Where the configuration could not be read or is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config {path}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("environment variable {var}: {message}")]
    Env { var: &'static str, message: String },
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    #[serde(default = "default_database_url")]
    pub database_url: DatabaseUrl,
    pub docker_hosts: Vec<DockerHostConfig>,
    pub pools: Vec<PoolConfig>,
    /// Extra labels put on every container and volume this deployment creates.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Where the file was read from (not a key).
    #[serde(skip)]
    pub path: PathBuf,
}

/// A database URL; `Debug` hides the password so logs and error chains never carry it.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct DatabaseUrl(pub String);

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.redacted())
    }
}

impl DatabaseUrl {
    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        match url::Url::parse(&self.0) {
            Ok(mut u) if u.password().is_some() => {
                let _ = u.set_password(Some("***"));
                u.to_string()
            }
            _ => self.0.clone(),
        }
    }
}

fn default_database_url() -> DatabaseUrl {
    DatabaseUrl("sqlite://mooc-lti.db".into())
}

/// The `server:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The URL LMSs are given (launch URL is `{public_url}/lti/launch`); also the signature base URL.
    pub public_url: PublicUrl,
    /// How far an `oauth_timestamp` may be in the past or the future.
    #[serde(default = "default_window", deserialize_with = "de_duration")]
    pub timestamp_window: Duration,
    /// Largest launch body accepted (bytes); larger ones get 413.
    #[serde(default = "default_body_limit")]
    pub body_limit: usize,
    /// Time a client has to send its request headers.
    #[serde(default = "default_header_timeout", deserialize_with = "de_duration")]
    pub header_read_timeout: Duration,
    /// Time a client has to send a launch body once its headers are in; then 408.
    #[serde(default = "default_header_timeout", deserialize_with = "de_duration")]
    pub body_read_timeout: Duration,
    /// How long a launch waits for a new container's Jupyter before answering "starting" instead.
    #[serde(default = "default_launch_wait", deserialize_with = "de_duration")]
    pub launch_wait: Duration,
    /// How long shutdown waits for launches in flight.
    #[serde(default = "default_shutdown_grace", deserialize_with = "de_duration")]
    pub shutdown_grace: Duration,
    /// Title of the tool in the LMS configuration XML.
    #[serde(default = "default_title")]
    pub title: String,
}

fn default_listen() -> SocketAddr {
    "127.0.0.1:8080".parse().expect("valid address")
}
fn default_window() -> Duration {
    Duration::from_secs(300)
}
fn default_body_limit() -> usize {
    64 * 1024
}
fn default_header_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_launch_wait() -> Duration {
    Duration::from_secs(20)
}
fn default_shutdown_grace() -> Duration {
    Duration::from_secs(10)
}
fn default_title() -> String {
    "Jupyter notebook".into()
}

/// `public_url`: an absolute http(s) URL without query or fragment, trailing slash removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl(url::Url);

impl PublicUrl {
    pub fn parse(s: &str) -> Result<PublicUrl, String> {
        let u = url::Url::parse(s.trim()).map_err(|e| format!("{s:?} is not a URL: {e}"))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(format!("{s:?} must start with http:// or https://"));
        }
        if u.host_str().is_none_or(str::is_empty) {
            return Err(format!("{s:?} has no host"));
        }
        if u.query().is_some() || u.fragment().is_some() || !u.username().is_empty() {
            return Err(format!(
                "{s:?} must not have a query, fragment or user name"
            ));
        }
        Ok(PublicUrl(u))
    }

    /// The path prefix under which the proxy exposes this server, without trailing slash ("" at root).
    pub fn path_prefix(&self) -> &str {
        self.0.path().trim_end_matches('/')
    }

    /// `{public_url}/lti/launch`: what LMSs are given and what launches are signed for.
    pub fn launch_url(&self) -> url::Url {
        let mut u = self.0.clone();
        u.set_path(&format!("{}/lti/launch", self.path_prefix()));
        u
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str().trim_end_matches('/')
    }
}

impl<'de> Deserialize<'de> for PublicUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        PublicUrl::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// One Docker engine that runs notebooks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerHostConfig {
    pub name: String,
    /// `unix:///var/run/docker.sock`, `tcp://host:2376` (with `tls`), or `http://host:2375`.
    pub endpoint: String,
    /// Host name written into redirects to this host's containers.
    pub public_host: String,
    /// Scheme of those redirects: `http` in a lab, `https` behind a TLS proxy.
    #[serde(default = "default_public_scheme")]
    pub public_scheme: String,
    /// Host address the notebook ports are published on (never left empty, which would mean 0.0.0.0).
    #[serde(default = "default_publish_ip")]
    pub publish_ip: IpAddr,
    /// Most notebook containers this host may run (placement prefers the host with most room).
    #[serde(default = "default_capacity")]
    pub capacity: u32,
    /// TLS client files for `tcp://` endpoints (the engine's `--tlsverify` set-up).
    #[serde(default)]
    pub tls: Option<DockerTls>,
    /// Private key for `ssh://` endpoints [default: the ssh agent and ~/.ssh].
    #[serde(default)]
    pub ssh_key: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn default_public_scheme() -> String {
    "http".into()
}
fn default_publish_ip() -> IpAddr {
    IpAddr::from([127, 0, 0, 1])
}
fn default_capacity() -> u32 {
    200
}

/// One pool of notebook containers sharing an image and limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    pub name: String,
    pub image: String,
    /// Start command; `{token}`, `{base_url}` and `{port}` are replaced. Defaults to the image's own
    /// command, which must then honour `JUPYTER_TOKEN` and serve at `/`.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// Ready, unassigned containers to keep.
    #[serde(default)]
    pub warm: u32,
    /// Most containers of this pool in any live state.
    pub max: u32,
    /// Memory limit, e.g. `512m`, `2g`.
    #[serde(default, deserialize_with = "de_opt_bytes")]
    pub memory: Option<i64>,
    /// CPU limit in cores, e.g. `1.5`.
    #[serde(default)]
    pub cpus: Option<f64>,
    /// Process limit inside the container.
    #[serde(default = "default_pids")]
    pub pids: i64,
    /// Stop assigned containers idle for longer than this (e.g. `2h`); none when absent.
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub idle_cull: Option<Duration>,
    /// Remove ready, unassigned containers older than this (image refresh); none when absent.
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub max_age: Option<Duration>,
    /// LMS `context_id`s served by this pool; a pool with none serves every other course.
    #[serde(default)]
    pub courses: Vec<String>,
    /// Where the learner's volume is mounted (the notebook root).
    #[serde(default = "default_home")]
    pub home: String,
    /// Port Jupyter listens on inside the container.
    #[serde(default = "default_port")]
    pub port: u16,
    /// URL path Jupyter serves under; `{name}` is replaced by the container name. Defaults to
    /// `/user/{name}/` with a `command` (which passes `{base_url}` on) and to `/` without one,
    /// since an image's own command serves at `/`.
    #[serde(default)]
    pub base_url: String,
    /// Extra environment variables for the container.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// How long a new container may take before its Jupyter answers; then it is marked failed.
    #[serde(default = "default_ready_timeout", deserialize_with = "de_duration")]
    pub ready_timeout: Duration,
}

fn default_pids() -> i64 {
    512
}
fn default_home() -> String {
    "/home/jovyan".into()
}
fn default_port() -> u16 {
    8888
}
const DEFAULT_BASE_URL: &str = "/user/{name}/";
fn default_ready_timeout() -> Duration {
    Duration::from_secs(60)
}

/// Parses durations like `300s`, `15m`, `2h`, `7d` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration like 30s, 15m, 2h, 7d: {e}"))
}

/// Accepts a number of seconds or a duration string.
struct DurationVisitor;

impl serde::de::Visitor<'_> for DurationVisitor {
    type Value = Duration;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration like 30s, 15m, 2h or 7d")
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Duration, E> {
        Ok(Duration::from_secs(v))
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Duration, E> {
        u64::try_from(v)
            .map(Duration::from_secs)
            .map_err(|_| E::custom(format!("{v} is negative")))
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Duration, E> {
        parse_duration(v).map_err(E::custom)
    }
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_any(DurationVisitor)
}

fn de_opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    de_duration(d).map(Some)
}

/// Parses sizes like `512m`, `2g`, `1024k` or a number of bytes.
pub fn parse_bytes(s: &str) -> Result<i64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 512m or 2g"))?;
    if n.is_nan() || n <= 0.0 {
        return Err(format!("{s:?} must be positive"));
    }
    Ok((n * mult as f64) as i64)
}

/// Accepts a number of bytes or a size string.
struct BytesVisitor;

impl serde::de::Visitor<'_> for BytesVisitor {
    type Value = i64;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a size like 512m or 2g")
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<i64, E> {
        i64::try_from(v).map_err(|_| E::custom(format!("{v} is too large")))
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<i64, E> {
        if v > 0 {
            Ok(v)
        } else {
            Err(E::custom(format!("{v} must be positive")))
        }
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<i64, E> {
        parse_bytes(v).map_err(E::custom)
    }
}

fn de_opt_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    d.deserialize_any(BytesVisitor).map(Some)
}

/// Names used in container names, labels and URLs: short, lower-case, no surprises.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 40
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl Config {
    /// Finds, reads, overrides from the environment and validates the configuration.
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None => match std::env::var_os("MOOC_CONFIG") {
                Some(p) if !p.is_empty() => PathBuf::from(p),
                _ => PathBuf::from("pool.yaml"),
            },
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let mut config = Config::from_yaml(&text, &path)?;
        config.apply_env()?;
        config.validate()?;
        Ok(config)
    }

    /// Parses YAML text (no environment, no validation beyond the schema).
    pub fn from_yaml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let parse_err = |message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        };
        let deserializer = serde_yaml::Deserializer::from_str(text);
        let mut config: Config = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner().to_string();
            // serde_yaml names the parent and the position; the tracked path names the key itself.
            if key.is_empty() || key == "." {
                parse_err(inner)
            } else {
                parse_err(format!("{key}: {inner}"))
            }
        })?;
        config.path = path.to_path_buf();
        for p in &mut config.pools {
            if p.base_url.is_empty() {
                p.base_url = if p.command.is_some() {
                    DEFAULT_BASE_URL.into()
                } else {
                    "/".into()
                };
            }
        }
        Ok(config)
    }

    fn apply_env(&mut self) -> Result<(), ConfigError> {
        if let Some(v) = env_nonempty("MOOC_LISTEN") {
            self.server.listen = v.parse().map_err(|e| ConfigError::Env {
                var: "MOOC_LISTEN",
                message: format!("{v:?} is not an address like 127.0.0.1:8080: {e}"),
            })?;
        }
        if let Some(v) = env_nonempty("MOOC_PUBLIC_URL") {
            self.server.public_url = PublicUrl::parse(&v).map_err(|message| ConfigError::Env {
                var: "MOOC_PUBLIC_URL",
                message,
            })?;
        }
        if let Some(v) = env_nonempty("MOOC_DATABASE_URL") {
            self.database_url = DatabaseUrl(v);
        }
        Ok(())
    }

    /// Checks what the schema cannot: names, references, limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: String, message: String| ConfigError::Invalid {
            path: self.path.clone(),
            key,
            message,
        };
        let db = &self.database_url.0;
        if !(db.starts_with("sqlite:")
            || db.starts_with("postgres://")
            || db.starts_with("postgresql://"))
        {
            return Err(invalid(
                "database_url".into(),
                format!(
                    "{} must start with sqlite:// or postgres://",
                    self.database_url.redacted()
                ),
            ));
        }
        if self.server.timestamp_window.is_zero() {
            return Err(invalid(
                "server.timestamp_window".into(),
                "must be more than 0s".into(),
            ));
        }
        if self.server.body_limit < 1024 {
            return Err(invalid(
                "server.body_limit".into(),
                "must be at least 1024 bytes".into(),
            ));
        }
        if self.docker_hosts.is_empty() {
            return Err(invalid(
                "docker_hosts".into(),
                "at least one host is needed".into(),
            ));
        }
        for (i, h) in self.docker_hosts.iter().enumerate() {
            let key = |k: &str| format!("docker_hosts[{i}].{k}");
            if !valid_name(&h.name) {
                return Err(invalid(
                    key("name"),
                    format!("{:?} must be 1-40 of a-z 0-9 - _", h.name),
                ));
            }
            if self.docker_hosts[..i].iter().any(|o| o.name == h.name) {
                return Err(invalid(key("name"), format!("{:?} is used twice", h.name)));
            }
            let scheme = h.endpoint.split("://").next().unwrap_or("");
            if !h.endpoint.contains("://") || !matches!(scheme, "unix" | "tcp" | "http" | "ssh") {
                return Err(invalid(
                    key("endpoint"),
                    format!(
                        "{:?} must be unix://PATH, tcp://HOST:PORT (with tls:), http://HOST:PORT or ssh://USER@HOST",
                        h.endpoint
                    ),
                ));
            }
            if h.tls.is_some() && scheme != "tcp" {
                return Err(invalid(key("tls"), "goes with a tcp:// endpoint".into()));
            }
            if h.ssh_key.is_some() && scheme != "ssh" {
                return Err(invalid(
                    key("ssh_key"),
                    "goes with an ssh:// endpoint".into(),
                ));
            }
            if h.public_host.trim().is_empty() || h.public_host.contains(['/', ' ', '?', '#']) {
                return Err(invalid(
                    key("public_host"),
                    format!("{:?} is not a host name", h.public_host),
                ));
            }
            if !matches!(h.public_scheme.as_str(), "http" | "https") {
                return Err(invalid(
                    key("public_scheme"),
                    "must be http or https".into(),
                ));
            }
            if h.capacity == 0 {
                return Err(invalid(key("capacity"), "must be at least 1".into()));
            }
        }
        if self.pools.is_empty() {
            return Err(invalid(
                "pools".into(),
                "at least one pool is needed".into(),
            ));
        }
        for (i, p) in self.pools.iter().enumerate() {
            let key = |k: &str| format!("pools[{i}].{k}");
            if !valid_name(&p.name) {
                return Err(invalid(
                    key("name"),
                    format!("{:?} must be 1-40 of a-z 0-9 - _", p.name),
                ));
            }
            if self.pools[..i].iter().any(|o| o.name == p.name) {
                return Err(invalid(key("name"), format!("{:?} is used twice", p.name)));
            }
            if p.image.trim().is_empty() {
                return Err(invalid(key("image"), "must name an image".into()));
            }
            if p.max == 0 {
                return Err(invalid(key("max"), "must be at least 1".into()));
            }
            if p.warm > p.max {
                return Err(invalid(
                    key("warm"),
                    format!("{} is more than max ({})", p.warm, p.max),
                ));
            }
            if let Some(c) = p.cpus
                && !(c > 0.0 && c <= 1024.0)
            {
                return Err(invalid(key("cpus"), format!("{c} is not a CPU count")));
            }
            if p.pids < 16 {
                return Err(invalid(key("pids"), "must be at least 16".into()));
            }
            if !p.base_url.starts_with('/') || !p.base_url.ends_with('/') {
                return Err(invalid(key("base_url"), "must start and end with /".into()));
            }
            if p.command.is_none() && p.base_url != "/" {
                return Err(invalid(
                    key("base_url"),
                    format!(
                        "{:?} needs a `command` that passes {{base_url}} to Jupyter (the image's own \
                         command serves at /)",
                        p.base_url
                    ),
                ));
            }
            if !p.home.starts_with('/') {
                return Err(invalid(key("home"), "must be an absolute path".into()));
            }
            if matches!(&p.command, Some(c) if c.is_empty()) {
                return Err(invalid(
                    key("command"),
                    "must not be empty (omit it to use the image's)".into(),
                ));
            }
            if p.env.contains_key("JUPYTER_TOKEN") {
                return Err(invalid(
                    key("env"),
                    "JUPYTER_TOKEN is set per container, not per pool".into(),
                ));
            }
        }
        if self.pools.iter().filter(|p| p.courses.is_empty()).count() > 1 {
            return Err(invalid(
                "pools".into(),
                "only one pool may leave `courses` empty (it serves every other course)".into(),
            ));
        }
        Ok(())
    }

    pub fn pool(&self, name: &str) -> Option<&PoolConfig> {
        self.pools.iter().find(|p| p.name == name)
    }

    pub fn host(&self, name: &str) -> Option<&DockerHostConfig> {
        self.docker_hosts.iter().find(|h| h.name == name)
    }

    /// The pool serving a course: the one listing its `context_id`, else the one with no `courses`.
    pub fn pool_for_course(&self, context_id: Option<&str>) -> Option<&PoolConfig> {
        context_id
            .and_then(|c| self.pools.iter().find(|p| p.courses.iter().any(|x| x == c)))
            .or_else(|| self.pools.iter().find(|p| p.courses.is_empty()))
    }
}

fn env_nonempty(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "
server:
  public_url: https://lti.example.edu
docker_hosts:
  - name: local
    endpoint: unix:///var/run/docker.sock
    public_host: 127.0.0.1
pools:
  - name: default
    image: quay.io/jupyter/base-notebook:latest
    warm: 2
    max: 50
";

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let c = Config::from_yaml(text, Path::new("pool.yaml"))?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.database_url.0, "sqlite://mooc-lti.db");
        assert_eq!(c.server.timestamp_window, Duration::from_secs(300));
        assert_eq!(
            c.server.public_url.launch_url().as_str(),
            "https://lti.example.edu/lti/launch"
        );
        assert_eq!(c.docker_hosts[0].publish_ip, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(
            c.pools[0].base_url, "/",
            "the image's own command serves at /, so readiness is probed there"
        );
    }

    #[test]
    fn base_url_defaults_follow_the_command() {
        let with_command = MINIMAL.replace(
            "    max: 50",
            "    max: 50\n    command: [jupyter-notebook, \"--NotebookApp.base_url={base_url}\"]",
        );
        assert_eq!(
            parse(&with_command).unwrap().pools[0].base_url,
            "/user/{name}/"
        );
        let err =
            parse(&MINIMAL.replace("    max: 50", "    max: 50\n    base_url: /user/{name}/"))
                .unwrap_err()
                .to_string();
        assert!(err.contains("base_url") && err.contains("command"), "{err}");
    }

    #[test]
    fn example_pool_yaml_is_valid() {
        let text = include_str!("../../pool.yaml");
        parse(text).unwrap();
    }

    /// The commented-out production pool in pool.yaml is valid once uncommented.
    #[test]
    fn example_production_pool_is_valid_when_uncommented() {
        let text = include_str!("../../pool.yaml");
        let start = text
            .find("  # - name: datascience")
            .expect("production pool example");
        let uncommented: String = text[start..]
            .lines()
            .map(|l| {
                l.strip_prefix("  # ")
                    .map(|r| format!("  {r}\n"))
                    .unwrap_or_default()
            })
            .collect();
        let c = parse(&format!("{}{uncommented}", &text[..start])).unwrap();
        let pool = c.pool("datascience").unwrap();
        assert_eq!(pool.courses, vec!["ondemand~example-course-id".to_string()]);
        assert!(pool.command.as_ref().unwrap()[0].starts_with("start-notebook"));
    }

    #[test]
    fn unknown_key_is_named() {
        let err = parse(&MINIMAL.replace("    warm: 2", "    warm: 2\n    wram: 3"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("wram"), "{err}");
        assert!(err.contains("pools[0]"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let err = parse(&MINIMAL.replace("warm: 2", "warm: 60"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("pools[0].warm"), "{err}");
        let err = parse(&MINIMAL.replace("https://lti.example.edu", "ftp://x"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.public_url"), "{err}");
        let err = parse(&MINIMAL.replace("max: 50", "max: 50\n    idle_cull: soon"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("pools[0].idle_cull"), "{err}");
        let err = parse(&MINIMAL.replace("max: 50", "max: 50\n    memory: lots"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("pools[0].memory"), "{err}");
    }

    #[test]
    fn docker_endpoints_and_their_credentials_must_match() {
        let tcp_tls = MINIMAL.replace(
            "endpoint: unix:///var/run/docker.sock",
            "endpoint: tcp://docker2.example.edu:2376\n    tls: { ca: /etc/mooc/ca.pem, cert: /etc/mooc/cert.pem, key: /etc/mooc/key.pem }",
        );
        parse(&tcp_tls).unwrap();
        let ssh = MINIMAL.replace(
            "endpoint: unix:///var/run/docker.sock",
            "endpoint: ssh://mooc@docker3.example.edu\n    ssh_key: /etc/mooc/id_ed25519",
        );
        parse(&ssh).unwrap();
        let wrong = MINIMAL.replace(
            "endpoint: unix:///var/run/docker.sock",
            "endpoint: unix:///var/run/docker.sock\n    ssh_key: /etc/mooc/id_ed25519",
        );
        let err = parse(&wrong).unwrap_err().to_string();
        assert!(err.contains("docker_hosts[0].ssh_key"), "{err}");
        let err = parse(&MINIMAL.replace("unix:///var/run/docker.sock", "ftp://x"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("docker_hosts[0].endpoint"), "{err}");
    }

    #[test]
    fn public_url_prefix_and_launch_url() {
        let u = PublicUrl::parse("https://Example.edu/mooc/").unwrap();
        assert_eq!(u.path_prefix(), "/mooc");
        assert_eq!(
            u.launch_url().as_str(),
            "https://example.edu/mooc/lti/launch"
        );
        assert!(PublicUrl::parse("https://x/?a=1").is_err());
    }

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!(parse_bytes("512m").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("2g").unwrap(), 2 << 30);
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86400)
        );
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn database_password_is_hidden_in_debug() {
        let u = DatabaseUrl("postgres://mooc:hunter2@db/mooc".into());
        assert!(!format!("{u:?}").contains("hunter2"));
    }
}
