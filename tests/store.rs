//! The launch record through the library, on the test's backend: one group holding a replay, a
//! nonce sent twice, a learner launching twice and a returning learner.

mod common;

use common::*;
use mooc_lti::store::{
    ContainerState, LaunchRecord, Recorded, Reservation, Reserved, SessionFilter,
};

fn record(user: &str, nonce: &str) -> LaunchRecord {
    LaunchRecord {
        consumer_key: KEY.into(),
        nonce: nonce.into(),
        ts: mooc_lti::now(),
        user_id: user.into(),
        name: Some(format!("{user} name")),
        email: None,
        now: mooc_lti::now(),
        pool: Some("default".into()),
        context_id: Some("ondemand~c".into()),
        resource_link_id: Some("r".into()),
        roles: Some("Learner".into()),
        remote_addr: Some("127.0.0.1".into()),
        down_hosts: None,
    }
}

#[tokio::test]
async fn a_launch_group_records_each_launch_exactly_once() {
    let env = Env::without_docker(PoolOpts::default());
    let store = env.store().await;
    // A learner with a running container.
    let Recorded::New { user: back, .. } =
        store.record_launch(&record("back", "n-0")).await.unwrap()
    else {
        panic!("first launch is new");
    };
    let token = mooc_lti::secret::new_token();
    let Reserved::Row(row) = store
        .reserve_container(&Reservation {
            name: "mooc-default-back",
            pool: "default",
            host: "local",
            token: &token,
            volume: "mooc-default-back-home",
            new_volume: true,
            user_id: Some(back),
            now: mooc_lti::now(),
            max: 10,
            warm: 0,
            owner: "test:1:x",
        })
        .await
        .unwrap()
    else {
        panic!("reserved");
    };
    store
        .set_container_started(
            row.id,
            "docker-id",
            40000,
            ContainerState::Assigned,
            mooc_lti::now(),
        )
        .await
        .unwrap();

    let group = vec![
        record("back", "n-1"),
        record("new", "n-2"),
        record("new", "n-3"),
        record("dup", "n-4"),
        record("dup", "n-4"),
        record("back", "n-0"),
    ];
    {
        let outcomes = store.record_launch_group(&group).await.unwrap();
        assert_eq!(outcomes.len(), 6);
        match &outcomes[0] {
            Recorded::New {
                user,
                returning: Some((_, c)),
            } => {
                assert_eq!(*user, back);
                assert_eq!(c.name, "mooc-default-back");
            }
            other => panic!("a returning learner: {other:?}"),
        }
        let (
            Recorded::New {
                user: a,
                returning: None,
            },
            Recorded::New {
                user: b,
                returning: None,
            },
        ) = (&outcomes[1], &outcomes[2])
        else {
            panic!("two launches of a new learner: {outcomes:?}");
        };
        assert_eq!(a, b, "one learner row");
        assert!(matches!(outcomes[3], Recorded::New { .. }));
        assert!(
            matches!(outcomes[4], Recorded::Replay),
            "the same nonce twice in a group"
        );
        assert!(
            matches!(outcomes[5], Recorded::Replay),
            "a nonce from an earlier group"
        );
    }
    let sessions = store
        .list_sessions(&SessionFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        sessions.len(),
        1,
        "one returning session; the others are recorded after assignment"
    );
    assert_eq!(sessions[0].outcome, "returning");
    assert_eq!(sessions[0].container_id, Some(row.id));
    assert_eq!(store.count_nonces().await.unwrap(), 5);
    assert_eq!(store.list_users(None, 100).await.unwrap().len(), 3);
}
