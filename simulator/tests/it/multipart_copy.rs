//! The multipart copy: a full copy through real presigned UploadPartCopy URLs, idempotent start,
//! partsState, forceRestart, ownership of uploads, and every refusal.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{
    assert_refused, copy_file, copy_part_etag, copy_request, file_at, finish_copy, put_part,
    small_fixture, start, Api, MIB,
};

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
    assert_eq!(part["signedHeaders"].as_object().unwrap().len(), 3);
    // The source ETag as the Java SDK gives it: without quotes.
    assert_eq!(
        part["signedHeaders"]["x-amz-copy-source-if-match"]
            .as_str()
            .unwrap()
            .len(),
        32
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
    let (_, again) = alice
        .start_copy(&entity, handle, 7001, 5 * MIB, None, false)
        .await;
    assert_eq!(again["uploadId"], id.as_str());
    assert_eq!(again["partsState"], "010");
    // The request as the server reads it keys the upload: numbers sent as strings and unknown
    // fields do not make another one.
    let mut loose = copy_request(&entity, handle, 7001, 5 * MIB, None);
    loose["partSizeBytes"] = json!((5 * MIB).to_string());
    loose["somethingElse"] = json!(true);
    let (_, same) = alice
        .file_post("/file/multipart?forceRestart=false", loose)
        .await;
    assert_eq!(same["uploadId"], id.as_str());
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presign_add_and_complete_follow_the_server() {
    let sim = start(&small_fixture()).await;
    let alice = Api::new(&sim, Some("alice-token"));
    let (entity, source) = file_at(&alice, &sim, "P/big.bin").await;
    let handle = source["id"].as_str().unwrap();
    let (_, upload) = alice
        .start_copy(&entity, handle, 7001, 5 * MIB, None, false)
        .await;
    let id = upload["uploadId"].as_str().unwrap().to_owned();
    let batch = format!("/file/multipart/{id}/presigned/url/batch");

    // The path's uploadId wins over the body's, which may also be left out.
    for body in [
        json!({"uploadId": "not-this-one", "partNumbers": [1]}),
        json!({"partNumbers": [1]}),
    ] {
        let (status, urls) = alice.file_post(&batch, body).await;
        assert_eq!(status, StatusCode::CREATED, "{urls}");
    }
    // A requested Content-Type becomes a signed header, named as the server names it; an empty
    // one is left out.
    let (_, typed) = alice
        .file_post(
            &batch,
            json!({"partNumbers": [1], "contentType": "text/plain"}),
        )
        .await;
    assert_eq!(
        typed["partPresignedUrls"][0]["signedHeaders"]["Content-Type"],
        "text/plain"
    );
    let (_, untyped) = alice
        .file_post(&batch, json!({"partNumbers": [1], "contentType": ""}))
        .await;
    assert_eq!(
        untyped["partPresignedUrls"][0]["signedHeaders"]
            .as_object()
            .unwrap()
            .len(),
        3
    );
    assert_refused(
        &alice.file_post(&batch, json!({"uploadId": id})).await,
        StatusCode::BAD_REQUEST,
        "BatchPresignedUploadUrlRequest.partNumbers is required.",
    );
    assert_refused(
        &alice.presign(&id, &[]).await,
        StatusCode::BAD_REQUEST,
        "BatchPresignedUploadUrlRequest.partNumbers must contain at least one value",
    );
    let beyond = "Part number cannot be larger than number of parts. Number of parts: 3, provided \
                  part number: 4";
    assert_refused(
        &alice.presign(&id, &[4]).await,
        StatusCode::BAD_REQUEST,
        beyond,
    );
    assert_refused(
        &alice.presign(&id, &[0]).await,
        StatusCode::BAD_REQUEST,
        "Part numbers cannot be less than one.",
    );
    assert_refused(
        &alice.add_part(&id, 4, "00").await,
        StatusCode::BAD_REQUEST,
        beyond,
    );
    assert_refused(
        &alice.presign("999", &[1]).await,
        StatusCode::NOT_FOUND,
        "MultipartUploadStatus cannot be found for id: 999",
    );
    assert_refused(
        &alice.complete("abc").await,
        StatusCode::BAD_REQUEST,
        "Invalid UploadId.",
    );
    assert_refused(
        &alice.file_put(&format!("/file/multipart/{id}/add/1")).await,
        StatusCode::BAD_REQUEST,
        "Required request parameter 'partMD5Hex' for method parameter type String is not present",
    );

    // Another user cannot touch the upload.
    let bob = Api::new(&sim, Some("bob-token"));
    let starter_only = "Only the user that started a multipart upload can get part upload \
                        pre-signed URLs for that file upload.";
    assert_refused(
        &bob.presign(&id, &[1]).await,
        StatusCode::FORBIDDEN,
        starter_only,
    );
    assert_refused(
        &bob.add_part(&id, 1, "00").await,
        StatusCode::FORBIDDEN,
        starter_only,
    );
    assert_refused(
        &bob.complete(&id).await,
        StatusCode::FORBIDDEN,
        starter_only,
    );
    // The part number is checked before the starter.
    assert_refused(
        &bob.add_part(&id, 4, "00").await,
        StatusCode::BAD_REQUEST,
        beyond,
    );

    // Completing with parts missing is refused.
    assert_refused(
        &alice.complete(&id).await,
        StatusCode::BAD_REQUEST,
        "Missing 3 part(s).  All parts must be successfully added before a file upload can be \
         completed.",
    );
    let done = finish_copy(&alice, &upload).await;
    assert_eq!(done["state"], "COMPLETED");
    // A completed upload takes no more parts (before any other check), still presigns and
    // completes again with the same answer.
    for api in [&alice, &bob] {
        assert_refused(
            &api.add_part(&id, 1, "00").await,
            StatusCode::BAD_REQUEST,
            "Cannot add parts to completed file upload.",
        );
    }
    assert_eq!(alice.presign(&id, &[1]).await.0, StatusCode::CREATED);
    let (status, again) = alice.complete(&id).await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert_eq!(again["resultFileHandleId"], done["resultFileHandleId"]);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_upload_resumes_until_its_object_is_gone_and_force_restart_starts_over() {
    let sim = start(&small_fixture()).await;
    let alice = Api::new(&sim, Some("alice-token"));
    let (entity, source) = file_at(&alice, &sim, "P/big.bin").await;
    let handle = source["id"].as_str().unwrap();
    let (_, first) = alice
        .start_copy(&entity, handle, 7001, 5 * MIB, None, false)
        .await;
    let id = first["uploadId"].as_str().unwrap().to_owned();

    // Complete; starting again returns the same result.
    let done = finish_copy(&alice, &first).await;
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

    // getCachedUpload: a completed upload whose object was deleted is not resumed.
    let done = finish_copy(&alice, &other).await;
    let copy = sim
        .file_handle(done["resultFileHandleId"].as_str().unwrap())
        .unwrap();
    sim.stack()
        .s3_client()
        .await
        .delete_object()
        .bucket(copy.bucket_name.unwrap())
        .key(copy.key.unwrap())
        .send()
        .await
        .unwrap();
    let (status, fresh) = alice
        .start_copy(&entity, handle, 7001, 7 * MIB, None, false)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{fresh}");
    assert_ne!(fresh["uploadId"], other["uploadId"]);
    assert_eq!(fresh["state"], "UPLOADING");
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
    let invalid = |name: &str| {
        format!(
            "Invalid Name: '{name}'. Names may only contain: letters, numbers, spaces, \
             underscores, hyphens, periods, plus signs, apostrophes, and parentheses"
        )
    };
    let long_name: &'static str = "n".repeat(257).leak();
    let bad = StatusCode::BAD_REQUEST;
    let cases = [
        (
            "P/in-dest.bin",
            7001,
            ps,
            None,
            bad,
            "The source file handle is already in the given destination storage location.".into(),
        ),
        (
            "P/link.txt",
            7001,
            ps,
            None,
            bad,
            "The source file handle does not define its size.".into(),
        ),
        (
            "P/sized-link.txt",
            7001,
            ps,
            None,
            bad,
            "The source file must be stored in a cloud bucket accessible by Synapse.".into(),
        ),
        (
            "P/multi.txt",
            7003,
            ps,
            None,
            bad,
            "Copying a file that is stored in a different region than the destination is not \
             supported."
                .into(),
        ),
        (
            "P/empty.txt",
            7001,
            ps,
            None,
            bad,
            "File size must be at least one byte".into(),
        ),
        (
            "P/no-md5.txt",
            7001,
            ps,
            None,
            bad,
            "The source file handle does not define its content MD5.".into(),
        ),
        (
            "P/bad name 1.txt",
            7001,
            ps,
            None,
            bad,
            invalid("bad#name&[1].txt"),
        ),
        (
            "P/bad name 1.txt",
            7001,
            ps,
            Some(" still[bad].txt "),
            bad,
            invalid("still[bad].txt"),
        ),
        (
            "P/multi.txt",
            7001,
            ps,
            Some(long_name),
            bad,
            "Name length cannot be longer than 256 characters.".into(),
        ),
        // The request's name is checked before the destination is even looked up.
        ("P/multi.txt", 999, ps, Some("a#b"), bad, invalid("a#b")),
        (
            "P/multi.txt",
            999,
            ps,
            None,
            StatusCode::NOT_FOUND,
            "Storage location setting: '999' does not exist".into(),
        ),
        (
            "P/multi.txt",
            7002,
            ps,
            None,
            StatusCode::FORBIDDEN,
            "The user does not own the destination storage location.".into(),
        ),
        // Synapse's own storage is no exception.
        (
            "P/multi.txt",
            1,
            ps,
            None,
            StatusCode::FORBIDDEN,
            "The user does not own the destination storage location.".into(),
        ),
        (
            "P/huge.bin",
            7001,
            ps,
            None,
            bad,
            "File Upload would require 12288 parts, which exceeds the maximum number of allowed \
             parts of: 10000. Please choose a larger part size."
                .into(),
        ),
        (
            "P/multi.txt",
            7001,
            4 * MIB,
            None,
            bad,
            "The part size must be at least 5242880 bytes.".into(),
        ),
        (
            "P/multi.txt",
            7001,
            6 * 1024 * MIB,
            None,
            bad,
            "The part size must not exceed 5368709120 bytes.".into(),
        ),
    ];
    for (path, destination, part_size, file_name, expected, reason) in cases {
        let answer = refusal(path, destination, part_size, file_name).await;
        assert_refused(&answer, expected, &reason);
    }
    // The source ETag is read from S3 before the handle's kind is checked: a Google Cloud
    // source's bucket is not in S3, so the read fails as the server's S3 client would (502).
    let (status, body) = refusal("P/gcs.bin", 7001, ps, None).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    // 60 GiB at 7 MiB parts is under 10,000 parts.
    let (status, body) = refusal("P/huge.bin", 7001, 7 * MIB, None).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["partsState"].as_str().unwrap().len(), 8778);
    // A valid replacement name lets the bad name through, and the copy keeps it.
    let (status, ok) = refusal("P/bad name 1.txt", 7001, ps, Some("bad name (1).txt")).await;
    assert_eq!(status, StatusCode::CREATED, "{ok}");
    let done = finish_copy(&alice, &ok).await;
    let copy = sim
        .file_handle(done["resultFileHandleId"].as_str().unwrap())
        .unwrap();
    assert_eq!(copy.file_name.as_deref(), Some("bad name (1).txt"));

    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_must_be_downloadable_and_its_creator_always_may() {
    let sim = start(&small_fixture()).await;
    let alice = Api::new(&sim, Some("alice-token"));
    let bob = Api::new(&sim, Some("bob-token"));
    let ps = 5 * MIB;
    let not_authorized = "The user is not authorized to access the source file.";
    // No DOWNLOAD: bob can read locked.txt but not download it (and 7002 is his).
    let (locked, locked_handle) = file_at(&alice, &sim, "P/locked.txt").await;
    assert_refused(
        &bob.copy_handle(&locked, &locked_handle, 7002, ps).await,
        StatusCode::FORBIDDEN,
        not_authorized,
    );
    let (entity, handle) = file_at(&alice, &sim, "P/bob-can-copy.txt").await;
    let handle_id = handle["id"].as_str().unwrap();
    // A handle not associated with the named entity, a missing entity, another association type:
    // the same 403.
    for (object, object_type) in [
        (locked.as_str(), "FileEntity"),
        ("syn999999", "FileEntity"),
        (entity.as_str(), "TableEntity"),
    ] {
        let mut request = copy_request(
            object,
            locked_handle["id"].as_str().unwrap(),
            7002,
            ps,
            None,
        );
        request["sourceFileHandleAssociation"]["associateObjectType"] = json!(object_type);
        if object == entity {
            request["sourceFileHandleAssociation"]["fileHandleId"] = json!(handle_id);
        }
        let answer = bob
            .file_post("/file/multipart?forceRestart=false", request)
            .await;
        assert_refused(&answer, StatusCode::FORBIDDEN, not_authorized);
    }
    // The download check comes before the destination's owner.
    assert_refused(
        &bob.copy_handle(&locked, &locked_handle, 7001, ps).await,
        StatusCode::FORBIDDEN,
        not_authorized,
    );
    let (status, body) = bob.copy_handle(&entity, &handle, 7002, ps).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // The handle's creator needs neither the entity nor the association.
    for object in [locked.as_str(), "syn999999"] {
        let (status, body) = alice
            .start_copy(object, handle_id, 7001, ps, None, false)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{object}: {body}");
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blank_file_name_keeps_the_source_name_and_required_fields_are_named() {
    let sim = start(&small_fixture()).await;
    let alice = Api::new(&sim, Some("alice-token"));
    let (entity, handle) = file_at(&alice, &sim, "P/multi.txt").await;
    let handle_id = handle["id"].as_str().unwrap();
    for blank in ["", "   "] {
        let (status, upload) = alice
            .start_copy(&entity, handle_id, 7001, 5 * MIB, Some(blank), false)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{blank:?}: {upload}");
        let done = finish_copy(&alice, &upload).await;
        let copy = sim
            .file_handle(done["resultFileHandleId"].as_str().unwrap())
            .unwrap();
        assert_eq!(copy.file_name.as_deref(), Some("multi.txt"));
        assert!(copy.key.unwrap().ends_with("/multi.txt"));
    }
    let request = copy_request(&entity, handle_id, 7001, 5 * MIB, None);
    let prefix = "MultipartUploadCopyRequest";
    for (path, name) in [
        (&["partSizeBytes"][..], "partSizeBytes"),
        (&["storageLocationId"][..], "storageLocationId"),
        (
            &["sourceFileHandleAssociation"][..],
            "sourceFileHandleAssociation",
        ),
        (
            &["sourceFileHandleAssociation", "fileHandleId"][..],
            "sourceFileHandleAssociation.fileHandleId",
        ),
        (
            &["sourceFileHandleAssociation", "associateObjectId"][..],
            "sourceFileHandleAssociation.associateObjectId",
        ),
        (
            &["sourceFileHandleAssociation", "associateObjectType"][..],
            "sourceFileHandleAssociation.associateObjectType",
        ),
    ] {
        let mut body = request.clone();
        let (last, parents) = path.split_last().unwrap();
        let mut object = &mut body;
        for parent in parents {
            object = &mut object[*parent];
        }
        object.as_object_mut().unwrap().remove(*last);
        let answer = alice
            .file_post("/file/multipart?forceRestart=false", body)
            .await;
        assert_refused(
            &answer,
            StatusCode::BAD_REQUEST,
            &format!("{prefix}.{name} is required."),
        );
    }
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
