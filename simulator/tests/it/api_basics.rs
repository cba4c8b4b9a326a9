//! Auth, profiles, storage locations, bundles, children paging and version listing; the
//! file-service reads and registrations (/externalFileHandle/s3, /fileHandle/{id},
//! /fileHandle/batch) and the error body.

use md5::{Digest, Md5};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::{assert_refused, copy_file, register, small_fixture, start, Api, MIB};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_is_required_and_profiles_match_tokens() {
    let sim = start(&small_fixture()).await;
    let (status, body) = Api::new(&sim, None).get("/userProfile").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["reason"].is_string());
    let (status, _) = Api::new(&sim, Some("not-a-token"))
        .get("/userProfile")
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, me) = Api::new(&sim, Some("alice-token"))
        .get("/userProfile")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["ownerId"], "101");
    assert_eq!(me["userName"], "alice");
    let config = sim.python_client_config();
    assert!(config.starts_with("[endpoints]\n"));
    assert!(config.contains(&format!("repoEndpoint={}\n", sim.repo_endpoint())));
    assert!(config.contains(&format!("fileHandleEndpoint={}\n", sim.file_endpoint())));
    // The log names users by id and never holds the token.
    let log = serde_json::to_string(&sim.requests()).unwrap();
    assert!(!log.contains("alice-token") && log.contains("\"101\""));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_locations_are_visible_to_their_creator_only() {
    let sim = start(&small_fixture()).await;
    let alice = Api::new(&sim, Some("alice-token"));
    let (status, loc) = alice.get("/storageLocation/7001").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        loc["concreteType"],
        "org.sagebionetworks.repo.model.project.ExternalS3StorageLocationSetting"
    );
    assert_eq!(loc["bucket"], "sim-dest");
    assert_eq!(loc["baseKey"], "dest");
    assert_eq!(loc["createdBy"], 101);
    assert_eq!(loc["storageLocationId"], 7001);
    assert_eq!(
        alice.get("/storageLocation/7002").await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        alice.get("/storageLocation/1").await.0,
        StatusCode::FORBIDDEN
    );
    assert_refused(
        &alice.get("/storageLocation/999").await,
        StatusCode::NOT_FOUND,
        "Storage location setting: '999' does not exist",
    );
    assert_refused(
        &alice.get("/storageLocation/7002").await,
        StatusCode::FORBIDDEN,
        "Only the creator can access storage location settings",
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_respect_read_permission_and_versions() {
    let sim = start(&small_fixture()).await;
    let multi = sim.entity_id("P/multi.txt").unwrap();
    let alice = Api::new(&sim, Some("alice-token"));
    let bundle = alice.bundle(&multi).await;
    assert_eq!(
        bundle["entity"]["concreteType"],
        "org.sagebionetworks.repo.model.FileEntity"
    );
    assert_eq!(bundle["entity"]["versionNumber"], 3);
    assert_eq!(bundle["annotations"]["annotations"]["k"]["value"][0], "v");
    assert_eq!(bundle["annotations"]["etag"], bundle["entity"]["etag"]);
    let handle = &bundle["fileHandles"][0];
    assert_eq!(handle["id"], bundle["entity"]["dataFileHandleId"]);
    assert_eq!(
        handle["concreteType"],
        "org.sagebionetworks.repo.model.file.S3FileHandle"
    );
    assert_eq!(handle["contentSize"], 6);
    assert_eq!(handle["storageLocationId"], 1);
    assert_eq!(handle["contentMd5"].as_str().unwrap().len(), 32);

    let (status, v1) = alice
        .post(
            &format!("/entity/{multi}/version/1/bundle2"),
            json!({"includeEntity": true,
              "includeFileHandles": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v1["entity"]["versionNumber"], 1);
    assert_eq!(v1["fileHandles"][0]["contentSize"], 4);
    assert!(v1.get("annotations").is_none());
    let (status, entity) = alice.get(&format!("/entity/{multi}/version/2")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(entity["versionNumber"], 2);
    assert_eq!(
        alice
            .post(&format!("/entity/{multi}/version/9/bundle2"), json!({}))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_refused(
        &alice.post("/entity/syn999999/bundle2", json!({})).await,
        StatusCode::NOT_FOUND,
        "Resource: 'syn999999' does not exist",
    );

    let (status, _) = Api::new(&sim, Some("bob-token"))
        .get(&format!("/entity/{multi}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = Api::new(&sim, Some("carol-token"))
        .post(
            &format!("/entity/{multi}/bundle2"),
            json!({"includeEntity": true}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body["reason"].as_str().unwrap().contains("READ"));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_come_in_sorted_pages_of_fifty() {
    let sim = start(&small_fixture()).await;
    let alice = Api::new(&sim, Some("alice-token"));
    let many = sim.entity_id("P/many").unwrap();
    let request = |token: Option<&str>| {
        json!({"parentId": many, "includeTypes": ["folder", "file"], "sortBy": "NAME",
               "sortDirection": "ASC", "nextPageToken": token})
    };
    let (status, first) = alice.post("/entity/children", request(None)).await;
    assert_eq!(status, StatusCode::OK);
    let page = first["page"].as_array().unwrap();
    assert_eq!(page.len(), 50);
    assert_eq!(page[0]["name"], "f00.txt");
    assert_eq!(page[0]["type"], "org.sagebionetworks.repo.model.FileEntity");
    let token = first["nextPageToken"].as_str().unwrap().to_owned();
    let (_, second) = alice.post("/entity/children", request(Some(&token))).await;
    let rest = second["page"].as_array().unwrap();
    assert_eq!(rest.len(), 10);
    assert_eq!(rest[9]["name"], "f59.txt");
    assert!(second.get("nextPageToken").is_none());

    // includeTypes filters; the project holds one folder "many", one "sub" and files.
    let project = sim.project_id("P").unwrap();
    let (_, folders) = alice
        .post(
            "/entity/children",
            json!({"parentId": project, "includeTypes": ["folder"]}),
        )
        .await;
    let names: Vec<&str> = folders["page"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["many", "sub"]);
    assert_eq!(
        folders["page"][0]["type"],
        "org.sagebionetworks.repo.model.Folder"
    );
    let (status, _) = Api::new(&sim, Some("carol-token"))
        .post("/entity/children", request(None))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_are_listed_newest_first_with_offset_and_limit() {
    let sim = start(&small_fixture()).await;
    let alice = Api::new(&sim, Some("alice-token"));
    let multi = sim.entity_id("P/multi.txt").unwrap();
    let (status, all) = alice
        .get(&format!("/entity/{multi}/version?offset=0&limit=20"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let numbers: Vec<i64> = all["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["versionNumber"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, [3, 2, 1]);
    assert_eq!(all["totalNumberOfResults"], 3);
    assert_eq!(all["results"][0]["isLatestVersion"], true);
    let (_, page) = alice
        .get(&format!("/entity/{multi}/version?offset=1&limit=1"))
        .await;
    assert_eq!(page["results"][0]["versionNumber"], 2);
    let (_, empty) = alice
        .get(&format!("/entity/{multi}/version?offset=3&limit=20"))
        .await;
    assert_eq!(empty["results"].as_array().unwrap().len(), 0);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_the_repo_external_handle_path_are_json_404s() {
    let sim = start(&small_fixture()).await;
    let alice = Api::new(&sim, Some("alice-token"));
    let (status, body) = alice.post("/externalFileHandle/s3", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["reason"].is_string());
    let (status, body) = alice.post("/entity/children", json!("not an object")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Every error is the server's ErrorResponse.
    assert_eq!(
        body["concreteType"],
        "org.sagebionetworks.repo.model.ErrorResponse"
    );
    assert!(body["reason"].is_string());
    sim.shutdown().await;
}

/// A registration body for `key` in alice's destination 7001 (bucket `sim-dest`).
fn registration(key: &str) -> Value {
    json!({"concreteType": "org.sagebionetworks.repo.model.file.S3FileHandle",
           "bucketName": "sim-dest", "key": key, "storageLocationId": 7001,
           "contentMd5": hex::encode(Md5::digest(b"hello\n"))})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_s3_registration_answers_200_and_keeps_what_it_is_given() {
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
    assert_eq!(status, StatusCode::OK, "{handle}");
    assert_eq!(
        handle["concreteType"],
        "org.sagebionetworks.repo.model.file.S3FileHandle"
    );
    assert_eq!(handle["createdBy"], "101");
    assert_eq!(handle["contentSize"], 6);
    assert_eq!(handle["storageLocationId"], 7001);
    assert_eq!(handle["fileName"], "registered.txt");
    let stored = sim.file_handle(handle["id"].as_str().unwrap()).unwrap();
    assert_eq!(
        stored.content_md5.as_deref(),
        Some(hex::encode(Md5::digest(b"hello\n")).as_str())
    );
    // No name or type: "NOT_SET"; no size: the object's. The base key of a location without
    // STS binds nothing.
    let (status, bare) = register(
        &sim,
        &alice,
        "sim-dest",
        "elsewhere/f.txt",
        7001,
        b"hello\n",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{bare}");
    let mut body = registration("elsewhere/f.txt");
    let (status, bare) = alice
        .file_post("/externalFileHandle/s3", body.clone())
        .await;
    assert_eq!(status, StatusCode::OK, "{bare}");
    assert_eq!(bare["fileName"], "NOT_SET");
    assert_eq!(bare["contentType"], "NOT_SET");
    assert_eq!(bare["contentSize"], 6);
    // A given size is kept, not compared with the object; the MD5 is taken as given.
    body["contentSize"] = json!(99);
    body["contentMd5"] = json!("0123456789ABCDEF0123456789abcdef");
    let (status, sized) = alice.file_post("/externalFileHandle/s3", body).await;
    assert_eq!(status, StatusCode::OK, "{sized}");
    assert_eq!(sized["contentSize"], 99);
    assert_eq!(sized["contentMd5"], "0123456789ABCDEF0123456789abcdef");
    // An STS-enabled location takes keys under its base key, as a plain prefix.
    for key in ["sts/f.txt", "stsfile.txt"] {
        let (status, body) = register(&sim, &alice, "sim-sts", key, 7004, b"x").await;
        assert_eq!(status, StatusCode::OK, "{key}: {body}");
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_s3_refusals_come_in_the_servers_order_with_its_texts() {
    let sim = start(&small_fixture()).await;
    let alice = Api::new(&sim, Some("alice-token"));
    register(
        &sim,
        &alice,
        "sim-dest",
        "dest/ok/file.txt",
        7001,
        b"hello\n",
    )
    .await;
    let with = |changes: Value| {
        let mut body = registration("dest/ok/file.txt");
        for (field, value) in changes.as_object().unwrap() {
            if value.is_null() {
                body.as_object_mut().unwrap().remove(field);
            } else {
                body[field] = value.clone();
            }
        }
        body
    };
    let bad = StatusCode::BAD_REQUEST;
    let expected_type = "org.sagebionetworks.repo.model.project.ExternalS3StorageLocationSetting";
    let cases = [
        (
            json!({"storageLocationId": null}),
            bad,
            "FileHandle.storageLocationId is required.".to_owned(),
        ),
        (
            json!({"bucketName": ""}),
            bad,
            "FileHandle.bucket is required and must not be the empty string.".into(),
        ),
        (
            json!({"key": null}),
            bad,
            "FileHandle.key is required and must not be the empty string.".into(),
        ),
        (
            json!({"contentMd5": null}),
            bad,
            "FileHandle.contentMd5 is required and must not be the empty string.".into(),
        ),
        (
            json!({"contentMd5": "not-hex-0123456789abcdef01234567"}),
            bad,
            "The content MD5 digest must be a valid hexadecimal string of length 32.".into(),
        ),
        (
            json!({"storageLocationId": 999}),
            StatusCode::NOT_FOUND,
            "Storage location setting: '999' does not exist".into(),
        ),
        (
            json!({"storageLocationId": 1, "bucketName": "sim-synapse"}),
            bad,
            format!("StorageLocationSetting.id=1 was not of the expected type: {expected_type}"),
        ),
        (
            json!({"bucketName": "sim-bob"}),
            bad,
            "The bucket for ExternalS3StorageLocationSetting.id=7001 does not match the provided \
             bucket: sim-bob"
                .into(),
        ),
        // The bucket is checked before the creator.
        (
            json!({"storageLocationId": 7002}),
            bad,
            "The bucket for ExternalS3StorageLocationSetting.id=7002 does not match the provided \
             bucket: sim-dest"
                .into(),
        ),
        (
            json!({"storageLocationId": 7002, "bucketName": "sim-bob"}),
            StatusCode::FORBIDDEN,
            "Only the creator of ExternalS3StorageLocationSetting.id=7002 can create an external \
             S3FileHandle with storageLocationId = 7002"
                .into(),
        ),
        (
            json!({"storageLocationId": 7004, "bucketName": "sim-sts", "key": "elsewhere/f.txt"}),
            bad,
            "The baseKey for ExternalS3StorageLocationSetting.id=7004 does not match the provided \
             key: elsewhere/f.txt"
                .into(),
        ),
        (
            json!({"key": "dest/missing.txt"}),
            bad,
            "Unable to access the file at bucket: sim-dest key: dest/missing.txt.".into(),
        ),
    ];
    for (changes, status, reason) in cases {
        let answer = alice
            .file_post("/externalFileHandle/s3", with(changes))
            .await;
        assert_refused(&answer, status, &reason);
    }
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
    let answer = Api::new(&sim, Some("bob-token"))
        .file_get(&format!("/fileHandle/{handle}"))
        .await;
    assert_refused(
        &answer,
        StatusCode::FORBIDDEN,
        &format!(
            "Only the creator of a FileHandle can access it directly by its ID.  FileHandleId = \
             '{handle}', UserId = '102'"
        ),
    );
    assert_refused(
        &alice.file_get("/fileHandle/999999").await,
        StatusCode::NOT_FOUND,
        "FileHandle: '999999' cannot be found",
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_handle_batch_authorises_per_file_and_validates_the_request() {
    let sim = start(&small_fixture()).await;
    let alice = Api::new(&sim, Some("alice-token"));
    let bob = Api::new(&sim, Some("bob-token"));
    let multi = sim.entity_id("P/multi.txt").unwrap();
    let handle = alice.bundle(&multi).await["entity"]["dataFileHandleId"].clone();
    let bobs_file = sim.entity_id("P/bob-can-copy.txt").unwrap();
    let bobs_handle = alice.bundle(&bobs_file).await["entity"]["dataFileHandleId"].clone();
    let assoc = |h: &Value, e: &str| json!({"fileHandleId": h, "associateObjectId": e, "associateObjectType": "FileEntity"});
    let batch = |files: Vec<Value>| json!({"requestedFiles": files, "includeFileHandles": true});
    let codes = |result: &Value| -> Vec<Value> {
        result["requestedFiles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["failureCode"].clone())
            .collect()
    };
    // The creator of a handle may always have it, through any object, even a missing one; an
    // unknown handle is not associated, so unauthorised.
    let request = batch(vec![
        assoc(&handle, &multi),
        assoc(&handle, "syn999999"),
        assoc(&json!("999999"), &multi),
    ]);
    let (status, result) = alice.file_post("/fileHandle/batch", request.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{result}");
    assert_eq!(result["requestedFiles"][0]["fileHandle"]["id"], handle);
    assert_eq!(result["requestedFiles"][1]["fileHandle"]["id"], handle);
    assert_eq!(
        codes(&result),
        [Value::Null, Value::Null, json!("UNAUTHORIZED")]
    );
    // Anyone else needs DOWNLOAD on an entity the handle belongs to.
    let request = batch(vec![
        assoc(&handle, &multi),
        assoc(&bobs_handle, &bobs_file),
        assoc(&bobs_handle, "syn999999"),
        assoc(&bobs_handle, &multi),
    ]);
    let (status, result) = bob.file_post("/fileHandle/batch", request).await;
    assert_eq!(status, StatusCode::CREATED, "{result}");
    assert_eq!(result["requestedFiles"][1]["fileHandle"]["id"], bobs_handle);
    assert_eq!(
        codes(&result),
        [
            json!("UNAUTHORIZED"),
            Value::Null,
            json!("UNAUTHORIZED"),
            json!("UNAUTHORIZED")
        ]
    );

    let too_many: Vec<Value> = (0..101).map(|_| assoc(&handle, &multi)).collect();
    let must_include =
        "Must include either FileHandles or pre-signed URLs or preview pre-signed URLs";
    let cases = [
        (
            json!({"includeFileHandles": true}),
            "requestedFiles is required.",
        ),
        (
            json!({"requestedFiles": [assoc(&handle, &multi)], "includeFileHandles": false,
                   "includePreSignedURLs": false}),
            must_include,
        ),
        // The flags are checked before the size.
        (json!({"requestedFiles": too_many.clone()}), must_include),
        (
            batch(too_many),
            "Request exceeds the maximum number of objects per request: 100",
        ),
        (
            batch(vec![]),
            "FileHandleAssociations is empty.  Must include at least one FileHandleAssociation",
        ),
    ];
    for (request, reason) in cases {
        let answer = alice.file_post("/fileHandle/batch", request).await;
        assert_refused(&answer, StatusCode::BAD_REQUEST, reason);
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_handle_delete_follows_the_server_rules_and_its_object_count() {
    let sim = start(&small_fixture()).await;
    let alice = Api::new(&sim, Some("alice-token"));
    let s3 = sim.stack().s3_client().await;
    let exists = |key: &'static str| {
        let s3 = s3.clone();
        async move {
            s3.head_object()
                .bucket("sim-dest")
                .key(key)
                .send()
                .await
                .is_ok()
        }
    };
    // Unknown: already deleted, 200 with no body.
    assert_eq!(
        alice.file_delete("/fileHandle/999999").await,
        (StatusCode::OK, Value::Null)
    );
    // Used by an entity version: the foreign key refuses it.
    let id = sim.entity_id("P/multi.txt").unwrap();
    let used = alice.bundle(&id).await["fileHandles"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_refused(
        &alice.file_delete(&format!("/fileHandle/{used}")).await,
        StatusCode::CONFLICT,
        &format!(
            "Cannot delete a file handle that has been assigned to an owner object. FileHandle \
             id: {used}"
        ),
    );
    assert!(sim.file_handle(&used).is_some());
    // Someone else's: only the creator (checked before the link).
    let (_, mine) = register(&sim, &alice, "sim-dest", "dest/a.txt", 7001, b"a\n").await;
    let mine = mine["id"].as_str().unwrap().to_owned();
    assert_refused(
        &Api::new(&sim, Some("bob-token"))
            .file_delete(&format!("/fileHandle/{mine}"))
            .await,
        StatusCode::FORBIDDEN,
        &format!(
            "Only the creator of a FileHandle can access it directly by its ID.  FileHandleId = \
             '{mine}', UserId = '102'"
        ),
    );
    // The creator's unused handle goes, and with it its object (no other handle names it).
    assert_eq!(
        alice.file_delete(&format!("/fileHandle/{mine}")).await.0,
        StatusCode::OK
    );
    assert!(sim.file_handle(&mine).is_none());
    assert!(!exists("dest/a.txt").await);
    // Three handles of one object: the first delete leaves it (two others), the second takes
    // it although the third still names it (the server deletes when at most one other does).
    let mut three = Vec::new();
    for _ in 0..3 {
        let (status, handle) = register(&sim, &alice, "sim-dest", "dest/b.txt", 7001, b"b\n").await;
        assert_eq!(status, StatusCode::OK, "{handle}");
        three.push(handle["id"].as_str().unwrap().to_owned());
    }
    alice
        .file_delete(&format!("/fileHandle/{}", three[0]))
        .await;
    assert!(exists("dest/b.txt").await);
    alice
        .file_delete(&format!("/fileHandle/{}", three[1]))
        .await;
    assert!(!exists("dest/b.txt").await);
    assert!(sim.file_handle(&three[2]).is_some());
    // The count ignores case (the keys' collation): two handles of `c.txt` and one of another
    // object, `C.txt`, leave two "others" when one `c.txt` handle goes, so its object stays.
    let mut named = Vec::new();
    for key in ["dest/c.txt", "dest/c.txt", "dest/C.txt"] {
        let (status, handle) = register(&sim, &alice, "sim-dest", key, 7001, b"c\n").await;
        assert_eq!(status, StatusCode::OK, "{handle}");
        named.push(handle["id"].as_str().unwrap().to_owned());
    }
    alice
        .file_delete(&format!("/fileHandle/{}", named[0]))
        .await;
    assert!(exists("dest/c.txt").await);
    // The upload that produced a deleted handle is gone for good: the same copy request starts
    // anew (here because the copy's object went with the handle).
    let file = sim.entity_id("P/multi.txt").unwrap();
    let done = copy_file(&alice, &file, &used, 7001, 5 * MIB).await;
    let copy = done["resultFileHandleId"].as_str().unwrap().to_owned();
    assert_eq!(
        alice.file_delete(&format!("/fileHandle/{copy}")).await.0,
        StatusCode::OK
    );
    let (status, again) = alice
        .start_copy(&file, &used, 7001, 5 * MIB, None, false)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert_ne!(again["uploadId"], done["uploadId"], "{again}");
    assert_eq!(again["state"], "UPLOADING");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_destinations_are_inherited_from_the_nearest_setting() {
    let sim = start(&small_fixture()).await;
    let id = |path: &str| sim.entity_id(&format!("P{path}")).unwrap();
    let external = json!({
        "concreteType": "org.sagebionetworks.repo.model.file.ExternalS3UploadDestination",
        "storageLocationId": 7001, "uploadType": "S3", "bucket": "sim-dest", "baseKey": "dest",
        "stsEnabled": false
    });
    let synapse = json!({
        "concreteType": "org.sagebionetworks.repo.model.file.S3UploadDestination",
        "storageLocationId": 1, "uploadType": "S3"
    });
    // Anyone signed in gets the answer: no permission is checked (carol cannot read P).
    for token in ["alice-token", "carol-token"] {
        let api = Api::new(&sim, Some(token));
        let destination = |node: String| {
            let api = api.clone();
            async move {
                api.file_get(&format!("/entity/{node}/uploadDestination"))
                    .await
            }
        };
        // The folder's own setting (its first location), inherited below it.
        for node in [id("/sub"), id("/sub/inner")] {
            assert_eq!(destination(node).await, (StatusCode::OK, external.clone()));
        }
        // No setting on the way up, or no such entity: Synapse storage.
        let project = sim.project_id("P").unwrap();
        for node in [project, id("/multi.txt"), "syn999999".to_owned()] {
            assert_eq!(destination(node).await, (StatusCode::OK, synapse.clone()));
        }
        assert_refused(
            &destination("abc".to_owned()).await,
            StatusCode::BAD_REQUEST,
            "abc is not a valid Synapse ID.",
        );
    }
    sim.shutdown().await;
}
