//! Outgrowing one machine: two servers on one database, two Docker hosts (the local engine reached
//! through its unix socket and through a loopback TCP proxy), a host going down, a host over TCP
//! with TLS client certificates, and `db copy`.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::*;
use mooc_lti::store::{ContainerFilter, ContainerState, SessionFilter};

#[tokio::test]
async fn two_servers_on_one_database_keep_every_invariant_under_500_concurrent_launches() {
    let Some(mut env) = Env::with_pool(PoolOpts {
        warm: 40,
        max: 85,
        ..Default::default()
    }) else {
        return;
    };
    assert!(
        env.moocctl(&["pool", "warm", "--parallel", "10"])
            .status
            .success()
    );
    let a = env.start_server();
    let b = env.start_extra_server();

    // 40 learners launch once (claims), then the pool is warmed again for 40 newcomers.
    let old: Vec<String> = (0..40).map(|i| format!("old-{i:02}")).collect();
    let bodies = sign_many(&env, &old);
    let env_ref = &env;
    let first = futures_util::future::join_all(bodies.into_iter().enumerate().map(
        |(i, body)| async move {
            env_ref
                .post_to(if i % 2 == 0 { a } else { b }, "", body)
                .await
        },
    ))
    .await;
    assert!(
        first.iter().all(|r| r.status == 302),
        "every first launch claimed a warm container"
    );
    let store = env.store().await;
    wait_until(
        Duration::from_secs(180),
        "the pool to be warm again",
        || async {
            store.warm_in_progress("default").await.unwrap() == 0
                && store
                    .list_containers(&ContainerFilter {
                        state: Some(ContainerState::Ready),
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .len()
                    == 40
        },
    )
    .await;

    // 500 at once, alternating servers: 460 launches of returning learners, 40 of newcomers.
    let mut users: Vec<String> = (0..460).map(|i| old[i % 40].clone()).collect();
    users.extend((0..40).map(|i| format!("new-{i:02}")));
    let bodies = sign_many(&env, &users);
    let results = futures_util::future::join_all(bodies.into_iter().enumerate().map(
        |(i, body)| async move {
            let resp = env_ref
                .post_to(if i % 2 == 0 { a } else { b }, "", body)
                .await;
            (
                resp.status.as_u16(),
                resp.header("location").map(str::to_owned),
            )
        },
    ))
    .await;
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    for (s, _) in &results {
        *statuses.entry(*s).or_default() += 1;
    }
    assert!(
        statuses.keys().all(|s| *s == 302 || *s == 503),
        "{statuses:?}"
    );
    let redirects = statuses.get(&302).copied().unwrap_or(0);
    assert!(
        redirects >= 460,
        "every returning learner is redirected: {statuses:?}"
    );

    // One container per learner, one learner per container, and each redirect is that learner's.
    let mut seen: HashMap<&str, String> = HashMap::new();
    for (user, (_, loc)) in users.iter().zip(&results) {
        if let Some(loc) = loc {
            let name = container_name(loc);
            if let Some(prev) = seen.insert(user, name.clone()) {
                assert_eq!(prev, name, "{user} was sent to two containers");
            }
        }
    }
    let distinct: HashSet<&String> = seen.values().collect();
    assert_eq!(
        distinct.len(),
        seen.len(),
        "no container serves two learners"
    );
    let live = store
        .list_containers(&ContainerFilter {
            pool: Some("default"),
            live_only: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let by_name: HashMap<&str, Option<i64>> =
        live.iter().map(|c| (c.name.as_str(), c.user_id)).collect();
    for (user, name) in &seen {
        assert!(
            by_name.get(name.as_str()).copied().flatten().is_some(),
            "{user}'s {name} is stored as assigned"
        );
    }
    let mut per_user: HashMap<i64, usize> = HashMap::new();
    for u in live.iter().filter_map(|c| c.user_id) {
        *per_user.entry(u).or_default() += 1;
    }
    assert!(per_user.values().all(|n| *n == 1));
    // All 302s persisted: a session with a container for each (plus the 40 first launches).
    let sessions = store
        .list_sessions(&SessionFilter {
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap();
    let with_container = sessions.iter().filter(|s| s.container_id.is_some()).count();
    assert_eq!(with_container, 40 + redirects);

    // A nonce seen by one server is refused by the other.
    let body = env.sign(
        &[
            ("lti_message_type", "basic-lti-launch-request"),
            ("lti_version", "LTI-1p0"),
            ("resource_link_id", "r"),
            ("user_id", "old-00"),
        ],
        "",
        KEY,
        SECRET,
        None,
    );
    assert_eq!(env.post_to(a, "", body.clone()).await.status, 302);
    assert_eq!(
        env.post_to(b, "", body).await.status,
        401,
        "replayed on the other server"
    );
}

// Multi-threaded: the proxy must keep running while the test blocks on moocctl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_spread_over_two_hosts_and_one_going_down_leaves_the_other_serving() {
    if !docker_ready() || !signer_ready() {
        return;
    }
    let (port, proxy) = docker_tcp_proxy().await;
    let hosts = format!(
        "  - name: local\n    endpoint: unix:///var/run/docker.sock\n    public_host: 127.0.0.1\n    capacity: 3\n\
         \x20 - name: proxied\n    endpoint: tcp://127.0.0.1:{port}\n    public_host: 127.0.0.1\n    capacity: 3"
    );
    let mut env = Env::without_docker(PoolOpts {
        warm: 2,
        max: 6,
        hosts: Some(hosts),
        ..Default::default()
    });
    let out = env.moocctl(&["pool", "warm"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = moocctl_json(&env, &["containers", "list"]);
    let hosts_used: HashSet<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["host"].as_str())
        .collect();
    assert_eq!(
        hosts_used,
        HashSet::from(["local", "proxied"]),
        "placed on both hosts: {listed}"
    );

    env.start_server();
    let mut host_of: HashMap<String, String> = HashMap::new();
    let mut container_of: HashMap<String, String> = HashMap::new();
    for user in ["u-1", "u-2"] {
        let resp = env.launch(user).await;
        assert_eq!(resp.status, 302, "{}", resp.text());
        let name = container_name(resp.header("location").unwrap());
        let shown = moocctl_json(&env, &["containers", "show", &name]);
        host_of.insert(
            user.to_owned(),
            shown[0]["host"].as_str().unwrap().to_owned(),
        );
        container_of.insert(user.to_owned(), name);
    }
    let on_proxied = host_of
        .iter()
        .find(|(_, h)| *h == "proxied")
        .map(|(u, _)| u.clone());
    let on_local = host_of
        .iter()
        .find(|(_, h)| *h == "local")
        .map(|(u, _)| u.clone());
    let (Some(on_proxied), Some(on_local)) = (on_proxied, on_local) else {
        panic!("the two claims came from both hosts: {host_of:?}");
    };
    // Let the refill finish so the pool has ready containers on both hosts again.
    let store = env.store().await;
    wait_until(Duration::from_secs(90), "the refill", || async {
        store.warm_in_progress("default").await.unwrap() == 0
    })
    .await;

    // The proxied endpoint dies.
    proxy.abort();
    let _ = proxy.await;
    wait_until(
        Duration::from_secs(30),
        "pool status to show the host down",
        || async {
            let status = moocctl_json(&env, &["pool", "status"]);
            status[0]["hosts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|h| h["host"] == "proxied" && h["health"] == "down")
        },
    )
    .await;
    let table = env.moocctl(&["pool", "status"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("proxied (DOWN since"));

    // Only the engine's endpoint is gone; the notebook still runs, so its learner keeps working.
    let resp = env.launch(&on_proxied).await;
    assert_eq!(resp.status, 302, "{}", resp.text());
    // Now the machine is gone too (its notebooks stop answering): a clear "unavailable" page.
    let paused = std::process::Command::new("docker")
        .args(["pause", &container_of[&on_proxied]])
        .status()
        .unwrap();
    assert!(paused.success());
    let resp = env.launch(&on_proxied).await;
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert!(
        resp.text().contains("temporarily unavailable"),
        "{}",
        resp.text()
    );
    assert_eq!(
        env.launch(&on_local).await.status,
        302,
        "everyone else carries on"
    );
    let newcomer = env.launch("u-3").await;
    assert_eq!(newcomer.status, 302, "{}", newcomer.text());
    let name = container_name(newcomer.header("location").unwrap());
    assert_eq!(
        moocctl_json(&env, &["containers", "show", &name])[0]["host"],
        "local"
    );
}

#[tokio::test]
async fn db_copy_round_trips_a_populated_database() {
    let admin = match std::env::var("MOOC_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            missing("PostgreSQL (MOOC_TEST_POSTGRES_URL, from scripts/postgres.sh start)");
            return;
        }
    };
    let Some(mut env) = Env::with_pool(PoolOpts {
        warm: 1,
        max: 5,
        ..Default::default()
    }) else {
        return;
    };
    assert!(env.moocctl(&["pool", "warm"]).status.success());
    env.start_server();
    for user in ["copy-a", "copy-b", "copy-a"] {
        assert_eq!(env.launch(user).await.status, 302);
    }
    env.kill_server();
    assert!(env.moocctl(&["admin", "add", "ops"]).status.success());
    // What the admin commands show of every table, before and after the round trip.
    let views: [&[&str]; 7] = [
        &["sessions", "list"],
        &["users", "list"],
        &["containers", "list", "--all"],
        &["nonces", "list"],
        &["consumer", "list"],
        &["admin", "list"],
        &["logs", "--kind", "claim"],
    ];
    let before: Vec<serde_json::Value> = views.iter().map(|v| moocctl_json(&env, v)).collect();

    // Away from this test's own backend, then back to a fresh SQLite file.
    let psql = |sql: &str| {
        let out = std::process::Command::new("psql")
            .args([admin.as_str(), "-qc", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let db = format!("copy_{}", env.label);
    psql(&format!("CREATE DATABASE {db}"));
    let pg_url = format!("{}/{db}", admin.rsplit_once('/').unwrap().0);
    let sqlite_url = format!("sqlite://{}", env.dir.path().join("copy.db").display());
    let (middle, last) = if env.db_url.starts_with("sqlite") {
        (pg_url.clone(), sqlite_url)
    } else {
        (sqlite_url, pg_url.clone())
    };
    let out = env.moocctl(&["--as", "ops", "db", "copy", "--to", &middle, "--json"]);
    assert_eq!(out.status.code(), Some(2), "refused without --yes");
    let copied = moocctl_json(
        &env,
        &["--as", "ops", "db", "copy", "--to", &middle, "--yes"],
    );
    let tables = copied.as_array().unwrap();
    assert!(
        tables.iter().all(|t| t["source_rows"] == t["target_rows"]),
        "{copied}"
    );
    let count = |name: &str| {
        tables.iter().find(|t| t["table"] == name).unwrap()["target_rows"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(count("sessions"), 3);
    assert_eq!(count("users"), 2);
    assert!(count("containers") >= 2);
    // Copying again into the now populated database is refused.
    let again = env.moocctl(&["--as", "ops", "db", "copy", "--to", &middle, "--yes"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));

    // Back: from the copy to a fresh database of the other kind, through the copy's own config.
    let text = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace(&env.db_url, &middle);
    let copy_config = env.dir.path().join("copy.yaml");
    std::fs::write(&copy_config, text).unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_moocctl"))
            .arg("--config")
            .arg(&copy_config)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let back = run(&[
        "--as", "ops", "db", "copy", "--to", &last, "--yes", "--json",
    ]);
    assert!(
        back.status.success(),
        "{}",
        String::from_utf8_lossy(&back.stderr)
    );
    let text = std::fs::read_to_string(&copy_config)
        .unwrap()
        .replace(&middle, &last);
    std::fs::write(&copy_config, text).unwrap();
    for (view, before) in views.iter().zip(&before) {
        let mut args = view.to_vec();
        args.push("--json");
        let after = run(&args);
        assert!(after.status.success(), "{view:?}");
        let after: serde_json::Value = serde_json::from_slice(&after.stdout).unwrap();
        assert_eq!(before, &after, "{view:?} is unchanged by the round trip");
    }
    assert!(before[4].to_string().contains(KEY));
    // Every table came back whole; only the audit trail and the event log grew, by the copy
    // commands' own entries.
    let back: serde_json::Value = serde_json::from_slice(&back.stdout).unwrap();
    for t in back.as_array().unwrap() {
        let name = t["table"].as_str().unwrap();
        assert_eq!(t["source_rows"], t["target_rows"], "{name}");
        if name != "audit" && name != "events" {
            assert_eq!(t["target_rows"].as_i64().unwrap(), count(name), "{name}");
        }
    }
    // The consumer secret came along: a launch signed with it verifies against the copy.
    let mut server_env_config = std::fs::read_to_string(&copy_config).unwrap();
    server_env_config.push('\n');
    std::fs::write(&env.config, server_env_config).unwrap();
    env.start_server();
    assert_eq!(
        env.launch("copy-a").await.status,
        302,
        "the copy serves the same learner"
    );
    env.kill_server();
    psql(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
}

/// A TLS endpoint in front of the local engine, as `dockerd --tlsverify` is set up: `stunnel`
/// listens on loopback with a server certificate and accepts only clients with a certificate from
/// `ca.pem`. (socat cannot stand in: it fails the second connection of a client that resumes
/// TLS sessions, as rustls does.)
struct TlsEngine {
    dir: tempfile::TempDir,
    port: u16,
    stunnel: std::process::Child,
}

impl TlsEngine {
    fn start() -> TlsEngine {
        let dir = tempfile::tempdir().unwrap();
        let openssl = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let key = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let self_signed = |name: &str, cn: &str| {
            let (k, c, s) = (
                format!("{name}-key.pem"),
                format!("{name}.pem"),
                format!("/CN={cn}"),
            );
            let mut args = vec![
                "req", "-x509", "-days", "1", "-subj", &s, "-keyout", &k, "-out", &c,
            ];
            args.extend(key);
            openssl(&args);
        };
        let signed = |name: &str, cn: &str, ext: &str| {
            let (k, r, c, s) = (
                format!("{name}-key.pem"),
                format!("{name}.csr"),
                format!("{name}.pem"),
                format!("/CN={cn}"),
            );
            let mut args = vec!["req", "-subj", &s, "-keyout", &k, "-out", &r];
            args.extend(key);
            openssl(&args);
            let e = format!("{name}.ext");
            std::fs::write(dir.path().join(&e), ext).unwrap();
            openssl(&[
                "x509",
                "-req",
                "-days",
                "1",
                "-in",
                &r,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca-key.pem",
                "-CAcreateserial",
                "-extfile",
                &e,
                "-out",
                &c,
            ]);
        };
        self_signed("ca", "mooc-test-ca");
        signed(
            "server",
            "localhost",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        );
        signed("client", "mooc-lti", "extendedKeyUsage=clientAuth\n");
        // A client certificate from a CA the engine does not trust.
        self_signed("stranger", "stranger");

        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let p = |f: &str| dir.path().join(f).display().to_string();
        let conf = format!(
            "foreground = yes\npid =\n[docker]\naccept = 127.0.0.1:{port}\n\
             connect = /var/run/docker.sock\ncert = {}\nkey = {}\nCAfile = {}\n\
             verifyChain = yes\nrequireCert = yes\n",
            p("server.pem"),
            p("server-key.pem"),
            p("ca.pem"),
        );
        std::fs::write(dir.path().join("stunnel.conf"), conf).unwrap();
        let stunnel = std::process::Command::new("stunnel")
            .arg(p("stunnel.conf"))
            .current_dir(dir.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "stunnel listens");
            std::thread::sleep(Duration::from_millis(50));
        }
        TlsEngine { dir, port, stunnel }
    }

    /// The `docker_hosts:` entry for this endpoint, with the client certificate `client`.
    fn host_yaml(&self, client: &str) -> String {
        let p = |f: &str| self.dir.path().join(f).display().to_string();
        format!(
            "  - name: tls\n    endpoint: tcp://127.0.0.1:{port}\n    public_host: 127.0.0.1\n    \
             tls: {{ ca: {ca}, cert: {cert}, key: {key} }}",
            port = self.port,
            ca = p("ca.pem"),
            cert = p(&format!("{client}.pem")),
            key = p(&format!("{client}-key.pem")),
        )
    }
}

impl Drop for TlsEngine {
    fn drop(&mut self) {
        let _ = self.stunnel.kill();
        let _ = self.stunnel.wait();
    }
}

/// `openssl` and `stunnel` (Debian packages that scripts/test.sh installs) are there.
fn tls_tools_ready() -> bool {
    let ok = ["openssl", "stunnel"].iter().all(|tool| {
        std::process::Command::new(tool)
            .arg("-version")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok()
    });
    ok || missing("openssl and stunnel (apt-get install openssl stunnel4)")
}

#[tokio::test]
async fn a_docker_host_over_tcp_with_tls_client_certificates_serves_and_a_stranger_is_refused() {
    if !docker_ready() || !signer_ready() || !tls_tools_ready() {
        return;
    }
    let engine = TlsEngine::start();
    let presenting = |cert: &str| PoolOpts {
        warm: 1,
        max: 3,
        hosts: Some(engine.host_yaml(cert)),
        ..Default::default()
    };
    let mut env = Env::without_docker(presenting("client"));
    let (_, report) = env.doctor();
    assert!(report.contains("ok    docker host tls"), "{report}");
    let out = env.moocctl(&["pool", "warm"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = moocctl_json(&env, &["containers", "list"]);
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["host"], "tls");
    assert_eq!(listed[0]["state"], "ready");

    env.start_server();
    let resp = env.launch("over-tls").await;
    assert_eq!(resp.status, 302, "{}", resp.text());
    assert_eq!(
        env.notebook_api_status(resp.header("location").unwrap())
            .await,
        200
    );
    env.kill_server();

    // The same endpoint with a certificate the engine does not trust: no Docker call gets through.
    env.write_config(&presenting("stranger"));
    let (code, report) = env.doctor();
    assert_eq!(code, Some(1), "{report}");
    assert!(report.contains("fail  docker host tls"), "{report}");
}
