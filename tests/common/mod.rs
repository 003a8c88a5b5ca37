//! Shared test set-up: a temporary deployment (config, database, labelled Docker objects) driven
//! through the real binaries, launches signed by Python's oauthlib (independent of our verifier),
//! and clean-up of everything the test created in Docker.
//!
//! Tests that need Docker, the test image or oauthlib skip with a loud message when `CI` is unset;
//! with `CI` set a missing part is a failure.

#![allow(dead_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use mooc_lti::http::{HttpClient, Response};

pub const IMAGE: &str = "mooc-lti/notebook:test";
/// The URL launches are signed for; the server is told it is its public URL.
pub const PUBLIC_URL: &str = "http://lti.test";
pub const KEY: &str = "coursera-test";
pub const SECRET: &str = "test-secret-0123456789abcdef";

/// Fails in CI, skips loudly elsewhere.
pub fn missing(what: &str) -> bool {
    if std::env::var_os("CI").is_some() {
        panic!("CI is set and {what} is missing: run `bash .ci/run` or scripts/test-image.sh");
    }
    eprintln!("\n*** SKIPPED: {what} is missing (CI is unset, so this test does not run) ***\n");
    false
}

/// Docker answers and the test image exists.
pub fn docker_ready() -> bool {
    let ok = Command::new("docker")
        .args(["image", "inspect", IMAGE])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    ok || missing(&format!(
        "Docker or the test image {IMAGE} (build it with scripts/test-image.sh)"
    ))
}

/// Python 3 with oauthlib, the independent signer.
pub fn signer_ready() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import oauthlib"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    ok || missing("python3 with oauthlib (pip install oauthlib)")
}

/// Pool settings a test may change.
#[derive(Debug, Clone)]
pub struct PoolOpts {
    pub warm: u32,
    pub max: u32,
    /// YAML appended to the pool's keys.
    pub extra: String,
    /// The `docker_hosts:` list, replacing the one local host.
    pub hosts: Option<String>,
}

impl Default for PoolOpts {
    fn default() -> Self {
        PoolOpts {
            warm: 0,
            max: 10,
            extra: String::new(),
            hosts: None,
        }
    }
}

/// A running `mooc-lti`.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

/// One test's deployment.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub db_url: String,
    /// Value of the `mooc-lti.test` label on everything this test creates.
    pub label: String,
    pub server: Option<Server>,
    /// More servers on the same database (scale-out tests).
    pub extra_servers: Vec<Server>,
    pub http: HttpClient,
    nonce: std::sync::atomic::AtomicU64,
}

impl Env {
    /// A deployment with the default pool, or `None` (skipped) when Docker or the signer is missing.
    pub fn new() -> Option<Env> {
        Env::with_pool(PoolOpts::default())
    }

    pub fn with_pool(opts: PoolOpts) -> Option<Env> {
        if !docker_ready() || !signer_ready() {
            return None;
        }
        Some(Env::without_docker(opts))
    }

    /// A deployment for tests that need no Docker.
    pub fn without_docker(opts: PoolOpts) -> Env {
        let dir = tempfile::Builder::new()
            .prefix("mooc-test-")
            .tempdir()
            .expect("temp dir");
        let label = format!("t{}", mooc_lti::secret::random_hex(6));
        let db_url = match backend() {
            Backend::Sqlite => format!("sqlite://{}", dir.path().join("mooc.db").display()),
            Backend::Postgres(admin) => create_database(&admin, &label),
        };
        let env = Env {
            config: dir.path().join("pool.yaml"),
            dir,
            db_url,
            label,
            server: None,
            extra_servers: Vec::new(),
            http: HttpClient::new(),
            nonce: std::sync::atomic::AtomicU64::new(0),
        };
        env.write_config(&opts);
        let out = env.moocctl(&["consumer", "add", KEY, "--secret", SECRET]);
        assert!(
            out.status.success(),
            "consumer add: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        env
    }

    pub fn write_config(&self, opts: &PoolOpts) {
        let yaml = format!(
            "server:
  listen: 127.0.0.1:0
  public_url: {PUBLIC_URL}
  launch_wait: 60s
  shutdown_grace: 5s
database_url: {db}
labels:
  mooc-lti.test: {label}
docker_hosts:
{hosts}
pools:
  - name: default
    image: {IMAGE}
    command: [jupyter-notebook, --ip=0.0.0.0, \"--port={{port}}\", --no-browser,
              --NotebookApp.port_retries=0, \"--NotebookApp.base_url={{base_url}}\"]
    warm: {warm}
    max: {max}
    memory: 512m
    cpus: 1
    ready_timeout: 60s
{extra}",
            db = self.db_url,
            label = self.label,
            warm = opts.warm,
            max = opts.max,
            extra = opts.extra,
            hosts = opts.hosts.clone().unwrap_or_else(|| {
                "  - name: local\n    endpoint: unix:///var/run/docker.sock\n    public_host: 127.0.0.1".into()
            }),
        );
        std::fs::write(&self.config, yaml).expect("write config");
    }

    /// Runs `moocctl --config … ARGS` with stdin closed (not a terminal).
    pub fn moocctl(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_moocctl"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("MOOC_CONFIG")
            .env_remove("MOOC_DATABASE_URL")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .expect("run moocctl")
    }

    /// Starts `mooc-lti` and waits until it listens.
    pub fn start_server(&mut self) -> SocketAddr {
        let server = self.spawn_server();
        let addr = server.addr;
        self.server = Some(server);
        addr
    }

    /// Starts one more `mooc-lti` on the same configuration and database.
    pub fn start_extra_server(&mut self) -> SocketAddr {
        let server = self.spawn_server();
        let addr = server.addr;
        self.extra_servers.push(server);
        addr
    }

    fn spawn_server(&self) -> Server {
        let n = std::fs::read_dir(self.dir.path())
            .map(|d| d.count())
            .unwrap_or(0);
        let log = self.dir.path().join(format!("server-{n}.log"));
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_mooc-lti"))
            .arg("--config")
            .arg(&self.config)
            .env_remove("MOOC_CONFIG")
            .env_remove("MOOC_LISTEN")
            .env_remove("MOOC_DATABASE_URL")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .spawn()
            .expect("start mooc-lti");
        let started = Instant::now();
        let addr = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(rest) = text.split("listening on ").nth(1) {
                let addr = rest.split(';').next().unwrap_or("").trim();
                break addr.parse().expect("listen address in log");
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "mooc-lti did not start: {text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Server { child, addr, log }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.as_ref().expect("server started").addr
    }

    /// Sends SIGTERM and waits for the server to exit; returns its exit status.
    pub fn stop_server(&mut self) -> std::process::ExitStatus {
        let mut server = self.server.take().expect("server started");
        let _ = Command::new("kill")
            .args(["-TERM", &server.child.id().to_string()])
            .status();
        server.child.wait().expect("wait for server")
    }

    /// SIGKILL: a crash (of every server of this deployment).
    pub fn kill_server(&mut self) {
        for mut server in self
            .server
            .take()
            .into_iter()
            .chain(self.extra_servers.drain(..))
        {
            let _ = server.child.kill();
            let _ = server.child.wait();
        }
    }

    /// Everything the server logged so far (all its runs).
    pub fn server_logs(&self) -> String {
        let mut out = String::new();
        for entry in std::fs::read_dir(self.dir.path()).expect("dir").flatten() {
            if entry.file_name().to_string_lossy().starts_with("server-") {
                out.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
            }
        }
        out
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr())
    }

    /// A unique nonce for this test.
    pub fn nonce(&self) -> String {
        let n = self.nonce.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        format!("{}-{n}-{}", self.label, mooc_lti::secret::random_hex(4))
    }

    /// Signs a launch with oauthlib for `{PUBLIC_URL}/lti/launch{query}`.
    pub fn sign(
        &self,
        params: &[(&str, &str)],
        query: &str,
        key: &str,
        secret: &str,
        timestamp: Option<i64>,
    ) -> String {
        sign_with_oauthlib(
            &format!("{PUBLIC_URL}/lti/launch{query}"),
            key,
            secret,
            params,
            timestamp,
            &self.nonce(),
        )
    }

    /// POSTs a form body to `/lti/launch{query}`.
    pub async fn post(&self, query: &str, body: String) -> Response {
        self.post_to(self.addr(), query, body).await
    }

    /// POSTs a form body to `/lti/launch{query}` on the server at `addr`.
    pub async fn post_to(&self, addr: SocketAddr, query: &str, body: String) -> Response {
        self.http
            .post_form(
                &format!("http://{addr}/lti/launch{query}"),
                body,
                Duration::from_secs(120),
            )
            .await
            .expect("launch request")
    }

    /// A correctly signed launch of `user` with the standard parameters.
    pub async fn launch(&self, user: &str) -> Response {
        let params = launch_params(user);
        let refs: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let body = self.sign(&refs, "", KEY, SECRET, None);
        self.post("", body).await
    }

    /// `moocctl doctor`: its exit code and its report (one line per check).
    pub fn doctor(&self) -> (Option<i32>, String) {
        let out = self.moocctl(&["doctor"]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// The HTTP status the notebook behind a launch's redirect gives for `GET …/api`.
    pub async fn notebook_api_status(&self, location: &str) -> hyper::StatusCode {
        let (base, _) = split_notebook_url(location);
        self.http
            .get(&format!("{base}api"), &[], Duration::from_secs(10))
            .await
            .expect("notebook api request")
            .status
    }

    /// Docker objects carrying this test's label: (containers, volumes).
    pub fn docker_objects(&self) -> (Vec<String>, Vec<String>) {
        let filter = format!("label=mooc-lti.test={}", self.label);
        let list = |args: &[&str]| -> Vec<String> {
            let out = Command::new("docker").args(args).output().expect("docker");
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_owned)
                .filter(|l| !l.is_empty())
                .collect()
        };
        (
            list(&["ps", "-aq", "--filter", &filter]),
            list(&["volume", "ls", "-q", "--filter", &filter]),
        )
    }

    /// The notebook tokens of this test's containers (from their `JUPYTER_TOKEN`).
    pub fn notebook_tokens(&self) -> Vec<String> {
        let (containers, _) = self.docker_objects();
        if containers.is_empty() {
            return vec![];
        }
        let out = Command::new("docker")
            .args([
                "inspect",
                "--format",
                "{{range .Config.Env}}{{println .}}{{end}}",
            ])
            .args(&containers)
            .output()
            .expect("docker");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("JUPYTER_TOKEN="))
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Removes every container and volume carrying this test's label. Repeats until the label is
    /// gone for good: a Docker request a killed server sent just before may still complete.
    pub fn cleanup_docker(&self) {
        for _ in 0..10 {
            self.remove_labelled();
            std::thread::sleep(Duration::from_millis(300));
            if self.docker_objects() == (vec![], vec![]) {
                return;
            }
        }
    }

    fn remove_labelled(&self) {
        let (containers, volumes) = self.docker_objects();
        if !containers.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v"])
                .args(&containers)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if !volumes.is_empty() {
            let _ = Command::new("docker")
                .args(["volume", "rm", "-f"])
                .args(&volumes)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }

    /// Opens the test's database through the library.
    pub async fn store(&self) -> mooc_lti::store::Store {
        mooc_lti::store::Store::connect(&mooc_lti::config::DatabaseUrl(self.db_url.clone()))
            .await
            .expect("open test database")
    }
}

impl Drop for Env {
    /// Cleans up, then checks what every test must leave true: the server never logged the
    /// consumer secret or a notebook token, and nothing labelled for this test is left in Docker.
    fn drop(&mut self) {
        self.kill_server();
        let tokens = self.notebook_tokens();
        let logs = self.server_logs();
        self.cleanup_docker();
        let left = self.docker_objects();
        if let Backend::Postgres(admin) = backend() {
            psql(
                &admin,
                &format!("DROP DATABASE IF EXISTS mooc_{} WITH (FORCE)", self.label),
            );
        }
        if std::thread::panicking() {
            return;
        }
        assert!(
            !logs.contains(SECRET),
            "the server logged the consumer secret"
        );
        for token in &tokens {
            assert!(
                !logs.contains(token.as_str()),
                "the server logged a notebook token"
            );
        }
        assert_eq!(left, (vec![], vec![]), "Docker objects left behind");
    }
}

/// The database the integration tests run on.
#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite,
    /// The admin URL of a PostgreSQL server; each test gets its own database on it.
    Postgres(String),
}

/// `MOOC_TEST_DATABASE=postgres` (with `MOOC_TEST_POSTGRES_URL`, see scripts/postgres.sh) runs the
/// integration tests on PostgreSQL; the default is SQLite.
pub fn backend() -> Backend {
    match std::env::var("MOOC_TEST_DATABASE").as_deref() {
        Ok("postgres") => match std::env::var("MOOC_TEST_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => Backend::Postgres(url),
            _ => panic!(
                "MOOC_TEST_DATABASE=postgres needs MOOC_TEST_POSTGRES_URL (scripts/postgres.sh start)"
            ),
        },
        _ => Backend::Sqlite,
    }
}

fn psql(admin_url: &str, sql: &str) {
    let out = Command::new("psql")
        .args([admin_url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Creates `mooc_<label>` and returns its URL.
fn create_database(admin_url: &str, label: &str) -> String {
    let name = format!("mooc_{label}");
    psql(admin_url, &format!("CREATE DATABASE {name}"));
    let (base, _) = admin_url
        .rsplit_once('/')
        .expect("database name in the URL");
    format!("{base}/{name}")
}

/// The parameters Coursera sends (privacy sharing on), for `user`.
pub fn launch_params(user: &str) -> Vec<(String, String)> {
    [
        ("lti_message_type", "basic-lti-launch-request"),
        ("lti_version", "LTI-1p0"),
        ("resource_link_id", "lab-1"),
        ("context_id", "ondemand~test-course"),
        ("user_id", user),
        ("roles", "Learner"),
        ("lis_person_name_full", "Test Learner"),
        ("lis_person_contact_email_primary", "learner@example.edu"),
        (
            "launch_presentation_return_url",
            "https://www.coursera.org/learn/test",
        ),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Runs tests/common/sign_launch.py.
pub fn sign_with_oauthlib(
    url: &str,
    key: &str,
    secret: &str,
    params: &[(&str, &str)],
    timestamp: Option<i64>,
    nonce: &str,
) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/sign_launch.py");
    let request = serde_json::json!({
        "url": url,
        "key": key,
        "secret": secret,
        "params": params,
        "timestamp": timestamp,
        "nonce": nonce,
    });
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(request.to_string().as_bytes())
        .expect("write to signer");
    let out = child.wait_with_output().expect("signer output");
    assert!(
        out.status.success(),
        "signer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 body")
}

/// Signs many launches of `users` (standard parameters) in one oauthlib run.
pub fn sign_many(env: &Env, users: &[String]) -> Vec<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/sign_launch.py");
    let requests: Vec<serde_json::Value> = users
        .iter()
        .map(|u| {
            serde_json::json!({
                "url": format!("{PUBLIC_URL}/lti/launch"),
                "key": KEY,
                "secret": SECRET,
                "params": launch_params(u),
                "nonce": env.nonce(),
            })
        })
        .collect();
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(serde_json::Value::Array(requests).to_string().as_bytes())
        .expect("write to signer");
    let out = child.wait_with_output().expect("signer output");
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).expect("list of bodies")
}

/// Polls `check` every 100 ms until it returns true or `timeout` passes.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs moocctl and parses its JSON output, failing the test on a non-zero exit.
pub fn moocctl_json(env: &Env, args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = env.moocctl(&all);
    assert!(
        out.status.success(),
        "moocctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "moocctl {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The notebook base URL (`http://127.0.0.1:PORT/user/NAME/`) and token from a redirect.
pub fn split_notebook_url(location: &str) -> (String, String) {
    let (base, token) = location.split_once("?token=").expect("token in redirect");
    (base.to_owned(), token.to_owned())
}

/// The container name in a notebook redirect (`…/user/<name>/?token=…`).
pub fn container_name(location: &str) -> String {
    let (base, _) = split_notebook_url(location);
    base.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned()
}

/// A loopback TCP proxy to the Docker socket: a second endpoint to the same engine, which a test
/// can cut by aborting the task. Needs a multi-threaded runtime when the test also blocks.
pub async fn docker_tcp_proxy() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                break;
            };
            conns.spawn(async move {
                if let Ok(mut unix) = tokio::net::UnixStream::connect("/var/run/docker.sock").await
                {
                    let _ = tokio::io::copy_bidirectional(&mut tcp, &mut unix).await;
                }
            });
        }
    });
    (port, task)
}
