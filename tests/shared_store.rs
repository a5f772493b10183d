//! The shared store (`[store] kind = "valkey"`) against real servers: two daemons' stores as two
//! shards on one Valkey (or Redis) server, and on a 3-master cluster. What one shard reports the
//! other answers for; leaves are seen within 1 s; a dead shard's entries expire with its lease; with
//! the store away each answers for its own occupants and says "unreachable" for the others' — never
//! present for someone who left — and both re-publish by themselves when it is back; revocations
//! reach the other shard within about a second and keep applying while the store is away. And the
//! daemon itself, configured with `[store]`, says the store's state in `stats` and `/metrics`.

mod common;

use std::time::{Duration, Instant};

use common::daemon::{Conn, HttpDaemon, http};
use common::valkey::{Cluster, Valkey};
use serde_json::json;
use token_sidecar::access::{Occupant, Reporter, Revoked};
use token_sidecar::clock::unix_now;
use token_sidecar::config::{StoreAddress, StoreKind, StoreSettings};
use token_sidecar::store::{Reachability, Store};

fn settings(address: StoreAddress, shard: &str, lease: Duration) -> StoreSettings {
    StoreSettings {
        kind: StoreKind::Valkey,
        address: Some(address),
        shard: Some(shard.to_owned()),
        lease,
        key_prefix: "test:".to_owned(),
        timeout: Duration::from_millis(300),
        ..StoreSettings::default()
    }
}

fn shard(address: &StoreAddress, name: &str) -> Store {
    Store::open(&settings(address.clone(), name, Duration::from_secs(30))).expect("open the store")
}

fn occupant(room: &str, user: &str) -> Occupant {
    Occupant {
        room: format!("{room}@conference.example.com"),
        jid: format!("{user}@example.com/res"),
        nick: format!("{room}@conference.example.com/{user}"),
    }
}

/// Asks `store` whether `o` is present: `Some(answer)`, or `None` when it cannot say.
async fn present(store: &Store, o: &Occupant) -> Option<bool> {
    match store.occupancy.is_present(&o.room, &o.jid).await {
        Ok(answer) => Some(answer),
        Err(e) => {
            assert!(
                e.0.starts_with("shared store unreachable: "),
                "the error says the store is unreachable: {e}"
            );
            None
        }
    }
}

/// Polls `store` until it answers `want` for `o`; how long that took. Fails after `within`.
async fn until_answer(store: &Store, o: &Occupant, want: Option<bool>, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let got = present(store, o).await;
        if got == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{} in {}: wanted {want:?} within {within:?}, still {got:?}",
            o.jid,
            o.room
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_on_one_shard_is_present_on_another_and_leaves_are_seen_within_a_second() {
    let server = Valkey::start();
    let address = StoreAddress::Server(server.url());
    let (a, b) = (shard(&address, "shard-a"), shard(&address, "shard-b"));
    let (alice, bob, carol) = (occupant("r1", "alice"), occupant("r1", "bob"), occupant("r2", "carol"));
    let prosody_a = Reporter(1);

    assert_eq!(present(&b, &alice).await, Some(false), "nobody yet");
    a.occupancy.joined(prosody_a, alice.clone()).await.unwrap();
    a.occupancy.joined(prosody_a, bob.clone()).await.unwrap();
    a.occupancy.joined(prosody_a, carol.clone()).await.unwrap();
    assert_eq!(
        present(&a, &alice).await,
        Some(true),
        "its own occupant, from the local store"
    );
    let seen = until_answer(&b, &alice, Some(true), Duration::from_secs(1)).await;
    eprintln!("join on A seen on B after {seen:?}");
    assert_eq!(b.occupancy.counts().occupants, 0, "B owns none of them");
    assert_eq!(a.occupancy.counts().occupants, 3);

    a.occupancy.left(&alice.room, &alice.jid).await.unwrap();
    assert_eq!(
        present(&a, &alice).await,
        Some(false),
        "a leave is at once on its own shard"
    );
    let gone = until_answer(&b, &alice, Some(false), Duration::from_secs(1)).await;
    eprintln!("leave on A seen on B after {gone:?}");
    assert_eq!(present(&b, &bob).await, Some(true), "the others stay");

    // A resync of r1's MUC replaces its rooms: bob is not in it any more, dave is.
    let dave = occupant("r1", "dave");
    a.occupancy
        .replace_muc(prosody_a, "conference.example.com", vec![dave.clone(), carol.clone()])
        .await
        .unwrap();
    until_answer(&b, &bob, Some(false), Duration::from_secs(1)).await;
    until_answer(&b, &dave, Some(true), Duration::from_secs(1)).await;

    // Prosody's connection ends: everything it reported goes, on B too.
    a.occupancy.forget(prosody_a).await.unwrap();
    let forgotten = until_answer(&b, &dave, Some(false), Duration::from_secs(1)).await;
    until_answer(&b, &carol, Some(false), Duration::from_secs(1)).await;
    eprintln!("forget on A seen on B after {forgotten:?}");
    assert_eq!(a.status.reachability(), Reachability::Up);
    // B saw the DELs land; the publisher counts them published just after.
    assert!(a.flush(Duration::from_secs(1)).await, "A's backlog drains");
    assert_eq!(a.status.backlog(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_shards_occupants_expire_with_its_lease() {
    let server = Valkey::start();
    let address = StoreAddress::Server(server.url());
    let lease = Duration::from_secs(2);
    let a = Store::open(&settings(address.clone(), "shard-a", lease)).unwrap();
    let b = shard(&address, "shard-b");
    let alice = occupant("r1", "alice");
    a.occupancy.joined(Reporter(1), alice.clone()).await.unwrap();
    until_answer(&b, &alice, Some(true), Duration::from_secs(1)).await;
    // Kept alive by A's refreshes beyond one lease.
    tokio::time::sleep(lease + Duration::from_millis(500)).await;
    assert_eq!(present(&b, &alice).await, Some(true), "refreshed while A lives");
    // A dies without a word: its tasks stop, nothing is deleted.
    drop(a);
    assert_eq!(present(&b, &alice).await, Some(true), "until the lease runs out");
    let expired = until_answer(&b, &alice, Some(false), lease + Duration::from_secs(1)).await;
    eprintln!("dead shard's entry expired after {expired:?} (lease {lease:?})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_store_away_each_shard_answers_for_its_own_and_recovers_by_itself() {
    let mut server = Valkey::start();
    let address = StoreAddress::Server(server.url());
    let (a, b) = (shard(&address, "shard-a"), shard(&address, "shard-b"));
    let (alice, amos, bea) = (occupant("r1", "alice"), occupant("r1", "amos"), occupant("r2", "bea"));
    a.occupancy.joined(Reporter(1), alice.clone()).await.unwrap();
    a.occupancy.joined(Reporter(1), amos.clone()).await.unwrap();
    b.occupancy.joined(Reporter(7), bea.clone()).await.unwrap();
    until_answer(&b, &alice, Some(true), Duration::from_secs(1)).await;
    until_answer(&a, &bea, Some(true), Duration::from_secs(1)).await;

    server.kill();
    let killed = Instant::now();
    assert_eq!(present(&a, &alice).await, Some(true), "A answers for its own occupants");
    assert_eq!(present(&b, &bea).await, Some(true), "B answers for its own occupants");
    assert_eq!(
        present(&b, &alice).await,
        None,
        "B cannot say for A's: unreachable, not true"
    );
    a.occupancy.left(&amos.room, &amos.jid).await.unwrap();
    for store in [&a, &b] {
        assert_ne!(present(store, &amos).await, Some(true), "never present after a leave");
    }
    assert_eq!(a.status.reachability(), Reachability::Down);
    assert!(a.status.last_error().is_some());
    assert!(a.status.errors(token_sidecar::store::StoreOp::Lookup) > 0);
    // A revocation while the store is away: in force here, not shared, said so.
    let jti = Revoked::TokenId("while-away".into());
    let err = a.revocations.revoke(jti.clone(), unix_now() + 600).await.unwrap_err();
    assert!(err.0.contains("shared store unreachable"), "{err}");
    assert!(a.revocations.is_revoked(&jti, unix_now()));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!b.revocations.is_revoked(&jti, unix_now()));

    server.restart();
    eprintln!("store away for {:?}", killed.elapsed());
    let back = Instant::now();
    // Both shards re-publish into the empty store by themselves.
    until_answer(&b, &alice, Some(true), Duration::from_secs(5)).await;
    until_answer(&a, &bea, Some(true), Duration::from_secs(5)).await;
    eprintln!("re-published {:?} after the store came back", back.elapsed());
    assert_eq!(
        present(&b, &amos).await,
        Some(false),
        "the leave made while away stays a leave"
    );
    // The revocation made while away is shared now.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !b.revocations.is_revoked(&jti, unix_now()) {
        assert!(
            Instant::now() < deadline,
            "revocation made while away not shared after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(a.status.reachability(), Reachability::Up);
    assert_eq!(b.status.reachability(), Reachability::Up);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_reach_the_other_shard_within_a_second_and_hold_while_the_store_is_away() {
    let mut server = Valkey::start();
    let address = StoreAddress::Server(server.url());
    let (a, b) = (shard(&address, "shard-a"), shard(&address, "shard-b"));
    let (jti, user) = (Revoked::TokenId("leaked-jti".into()), Revoked::User("banned".into()));
    let until = unix_now() + 3600;
    let revoking = Instant::now();
    a.revocations.revoke(jti.clone(), until).await.unwrap();
    a.revocations.revoke(user.clone(), until).await.unwrap();
    eprintln!("two revocations written in {:?}", revoking.elapsed());
    assert!(
        a.revocations.is_revoked(&jti, unix_now()),
        "at once where it was revoked"
    );
    let start = Instant::now();
    while !(b.revocations.is_revoked(&jti, unix_now()) && b.revocations.is_revoked(&user, unix_now())) {
        assert!(start.elapsed() < Duration::from_millis(1800), "not on B within 1.8 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("revocation on A applied on B after {:?}", start.elapsed());
    assert!(!b.revocations.is_revoked(&Revoked::TokenId("banned".into()), unix_now()));
    assert_eq!(b.revocations.count(unix_now()), 2);
    // An earlier time does not shorten it, on either side.
    a.revocations.revoke(jti.clone(), unix_now() + 5).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(b.revocations.is_revoked(&jti, until - 1));

    server.kill();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        b.revocations.is_revoked(&jti, unix_now()),
        "still applied with the store away"
    );
    assert!(b.revocations.is_revoked(&user, unix_now()));
    assert_eq!(b.status.reachability(), Reachability::Down);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_master_cluster_shares_occupancy_and_survives_a_dead_node() {
    let mut cluster = Cluster::start(3);
    let address = StoreAddress::Cluster(cluster.urls());
    let (a, b) = (shard(&address, "shard-a"), shard(&address, "shard-b"));
    // Rooms enough to land on every node.
    let people: Vec<Occupant> = (0..30).map(|n| occupant(&format!("room{n}"), "u")).collect();
    for o in &people {
        a.occupancy.joined(Reporter(1), o.clone()).await.unwrap();
    }
    for o in &people {
        until_answer(&b, o, Some(true), Duration::from_secs(2)).await;
    }
    let left = &people[0];
    a.occupancy.left(&left.room, &left.jid).await.unwrap();
    let gone = until_answer(&b, left, Some(false), Duration::from_secs(1)).await;
    eprintln!("cluster: leave on A seen on B after {gone:?}");
    let revoked = Revoked::User("cluster-user".into());
    a.revocations.revoke(revoked.clone(), unix_now() + 600).await.unwrap();
    let deadline = Instant::now() + Duration::from_millis(1500);
    while !b.revocations.is_revoked(&revoked, unix_now()) {
        assert!(Instant::now() < deadline, "revocation not on B within 1.5 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    cluster.nodes[2].kill();
    let (mut answered, mut unreachable) = (0, 0);
    for o in &people[1..] {
        assert_eq!(present(&a, o).await, Some(true), "A answers for its own occupants");
        match present(&b, o).await {
            Some(true) => answered += 1,
            None => unreachable += 1,
            Some(false) => panic!("{} in {} is present, B says absent", o.jid, o.room),
        }
    }
    eprintln!("cluster with a dead node: B answered {answered}, unreachable {unreachable}");
    assert!(answered > 0, "the live nodes still answer");
    // Leaves with a node down: never present afterwards, wherever asked.
    for o in &people[1..6] {
        a.occupancy.left(&o.room, &o.jid).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for o in &people[1..6] {
        for store in [&a, &b] {
            assert_ne!(present(store, o).await, Some(true), "{} left {}", o.jid, o.room);
        }
    }
    assert!(b.revocations.is_revoked(&revoked, unix_now()), "still applied");

    // The whole cluster away, and a shard started meanwhile: it connects when the cluster is back.
    for node in &mut cluster.nodes {
        node.kill();
    }
    let c = shard(&address, "shard-c");
    assert_eq!(present(&c, &people[10]).await, None, "nothing answers");
    for node in &mut cluster.nodes {
        node.restart();
    }
    let took = until_answer(&c, &people[10], Some(true), Duration::from_secs(15)).await;
    eprintln!("cluster back: A re-published and C answers after {took:?}");
    assert_eq!(present(&c, &people[1]).await, Some(false), "a leave stays a leave");
}

#[test]
fn the_daemon_reports_the_stores_state_in_stats_and_metrics() {
    let mut server = Valkey::start();
    let store = format!(
        "[store]\nkind = \"valkey\"\nurl = \"{}\"\nshard = \"shard-a\"\ntimeout_ms = 300\n",
        server.url()
    );
    let d = HttpDaemon::start(tempfile::tempdir().unwrap(), "introspect-secret-0123456789", "", &store);
    let mut c = Conn::open(&d.socket);
    let stats = |c: &mut Conn| c.call(json!({"id": 1, "op": "stats"}))["store"].clone();
    let metric = |name: &str| {
        let (_, _, text) = http(&d.http, "GET", "/metrics", "", "");
        let line = text.lines().find(|l| l.starts_with(name)).map(str::to_owned);
        line.unwrap_or_else(|| panic!("no {name} in\n{text}"))
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while stats(&mut c)["state"] != "up" {
        assert!(Instant::now() < deadline, "store not up: {}", stats(&mut c));
        std::thread::sleep(Duration::from_millis(50));
    }
    let s = stats(&mut c);
    assert_eq!(
        (s["kind"].as_str(), s["shard"].as_str()),
        (Some("valkey"), Some("shard-a")),
        "{s}"
    );
    assert_eq!(metric("token_sidecar_store_up "), "token_sidecar_store_up 1");
    let health = || {
        let (status, _, body) = http(&d.http, "GET", "/healthz", "", "");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<serde_json::Value>(&body).expect("JSON")
    };
    let h = health();
    assert_eq!(
        (h["status"].as_str(), h["store"]["state"].as_str()),
        (Some("ok"), Some("up")),
        "{h}"
    );

    server.kill();
    let deadline = Instant::now() + Duration::from_secs(5);
    while stats(&mut c)["state"] != "down" {
        assert!(Instant::now() < deadline, "store not down: {}", stats(&mut c));
        std::thread::sleep(Duration::from_millis(50));
    }
    let s = stats(&mut c);
    assert!(s["last_error"].as_str().is_some_and(|e| !e.is_empty()), "{s}");
    assert!(s["errors"]["read_revocations"].as_u64() > Some(0), "{s}");
    assert_eq!(metric("token_sidecar_store_up "), "token_sidecar_store_up 0");
    assert!(metric("token_sidecar_store_errors_total{op=\"read_revocations\"}") != "0");
    let h = health();
    assert_eq!(
        (
            h["status"].as_str(),
            h["store"]["kind"].as_str(),
            h["store"]["state"].as_str()
        ),
        (Some("degraded"), Some("valkey"), Some("down")),
        "{h}"
    );

    server.restart();
    let deadline = Instant::now() + Duration::from_secs(5);
    while stats(&mut c)["state"] != "up" {
        assert!(Instant::now() < deadline, "store not back: {}", stats(&mut c));
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_with_a_private_ca_and_a_password() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = common::valkey::tls_files(certs.path());
    let port = common::valkey::free_port();
    let mut args = Valkey::tls_only(port, &cert, &key, &ca);
    args.extend(["--requirepass", "store-password-0123"].map(String::from));
    let server = Valkey::start_with(port, false, args);
    assert!(server.url().starts_with("rediss://"));
    let with = |password: &str, ca_pem: Option<Vec<u8>>| StoreSettings {
        password: Some(password.to_owned()),
        tls_ca: ca_pem,
        ..settings(StoreAddress::Server(server.url()), "shard-a", Duration::from_secs(30))
    };
    let ca_pem = std::fs::read(&ca).unwrap();
    let a = Store::open(&with("store-password-0123", Some(ca_pem.clone()))).unwrap();
    let b = Store::open(&StoreSettings {
        shard: Some("shard-b".into()),
        ..with("store-password-0123", Some(ca_pem.clone()))
    })
    .unwrap();
    let alice = occupant("r1", "alice");
    a.occupancy.joined(Reporter(1), alice.clone()).await.unwrap();
    until_answer(&b, &alice, Some(true), Duration::from_secs(2)).await;

    // A wrong password, or no trust in the server's CA: unreachable, and the error holds no secret.
    for (label, settings) in [
        ("wrong password", with("not-the-password-42", Some(ca_pem))),
        ("CA not trusted", with("store-password-0123", None)),
    ] {
        let c = Store::open(&settings).unwrap();
        assert_eq!(present(&c, &alice).await, None, "{label}");
        let error = c.status.last_error().unwrap_or_default();
        eprintln!("{label}: {error}");
        assert!(!error.is_empty() && !error.contains("password-"), "{label}: {error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_away_at_start_is_used_once_it_comes() {
    let port = common::valkey::free_port();
    let address = StoreAddress::Server(format!("redis://127.0.0.1:{port}"));
    let (a, b) = (shard(&address, "shard-a"), shard(&address, "shard-b"));
    let alice = occupant("r1", "alice");
    a.occupancy.joined(Reporter(1), alice.clone()).await.unwrap();
    assert_eq!(present(&b, &alice).await, None, "nothing listens yet");
    assert_eq!(present(&a, &alice).await, Some(true));
    let _server = Valkey::start_on(port, false);
    let took = until_answer(&b, &alice, Some(true), Duration::from_secs(5)).await;
    eprintln!("store up after start: published within {took:?}");
}
