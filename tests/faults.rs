//! Faults: a crash in the middle of a burst, an unreachable Docker endpoint, a container that dies
//! between its claim and the redirect, a locked, read-only or full database, and a notebook that
//! never becomes ready. Each must degrade clearly and lose nothing.

mod common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use mooc_lti::store::{ContainerFilter, ContainerState, SessionFilter, Store};

/// Rows in the tables a launch writes.
async fn row_counts(store: &Store) -> (usize, usize, usize) {
    let sessions = store
        .list_sessions(&SessionFilter {
            limit: 1_000_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .len();
    let nonces = store.count_nonces().await.unwrap() as usize;
    let users = store.list_users(None, 1_000_000).await.unwrap().len();
    (sessions, nonces, users)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_burst_loses_no_redirected_launch_and_leaves_nothing_half_done() {
    let Some(mut env) = Env::with_pool(PoolOpts {
        warm: 5,
        max: 40,
        ..Default::default()
    }) else {
        return;
    };
    assert!(env.moocctl(&["pool", "warm"]).status.success());
    env.start_server();
    let users: Vec<String> = (0..30).map(|i| format!("crash-{i:02}")).collect();
    let bodies = sign_many(&env, &users);
    let addr = env.addr();
    let http = env.http.clone();
    let burst: Vec<_> = bodies
        .iter()
        .cloned()
        .map(|body| {
            let http = http.clone();
            tokio::spawn(async move {
                http.post_form(
                    &format!("http://{addr}/lti/launch"),
                    body,
                    Duration::from_secs(60),
                )
                .await
                .ok()
                .map(|r| (r.status.as_u16(), r.header("location").map(str::to_owned)))
            })
        })
        .collect();
    // Five claims answer at once; the rest are creating containers when the server dies.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    env.kill_server();
    let mut redirected: HashMap<String, String> = HashMap::new();
    for (user, task) in users.iter().zip(burst) {
        if let Some((302, Some(loc))) = task.await.unwrap() {
            redirected.insert(user.clone(), container_name(&loc));
        }
    }
    assert!(
        redirected.len() >= 5,
        "the warm claims were answered before the crash: {redirected:?}"
    );
    assert!(
        redirected.len() < users.len(),
        "the kill landed mid-burst, with launches still waiting for new containers"
    );

    env.start_server();
    let store = env.store().await;
    wait_until(
        Duration::from_secs(60),
        "start-up reconcile to settle every creation",
        || async {
            store
                .list_containers(&ContainerFilter {
                    live_only: true,
                    ..Default::default()
                })
                .await
                .unwrap()
                .iter()
                .all(|c| {
                    !matches!(
                        c.state(),
                        ContainerState::Creating | ContainerState::Warming
                    )
                })
        },
    )
    .await;
    // Every redirect is persisted: the learner's container is the one they were sent to.
    for (user, name) in &redirected {
        let found = store.find_users(user, Some(KEY)).await.unwrap();
        let c = store.user_container("default", found[0].id).await.unwrap();
        assert_eq!(
            c.as_ref().map(|c| c.name.as_str()),
            Some(name.as_str()),
            "{user}"
        );
        let sessions = store
            .list_sessions(&SessionFilter {
                user: Some(user),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(
            sessions
                .iter()
                .any(|s| s.container_id == c.as_ref().map(|c| c.id)),
            "{user}'s session"
        );
    }
    // No learner with two containers, none half-claimed.
    let live = store
        .list_containers(&ContainerFilter {
            live_only: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut per_user: HashMap<i64, usize> = HashMap::new();
    for c in &live {
        if let Some(u) = c.user_id {
            *per_user.entry(u).or_default() += 1;
            assert_eq!(c.state(), ContainerState::Assigned, "{} is settled", c.name);
        }
    }
    assert!(per_user.values().all(|n| *n == 1));
    // A nonce seen before the crash is still refused after it.
    let (i, _) = users
        .iter()
        .enumerate()
        .find(|(_, u)| redirected.contains_key(*u))
        .unwrap();
    assert_eq!(env.post("", bodies[i].clone()).await.status, 401);
    eprintln!(
        "crash: {} of {} launches answered 302 before kill -9; all {} persisted after restart",
        redirected.len(),
        users.len(),
        redirected.len()
    );
    // And the learners whose launch was cut short can launch again.
    for user in users
        .iter()
        .filter(|u| !redirected.contains_key(*u))
        .take(3)
    {
        let resp = env.launch(user).await;
        assert_eq!(resp.status, 302, "{user}: {}", resp.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_docker_endpoint_still_serves_known_notebooks_and_doctor_names_it() {
    if !docker_ready() || !signer_ready() {
        return;
    }
    let (port, proxy) = docker_tcp_proxy().await;
    let mut env = Env::without_docker(PoolOpts {
        warm: 1,
        max: 5,
        hosts: Some(format!(
            "  - name: remote\n    endpoint: tcp://127.0.0.1:{port}\n    public_host: 127.0.0.1"
        )),
        ..Default::default()
    });
    assert!(env.moocctl(&["pool", "warm"]).status.success());
    env.start_server();
    let first = env.launch("known").await;
    assert_eq!(first.status, 302);
    proxy.abort();
    let _ = proxy.await;
    wait_until(
        Duration::from_secs(30),
        "the host to be marked down",
        || async {
            let status = moocctl_json(&env, &["pool", "status"]);
            status[0]["hosts"][0]["health"] == "down"
        },
    )
    .await;
    let again = env.launch("known").await;
    assert_eq!(
        again.status, 302,
        "a returning learner whose notebook runs is redirected"
    );
    assert_eq!(again.header("location"), first.header("location"));
    let stranger = env.launch("stranger").await;
    assert_eq!(stranger.status, 503, "{}", stranger.text());
    assert!(stranger.header("retry-after").is_some());
    let (code, out) = env.doctor();
    assert_eq!(code, Some(1));
    let line = out
        .lines()
        .find(|l| l.contains("docker host remote"))
        .unwrap_or_default();
    assert!(line.starts_with("fail"), "{out}");
    assert!(
        line.contains(&format!("127.0.0.1:{port}")),
        "doctor names the endpoint and cause: {line}"
    );
}

#[tokio::test]
async fn a_container_that_died_before_its_claim_is_not_handed_out() {
    let Some(mut env) = Env::with_pool(PoolOpts {
        warm: 2,
        max: 5,
        ..Default::default()
    }) else {
        return;
    };
    assert!(env.moocctl(&["pool", "warm"]).status.success());
    let store = env.store().await;
    let ready = store
        .list_containers(&ContainerFilter {
            state: Some(ContainerState::Ready),
            ..Default::default()
        })
        .await
        .unwrap();
    // The first in line is frozen: Docker still reports it running and sends no event, but its
    // Jupyter will never answer.
    let frozen = ready[0].name.clone();
    assert!(
        Command::new("docker")
            .args(["exec", &frozen, "sh", "-c", "kill -STOP -1"])
            .status()
            .unwrap()
            .success()
    );
    env.start_server();
    let resp = env.launch("lucky").await;
    assert_eq!(resp.status, 302, "{}", resp.text());
    let name = container_name(resp.header("location").unwrap());
    assert_ne!(name, frozen, "the frozen container was not handed out");
    assert_eq!(
        env.notebook_api_status(resp.header("location").unwrap())
            .await,
        200
    );
    let row = store.container_by_name(&frozen).await.unwrap().unwrap();
    assert_eq!(row.state(), ContainerState::Failed);
    assert_eq!(row.user_id, None, "the claim was given back");
    wait_until(
        Duration::from_secs(30),
        "the frozen container to be removed",
        || async {
            !Command::new("docker")
                .args(["inspect", &frozen])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap()
                .success()
        },
    )
    .await;
}

#[tokio::test]
async fn a_locked_database_gives_a_clear_503_and_no_partial_rows() {
    let Some(mut env) = Env::with_pool(PoolOpts {
        warm: 1,
        max: 5,
        ..Default::default()
    }) else {
        return;
    };
    assert!(env.moocctl(&["pool", "warm"]).status.success());
    env.start_server();
    assert_eq!(env.launch("patient").await.status, 302);
    let store = env.store().await;
    let before = row_counts(&store).await;
    // Another process takes the write lock (SQLite), or another session locks the nonce table
    // (PostgreSQL).
    let mut locker = None;
    let mut pg_lock = None;
    match backend() {
        Backend::Sqlite => {
            let path = env.db_url.trim_start_matches("sqlite://").to_owned();
            let mut child = Command::new("python3")
                .args([
                    "-c",
                    "import sqlite3, sys, time\n\
                     c = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
                     c.execute('BEGIN IMMEDIATE')\nprint('locked', flush=True)\ntime.sleep(25)",
                    &path,
                ])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::BufRead;
            let mut line = String::new();
            std::io::BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            assert_eq!(line.trim(), "locked");
            locker = Some(child);
        }
        Backend::Postgres(_) => {
            let pool = sqlx::PgPool::connect(&env.db_url).await.unwrap();
            let mut tx = pool.begin().await.unwrap();
            sqlx::query("LOCK TABLE nonces IN ACCESS EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await
                .unwrap();
            pg_lock = Some((pool, tx));
        }
    }
    let started = std::time::Instant::now();
    let resp = env.launch("patient").await;
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert!(
        resp.text().contains("Temporarily unavailable"),
        "{}",
        resp.text()
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "bounded wait: {:?}",
        started.elapsed()
    );
    if let Some(mut child) = locker {
        let _ = child.kill();
        let _ = child.wait();
    }
    if let Some((pool, tx)) = pg_lock {
        tx.rollback().await.unwrap();
        pool.close().await;
    }
    assert_eq!(row_counts(&store).await, before, "no partial rows");
    assert_eq!(
        env.launch("patient").await.status,
        302,
        "served again once the lock is gone"
    );
}

#[tokio::test]
async fn a_read_only_database_gives_a_clear_503_and_no_partial_rows() {
    let Backend::Postgres(admin) = backend() else {
        eprintln!(
            "read-only database: exercised on PostgreSQL (the PostgreSQL pass); a read-only SQLite file \
             cannot be made while the server holds it open"
        );
        return;
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
    assert_eq!(env.launch("reader").await.status, 302);
    let store = env.store().await;
    let before = row_counts(&store).await;
    let db = env.db_url.rsplit('/').next().unwrap().to_owned();
    let psql = |sql: String| {
        let out = Command::new("psql")
            .args([admin.as_str(), "-qc", &sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let reconnect_all = format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}' AND pid <> pg_backend_pid()"
    );
    psql(format!(
        "ALTER DATABASE {db} SET default_transaction_read_only = on"
    ));
    psql(reconnect_all.clone());
    let mut saw_503 = false;
    for _ in 0..5 {
        let resp = env.launch("reader").await;
        assert_ne!(
            resp.status, 302,
            "a read-only database cannot record a launch"
        );
        if resp.status == 503 {
            saw_503 = true;
            break;
        }
    }
    assert!(saw_503, "a clear 503 once the pool reconnects");
    psql(format!(
        "ALTER DATABASE {db} SET default_transaction_read_only = off"
    ));
    psql(reconnect_all);
    assert_eq!(row_counts(&store).await, before, "no partial rows");
    let mut ok = false;
    for _ in 0..5 {
        if env.launch("reader").await.status == 302 {
            ok = true;
            break;
        }
    }
    assert!(ok, "served again once writable");
}

#[tokio::test]
async fn a_full_disk_under_the_database_gives_a_clear_503_and_no_partial_rows() {
    if !matches!(backend(), Backend::Sqlite) {
        return; // the disk under SQLite's file; PostgreSQL's disk is the server's concern
    }
    let Some(mut env) = Env::with_pool(PoolOpts {
        warm: 1,
        max: 5,
        ..Default::default()
    }) else {
        return;
    };
    // The database on a 4 MiB filesystem of its own.
    let mnt = env.dir.path().join("small");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&mnt)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !mounted {
        missing("permission to mount a small tmpfs (run as root)");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.clone());
    let old_url = env.db_url.clone();
    env.db_url = format!("sqlite://{}", mnt.join("mooc.db").display());
    let text = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace(&old_url, &env.db_url);
    std::fs::write(&env.config, text).unwrap();
    assert!(
        env.moocctl(&["consumer", "add", KEY, "--secret", SECRET])
            .status
            .success()
    );
    assert!(env.moocctl(&["pool", "warm"]).status.success());
    env.start_server();
    assert_eq!(env.launch("hoarder").await.status, 302);
    let store = env.store().await;
    let before = row_counts(&store).await;
    // Fill the filesystem.
    let filler = mnt.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", filler.display()))
        .stderr(Stdio::null())
        .status();
    let mut saw_503 = false;
    for i in 0..20 {
        let resp = env.launch(&format!("newcomer-{i}")).await;
        assert_ne!(resp.status, 500, "never a 500: {}", resp.text());
        if resp.status == 503 {
            saw_503 = true;
            break;
        }
    }
    assert!(saw_503, "a full disk gives 503");
    std::fs::remove_file(&filler).unwrap();
    let after = row_counts(&store).await;
    assert!(after.0 >= before.0 && after.1 >= before.1);
    // Whatever was recorded is whole: every session of a redirected launch names its container.
    let sessions = store
        .list_sessions(&SessionFilter {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    for s in &sessions {
        if s.outcome == "claimed" || s.outcome == "returning" || s.outcome == "created" {
            assert!(s.container_id.is_some(), "{s:?}");
        }
    }
    assert_eq!(
        env.launch("hoarder").await.status,
        302,
        "served again once there is room"
    );
}

#[tokio::test]
async fn a_notebook_that_never_becomes_ready_is_failed_and_replaced_not_handed_out() {
    let Some(mut env) = Env::with_pool(PoolOpts {
        warm: 1,
        max: 3,
        ..Default::default()
    }) else {
        return;
    };
    let good = std::fs::read_to_string(&env.config).unwrap();
    // A command that runs but never serves Jupyter, and a short readiness limit.
    let broken = good
        .replace(
            "command: [jupyter-notebook,",
            "command: [sleep, \"3600\", jupyter-notebook,",
        )
        .replace("ready_timeout: 60s", "ready_timeout: 4s");
    assert_ne!(broken, good);
    std::fs::write(&env.config, &broken).unwrap();
    let out = env.moocctl(&["pool", "warm"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("did not answer"), "{err}");
    let store = env.store().await;
    let failed = store
        .list_containers(&ContainerFilter {
            state: Some(ContainerState::Failed),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!failed.is_empty());
    assert!(failed.iter().all(|c| c.user_id.is_none()));
    assert_eq!(
        env.docker_objects(),
        (vec![], vec![]),
        "failed containers are removed"
    );

    env.start_server();
    let resp = env.launch("waiting").await;
    assert_eq!(
        resp.status,
        503,
        "never redirected to a notebook that does not answer: {}",
        resp.text()
    );
    env.kill_server();

    // Fixed: the next warm replaces them with containers that answer.
    std::fs::write(&env.config, &good).unwrap();
    let out = env.moocctl(&["pool", "warm"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.start_server();
    let resp = env.launch("waiting").await;
    assert_eq!(resp.status, 302, "{}", resp.text());
}
