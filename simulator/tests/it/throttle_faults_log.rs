//! Throttling, seeded fault injection and the request log (library and admin API).

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::join_all;
use reqwest::StatusCode;
use synapse_sim::{Burst, FaultConfig, RunningSim, ThrottleConfig};

use crate::common::{file_at, small_fixture, start, start_with, Api, MIB};

async fn statuses(api: &Api, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(api.get("/userProfile").await.0.as_u16());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_above_the_limit_is_throttled() {
    let sim = start(&small_fixture()).await;
    sim.set_throttle(ThrottleConfig {
        enabled: true,
        per_minute: 600,
        in_flight: 3,
    });
    sim.set_faults(FaultConfig {
        latency: Duration::from_millis(400),
        ..FaultConfig::default()
    });
    let alice = Api::new(&sim, Some("alice-token"));
    let results = join_all((0..8).map(|_| alice.get("/userProfile"))).await;
    let throttled = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    let ok = results.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    assert_eq!(ok + throttled, 8);
    assert!((1..=3).contains(&ok), "{ok} admitted");
    let reason = &results
        .iter()
        .find(|(s, _)| *s == StatusCode::TOO_MANY_REQUESTS)
        .unwrap()
        .1;
    // The throttle filter's own body: no concreteType.
    assert_eq!(
        reason,
        &serde_json::json!({"reason":
            "Too many concurrent requests. Allowed 3 concurrent connections at any time."})
    );
    sim.shutdown().await;
}

/// Synapse counts per caller, `userId|sessionId|ip` (`HttpRequestIdentifier`): the `sessionID`
/// cookie it hands out and the `X-Forwarded-For` address each make another caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caller_is_user_session_and_address() {
    let sim = start(&small_fixture()).await;
    sim.set_throttle(ThrottleConfig {
        enabled: true,
        per_minute: 2,
        in_flight: 3,
    });
    let http = synmigrate_testkit::http_client();
    let profile = format!("{}/userProfile", sim.repo_endpoint());
    let call = |headers: &[(&str, &str)]| {
        let mut request = http.get(&profile).bearer_auth("alice-token");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send()
    };
    let first = call(&[]).await.unwrap();
    let cookie = first
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("a sessionID cookie for a request without one")
        .to_owned();
    assert!(cookie.starts_with("sessionID="), "{cookie}");
    assert_eq!(call(&[]).await.unwrap().status(), StatusCode::OK);
    let refused = call(&[]).await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        refused.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({"reason": "Requests are too frequent. Allowed 2 requests every 60 seconds."})
    );
    // Same user, another session; same user, another address: each its own count.
    let session = call(&[("Cookie", cookie.as_str())]).await.unwrap();
    assert_eq!(session.status(), StatusCode::OK);
    assert!(session.headers().get("set-cookie").is_none());
    let forwarded = call(&[("X-Forwarded-For", "127.0.0.2")]).await.unwrap();
    assert_eq!(forwarded.status(), StatusCode::OK);
    assert_eq!(
        call(&[]).await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_minute_window_is_per_user() {
    let sim = start(&small_fixture()).await;
    sim.set_throttle(ThrottleConfig {
        enabled: true,
        per_minute: 5,
        in_flight: 3,
    });
    let alice = Api::new(&sim, Some("alice-token"));
    assert_eq!(
        statuses(&alice, 7).await,
        [200, 200, 200, 200, 200, 429, 429]
    );
    assert_eq!(statuses(&Api::new(&sim, Some("bob-token")), 1).await, [200]);
    sim.set_throttle(ThrottleConfig::disabled());
    assert_eq!(statuses(&alice, 3).await, [200, 200, 200]);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_paces_itself_is_never_throttled() {
    let sim = start_with(&small_fixture(), |c| c.throttle = ThrottleConfig::default()).await;
    sim.set_faults(FaultConfig {
        latency: Duration::from_millis(20),
        ..FaultConfig::default()
    });
    let alice = Api::new(&sim, Some("alice-token"));
    // Three workers, each waiting for its answer before the next request: never above 3 in flight.
    let workers = (0..3).map(|_| {
        let alice = alice.clone();
        async move { statuses(&alice, 15).await }
    });
    let all: Vec<u16> = join_all(workers).await.into_iter().flatten().collect();
    assert_eq!(all.len(), 45);
    assert!(all.iter().all(|s| *s == 200), "{all:?}");
    sim.shutdown().await;
}

fn flaky(seed: u64) -> FaultConfig {
    let mut error_rates = BTreeMap::new();
    error_rates.insert("GET /userProfile".to_owned(), 0.5);
    FaultConfig {
        seed,
        error_rates,
        ..FaultConfig::default()
    }
}

async fn fault_sequence(sim: &RunningSim, seed: u64) -> Vec<u16> {
    sim.set_faults(flaky(seed));
    statuses(&Api::new(sim, Some("alice-token")), 40).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_are_deterministic_per_seed() {
    let sim = start(&small_fixture()).await;
    let first = fault_sequence(&sim, 42).await;
    assert!(first.contains(&503) && first.contains(&200), "{first:?}");
    // Requests to other endpoints do not shift this endpoint's stream.
    sim.set_faults(flaky(42));
    let alice = Api::new(&sim, Some("alice-token"));
    let mut interleaved = Vec::new();
    for _ in 0..40 {
        alice.get("/storageLocation/7001").await;
        interleaved.push(alice.get("/userProfile").await.0.as_u16());
    }
    assert_eq!(interleaved, first);
    let other = start(&small_fixture()).await;
    assert_eq!(fault_sequence(&other, 42).await, first);
    assert_ne!(fault_sequence(&other, 43).await, first);
    other.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_of_429_and_early_expiring_urls() {
    let sim = start(&small_fixture()).await;
    sim.set_faults(FaultConfig {
        burst_429: Some(Burst {
            every: 10,
            length: 3,
        }),
        ..FaultConfig::default()
    });
    let alice = Api::new(&sim, Some("alice-token"));
    let seen = statuses(&alice, 20).await;
    let throttled: Vec<usize> = seen
        .iter()
        .enumerate()
        .filter(|(_, s)| **s == 429)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(throttled, [7, 8, 9, 17, 18, 19]);

    sim.set_faults(FaultConfig {
        early_expiry_rate: 1.0,
        early_expiry: Duration::from_secs(2),
        ..FaultConfig::default()
    });
    let (entity, handle) = file_at(&alice, &sim, "P/multi.txt").await;
    let (_, upload) = alice.copy_handle(&entity, &handle, 7001, 5 * MIB).await;
    let id = upload["uploadId"].as_str().unwrap();
    let (_, urls) = alice.presign(id, &[1]).await;
    let url = urls["partPresignedUrls"][0]["uploadPresignedUrl"]
        .as_str()
        .unwrap();
    assert!(url.contains("X-Amz-Expires=2&"), "{url}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_log_counts_per_endpoint_and_user_and_admin_reads_state() {
    let sim = start(&small_fixture()).await;
    let alice = Api::new(&sim, Some("alice-token"));
    let bob = Api::new(&sim, Some("bob-token"));
    let multi = sim.entity_id("P/multi.txt").unwrap();
    alice.get("/userProfile").await;
    alice.get("/userProfile").await;
    bob.get("/userProfile").await;
    alice.bundle(&multi).await;
    Api::new(&sim, None).get("/userProfile").await;
    let counts = sim.request_counts();
    assert_eq!(counts.total, 5);
    assert_eq!(counts.by_endpoint["GET /userProfile"], 4);
    assert_eq!(counts.by_endpoint["POST /entity/{id}/bundle2"], 1);
    assert_eq!(counts.by_user["101"], 3);
    assert_eq!(counts.by_user["102"], 1);
    assert_eq!(counts.by_status[&401], 1);
    let records = sim.requests();
    assert_eq!(records[3].route, "/entity/{id}/bundle2");
    assert_eq!(records[3].method, "POST");
    assert_eq!(records[4].user_id, None);

    let http = synmigrate_testkit::http_client();
    let admin_get = |path: &str| http.get(format!("{}/admin/{path}", sim.base_url())).send();
    let admin: serde_json::Value = admin_get("requests").await.unwrap().json().await.unwrap();
    assert_eq!(admin["counts"]["total"], 5);
    assert_eq!(admin["counts"]["byEndpoint"]["GET /userProfile"], 4);
    assert_eq!(admin["records"][0]["userId"], "101");
    let snapshot: serde_json::Value = admin_get(&format!("entities/{multi}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(snapshot["versions"].as_array().unwrap().len(), 3);
    assert_eq!(snapshot["fileHandles"].as_array().unwrap().len(), 3);
    let handle = snapshot["entity"]["dataFileHandleId"].as_str().unwrap();
    let fh = admin_get(&format!("fileHandles/{handle}")).await.unwrap();
    assert_eq!(fh.status(), StatusCode::OK);
    let missing = admin_get("entities/syn1").await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    // Admin reads are not API traffic.
    assert_eq!(sim.request_counts().total, 5);
    let reset = http
        .post(format!("{}/admin/requests/reset", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), StatusCode::OK);
    assert_eq!(sim.request_counts().total, 0);
    sim.shutdown().await;
}
