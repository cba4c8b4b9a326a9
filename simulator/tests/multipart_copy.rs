//! The multipart copy: a full copy through real presigned UploadPartCopy URLs, idempotent start,
//! partsState, forceRestart, ownership of uploads, and every refusal.

mod common;

use common::{
    copy_file, copy_part_etag, file_at, finish_copy, put_part, small_fixture, start, Api, MIB,
};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_copy_lands_identical_bytes_in_the_destination() {
    let sim = start(&small_fixture()).await;
    let alice = Api::new(&sim, Some("alice-token"));
    let (entity, source) = file_at(&alice, &sim, "P/big.bin").await;
    let source_id = source["id"].as_str().unwrap();
    let done = copy_file(&alice, &entity, source_id, 7001, 5 * MIB).await;
    let new_id = done["resultFileHandleId"].as_str().unwrap();
    let copy = sim.file_handle(new_id).unwrap();
    assert!(copy.is_s3());
    assert_eq!(copy.bucket_name.as_deref(), Some("sim-dest"));
    let key = copy.key.clone().unwrap();
    assert!(
        key.starts_with("dest/101/") && key.ends_with("/big.bin"),
        "{key}"
    );
    assert_eq!(copy.storage_location_id, Some(7001));
    assert_eq!(copy.created_by.as_deref(), Some("101"));
    assert_eq!(copy.content_md5.as_deref(), source["contentMd5"].as_str());
    assert_eq!(copy.content_size, source["contentSize"].as_u64());
    assert_eq!(
        copy.content_type.as_deref(),
        Some("application/octet-stream")
    );
    assert_eq!(copy.file_name.as_deref(), Some("big.bin"));
    let source_md5 = sim
        .object_md5(
            source["bucketName"].as_str().unwrap(),
            source["key"].as_str().unwrap(),
        )
        .await;
    assert_eq!(sim.object_md5("sim-dest", &key).await, source_md5);
    assert_eq!(source_md5, source["contentMd5"].as_str().unwrap());
    let counts = sim.request_counts();
    assert_eq!(counts.by_endpoint["POST /file/multipart"], 1);
    assert_eq!(
        counts.by_endpoint["PUT /file/multipart/{upload}/add/{part}"],
        3
    );
    assert_eq!(
        counts.by_endpoint["PUT /file/multipart/{upload}/complete"],
        1
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_is_idempotent_resumable_and_restartable() {
    let sim = start(&small_fixture()).await;
    let alice = Api::new(&sim, Some("alice-token"));
    let (entity, source) = file_at(&alice, &sim, "P/big.bin").await;
    let handle = source["id"].as_str().unwrap();
    let (status, first) = alice
        .start_copy(&entity, handle, 7001, 5 * MIB, None, false)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["state"], "UPLOADING");
    assert_eq!(first["partsState"], "000");
    assert_eq!(first["startedBy"], "101");
    let id = first["uploadId"].as_str().unwrap().to_owned();

    // Copy part 2 only, then ask again: same upload, partsState shows it.
    let (_, urls) = alice.presign(&id, &[2]).await;
    let part = &urls["partPresignedUrls"][0];
    assert!(part["signedHeaders"].get("content-type").is_none());
    assert_eq!(
        part["signedHeaders"]["x-amz-copy-source-if-match"]
            .as_str()
            .unwrap()
            .len(),
        34
    );
    assert_eq!(
        part["signedHeaders"]["x-amz-copy-source-range"],
        format!("bytes={}-{}", 5 * MIB, 10 * MIB - 1)
    );
    assert!(part["uploadPresignedUrl"]
        .as_str()
        .unwrap()
        .contains("X-Amz-Expires=900"));
    let (status, xml) = put_part(part).await;
    assert_eq!(status, StatusCode::OK, "{xml}");
    let (status, _) = alice.add_part(&id, 2, &copy_part_etag(&xml)).await;
    assert_eq!(status, StatusCode::CREATED);
    // Completing with parts missing is refused.
    assert_eq!(alice.complete(&id).await.0, StatusCode::BAD_REQUEST);
    let (_, again) = alice
        .start_copy(&entity, handle, 7001, 5 * MIB, None, false)
        .await;
    assert_eq!(again["uploadId"], id.as_str());
    assert_eq!(again["partsState"], "010");

    // A requested Content-Type becomes a signed header.
    let (_, typed) = alice
        .file_post(
            &format!("/file/multipart/{id}/presigned/url/batch"),
            json!({"uploadId": id, "partNumbers": [1], "contentType": "text/plain"}),
        )
        .await;
    assert_eq!(
        typed["partPresignedUrls"][0]["signedHeaders"]["content-type"],
        "text/plain"
    );

    // Another user cannot touch the upload.
    let bob = Api::new(&sim, Some("bob-token"));
    assert_eq!(bob.presign(&id, &[1]).await.0, StatusCode::FORBIDDEN);
    assert_eq!(bob.add_part(&id, 1, "00").await.0, StatusCode::FORBIDDEN);
    assert_eq!(bob.complete(&id).await.0, StatusCode::FORBIDDEN);
    assert_eq!(alice.presign(&id, &[4]).await.0, StatusCode::BAD_REQUEST);

    // Resume and complete; starting again returns the same result.
    let done = finish_copy(&alice, &again).await;
    let result = done["resultFileHandleId"].as_str().unwrap().to_owned();
    let (_, after) = alice
        .start_copy(&entity, handle, 7001, 5 * MIB, None, false)
        .await;
    assert_eq!(after["state"], "COMPLETED");
    assert_eq!(after["resultFileHandleId"], result.as_str());
    assert_eq!(after["partsState"], "111");

    // forceRestart starts over with a new upload.
    let (status, restarted) = alice
        .start_copy(&entity, handle, 7001, 5 * MIB, None, true)
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_ne!(restarted["uploadId"], id.as_str());
    assert_eq!(restarted["state"], "UPLOADING");
    assert_eq!(restarted["partsState"], "000");
    // A different body (part size) is a different upload.
    let (_, other) = alice
        .start_copy(&entity, handle, 7001, 7 * MIB, None, false)
        .await;
    assert_ne!(other["uploadId"], restarted["uploadId"]);
    assert_eq!(other["partsState"], "00");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_are_refused_with_synapse_status_codes() {
    let sim = start(&small_fixture()).await;
    let alice = Api::new(&sim, Some("alice-token"));
    let ps = 5 * MIB;
    let refusal =
        |path: &'static str, destination: i64, part_size: u64, file_name: Option<&'static str>| {
            let alice = alice.clone();
            let sim = &sim;
            async move {
                let (entity, handle) = file_at(&alice, sim, path).await;
                alice
                    .start_copy(
                        &entity,
                        handle["id"].as_str().unwrap(),
                        destination,
                        part_size,
                        file_name,
                        false,
                    )
                    .await
            }
        };
    let cases = [
        (
            "P/in-dest.bin",
            7001,
            ps,
            None,
            StatusCode::BAD_REQUEST,
            "already",
        ),
        ("P/link.txt", 7001, ps, None, StatusCode::BAD_REQUEST, "S3"),
        ("P/gcs.bin", 7001, ps, None, StatusCode::BAD_REQUEST, "S3"),
        (
            "P/multi.txt",
            7003,
            ps,
            None,
            StatusCode::BAD_REQUEST,
            "region",
        ),
        (
            "P/empty.txt",
            7001,
            ps,
            None,
            StatusCode::BAD_REQUEST,
            "empty",
        ),
        (
            "P/no-md5.txt",
            7001,
            ps,
            None,
            StatusCode::BAD_REQUEST,
            "contentMd5",
        ),
        (
            "P/bad#name&[1].txt",
            7001,
            ps,
            None,
            StatusCode::BAD_REQUEST,
            "Invalid Name",
        ),
        (
            "P/bad#name&[1].txt",
            7001,
            ps,
            Some("still[bad].txt"),
            StatusCode::BAD_REQUEST,
            "Invalid Name",
        ),
        (
            "P/multi.txt",
            7002,
            ps,
            None,
            StatusCode::FORBIDDEN,
            "creator",
        ),
        (
            "P/huge.bin",
            7001,
            ps,
            None,
            StatusCode::BAD_REQUEST,
            "10000 parts",
        ),
        (
            "P/multi.txt",
            7001,
            4 * MIB,
            None,
            StatusCode::BAD_REQUEST,
            "partSizeBytes",
        ),
        (
            "P/multi.txt",
            7001,
            6 * 1024 * MIB,
            None,
            StatusCode::BAD_REQUEST,
            "partSizeBytes",
        ),
    ];
    for (path, destination, part_size, file_name, expected, reason) in cases {
        let (status, body) = refusal(path, destination, part_size, file_name).await;
        assert_eq!(status, expected, "{path} -> {destination}: {body}");
        assert!(
            body["reason"].as_str().unwrap().contains(reason),
            "{path}: {body}"
        );
    }
    // 60 GiB at 7 MiB parts is under 10,000 parts.
    let (status, body) = refusal("P/huge.bin", 7001, 7 * MIB, None).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["partsState"].as_str().unwrap().len(), 8778);
    // A valid replacement name lets the bad name through, and the copy keeps it.
    let (status, ok) = refusal("P/bad#name&[1].txt", 7001, ps, Some("bad name (1).txt")).await;
    assert_eq!(status, StatusCode::CREATED, "{ok}");
    let done = finish_copy(&alice, &ok).await;
    let copy = sim
        .file_handle(done["resultFileHandleId"].as_str().unwrap())
        .unwrap();
    assert_eq!(copy.file_name.as_deref(), Some("bad name (1).txt"));

    // No download permission: bob can read locked.txt but not download it (and 7002 is his).
    let bob = Api::new(&sim, Some("bob-token"));
    let (entity, handle) = file_at(&alice, &sim, "P/locked.txt").await;
    let (status, body) = bob.copy_handle(&entity, &handle, 7002, ps).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (entity, handle) = file_at(&alice, &sim, "P/bob-can-copy.txt").await;
    let (status, body) = bob.copy_handle(&entity, &handle, 7002, ps).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // A handle not associated with the named entity.
    let (other, _) = file_at(&alice, &sim, "P/multi.txt").await;
    let (status, _) = alice.copy_handle(&other, &handle, 7001, ps).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_source_object_is_a_bad_gateway() {
    let sim = start(&small_fixture()).await;
    let alice = Api::new(&sim, Some("alice-token"));
    let (entity, handle) = file_at(&alice, &sim, "P/multi.txt").await;
    let s3 = sim.stack().s3_client().await;
    s3.delete_object()
        .bucket(handle["bucketName"].as_str().unwrap())
        .key(handle["key"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let (status, body) = alice.copy_handle(&entity, &handle, 7001, 5 * MIB).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_urls_expire_for_real() {
    let sim = start(&small_fixture()).await;
    sim.set_presign_expiry(std::time::Duration::from_secs(1));
    let alice = Api::new(&sim, Some("alice-token"));
    let (entity, handle) = file_at(&alice, &sim, "P/multi.txt").await;
    let (_, upload) = alice.copy_handle(&entity, &handle, 7001, 5 * MIB).await;
    let id = upload["uploadId"].as_str().unwrap();
    let (_, urls) = alice.presign(id, &[1]).await;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let (status, _) = put_part(&urls["partPresignedUrls"][0]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Presigning again gives a working URL.
    sim.set_presign_expiry(std::time::Duration::from_secs(900));
    let done = finish_copy(&alice, &upload).await;
    assert_eq!(done["state"], "COMPLETED");
    sim.shutdown().await;
}
