//! Pools on the real engine: warming to exactly the target (also concurrently), claims and refills,
//! learners' files surviving removal and culling, claims under heavy concurrency, and reconcile.

mod common;

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::time::Duration;

use common::*;
use mooc_lti::store::{ContainerFilter, ContainerState, Reservation};

const T: Duration = Duration::from_secs(30);

fn ready_count(env: &Env) -> i64 {
    let status = moocctl_json(env, &["pool", "status", "default"]);
    status[0]["ready"].as_i64().expect("ready count")
}

fn live_count(env: &Env) -> i64 {
    let status = moocctl_json(env, &["pool", "status", "default"]);
    status[0]["counts"]
        .as_object()
        .map(|c| c.values().filter_map(|v| v.as_i64()).sum())
        .unwrap_or(0)
}

#[tokio::test]
async fn warm_reaches_exactly_the_target_also_with_two_concurrent_runs() {
    let Some(env) = Env::with_pool(PoolOpts {
        warm: 3,
        max: 10,
        ..Default::default()
    }) else {
        return;
    };
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_moocctl"))
            .args(["--config"])
            .arg(&env.config)
            .args(["pool", "warm"])
            .stdin(std::process::Stdio::null())
            .output()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(run);
        let b = s.spawn(run);
        (a.join().unwrap().unwrap(), b.join().unwrap().unwrap())
    });
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    assert_eq!(ready_count(&env), 3);
    assert_eq!(live_count(&env), 3, "not double");
    let (containers, _) = env.docker_objects();
    assert_eq!(containers.len(), 3);

    // Idempotent: a third run creates nothing.
    let out = env.moocctl(&["pool", "warm"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 created"));
    assert_eq!(env.docker_objects().0.len(), 3);

    // Resize and drain: the target follows the database, drain removes only ready containers.
    let out = env.moocctl(&["pool", "resize", "default", "--warm", "1"]);
    assert!(out.status.success());
    assert_eq!(moocctl_json(&env, &["pool", "status"])[0]["warm"], 1);
    let refused = env.moocctl(&["pool", "drain", "default"]);
    assert_eq!(
        refused.status.code(),
        Some(2),
        "drain needs --yes without a terminal"
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--yes"));
    let out = env.moocctl(&["pool", "drain", "default", "--yes"]);
    assert!(out.status.success());
    assert_eq!(ready_count(&env), 0);
    assert_eq!(
        env.docker_objects(),
        (vec![], vec![]),
        "drained containers and their volumes are gone"
    );
}

#[tokio::test]
async fn warm_fails_clearly_when_the_image_is_missing() {
    let Some(env) = Env::with_pool(PoolOpts {
        warm: 1,
        max: 2,
        ..Default::default()
    }) else {
        return;
    };
    let text = std::fs::read_to_string(&env.config).unwrap().replace(
        &format!("image: {IMAGE}"),
        "image: mooc-lti/no-such-image:test",
    );
    std::fs::write(&env.config, text).unwrap();
    let out = env.moocctl(&["pool", "warm"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-image"), "{err}");
    assert!(err.contains("0 of 1 ready"), "{err}");
    assert_eq!(
        env.docker_objects(),
        (vec![], vec![]),
        "failed containers are cleaned up"
    );
}

#[tokio::test]
async fn a_first_launch_claims_a_warm_container_and_the_pool_refills() {
    let Some(mut env) = Env::with_pool(PoolOpts {
        warm: 2,
        max: 10,
        ..Default::default()
    }) else {
        return;
    };
    assert!(env.moocctl(&["pool", "warm"]).status.success());
    let ready: HashSet<String> = env.docker_objects().0.into_iter().collect();
    assert_eq!(ready.len(), 2);
    let names_before: HashSet<String> = moocctl_json(&env, &["containers", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect();
    env.start_server();
    let resp = env.launch("first-timer").await;
    assert_eq!(resp.status, 302, "{}", resp.text());
    let name = container_name(resp.header("location").unwrap());
    assert!(
        names_before.contains(&name),
        "{name} was one of the warm containers"
    );
    let store = env.store().await;
    // Under 30 s: the server's periodic maintenance round (every 30 s, the first at start-up when
    // the pool was full) would refill too; this proves the refill the claim itself started.
    wait_until(
        Duration::from_secs(25),
        "the pool to refill to 2 ready",
        || async {
            let ready = store
                .list_containers(&ContainerFilter {
                    pool: Some("default"),
                    state: Some(ContainerState::Ready),
                    ..Default::default()
                })
                .await
                .unwrap();
            ready.len() == 2
        },
    )
    .await;
    let sessions = env.server_logs();
    assert!(sessions.contains("outcome=\"claimed\""), "{sessions}");
}

async fn save_file(env: &Env, location: &str, name: &str, content: &str) {
    let (base, token) = split_notebook_url(location);
    let body =
        serde_json::json!({"type": "file", "format": "text", "content": content}).to_string();
    let req = hyper::Request::put(format!("{base}api/contents/{name}"))
        .header("authorization", format!("token {token}"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let resp = env.http.send(req, T).await.unwrap();
    assert!(
        resp.status.is_success(),
        "save: {} {}",
        resp.status,
        resp.text()
    );
}

async fn read_file(env: &Env, location: &str, name: &str) -> Option<String> {
    let (base, token) = split_notebook_url(location);
    let auth = format!("token {token}");
    let resp = env
        .http
        .get(
            &format!("{base}api/contents/{name}"),
            &[("authorization", &auth)],
            T,
        )
        .await
        .unwrap();
    if !resp.status.is_success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    v["content"].as_str().map(str::to_owned)
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test]
async fn learners_files_survive_their_container_being_removed_and_culled() {
    let Some(mut env) = Env::new() else { return };
    env.start_server();
    let first = env.launch("keeper").await;
    assert_eq!(first.status, 302);
    let first_loc = first.header("location").unwrap().to_owned();
    save_file(&env, &first_loc, "notes.txt", "week 1: pandas ✓").await;
    let first_name = container_name(&first_loc);

    // Removed behind our back: the server notices, and the next launch gets a new container on the
    // learner's own volume.
    docker(&["rm", "-f", &first_name]);
    let store = env.store().await;
    wait_until(
        Duration::from_secs(10),
        "the removal to be noticed",
        || async {
            store
                .container_by_name(&first_name)
                .await
                .unwrap()
                .unwrap()
                .state()
                == ContainerState::Removed
        },
    )
    .await;
    let second = env.launch("keeper").await;
    assert_eq!(second.status, 302, "{}", second.text());
    let second_loc = second.header("location").unwrap().to_owned();
    let second_name = container_name(&second_loc);
    assert_ne!(first_name, second_name);
    assert_eq!(
        read_file(&env, &second_loc, "notes.txt").await.as_deref(),
        Some("week 1: pandas ✓")
    );

    // Culled: stopped, not removed; the next launch starts the same container with the file there.
    let out = env.moocctl(&["pool", "cull", "--idle", "0s", "--yes"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 stopped"));
    assert_eq!(
        docker(&["inspect", "--format", "{{.State.Running}}", &second_name]),
        "false"
    );
    let third = env.launch("keeper").await;
    assert_eq!(third.status, 302, "{}", third.text());
    let third_loc = third.header("location").unwrap().to_owned();
    assert_eq!(
        container_name(&third_loc),
        second_name,
        "the same container, started again"
    );
    assert_eq!(
        read_file(&env, &third_loc, "notes.txt").await.as_deref(),
        Some("week 1: pandas ✓")
    );

    // Purge is the one way a learner's volume goes.
    let out = env.moocctl(&["users", "purge", "keeper", "--yes"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until(T, "purged objects to disappear", || async {
        env.docker_objects() == (vec![], vec![])
    })
    .await;
}

#[tokio::test]
async fn two_hundred_concurrent_first_launches_never_share_a_container() {
    let Some(mut env) = Env::with_pool(PoolOpts {
        warm: 20,
        max: 30,
        ..Default::default()
    }) else {
        return;
    };
    assert!(
        env.moocctl(&["pool", "warm", "--parallel", "10"])
            .status
            .success()
    );
    assert_eq!(ready_count(&env), 20);
    env.start_server();
    let users: Vec<String> = (0..200).map(|i| format!("crowd-{i:03}")).collect();
    let bodies = sign_many(&env, &users);
    let env_ref = &env;
    let results = futures_util::future::join_all(bodies.into_iter().map(|body| async move {
        let resp = env_ref.post("", body).await;
        (
            resp.status.as_u16(),
            resp.header("location").map(str::to_owned),
        )
    }))
    .await;
    let mut by_status: HashMap<u16, usize> = HashMap::new();
    for (status, _) in &results {
        *by_status.entry(*status).or_default() += 1;
    }
    assert!(
        by_status.keys().all(|s| *s == 302 || *s == 503),
        "every launch is redirected or told to retry: {by_status:?}"
    );
    let redirected: Vec<&String> = results.iter().filter_map(|(_, l)| l.as_ref()).collect();
    assert!(
        redirected.len() >= 20,
        "at least the warm ones were claimed: {by_status:?}"
    );
    let distinct: HashSet<String> = redirected.iter().map(|l| container_name(l)).collect();
    assert_eq!(
        distinct.len(),
        redirected.len(),
        "no container went to two learners"
    );

    let store = env.store().await;
    wait_until(Duration::from_secs(120), "creations to settle", || async {
        store
            .list_containers(&ContainerFilter {
                pool: Some("default"),
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
    })
    .await;
    let live = store
        .list_containers(&ContainerFilter {
            pool: Some("default"),
            live_only: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(live.len() <= 30, "max respected: {}", live.len());
    let mut per_user: HashMap<i64, usize> = HashMap::new();
    for c in live.iter().filter_map(|c| c.user_id) {
        *per_user.entry(c).or_default() += 1;
    }
    assert!(
        per_user.values().all(|n| *n == 1),
        "no learner holds two containers"
    );
    assert_eq!(
        per_user.len(),
        redirected.len(),
        "every redirect is a stored assignment"
    );
}

#[tokio::test]
async fn reconcile_repairs_every_kind_of_drift() {
    let Some(mut env) = Env::with_pool(PoolOpts {
        warm: 2,
        max: 10,
        ..Default::default()
    }) else {
        return;
    };
    assert!(env.moocctl(&["pool", "warm"]).status.success());
    env.start_server();
    let resp = env.launch("drifter").await;
    assert_eq!(resp.status, 302);
    let assigned = container_name(resp.header("location").unwrap());
    let resp = env.launch("drifter-2").await;
    assert_eq!(resp.status, 302);
    let removed_assigned = container_name(resp.header("location").unwrap());
    let store = env.store().await;
    wait_until(
        Duration::from_secs(90),
        "the refill after two claims",
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
                    == 2
        },
    )
    .await;
    // Stop the server (and its event watchers) so only reconcile sees the drift.
    assert!(env.stop_server().success());
    let ready: Vec<String> = store
        .list_containers(&ContainerFilter {
            state: Some(ContainerState::Ready),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert!(!ready.is_empty(), "refill left ready containers");

    // 1. an assigned container killed; 2. an assigned and a ready container removed;
    docker(&["kill", &assigned]);
    docker(&["rm", "-f", &removed_assigned]);
    docker(&["rm", "-f", &ready[0]]);
    // 3. an unknown container with this deployment's label;
    let deployment = store.deployment_id().await.unwrap();
    let stray = format!("mooc-stray-{}", env.label);
    docker(&[
        "run",
        "-d",
        "--name",
        &stray,
        "--label",
        &format!("mooc-lti.deployment={deployment}"),
        "--label",
        "mooc-lti.host=local",
        "--label",
        &format!("mooc-lti.test={}", env.label),
        IMAGE,
        "sleep",
        "600",
    ]);
    // 4. a database row whose creation never finished and has no container.
    let token = mooc_lti::secret::new_token();
    let ghost = store
        .reserve_container(&Reservation {
            name: "mooc-default-ghost",
            pool: "default",
            host: "local",
            token: &token,
            volume: "mooc-default-ghost-home",
            new_volume: true,
            user_id: None,
            now: mooc_lti::now() - 3600,
            max: 100,
            warm: 100,
            owner: "elsewhere:1:abc",
        })
        .await
        .unwrap();
    assert!(matches!(ghost, mooc_lti::store::Reserved::Row(_)));

    let out = env.moocctl(&["pool", "reconcile", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let changes = report[0]["changes"].to_string();
    let state = |name: String| {
        let store = store.clone();
        async move {
            store
                .container_by_name(&name)
                .await
                .unwrap()
                .unwrap()
                .state()
        }
    };
    assert_eq!(
        state(assigned.clone()).await,
        ContainerState::Stopped,
        "{changes}"
    );
    assert_eq!(
        state(removed_assigned.clone()).await,
        ContainerState::Removed,
        "{changes}"
    );
    assert_eq!(
        state(ready[0].clone()).await,
        ContainerState::Removed,
        "{changes}"
    );
    assert_eq!(
        state("mooc-default-ghost".into()).await,
        ContainerState::Failed,
        "{changes}"
    );
    assert!(changes.contains(&stray), "{changes}");
    let (containers, volumes) = env.docker_objects();
    assert!(
        !containers
            .iter()
            .any(|c| docker(&["inspect", "--format", "{{.Name}}", c]).contains("stray"))
    );
    // The learner's volume of the removed container is kept; the removed ready one's is gone.
    assert!(
        volumes.contains(&format!("{removed_assigned}-home")),
        "{volumes:?}"
    );
    assert!(
        !volumes.contains(&format!("{}-home", ready[0])),
        "{volumes:?}"
    );

    // A second run finds nothing to do.
    let again = moocctl_json(&env, &["pool", "reconcile"]);
    assert_eq!(again[0]["changes"].as_array().unwrap().len(), 0, "{again}");

    // Both learners are served again: the killed one restarted, the removed one recreated.
    env.start_server();
    for user in ["drifter", "drifter-2"] {
        let resp = env.launch(user).await;
        assert_eq!(resp.status, 302, "{user}: {}", resp.text());
    }
}

#[tokio::test]
async fn drain_spares_assigned_containers_and_idle_cull_and_max_age_apply_from_pool_yaml() {
    let Some(mut env) = Env::with_pool(PoolOpts {
        warm: 1,
        max: 5,
        extra: "    idle_cull: 1s\n    max_age: 1s\n".into(),
        ..Default::default()
    }) else {
        return;
    };
    assert!(env.moocctl(&["pool", "warm"]).status.success());
    env.start_server();
    let resp = env.launch("learner").await;
    assert_eq!(resp.status, 302, "{}", resp.text());
    let assigned = container_name(resp.header("location").unwrap());
    let store = env.store().await;
    wait_until(T, "the refill after the claim", || async {
        store.warm_in_progress("default").await.unwrap() == 0
    })
    .await;
    // No server from here on: its periodic round would cull too.
    env.kill_server();
    assert_eq!(ready_count(&env), 1, "refilled");

    // Drain removes the ready container and leaves the learner's alone.
    assert!(
        env.moocctl(&["pool", "drain", "default", "--yes"])
            .status
            .success()
    );
    assert_eq!(ready_count(&env), 0);
    assert_eq!(
        docker(&["inspect", "--format", "{{.State.Running}}", &assigned]),
        "true"
    );
    let shown = moocctl_json(&env, &["containers", "show", &assigned]);
    assert_eq!(shown[0]["state"], "assigned", "{shown}");

    // Cull with no --idle: the pool's idle_cull stops the idle learner's container, and its
    // max_age removes the ready container that has been waiting for longer.
    assert!(env.moocctl(&["pool", "warm"]).status.success());
    let ready: Vec<String> = moocctl_json(&env, &["containers", "list", "--state", "ready"])
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ready.len(), 1);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let culled = moocctl_json(&env, &["pool", "cull", "--yes"]);
    assert_eq!(
        culled[0]["stopped"],
        serde_json::json!([assigned]),
        "{culled}"
    );
    assert_eq!(culled[0]["expired"], serde_json::json!(ready), "{culled}");
    assert_eq!(
        docker(&["inspect", "--format", "{{.State.Running}}", &assigned]),
        "false"
    );
    let shown = moocctl_json(&env, &["containers", "show", &assigned]);
    assert_eq!(shown[0]["state"], "stopped", "{shown}");
    assert_eq!(ready_count(&env), 0);
    // The learner's mapping and volume are kept.
    let user = moocctl_json(&env, &["users", "show", "learner"]);
    assert_eq!(user["volumes"].as_array().unwrap().len(), 1, "{user}");
}
