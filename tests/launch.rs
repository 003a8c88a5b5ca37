//! The vertical slice end to end: real `mooc-lti` and `moocctl` binaries, launches signed by
//! oauthlib, real notebook containers on the local Docker engine.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(30);

fn base_params(user: &str) -> Vec<(&'static str, String)> {
    vec![
        ("lti_message_type", "basic-lti-launch-request".into()),
        ("lti_version", "LTI-1p0".into()),
        ("resource_link_id", "lab-1".into()),
        ("context_id", "ondemand~intro".into()),
        ("user_id", user.into()),
    ]
}

fn refs<'a>(p: &'a [(&'a str, String)]) -> Vec<(&'a str, &'a str)> {
    p.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn docker_inspect(container: &str, format: &str) -> String {
    let out = Command::new("docker")
        .args(["inspect", "--format", format, container])
        .output()
        .expect("docker inspect");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test]
async fn valid_launch_lands_in_a_notebook_that_answers_and_requires_its_token() {
    let Some(mut env) = Env::new() else { return };
    env.start_server();
    let mut params = base_params("0123456789abcdef0123456789abcdef");
    params.extend([
        ("roles", String::new()),
        ("custom_tag", "b".into()),
        ("custom_tag", "a".into()),
        (
            "lis_person_name_full",
            "Zoë 山田 <b>O'Brien</b> + co".into(),
        ),
        ("oauth_callback", "about:blank".into()),
        // Names whose order differs raw and encoded ('.' < '/' but "%2F" < "."), and a unicode
        // name: the base string sorts by encoded name.
        ("custom_x.", "1".into()),
        ("custom_x/", "2".into()),
        ("custom_élève", "ü".into()),
    ]);
    let body = env.sign(&refs(&params), "", KEY, SECRET, None);
    let resp = env.post("", body).await;
    assert_eq!(resp.status, 302, "{}", resp.text());
    let location = resp.header("location").expect("Location").to_owned();
    assert!(location.starts_with("http://127.0.0.1:"), "{location}");
    let (base, token) = split_notebook_url(&location);
    assert!(token.len() >= 32, "token of at least 128 bits");

    let api = env.http.get(&format!("{base}api"), &[], T).await.unwrap();
    assert_eq!(api.status, 200);
    assert!(api.text().contains("version"), "{}", api.text());

    // The notebook refuses requests without its token, and accepts them with it.
    let anonymous = env
        .http
        .get(&format!("{base}api/contents"), &[], T)
        .await
        .unwrap();
    assert_eq!(anonymous.status, 403);
    let wrong = env
        .http
        .get(
            &format!("{base}api/contents"),
            &[("authorization", "token wrong")],
            T,
        )
        .await
        .unwrap();
    assert_eq!(wrong.status, 403);
    let auth = format!("token {token}");
    let owner = env
        .http
        .get(
            &format!("{base}api/contents"),
            &[("authorization", &auth)],
            T,
        )
        .await
        .unwrap();
    assert_eq!(owner.status, 200);

    // The container carries the pool label, runs as uid 1000 and publishes only on loopback.
    let name = base
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(
        docker_inspect(&name, "{{index .Config.Labels \"mooc-lti.pool\"}}"),
        "default"
    );
    assert_eq!(
        docker_inspect(
            &name,
            "{{range $p, $b := .HostConfig.PortBindings}}{{range $b}}{{.HostIp}}{{end}}{{end}}"
        ),
        "127.0.0.1"
    );
    assert_eq!(docker_inspect(&name, "{{.Config.User}}"), "1000");
    assert_eq!(
        docker_inspect(&name, "{{.HostConfig.SecurityOpt}}"),
        "[no-new-privileges]"
    );
    assert_eq!(docker_inspect(&name, "{{.HostConfig.CapDrop}}"), "[ALL]");
    let volume_label = Command::new("docker")
        .args([
            "volume",
            "inspect",
            "--format",
            "{{index .Labels \"mooc-lti.pool\"}}",
            &format!("{name}-home"),
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&volume_label.stdout).trim(),
        "default"
    );
}

#[tokio::test]
async fn launch_url_with_a_query_string_and_without_callback_is_accepted() {
    let Some(mut env) = Env::new() else { return };
    env.start_server();
    let params = base_params("learner-q");
    let body = env.sign(&refs(&params), "?course=intro&week=1", KEY, SECRET, None);
    let resp = env.post("?course=intro&week=1", body.clone()).await;
    assert_eq!(resp.status, 302, "{}", resp.text());
    let (base, _) = split_notebook_url(resp.header("location").unwrap());
    let api = env.http.get(&format!("{base}api"), &[], T).await.unwrap();
    assert_eq!(api.status, 200, "the notebook it points to answers");
    // The same body without the signed query string does not verify.
    let body = env.sign(&refs(&params), "?course=intro", KEY, SECRET, None);
    assert_eq!(env.post("", body).await.status, 401);
}

#[tokio::test]
async fn a_returning_learner_gets_the_same_container_and_two_learners_get_different_ones() {
    let Some(mut env) = Env::new() else { return };
    env.start_server();
    let first = env.launch("alice").await;
    assert_eq!(first.status, 302, "{}", first.text());
    let again = env.launch("alice").await;
    assert_eq!(again.status, 302);
    assert_eq!(first.header("location"), again.header("location"));
    let bob = env.launch("bob").await;
    assert_eq!(bob.status, 302);
    assert_ne!(
        split_notebook_url(first.header("location").unwrap()).0,
        split_notebook_url(bob.header("location").unwrap()).0
    );
    assert_eq!(
        env.notebook_api_status(bob.header("location").unwrap())
            .await,
        200
    );
}

#[tokio::test]
async fn bad_signatures_unknown_keys_replays_and_clock_skew_get_401() {
    let Some(mut env) = Env::new() else { return };
    env.start_server();
    let params = base_params("mallory");
    let p = refs(&params);

    let good = env.sign(&p, "", KEY, SECRET, None);
    assert_eq!(env.post("", good.clone()).await.status, 302);
    // Replayed: the same signed body again.
    let replay = env.post("", good.clone()).await;
    assert_eq!(replay.status, 401);
    assert!(replay.text().contains("already used"));

    // Tampered: another user id under the same signature.
    let tampered = good.replace("user_id=mallory", "user_id=alice");
    assert_ne!(tampered, good);
    assert_eq!(env.post("", tampered).await.status, 401);

    let wrong_secret = env.sign(&p, "", KEY, "not-the-secret", None);
    assert_eq!(env.post("", wrong_secret).await.status, 401);

    let unknown_key = env.sign(&p, "", "unknown-consumer", SECRET, None);
    assert_eq!(env.post("", unknown_key).await.status, 401);

    let now = mooc_lti::now();
    let stale = env.sign(&p, "", KEY, SECRET, Some(now - 3600));
    assert_eq!(env.post("", stale).await.status, 401);
    let future = env.sign(&p, "", KEY, SECRET, Some(now + 3600));
    assert_eq!(env.post("", future).await.status, 401);

    // Nothing was written for the refused launches: one user, one session, one nonce.
    let users = moocctl_json(&env, &["users", "list"]);
    let users = users.as_array().unwrap();
    assert_eq!(users.len(), 1, "{users:?}");
    assert_eq!(users[0]["user_id"], "mallory");
    assert_eq!(
        moocctl_json(&env, &["sessions", "list"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        moocctl_json(&env, &["nonces", "list"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let pages = env.server_logs();
    assert!(!pages.contains(SECRET), "the secret must never be logged");
}

#[tokio::test]
async fn malformed_and_incomplete_launches_get_400_and_oversize_413() {
    if !signer_ready() {
        return;
    }
    let mut env = Env::without_docker(PoolOpts::default());
    env.start_server();

    for body in [
        "user_id=%zz".to_owned(),
        "a=%".to_owned(),
        "lti_message_type=basic-lti-launch-request&oauth_consumer_key=x".to_owned(),
    ] {
        let resp = env.post("", body.clone()).await;
        assert_eq!(resp.status, 400, "{body}: {}", resp.text());
        assert!(
            resp.header("content-type")
                .unwrap()
                .starts_with("text/html")
        );
    }
    let not_utf8 = env
        .http
        .send(
            hyper::Request::post(env.url("/lti/launch"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(http_body_util::Full::new(bytes::Bytes::from_static(
                    b"user_id=\xff\xfe",
                )))
                .unwrap(),
            T,
        )
        .await
        .unwrap();
    assert_eq!(not_utf8.status, 400);

    // Correctly signed, but not a usable launch.
    let mut missing_user = base_params("x");
    missing_user.retain(|(k, _)| *k != "user_id");
    let body = env.sign(&refs(&missing_user), "", KEY, SECRET, None);
    let resp = env.post("", body).await;
    assert_eq!(resp.status, 400);
    let mut wrong_type = base_params("x");
    wrong_type[0].1 = "ContentItemSelectionRequest".into();
    let body = env.sign(&refs(&wrong_type), "", KEY, SECRET, None);
    assert_eq!(env.post("", body).await.status, 400);

    // Oversize: declared and streamed.
    let big = format!("user_id=u&pad={}", "x".repeat(70 * 1024));
    assert_eq!(env.post("", big).await.status, 413);

    // No page leaks a base string or the secret.
    let body = env.sign(&refs(&base_params("x")), "", KEY, "wrong", None);
    let resp = env.post("", body).await;
    assert_eq!(resp.status, 401);
    let text = resp.text();
    assert!(!text.contains("POST&") && !text.contains(SECRET) && !text.contains("oauth_signature"));
}

#[tokio::test]
async fn config_xml_health_check_and_wrong_methods() {
    let mut env = Env::without_docker(PoolOpts::default());
    env.start_server();
    let xml = env
        .http
        .get(&env.url("/lti/config.xml"), &[], T)
        .await
        .unwrap();
    assert_eq!(xml.status, 200);
    assert!(xml.header("content-type").unwrap().contains("xml"));
    assert!(
        xml.text()
            .contains("<blti:launch_url>http://lti.test/lti/launch</blti:launch_url>"),
        "{}",
        xml.text()
    );
    assert!(xml.text().contains("cartridge_basiclti_link"));

    let health = env.http.get(&env.url("/healthz"), &[], T).await.unwrap();
    assert_eq!(health.status, 200);

    let get_launch = env.http.get(&env.url("/lti/launch"), &[], T).await.unwrap();
    assert_eq!(get_launch.status, 405);
    assert_eq!(get_launch.header("allow"), Some("POST"));
    assert_eq!(
        env.http
            .get(&env.url("/admin"), &[], T)
            .await
            .unwrap()
            .status,
        404
    );

    // SIGTERM stops the server cleanly.
    let status = env.stop_server();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn nothing_created_in_docker_is_left_behind() {
    let Some(mut env) = Env::new() else { return };
    env.start_server();
    assert_eq!(env.launch("leaver").await.status, 302);
    let (containers, volumes) = env.docker_objects();
    assert_eq!(
        (containers.len(), volumes.len()),
        (1, 1),
        "one container and its volume"
    );
    env.kill_server();
    env.cleanup_docker();
    assert_eq!(env.docker_objects(), (vec![], vec![]));
}

#[tokio::test]
async fn a_slow_start_shows_a_page_that_refreshes_into_the_notebook() {
    let Some(mut env) = Env::new() else { return };
    let text = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace("launch_wait: 60s", "launch_wait: 200ms");
    std::fs::write(&env.config, text).unwrap();
    env.start_server();
    let resp = env.launch("impatient").await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let page = resp.text();
    assert!(page.contains("Starting your notebook"), "{page}");
    let refresh = page
        .split("url=")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a refresh URL")
        .to_owned();
    assert!(refresh.starts_with("/lti/wait/"), "{refresh}");
    let mut location = None;
    for _ in 0..120 {
        let r = env.http.get(&env.url(&refresh), &[], T).await.unwrap();
        match r.status.as_u16() {
            200 => tokio::time::sleep(Duration::from_millis(250)).await,
            302 => {
                location = r.header("location").map(str::to_owned);
                break;
            }
            other => panic!("{other}: {}", r.text()),
        }
    }
    let location = location.expect("the page led to the notebook");
    assert_eq!(env.notebook_api_status(&location).await, 200);
    // The same learner's next launch goes straight there.
    let again = env.launch("impatient").await;
    assert_eq!(again.header("location"), Some(location.as_str()));
    // A made-up or garbled ticket leads nowhere.
    for bad in [
        "/lti/wait/00000000000000000000000000000000",
        "/lti/wait/../../etc",
        "/lti/wait/",
    ] {
        assert_eq!(
            env.http.get(&env.url(bad), &[], T).await.unwrap().status,
            404,
            "{bad}"
        );
    }
}
