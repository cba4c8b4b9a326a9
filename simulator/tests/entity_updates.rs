//! Entity PUT (etags, permissions, new-version rules), the version handle swap, annotations, and
//! registering caller-copied objects with /externalFileHandle/s3.

mod common;

use common::{small_fixture, start, Api, TestSim};
use md5::{Digest, Md5};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Puts `bytes` in S3 and registers them with /externalFileHandle/s3; returns (status, body).
async fn register(
    sim: &TestSim,
    api: &Api,
    bucket: &str,
    key: &str,
    location: i64,
    bytes: &[u8],
) -> (StatusCode, Value) {
    let s3 = sim.stack().s3_client().await;
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(bytes.to_vec().into())
        .send()
        .await
        .expect("put object");
    api.file_post(
        "/externalFileHandle/s3",
        json!({"concreteType": "org.sagebionetworks.repo.model.file.S3FileHandle",
               "bucketName": bucket, "key": key, "storageLocationId": location,
               "contentMd5": hex::encode(Md5::digest(bytes)), "contentSize": bytes.len(),
               "fileName": "registered.txt", "contentType": "text/plain"}),
    )
    .await
}

/// Registers `bytes` at `key` in alice's destination (7001, bucket `sim-dest`); returns the id.
async fn in_destination(sim: &TestSim, api: &Api, key: &str, bytes: &[u8]) -> String {
    registered_id(sim, api, "sim-dest", key, 7001, bytes).await
}

/// PUTs entity `id` as last read (`entity`) with its file handle replaced by `handle`.
async fn put_with_handle(api: &Api, id: &str, entity: &Value, handle: &str) -> (StatusCode, Value) {
    let mut update = entity.clone();
    update["dataFileHandleId"] = json!(handle);
    api.put(&format!("/entity/{id}"), update).await
}

async fn registered_id(
    sim: &TestSim,
    api: &Api,
    bucket: &str,
    key: &str,
    location: i64,
    bytes: &[u8],
) -> String {
    let (status, handle) = register(sim, api, bucket, key, location, bytes).await;
    assert_eq!(status, StatusCode::CREATED, "{handle}");
    handle["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entity_put_checks_etag_permission_and_versions_by_md5() {
    let sim = start(&small_fixture()).await;
    let alice = Api::new(&sim, Some("alice-token"));
    let id = sim.entity_id("P/multi.txt").unwrap();
    let (_, entity) = alice.get(&format!("/entity/{id}")).await;
    assert_eq!(entity["versionNumber"], 3);

    let mut stale = entity.clone();
    stale["etag"] = json!("not-the-etag");
    assert_eq!(
        alice.put(&format!("/entity/{id}"), stale).await.0,
        StatusCode::PRECONDITION_FAILED
    );
    let bob = Api::new(&sim, Some("bob-token"));
    assert_eq!(
        bob.put(&format!("/entity/{id}"), entity.clone()).await.0,
        StatusCode::FORBIDDEN
    );

    // Same MD5 as the latest version: swapped in place.
    let same = in_destination(&sim, &alice, "dest/t/same.txt", b"three\n").await;
    let (status, swapped) = put_with_handle(&alice, &id, &entity, &same).await;
    assert_eq!(status, StatusCode::OK, "{swapped}");
    assert_eq!(swapped["versionNumber"], 3);
    assert_eq!(swapped["dataFileHandleId"], same.as_str());
    assert_ne!(swapped["etag"], entity["etag"]);
    // The old etag is now stale.
    assert_eq!(
        alice.put(&format!("/entity/{id}"), entity.clone()).await.0,
        StatusCode::PRECONDITION_FAILED
    );

    // Different MD5 without newVersion: a new version anyway.
    let other = in_destination(&sim, &alice, "dest/t/other.txt", b"four\n").await;
    let (status, v4) = put_with_handle(&alice, &id, &swapped, &other).await;
    assert_eq!(status, StatusCode::OK, "{v4}");
    assert_eq!(v4["versionNumber"], 4);
    assert_eq!(v4["versionLabel"], "4");

    // newVersion=true always makes one.
    let (status, v5) = alice
        .put(&format!("/entity/{id}?newVersion=true"), v4.clone())
        .await;
    assert_eq!(status, StatusCode::OK, "{v5}");
    assert_eq!(v5["versionNumber"], 5);
    let snapshot = sim.entity(&id).unwrap();
    assert_eq!(snapshot.versions.len(), 5);
    assert_eq!(
        snapshot.versions[2].data_file_handle_id.as_deref(),
        Some(same.as_str())
    );

    // A handle someone else created cannot be attached.
    let bobs = registered_id(&sim, &bob, "sim-bob", "b/k.txt", 7002, b"bob\n").await;
    assert_eq!(
        put_with_handle(&alice, &id, &v5, &bobs).await.0,
        StatusCode::FORBIDDEN
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_handle_swap_enforces_old_handle_md5_and_ownership() {
    let sim = start(&small_fixture()).await;
    let alice = Api::new(&sim, Some("alice-token"));
    let id = sim.entity_id("P/multi.txt").unwrap();
    let (_, v1) = alice.get(&format!("/entity/{id}/version/1")).await;
    let old = v1["dataFileHandleId"].as_str().unwrap().to_owned();
    let same = in_destination(&sim, &alice, "dest/s/one.txt", b"one\n").await;
    let differs = in_destination(&sim, &alice, "dest/s/uno.txt", b"uno\n").await;
    let url = format!("/entity/{id}/version/1/filehandle");
    let swap = |old: &str, new: &str| json!({"oldFileHandleId": old, "newFileHandleId": new});

    assert_eq!(
        alice.put(&url, swap("424242", &same)).await.0,
        StatusCode::PRECONDITION_FAILED
    );
    assert_eq!(
        alice.put(&url, swap(&old, &differs)).await.0,
        StatusCode::PRECONDITION_FAILED
    );
    let bob = Api::new(&sim, Some("bob-token"));
    let bobs = registered_id(&sim, &bob, "sim-bob", "b/one.txt", 7002, b"one\n").await;
    assert_eq!(
        alice.put(&url, swap(&old, &bobs)).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        bob.put(&url, swap(&old, &same)).await.0,
        StatusCode::FORBIDDEN
    );
    let carol = Api::new(&sim, Some("carol-token"));
    assert_eq!(
        carol.put(&url, swap(&old, &same)).await.0,
        StatusCode::FORBIDDEN
    );

    let etag_before = sim.entity(&id).unwrap().entity.etag;
    let (status, body) = alice.put(&url, swap(&old, &same)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, Value::Null);
    let snapshot = sim.entity(&id).unwrap();
    assert_eq!(
        snapshot.versions[0].data_file_handle_id.as_deref(),
        Some(same.as_str())
    );
    assert_eq!(snapshot.versions.len(), 3);
    assert_ne!(snapshot.entity.etag, etag_before);
    // Doing it again: the old handle is no longer current.
    assert_eq!(
        alice.put(&url, swap(&old, &same)).await.0,
        StatusCode::PRECONDITION_FAILED
    );
    assert_eq!(
        alice
            .put(
                &format!("/entity/{id}/version/7/filehandle"),
                swap(&old, &same)
            )
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotations_update_needs_the_current_etag() {
    let sim = start(&small_fixture()).await;
    let alice = Api::new(&sim, Some("alice-token"));
    let id = sim.entity_id("P/multi.txt").unwrap();
    let (status, mut annotations) = alice.get(&format!("/entity/{id}/annotations2")).await;
    assert_eq!(status, StatusCode::OK);
    annotations["annotations"]["new"] = json!({"type": "LONG", "value": ["5"]});
    let mut stale = annotations.clone();
    stale["etag"] = json!("old");
    let url = format!("/entity/{id}/annotations2");
    assert_eq!(
        alice.put(&url, stale).await.0,
        StatusCode::PRECONDITION_FAILED
    );
    let (status, updated) = alice.put(&url, annotations.clone()).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_ne!(updated["etag"], annotations["etag"]);
    assert_eq!(
        alice.bundle(&id).await["annotations"]["annotations"]["new"]["value"][0],
        "5"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_s3_registration_checks_location_key_and_object() {
    let sim = start(&small_fixture()).await;
    let alice = Api::new(&sim, Some("alice-token"));
    let (status, handle) = register(
        &sim,
        &alice,
        "sim-dest",
        "dest/ok/file.txt",
        7001,
        b"hello\n",
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{handle}");
    assert_eq!(
        handle["concreteType"],
        "org.sagebionetworks.repo.model.file.S3FileHandle"
    );
    assert_eq!(handle["createdBy"], "101");
    assert_eq!(handle["contentSize"], 6);
    assert_eq!(handle["storageLocationId"], 7001);
    let stored = sim.file_handle(handle["id"].as_str().unwrap()).unwrap();
    assert_eq!(
        stored.content_md5.as_deref(),
        Some(hex::encode(Md5::digest(b"hello\n")).as_str())
    );

    // Outside the base key, into Synapse storage, into someone else's location, into a bucket
    // not the location's.
    for (bucket, key, location, expected) in [
        ("sim-dest", "elsewhere/f.txt", 7001, StatusCode::BAD_REQUEST),
        ("sim-synapse", "101/f.txt", 1, StatusCode::BAD_REQUEST),
        ("sim-bob", "f.txt", 7002, StatusCode::FORBIDDEN),
        ("sim-bob", "dest/f.txt", 7001, StatusCode::BAD_REQUEST),
    ] {
        let (status, body) = register(&sim, &alice, bucket, key, location, b"x").await;
        assert_eq!(status, expected, "{bucket}/{key} into {location}: {body}");
    }
    let body = |key: &str, size: u64| {
        json!({"concreteType": "org.sagebionetworks.repo.model.file.S3FileHandle",
               "bucketName": "sim-dest", "key": key, "storageLocationId": 7001,
               "contentMd5": "00000000000000000000000000000000", "contentSize": size})
    };
    // Missing object; wrong size.
    let (status, _) = alice
        .file_post("/externalFileHandle/s3", body("dest/missing.txt", 1))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = alice
        .file_post("/externalFileHandle/s3", body("dest/ok/file.txt", 99))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_handle_get_is_for_its_creator_only() {
    let sim = start(&small_fixture()).await;
    let alice = Api::new(&sim, Some("alice-token"));
    let id = sim.entity_id("P/multi.txt").unwrap();
    let bundled = alice.bundle(&id).await["fileHandles"][0].clone();
    let handle = bundled["id"].as_str().unwrap().to_owned();
    let (status, fetched) = alice.file_get(&format!("/fileHandle/{handle}")).await;
    assert_eq!(status, StatusCode::OK, "{fetched}");
    assert_eq!(fetched, bundled);
    assert_eq!(fetched["createdBy"], "101");
    // Bob can read the entity, but not the handle directly.
    let (status, body) = Api::new(&sim, Some("bob-token"))
        .file_get(&format!("/fileHandle/{handle}"))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body["reason"].is_string(), "{body}");
    let (status, body) = alice.file_get("/fileHandle/999999").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_handle_batch_checks_association_and_size() {
    let sim = start(&small_fixture()).await;
    let alice = Api::new(&sim, Some("alice-token"));
    let id = sim.entity_id("P/multi.txt").unwrap();
    let handle = alice.bundle(&id).await["entity"]["dataFileHandleId"].clone();
    let assoc = |h: &Value, e: &str| {
        json!({"fileHandleId": h, "associateObjectId": e,
                                            "associateObjectType": "FileEntity"})
    };
    let request = json!({"requestedFiles": [assoc(&handle, &id), assoc(&json!("999999"), &id)],
                         "includeFileHandles": true, "includePreSignedURLs": false});
    let (status, result) = alice.file_post("/fileHandle/batch", request.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{result}");
    assert_eq!(result["requestedFiles"][0]["fileHandle"]["id"], handle);
    assert_eq!(result["requestedFiles"][1]["failureCode"], "NOT_FOUND");
    let (_, bobs) = Api::new(&sim, Some("bob-token"))
        .file_post("/fileHandle/batch", request)
        .await;
    assert_eq!(bobs["requestedFiles"][0]["failureCode"], "UNAUTHORIZED");
    let too_many: Vec<Value> = (0..101).map(|_| assoc(&handle, &id)).collect();
    let (status, _) = alice
        .file_post(
            "/fileHandle/batch",
            json!({"requestedFiles": too_many, "includeFileHandles": true}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    sim.shutdown().await;
}
