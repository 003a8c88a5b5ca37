//! The real `moocctl` binary against a database the real server wrote through real launches: every
//! subcommand's table and JSON output, error exits, refusals without `--yes`, the admins check, the
//! audit trail, `logs -f`, broken pipes, and man pages that match the code.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

struct Run {
    code: i32,
    out: String,
    err: String,
}

fn run(env: &Env, args: &[&str]) -> Run {
    let o = env.moocctl(args);
    Run {
        code: o.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&o.stdout).into_owned(),
        err: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn json(env: &Env, args: &[&str]) -> Value {
    moocctl_json(env, args)
}

#[tokio::test]
async fn every_subcommand_reads_what_real_launches_wrote() {
    let Some(mut env) = Env::with_pool(PoolOpts {
        warm: 1,
        max: 10,
        ..Default::default()
    }) else {
        return;
    };
    assert_eq!(run(&env, &["pool", "warm"]).code, 0);
    env.start_server();
    let mut tokens = Vec::new();
    for user in ["alice", "bob"] {
        let resp = env.launch(user).await;
        assert_eq!(resp.status, 302, "{user}: {}", resp.text());
        tokens.push(split_notebook_url(resp.header("location").unwrap()).1);
    }
    let tampered = env.sign(
        &[
            ("user_id", "eve"),
            ("lti_message_type", "basic-lti-launch-request"),
        ],
        "",
        KEY,
        "wrong",
        None,
    );
    assert_eq!(env.post("", tampered).await.status, 401);

    // consumers: the secret is never listed.
    let r = run(&env, &["consumer", "list"]);
    assert_eq!(r.code, 0);
    assert!(r.out.contains("KEY") && r.out.contains(KEY), "{}", r.out);
    assert!(!r.out.contains(SECRET));
    let list = json(&env, &["consumer", "list"]);
    assert_eq!(list[0]["key"], KEY);
    assert!(list[0].get("secret").is_none());
    let added = run(
        &env,
        &["consumer", "add", "canvas", "--name", "Canvas test"],
    );
    assert_eq!(added.code, 0, "{}", added.err);
    let secret = added
        .out
        .lines()
        .find_map(|l| l.strip_prefix("secret: "))
        .expect("generated secret printed once")
        .to_owned();
    assert_eq!(secret.len(), 64);
    assert!(
        !run(&env, &["consumer", "list", "--json"])
            .out
            .contains(&secret)
    );
    assert_eq!(
        run(&env, &["consumer", "add", "canvas"]).code,
        2,
        "duplicate key"
    );
    let rotated = run(&env, &["consumer", "rotate", "canvas", "--yes", "--json"]);
    assert_eq!(rotated.code, 0, "{}", rotated.err);
    let rotated: Value = serde_json::from_str(&rotated.out).unwrap();
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, secret);
    let params = launch_params("carol");
    let p: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let old = env.sign(&p, "", "canvas", &secret, None);
    assert_eq!(
        env.post("", old).await.status,
        401,
        "the old secret no longer works"
    );
    let new = env.sign(&p, "", "canvas", &new_secret, None);
    assert_eq!(env.post("", new).await.status, 302, "the new one does");
    let refused = run(&env, &["consumer", "remove", "canvas"]);
    assert_eq!(refused.code, 2);
    assert!(refused.err.contains("--yes"), "{}", refused.err);
    assert_eq!(
        run(&env, &["consumer", "remove", "canvas", "--yes"]).code,
        0
    );
    assert_eq!(
        run(&env, &["consumer", "remove", "canvas", "--yes"]).code,
        1,
        "nothing to remove"
    );

    // sessions: every redirect recorded, refused launches not.
    let sessions = json(&env, &["sessions", "list"]);
    let sessions = sessions.as_array().unwrap();
    assert_eq!(sessions.len(), 3, "{sessions:?}");
    assert!(sessions.iter().all(|s| s["container_id"].is_i64()));
    assert!(sessions.iter().any(|s| s["lms_user_id"] == "alice"));
    assert_eq!(
        json(&env, &["sessions", "list", "--user", "alice"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        json(
            &env,
            &[
                "sessions",
                "list",
                "--course",
                "ondemand~test-course",
                "--since",
                "1h"
            ]
        )
        .as_array()
        .unwrap()
        .len(),
        3
    );
    assert_eq!(
        json(&env, &["sessions", "list", "--limit", "1"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let table = run(&env, &["sessions", "list"]);
    assert_eq!(table.code, 0);
    assert!(
        table.out.contains("OUTCOME") && table.out.contains("alice") && table.out.contains("bob"),
        "{}",
        table.out
    );
    let id = sessions[0]["id"].as_i64().unwrap().to_string();
    let shown = run(&env, &["sessions", "show", &id]);
    assert_eq!(shown.code, 0);
    assert!(shown.out.contains("outcome"));
    assert_eq!(run(&env, &["sessions", "show", "999999"]).code, 1);
    assert_eq!(run(&env, &["sessions", "list", "--user", "nobody"]).code, 1);
    assert_eq!(
        run(&env, &["sessions", "list", "--since", "soon"]).code,
        2,
        "bad duration"
    );

    // nonces
    let nonces = json(&env, &["nonces", "list", "--consumer", KEY]);
    assert_eq!(
        nonces.as_array().unwrap().len(),
        2,
        "alice and bob; the refused launch stored none"
    );
    let table = run(&env, &["nonces", "list", "--consumer", KEY]);
    assert_eq!(table.code, 0);
    assert!(
        table.out.contains("NONCE") && table.out.contains(KEY),
        "{}",
        table.out
    );
    assert_eq!(
        table.out.lines().count(),
        3,
        "header and two nonces: {}",
        table.out
    );
    assert_eq!(run(&env, &["nonces", "prune"]).code, 2);
    let pruned = json(&env, &["nonces", "prune", "--yes"]);
    assert_eq!(pruned["removed"], 0, "fresh nonces are kept");

    // users and containers
    let users = json(&env, &["users", "list"]);
    assert_eq!(users.as_array().unwrap().len(), 3);
    let alice = json(&env, &["users", "show", "alice"]);
    assert_eq!(alice["user_id"], "alice");
    assert_eq!(alice["name"], "Test Learner");
    assert_eq!(alice["containers"].as_array().unwrap().len(), 1);
    assert_eq!(run(&env, &["users", "show", "nobody"]).code, 1);
    let table = run(&env, &["users", "list"]);
    assert_eq!(table.code, 0);
    assert!(
        table.out.contains("USER_ID") && table.out.contains("carol"),
        "{}",
        table.out
    );
    let table = run(&env, &["users", "show", "alice"]);
    assert_eq!(table.code, 0);
    assert!(table.out.contains("Test Learner"), "{}", table.out);
    let containers = json(&env, &["containers", "list"]);
    assert!(containers.as_array().unwrap().len() >= 3);
    assert!(
        !containers.to_string().contains("token"),
        "tokens are never printed"
    );
    let table = run(&env, &["containers", "list"]);
    assert_eq!(table.code, 0);
    assert!(
        table.out.contains("STATE") && table.out.contains("assigned"),
        "{}",
        table.out
    );
    assert_eq!(
        json(
            &env,
            &["containers", "list", "--pool", "default", "--host", "local"]
        )
        .as_array()
        .unwrap()
        .len(),
        containers.as_array().unwrap().len(),
        "one pool on one host"
    );
    assert_eq!(
        run(&env, &["containers", "list", "--pool", "no-such-pool"]).code,
        1
    );
    assert_eq!(
        run(&env, &["containers", "list", "--host", "no-such-host"]).code,
        1
    );
    let alice_container = alice["containers"][0]["id"].as_i64().unwrap().to_string();
    let shown = run(&env, &["containers", "show", &alice_container]);
    assert_eq!(shown.code, 0);
    assert!(shown.out.contains("assigned"), "{}", shown.out);
    assert_eq!(run(&env, &["containers", "show", "alice"]).code, 0);
    assert_eq!(run(&env, &["containers", "show", "nothing-here"]).code, 1);
    assert_eq!(
        run(&env, &["containers", "list", "--state", "sideways"]).code,
        2
    );
    let logs = run(
        &env,
        &["containers", "logs", &alice_container, "--tail", "20"],
    );
    assert_eq!(logs.code, 0, "{}", logs.err);
    assert!(logs.out.contains("NotebookApp"), "{}", logs.out);
    assert!(
        !logs.out.contains(&tokens[0]),
        "the notebook token is masked in container logs"
    );
    let restarted = run(&env, &["containers", "restart", &alice_container, "--yes"]);
    assert_eq!(restarted.code, 0, "{}", restarted.err);
    let again = env.launch("alice").await;
    assert_eq!(again.status, 302);
    assert_eq!(
        env.notebook_api_status(again.header("location").unwrap())
            .await,
        200
    );
    let refused = run(&env, &["containers", "release", "bob"]);
    assert_eq!(refused.code, 2, "release needs --yes");
    assert!(
        refused.err.contains("refusing without --yes"),
        "{}",
        refused.err
    );
    assert_eq!(
        json(&env, &["users", "show", "bob"])["containers"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "a refused release removes nothing"
    );
    let released = run(&env, &["containers", "release", "bob", "--yes"]);
    assert_eq!(released.code, 0, "{}", released.err);
    let bob = json(&env, &["users", "show", "bob"]);
    assert_eq!(bob["containers"].as_array().unwrap().len(), 0);
    assert_eq!(
        bob["volumes"].as_array().unwrap().len(),
        1,
        "the volume is kept"
    );

    // pools, logs, doctor
    let status = json(&env, &["pool", "status"]);
    assert_eq!(status[0]["pool"], "default");
    let events = json(&env, &["logs"]);
    let kinds: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"claim"), "{kinds:?}");
    assert!(kinds.contains(&"consumer-add"), "{kinds:?}");
    let spawns = json(&env, &["logs", "--kind", "claim"]);
    assert!(
        spawns
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["kind"] == "claim")
    );
    let store = env.store().await;
    for level in ["warn", "error"] {
        store
            .event(
                level,
                "test",
                "tester",
                &format!("a {level} event"),
                mooc_lti::now(),
            )
            .await
            .unwrap();
    }
    let errors = json(&env, &["logs", "--level", "error"]);
    let errors = errors.as_array().unwrap();
    assert!(!errors.is_empty());
    assert!(errors.iter().all(|e| e["level"] == "error"), "{errors:?}");
    let warnings = json(&env, &["logs", "--level", "warn"]);
    let levels: Vec<&str> = warnings
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["level"].as_str())
        .collect();
    assert!(
        levels.contains(&"warn") && levels.contains(&"error"),
        "{levels:?}"
    );
    assert!(!levels.contains(&"info"), "{levels:?}");
    let plain = run(&env, &["logs", "--kind", "test"]);
    assert_eq!(plain.code, 0);
    assert!(
        plain.out.contains("a warn event") && plain.out.contains("tester"),
        "{}",
        plain.out
    );
    assert_eq!(run(&env, &["logs", "--kind", "no-such-kind"]).code, 1);
    let doctor = run(&env, &["doctor"]);
    assert!(doctor.out.contains("docker host local"), "{}", doctor.out);
    assert!(
        doctor.out.contains("warn  admins"),
        "an empty admins table is a warning: {}",
        doctor.out
    );
    assert!(
        doctor.out.contains("warn  public_url"),
        "plain http to a public host: {}",
        doctor.out
    );
    assert_eq!(doctor.code, 0, "warnings do not fail: {}", doctor.out);
    let checks = json_any(&env, &["doctor"]);
    assert!(
        checks
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["check"] == "database" && c["status"] == "ok")
    );

    // a signed test launch from moocctl
    let url = env.url("/lti/launch");
    let launched = run(
        &env,
        &["launch", "--consumer", KEY, "--user", "dave", "--url", &url],
    );
    assert_eq!(launched.code, 0, "{} {}", launched.out, launched.err);
    assert!(launched.out.contains("302"), "{}", launched.out);
    assert!(
        launched.out.contains("token=***"),
        "the token is hidden: {}",
        launched.out
    );
    let printed = run(
        &env,
        &["launch", "--consumer", KEY, "--user", "erin", "--print"],
    );
    assert_eq!(printed.code, 0);
    assert!(printed.out.contains("oauth_signature="), "{}", printed.out);
    let printed = json(
        &env,
        &["launch", "--consumer", KEY, "--user", "erin", "--print"],
    );
    assert!(
        printed["body"]
            .as_str()
            .unwrap()
            .contains("oauth_signature="),
        "{printed}"
    );
    assert!(printed["url"].as_str().unwrap().ends_with("/lti/launch"));
    let unknown = run(
        &env,
        &["launch", "--consumer", "nope", "--user", "x", "--url", &url],
    );
    assert_eq!(unknown.code, 2);
}

/// JSON from a command that may exit non-zero (doctor exits 1 when a check fails).
fn json_any(env: &Env, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let o = env.moocctl(&all);
    serde_json::from_slice(&o.stdout).expect("JSON")
}

#[tokio::test]
async fn destructive_commands_refuse_without_yes_when_stdin_is_not_a_terminal() {
    let env = Env::without_docker(PoolOpts::default());
    env.store()
        .await
        .upsert_user(KEY, "someone", Some("Some One"), None, mooc_lti::now())
        .await
        .unwrap();
    for args in [
        &["consumer", "remove", KEY][..],
        &["consumer", "rotate", KEY],
        &["pool", "drain", "default"],
        &["pool", "cull"],
        &["users", "purge", "someone"],
        &["containers", "release", "someone"],
        &["nonces", "prune"],
    ] {
        let r = run(&env, args);
        if args[0] == "containers" {
            // Without Docker the learner has no container, so there is nothing to ask about (the
            // refusal of a real release is in every_subcommand_reads_what_real_launches_wrote).
            assert_eq!(r.code, 1, "{args:?}: no container: {}", r.err);
            assert!(r.err.contains("has no container"), "{args:?}: {}", r.err);
            continue;
        }
        assert_eq!(r.code, 2, "{args:?}: {}", r.err);
        assert!(
            r.err.contains("refusing without --yes"),
            "{args:?}: {}",
            r.err
        );
    }
    // Nothing was removed.
    assert_eq!(
        json(&env, &["consumer", "list"]).as_array().unwrap().len(),
        1
    );
    assert_eq!(
        json(&env, &["users", "show", "someone"])["user_id"],
        "someone"
    );
}

#[tokio::test]
async fn admins_table_gates_mutations_and_the_audit_trail_records_everything() {
    let env = Env::without_docker(PoolOpts::default());
    // Empty table: anyone may act (a fresh install adds its consumers).
    assert_eq!(
        run(
            &env,
            &[
                "--as",
                "anyone",
                "consumer",
                "add",
                "lms-1",
                "--secret",
                "0123456789abcdef"
            ]
        )
        .code,
        0
    );
    let r = run(
        &env,
        &[
            "--as",
            "root",
            "admin",
            "add",
            "ops@example.edu",
            "--name",
            "Ops",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(
        r.err.contains("no longer run mutating"),
        "root is told it locked itself out: {}",
        r.err
    );
    assert_eq!(
        run(
            &env,
            &[
                "--as",
                "ops@example.edu",
                "admin",
                "add",
                "root",
                "--name",
                "cron"
            ]
        )
        .code,
        0
    );
    let refused = run(
        &env,
        &[
            "--as",
            "mallory",
            "consumer",
            "add",
            "evil",
            "--secret",
            "0123456789abcdef",
        ],
    );
    assert_eq!(refused.code, 2);
    assert!(
        refused.err.contains("mallory is not an admin"),
        "{}",
        refused.err
    );
    assert_eq!(
        run(&env, &["--as", "viewer", "consumer", "list"]).code,
        0,
        "reads need no admin"
    );
    assert_eq!(
        run(
            &env,
            &[
                "--as",
                "ops@example.edu",
                "admin",
                "add",
                "viewer",
                "--role",
                "viewer"
            ]
        )
        .code,
        0
    );
    assert_eq!(
        run(
            &env,
            &["--as", "viewer", "consumer", "remove", "lms-1", "--yes"]
        )
        .code,
        2,
        "viewers may not change things"
    );
    assert_eq!(
        run(
            &env,
            &["--as", "root", "consumer", "remove", "lms-1", "--yes"]
        )
        .code,
        0
    );

    let admins = json(&env, &["admin", "list"]);
    assert_eq!(admins.as_array().unwrap().len(), 3);
    let table = run(&env, &["admin", "list"]);
    assert!(
        table.out.contains("IDENTITY") && table.out.contains("viewer"),
        "{}",
        table.out
    );
    let refused = run(&env, &["--as", "root", "admin", "remove", "viewer"]);
    assert_eq!(refused.code, 2, "admin remove asks first: {}", refused.err);
    assert_eq!(
        run(
            &env,
            &["--as", "root", "admin", "remove", "viewer", "--yes"]
        )
        .code,
        0
    );
    assert_eq!(
        run(
            &env,
            &["--as", "root", "admin", "remove", "viewer", "--yes"]
        )
        .code,
        1,
        "nothing left to remove"
    );
    assert_eq!(json(&env, &["admin", "list"]).as_array().unwrap().len(), 2);
    let audit = json(&env, &["audit", "--since", "1h"]);
    let rows = audit.as_array().unwrap();
    let find = |actor: &str, needle: &str| {
        rows.iter()
            .find(|r| r["actor"] == actor && r["command"].as_str().unwrap().contains(needle))
            .unwrap_or_else(|| panic!("no audit row for {actor} {needle}: {audit}"))
    };
    assert_eq!(find("anyone", "consumer add lms-1")["outcome"], "ok");
    assert!(
        find("anyone", "consumer add lms-1")["command"]
            .as_str()
            .unwrap()
            .contains("--secret ***")
    );
    assert!(
        !audit.to_string().contains("0123456789abcdef"),
        "secrets never reach the audit trail"
    );
    assert_eq!(
        find("mallory", "consumer add evil")["outcome"],
        "refused: not an admin"
    );
    assert_eq!(
        find("viewer", "consumer remove")["outcome"],
        "refused: not an admin"
    );
    assert_eq!(find("root", "consumer remove lms-1")["outcome"], "ok");
    let table = run(&env, &["audit"]);
    assert!(table.out.contains("ACTOR") && table.out.contains("mallory"));
}

#[tokio::test]
async fn logs_follow_picks_up_a_launch_while_it_runs() {
    let Some(mut env) = Env::with_pool(PoolOpts {
        warm: 1,
        max: 5,
        ..Default::default()
    }) else {
        return;
    };
    assert_eq!(run(&env, &["pool", "warm"]).code, 0);
    env.start_server();
    // `-n 0`: the follower prints only what is written after it started.
    let mut follower = Command::new(env!("CARGO_BIN_EXE_moocctl"))
        .arg("--config")
        .arg(&env.config)
        .args(["logs", "-f", "--json", "-n", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = follower.stdout.take().unwrap();
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(serde_json::from_str(&line).unwrap()).is_err() {
                break;
            }
        }
    });
    async fn next_of_kind(
        lines: &mut tokio::sync::mpsc::UnboundedReceiver<Value>,
        kind: &str,
    ) -> Value {
        loop {
            let event = lines.recv().await.expect("logs -f is still running");
            if event["kind"] == kind {
                return event;
            }
        }
    }
    // Until the follower prints a marker written after it started, it is not following yet (a
    // loaded machine may start it late); only then does the launch happen.
    let store = env.store().await;
    let mut following = false;
    for _ in 0..40 {
        store
            .event("info", "marker", "tester", "follow check", mooc_lti::now())
            .await
            .unwrap();
        if tokio::time::timeout(
            Duration::from_millis(500),
            next_of_kind(&mut lines, "marker"),
        )
        .await
        .is_ok()
        {
            following = true;
            break;
        }
    }
    assert!(
        following,
        "logs -f printed an event written after it started"
    );
    assert_eq!(env.launch("follow-me").await.status, 302);
    let event = tokio::time::timeout(Duration::from_secs(10), next_of_kind(&mut lines, "claim"))
        .await
        .expect("logs -f printed the claim within 10 s");
    let _ = follower.kill();
    let _ = follower.wait();
    assert_eq!(event["kind"], "claim");
    assert_eq!(event["level"], "info");
}

#[tokio::test]
async fn a_closed_pipe_exits_quietly_with_success() {
    let env = Env::without_docker(PoolOpts::default());
    let store = env.store().await;
    for i in 0..3000 {
        store
            .event(
                "info",
                "test",
                "tester",
                &format!("event {i} {}", "x".repeat(60)),
                mooc_lti::now(),
            )
            .await
            .unwrap();
    }
    let script = format!(
        "'{}' --config '{}' logs -n 5000 | head -n 1 >/dev/null; exit ${{PIPESTATUS[0]}}",
        env!("CARGO_BIN_EXE_moocctl"),
        env.config.display()
    );
    let out = Command::new("bash").args(["-c", &script]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bad_config_and_unknown_commands_exit_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pool.yaml");
    std::fs::write(&path, "server:\n  public_url: https://x\n  lisen: 1\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_moocctl"))
        .arg("--config")
        .arg(&path)
        .args(["consumer", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lisen"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let missing = Command::new(env!("CARGO_BIN_EXE_moocctl"))
        .args(["--config", "/nonexistent/pool.yaml", "pool", "status"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/pool.yaml"));
    let help = Command::new(env!("CARGO_BIN_EXE_moocctl"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    for sub in [
        "consumer",
        "pool",
        "containers",
        "users",
        "sessions",
        "nonces",
        "logs",
        "admin",
        "audit",
        "doctor",
        "launch",
    ] {
        assert!(help.contains(sub), "--help lists {sub}");
    }
}

#[test]
fn committed_man_pages_match_the_code() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_moocctl"))
        .args(["generate", "man"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let committed = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("man/man1");
    let names = |d: &std::path::Path| {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let fresh = names(dir.path());
    assert_eq!(
        fresh,
        names(&committed),
        "man/man1 is out of date: run `cargo run --bin moocctl -- generate man man/man1`"
    );
    for name in fresh {
        assert_eq!(
            std::fs::read(dir.path().join(&name)).unwrap(),
            std::fs::read(committed.join(&name)).unwrap(),
            "man/man1/{name} is out of date: run `cargo run --bin moocctl -- generate man man/man1`"
        );
    }
}

#[test]
fn completions_are_generated_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef moocctl"),
        ("fish", "complete -c moocctl"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_moocctl"))
            .args(["generate", "completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(script.contains(marker), "{shell}: {script:.200}");
        assert!(
            script.contains("consumer") && script.contains("pool"),
            "{shell}"
        );
    }
    let bad = Command::new(env!("CARGO_BIN_EXE_moocctl"))
        .args(["generate", "completions", "cmd.exe"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}
