//! Slow and abusive clients, and the security properties a test can check: slowloris, huge heads
//! and bodies, floods of bad signatures, redirect hosts, secrets in logs, a bounded nonce store,
//! and how notebook containers run.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use mooc_lti::store::{ContainerFilter, EventFilter, SessionFilter, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn counts(store: &Store) -> (usize, i64, usize, usize) {
    (
        store
            .list_sessions(&SessionFilter {
                limit: 1_000_000,
                ..Default::default()
            })
            .await
            .unwrap()
            .len(),
        store.count_nonces().await.unwrap(),
        store.list_users(None, 1_000_000).await.unwrap().len(),
        store
            .list_events(&EventFilter {
                limit: 1_000_000,
                ..Default::default()
            })
            .await
            .unwrap()
            .len(),
    )
}

/// Sends raw bytes and returns the status code of the answer (0 when the server closed first).
async fn raw_status(addr: std::net::SocketAddr, request: &[u8]) -> u16 {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(request).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_do_not_stop_launches_and_are_cut_off() {
    let Some(mut env) = Env::with_pool(PoolOpts {
        warm: 1,
        max: 3,
        ..Default::default()
    }) else {
        return;
    };
    let text = std::fs::read_to_string(&env.config).unwrap().replace(
        "  launch_wait: 60s",
        "  launch_wait: 60s\n  header_read_timeout: 2s\n  body_read_timeout: 3s",
    );
    std::fs::write(&env.config, text).unwrap();
    assert!(env.moocctl(&["pool", "warm"]).status.success());
    let addr = env.start_server();
    assert_eq!(env.launch("steady").await.status, 302);

    // 400 connections that send a request head one byte at a time, never finishing it.
    let mut slow = Vec::new();
    for _ in 0..400 {
        slow.push(tokio::spawn(async move {
            let Ok(mut s) = TcpStream::connect(addr).await else {
                return None;
            };
            let started = Instant::now();
            for b in b"POST /lti/launch HTTP/1.1\r\nHost: x\r\nX-Slow: "
                .iter()
                .cycle()
            {
                if s.write_all(&[*b]).await.is_err() {
                    return Some(started.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
                if started.elapsed() > Duration::from_secs(30) {
                    return None;
                }
            }
            None
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Launches go on meanwhile, as fast as usual.
    for _ in 0..5 {
        let started = Instant::now();
        let resp = env.launch("steady").await;
        assert_eq!(resp.status, 302);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }
    // A complete head, then a body that never comes: 408 after the body timeout.
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled
        .write_all(b"POST /lti/launch HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\nuser_id=")
        .await
        .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), stalled.read_to_end(&mut answer)).await;
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // And the slow ones are cut off after the header-read timeout.
    let mut cut = 0;
    for task in slow {
        if let Some(after) = task.await.unwrap() {
            assert!(after < Duration::from_secs(10), "cut off after {after:?}");
            cut += 1;
        }
    }
    assert!(cut >= 390, "{cut} of 400 slow connections were cut off");
}

#[tokio::test]
async fn huge_heads_get_431_huge_bodies_413_and_bad_signature_floods_write_nothing() {
    if !signer_ready() {
        return;
    }
    let mut env = Env::without_docker(PoolOpts::default());
    let addr = env.start_server();
    let store = env.store().await;
    let before = counts(&store).await;

    let huge_head = format!(
        "POST /lti/launch HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nContent-Length: 0\r\n\r\n",
        "a".repeat(100_000)
    );
    assert_eq!(raw_status(addr, huge_head.as_bytes()).await, 431);
    let huge_body = format!(
        "POST /lti/launch HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        10_000_000
    );
    assert_eq!(raw_status(addr, huge_body.as_bytes()).await, 413);
    // Chunked, with no length declared: cut off at the limit.
    let mut chunked =
        b"POST /lti/launch HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..40 {
        chunked.extend_from_slice(format!("{:x}\r\n{}\r\n", 4096, "b".repeat(4096)).as_bytes());
    }
    assert_eq!(raw_status(addr, &chunked).await, 413);

    // A flood of launches with bad signatures, unknown keys and stale timestamps.
    let params = launch_params("flooder");
    let p: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut bodies = Vec::new();
    for i in 0..100 {
        bodies.push(match i % 3 {
            0 => env.sign(&p, "", KEY, "wrong-secret", None),
            1 => env.sign(&p, "", "no-such-consumer", SECRET, None),
            _ => env.sign(&p, "", KEY, SECRET, Some(mooc_lti::now() - 10_000)),
        });
    }
    let env_ref = &env;
    let statuses = futures_util::future::join_all(
        bodies
            .into_iter()
            .map(|b| async move { env_ref.post("", b).await.status.as_u16() }),
    )
    .await;
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    assert_eq!(
        counts(&store).await,
        before,
        "refused launches write nothing"
    );
}

#[tokio::test]
async fn no_input_chooses_the_redirect_host_and_no_secret_reaches_a_log_or_page() {
    let Some(mut env) = Env::with_pool(PoolOpts {
        warm: 1,
        max: 3,
        ..Default::default()
    }) else {
        return;
    };
    assert!(env.moocctl(&["pool", "warm"]).status.success());
    let addr = env.start_server();
    let mut params = launch_params("hostile");
    params.retain(|(k, _)| k != "launch_presentation_return_url" && k != "lis_person_name_full");
    params.push((
        "launch_presentation_return_url".into(),
        "https://evil.example/steal".into(),
    ));
    params.push((
        "lis_person_name_full".into(),
        "<script>alert(1)</script>".into(),
    ));
    params.push(("custom_redirect".into(), "https://evil.example/".into()));
    let p: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let body = env.sign(&p, "", KEY, SECRET, None);
    let req = hyper::Request::post(format!("http://{addr}/lti/launch"))
        .header("host", "evil.example")
        .header("x-forwarded-host", "evil.example")
        .header("x-forwarded-proto", "https")
        .header("forwarded", "host=evil.example;proto=https")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let resp = env.http.send(req, Duration::from_secs(60)).await.unwrap();
    assert_eq!(resp.status, 302, "{}", resp.text());
    let location = resp.header("location").unwrap();
    assert!(location.starts_with("http://127.0.0.1:"), "{location}");
    assert!(!location.contains("evil"));

    // Error pages and logs carry no secret and no token.
    let bad = env.sign(&p, "", KEY, "wrong", None);
    let page = env.post("", bad).await.text();
    let store = env.store().await;
    let tokens: Vec<String> = store
        .list_containers(&ContainerFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.token.expose().to_owned())
        .collect();
    assert!(!tokens.is_empty());
    let logs = env.server_logs();
    let moocctl_out = {
        let o = env.moocctl(&["containers", "list", "--json"]);
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    for haystack in [&page, &logs, &moocctl_out] {
        assert!(!haystack.contains(SECRET), "the consumer secret leaked");
        for t in &tokens {
            assert!(!haystack.contains(t.as_str()), "a notebook token leaked");
        }
        assert!(!haystack.contains("<script>"), "unescaped HTML");
    }
    assert!(
        !logs.contains("hostile"),
        "learner identities are not logged"
    );
}

#[tokio::test]
async fn the_nonce_store_stays_bounded() {
    let mut env = Env::without_docker(PoolOpts::default());
    let store = env.store().await;
    let old = mooc_lti::now() - 3600;
    for i in 0..5000 {
        assert!(
            store
                .insert_nonce(KEY, &format!("old-{i}"), old)
                .await
                .unwrap()
        );
    }
    assert!(
        store
            .insert_nonce(KEY, "fresh", mooc_lti::now())
            .await
            .unwrap()
    );
    // The server prunes nonces past the window on its own, in its first round.
    env.start_server();
    wait_until(
        Duration::from_secs(30),
        "the server to prune old nonces",
        || async { store.count_nonces().await.unwrap() == 1 },
    )
    .await;
    assert!(
        !store
            .insert_nonce(KEY, "fresh", mooc_lti::now())
            .await
            .unwrap(),
        "recent ones stay"
    );
    // And an admin can do it at once.
    for i in 0..100 {
        store
            .insert_nonce(KEY, &format!("old-again-{i}"), old)
            .await
            .unwrap();
    }
    let pruned = moocctl_json(&env, &["nonces", "prune", "--yes"]);
    assert_eq!(pruned["removed"], 100);
    assert_eq!(pruned["kept"], 1);
}

#[tokio::test]
async fn notebooks_run_unprivileged_limited_and_without_the_docker_socket() {
    let Some(mut env) = Env::new() else { return };
    env.start_server();
    let resp = env.launch("sandboxed").await;
    assert_eq!(resp.status, 302);
    let (base, _) = split_notebook_url(resp.header("location").unwrap());
    let name = base.trim_end_matches('/').rsplit('/').next().unwrap();
    let inspect = Command::new("docker")
        .args(["inspect", name])
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let c = &info[0];
    assert_eq!(c["Config"]["User"], "1000");
    assert_eq!(c["HostConfig"]["Privileged"], false);
    assert_eq!(
        c["HostConfig"]["SecurityOpt"],
        serde_json::json!(["no-new-privileges"])
    );
    assert_eq!(c["HostConfig"]["CapDrop"], serde_json::json!(["ALL"]));
    assert_eq!(c["HostConfig"]["Memory"], 512 * 1024 * 1024);
    assert_eq!(c["HostConfig"]["NanoCpus"], 1_000_000_000i64);
    assert_eq!(c["HostConfig"]["PidsLimit"], 512);
    let mounts = c["Mounts"].as_array().unwrap();
    assert_eq!(mounts.len(), 1, "only the learner's volume: {mounts:?}");
    assert_eq!(mounts[0]["Type"], "volume");
    assert!(!c.to_string().contains("docker.sock"));
    // Inside: not root, and no way up.
    let id = Command::new("docker")
        .args(["exec", name, "id", "-u"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&id.stdout).trim(), "1000");
    let status = Command::new("docker")
        .args(["exec", name, "cat", "/proc/self/status"])
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    assert!(status.contains("CapEff:\t0000000000000000"), "{status}");
}
