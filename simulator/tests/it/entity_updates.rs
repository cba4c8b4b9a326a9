//! Entity PUT (etags, permissions, new-version rules), the version handle swap and annotations
//! (the file-service endpoints are tested in `api_basics.rs`).

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::{assert_refused, register, small_fixture, start, Api, TestSim};

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
    assert_eq!(status, StatusCode::OK, "{handle}");
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

    // newVersion=true always makes one (with a label no version has: "4" is taken).
    let mut next = v4.clone();
    next["versionLabel"] = json!("5");
    let (status, v5) = alice
        .put(&format!("/entity/{id}?newVersion=true"), next)
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

/// Asserts a refusal whose reason contains `part` (for texts that quote a database error).
fn assert_refused_containing(answer: &(StatusCode, Value), status: StatusCode, part: &str) {
    let (actual, body) = answer;
    assert_eq!(*actual, status, "{body}");
    let reason = body["reason"].as_str().unwrap_or_default();
    assert!(reason.contains(part), "{part:?} not in {body}");
}

/// Every refusal of `PUT /entity/{id}`, in the server's order: a request that breaks two rules
/// gets the earlier one's answer (every 400/403/404 before the 412 of a stale etag).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entity_put_refusals_follow_the_server_rules_and_order() {
    let sim = start(&small_fixture()).await;
    let alice = Api::new(&sim, Some("alice-token"));
    let bob = Api::new(&sim, Some("bob-token"));
    let carol = Api::new(&sim, Some("carol-token"));
    let id = sim.entity_id("P/multi.txt").unwrap();
    let (_, entity) = alice.get(&format!("/entity/{id}")).await;
    let url = format!("/entity/{id}");
    let with = |field: &str, value: Value| {
        let mut body = entity.clone();
        body[field] = value;
        body
    };
    let stale = |mut body: Value| {
        body["etag"] = json!("stale");
        body
    };
    let without = |field: &str| {
        let mut body = entity.clone();
        body.as_object_mut().unwrap().remove(field);
        body
    };
    let object = format!(
        "Object: {id} was updated since you last fetched it, retrieve it again and re-apply the update"
    );
    let cases: Vec<(&str, &Api, Value, StatusCode, String)> = vec![
        ("no id", &alice, without("id"), StatusCode::BAD_REQUEST,
         "Updated Entity cannot have a null id".into()),
        ("name over 256", &carol, stale(with("name", json!("a".repeat(257)))),
         StatusCode::BAD_REQUEST, "Name must be 256 characters or less".into()),
        ("no parent", &carol, without("parentId"), StatusCode::BAD_REQUEST,
         "Entity type: org.sagebionetworks.repo.model.FileEntity cannot have a parent of type: null".into()),
        ("unknown entity", &alice, with("id", json!("syn999999")), StatusCode::NOT_FOUND,
         "Entity syn999999 does not exist".into()),
        ("no file handle", &carol, without("dataFileHandleId"), StatusCode::BAD_REQUEST,
         "FileEntity.dataFileHandleId cannot be null".into()),
        ("no READ", &carol, stale(entity.clone()), StatusCode::FORBIDDEN,
         "You lack READ access to the requested entity.".into()),
        ("blank name", &bob, stale(with("name", json!("   "))), StatusCode::BAD_REQUEST,
         "Name cannot be only whitespace or empty string".into()),
        ("invalid name", &bob, stale(with("name", json!("a#b.txt"))), StatusCode::BAD_REQUEST,
         "Invalid Name: 'a#b.txt'. Names may only contain: letters, numbers, spaces, \
          underscores, hyphens, periods, plus signs, apostrophes, and parentheses".into()),
        ("no etag", &bob, without("etag"), StatusCode::BAD_REQUEST,
         "The eTag of the node is required.".into()),
        ("no UPDATE", &bob, stale(entity.clone()), StatusCode::FORBIDDEN,
         "You lack UPDATE access to the requested entity.".into()),
        ("unknown handle", &alice, stale(with("dataFileHandleId", json!("999999"))),
         StatusCode::NOT_FOUND, "The FileHandle does not exist: 999999".into()),
        ("stale etag", &alice, stale(entity.clone()), StatusCode::PRECONDITION_FAILED, object),
    ];
    for (case, api, body, status, reason) in cases {
        let answer = api.put(&url, body).await;
        assert_eq!(answer.0, status, "{case}: {}", answer.1);
        assert_eq!(answer.1["reason"], reason.as_str(), "{case}");
    }
    // A handle another user created: 403, also before the etag check.
    let bobs = registered_id(&sim, &bob, "sim-bob", "b/x.txt", 7002, b"x\n").await;
    let answer = alice
        .put(&url, stale(with("dataFileHandleId", json!(bobs))))
        .await;
    assert_refused(
        &answer,
        StatusCode::FORBIDDEN,
        &format!(
            "Only the creator of a FileHandle can access it directly by its ID.  \
             FileHandleId = '{bobs}', UserId = '101'"
        ),
    );
    // After the etag: the type cannot change, a sibling's name is taken, comments are short.
    let answer = alice
        .put(
            &url,
            with(
                "concreteType",
                json!("org.sagebionetworks.repo.model.Folder"),
            ),
        )
        .await;
    assert_refused_containing(
        &answer,
        StatusCode::BAD_REQUEST,
        "cannot be changed to entityType",
    );
    let answer = alice.put(&url, with("name", json!("big.bin"))).await;
    assert_refused_containing(
        &answer,
        StatusCode::CONFLICT,
        "An entity with the name: big.bin already exists",
    );
    let answer = alice
        .put(&url, with("versionComment", json!("c".repeat(257))))
        .await;
    assert_refused(
        &answer,
        StatusCode::BAD_REQUEST,
        "Version comment length exceeds 256.",
    );
    // None of the refused requests wrote anything.
    assert_eq!(
        Some(sim.entity(&id).unwrap().entity.etag),
        entity["etag"].as_str().map(|e| Some(e.to_owned()))
    );
    sim.shutdown().await;
}

/// Version labels are unique per entity (`UNIQUE_REVISION_LABEL`): a new version may not reuse
/// any version's label (400), an in-place update neither (500, the unwrapped database error).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_labels_are_unique_per_entity() {
    let sim = start(&small_fixture()).await;
    let alice = Api::new(&sim, Some("alice-token"));
    let id = sim.entity_id("P/multi.txt").unwrap();
    let (_, entity) = alice.get(&format!("/entity/{id}")).await;
    let new_version = format!("/entity/{id}?newVersion=true");
    // The label as read is the current version's: refused, as is an older version's.
    for used in ["3", "1"] {
        let mut body = entity.clone();
        body["versionLabel"] = json!(used);
        let answer = alice.put(&new_version, body).await;
        assert_refused_containing(&answer, StatusCode::BAD_REQUEST, "UNIQUE_REVISION_LABEL");
        assert_refused_containing(&answer, StatusCode::BAD_REQUEST, &format!("-{used}'"));
    }
    // In place (no new version), a label another version has is a server error; no label at
    // all means "1", which version 1 has.
    let mut body = entity.clone();
    body["versionLabel"] = json!("2");
    let answer = alice.put(&format!("/entity/{id}"), body).await;
    assert_refused_containing(
        &answer,
        StatusCode::INTERNAL_SERVER_ERROR,
        "UNIQUE_REVISION_LABEL",
    );
    let mut body = entity.clone();
    body.as_object_mut().unwrap().remove("versionLabel");
    let answer = alice.put(&format!("/entity/{id}"), body).await;
    assert_refused_containing(&answer, StatusCode::INTERNAL_SERVER_ERROR, "-1'");
    assert_eq!(sim.entity(&id).unwrap().versions.len(), 3);
    sim.shutdown().await;
}

/// What the server writes: a new version copies the current one's annotations and takes the
/// body's label and comment; auto-versioning resets both; annotations live per version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_versions_take_label_comment_and_annotations_like_the_server() {
    let sim = start(&small_fixture()).await;
    let alice = Api::new(&sim, Some("alice-token"));
    let id = sim.entity_id("P/multi.txt").unwrap();
    let (_, entity) = alice.get(&format!("/entity/{id}")).await;

    // The official client's new version: label "4", a comment, newVersion in any case.
    let mut body = entity.clone();
    body["versionLabel"] = json!("4");
    body["versionComment"] = json!("moved");
    let (status, v4) = alice
        .put(&format!("/entity/{id}?newVersion=TRUE"), body)
        .await;
    assert_eq!(status, StatusCode::OK, "{v4}");
    assert_eq!(
        (&v4["versionNumber"], &v4["versionLabel"]),
        (&json!(4), &json!("4"))
    );
    assert_eq!(v4["versionComment"], "moved");
    let (_, annotations) = alice
        .get(&format!("/entity/{id}/version/4/annotations2"))
        .await;
    assert_eq!(annotations["annotations"]["k"]["value"], json!(["v"]));
    assert_eq!(annotations["etag"], "00000000-0000-0000-0000-000000000000");

    // No label: the version number. Annotations changed now belong to the latest version only.
    let mut body = v4.clone();
    body.as_object_mut().unwrap().remove("versionLabel");
    let (status, v5) = alice
        .put(&format!("/entity/{id}?newVersion=true"), body)
        .await;
    assert_eq!(status, StatusCode::OK, "{v5}");
    assert_eq!(v5["versionLabel"], "5");
    let (_, mut current) = alice.get(&format!("/entity/{id}/annotations2")).await;
    current["annotations"] = json!({"k": {"type": "STRING", "value": ["w"]}});
    let (status, _) = alice
        .put(&format!("/entity/{id}/annotations2"), current)
        .await;
    assert_eq!(status, StatusCode::OK);
    for (version, value) in [(1, "v"), (4, "v"), (5, "w")] {
        let (_, a) = alice
            .get(&format!("/entity/{id}/version/{version}/annotations2"))
            .await;
        assert_eq!(
            a["annotations"]["k"]["value"],
            json!([value]),
            "version {version}"
        );
    }

    // A handle with another MD5 and no newVersion: a new version anyway, label and comment reset.
    let (_, latest) = alice.get(&format!("/entity/{id}")).await;
    let other = in_destination(&sim, &alice, "dest/l/other.txt", b"other\n").await;
    let mut body = latest.clone();
    body["dataFileHandleId"] = json!(other);
    body["versionLabel"] = json!("mine");
    body["versionComment"] = json!("mine");
    let (status, v6) = alice.put(&format!("/entity/{id}"), body).await;
    assert_eq!(status, StatusCode::OK, "{v6}");
    assert_eq!(
        (&v6["versionNumber"], &v6["versionLabel"]),
        (&json!(6), &json!("6"))
    );
    assert!(v6.get("versionComment").is_none(), "{v6}");
    sim.shutdown().await;
}

/// The handle swap's refusals in the server's order, and the no-op of swapping to the handle
/// already there (no etag change).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_handle_swap_refusals_follow_the_server() {
    let sim = start(&small_fixture()).await;
    let alice = Api::new(&sim, Some("alice-token"));
    let bob = Api::new(&sim, Some("bob-token"));
    let id = sim.entity_id("P/multi.txt").unwrap();
    let (_, v1) = alice.get(&format!("/entity/{id}/version/1")).await;
    let old = v1["dataFileHandleId"].as_str().unwrap().to_owned();
    let differs = in_destination(&sim, &alice, "dest/w/uno.txt", b"uno\n").await;
    let bobs = registered_id(&sim, &bob, "sim-bob", "b/w.txt", 7002, b"one\n").await;
    let url = format!("/entity/{id}/version/1/filehandle");
    let swap = |old: &str, new: &str| json!({"oldFileHandleId": old, "newFileHandleId": new});

    assert_refused(
        &alice.put(&url, json!({"newFileHandleId": differs})).await,
        StatusCode::BAD_REQUEST,
        "The updateRequest.oldFileHandleId is required.",
    );
    assert_refused(
        &alice
            .put(
                &format!("/entity/{id}/version/9/filehandle"),
                swap(&old, &differs),
            )
            .await,
        StatusCode::NOT_FOUND,
        &format!("A file entity with id {id} and revision 9 does not exist."),
    );
    assert_refused(
        &bob.put(&url, swap("424242", &differs)).await,
        StatusCode::FORBIDDEN,
        "You lack UPDATE access to the requested entity.",
    );
    // Someone else's new handle is refused before the old handle is compared.
    assert_refused(
        &alice.put(&url, swap("424242", &bobs)).await,
        StatusCode::FORBIDDEN,
        &format!(
            "Only the creator of a FileHandle can access it directly by its ID.  \
             FileHandleId = '{bobs}', UserId = '101'"
        ),
    );
    assert_refused(
        &alice.put(&url, swap("424242", &differs)).await,
        StatusCode::PRECONDITION_FAILED,
        "The id of the provided file handle id (request.oldFileHandleId: 424242) does not match \
         the current file handle id.",
    );
    assert_refused(
        &alice.put(&url, swap(&old, &differs)).await,
        StatusCode::PRECONDITION_FAILED,
        "The MD5 of the new file handle does not match the MD5 of the current file handle, a new \
         version must be created.",
    );
    let etag = sim.entity(&id).unwrap().entity.etag;
    // The seeded handle is alice's own: swapping it for itself is a no-op.
    let (status, _) = alice.put(&url, swap(&old, &old)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sim.entity(&id).unwrap().entity.etag, etag);
    sim.shutdown().await;
}

/// Annotations need an id and a non-empty etag (400) and UPDATE (403).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotation_updates_need_id_etag_and_update() {
    let sim = start(&small_fixture()).await;
    let alice = Api::new(&sim, Some("alice-token"));
    let id = sim.entity_id("P/multi.txt").unwrap();
    let url = format!("/entity/{id}/annotations2");
    let (_, current) = alice.get(&url).await;
    let mut no_id = current.clone();
    no_id.as_object_mut().unwrap().remove("id");
    assert_refused(
        &alice.put(&url, no_id).await,
        StatusCode::BAD_REQUEST,
        "Annotations must have a non-null id",
    );
    let mut empty = current.clone();
    empty["etag"] = json!("");
    assert_refused(
        &alice.put(&url, empty).await,
        StatusCode::BAD_REQUEST,
        "etag is required and must not be the empty string.",
    );
    assert_refused(
        &Api::new(&sim, Some("bob-token")).put(&url, current).await,
        StatusCode::FORBIDDEN,
        "You lack UPDATE access to the requested entity.",
    );
    sim.shutdown().await;
}

/// Children: `includeTypes` required and not empty, the token's limit honoured up to 50, its
/// format checked, entities the caller cannot read left out, no parent = the projects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_paging_follows_the_server() {
    let sim = start(&small_fixture()).await;
    let alice = Api::new(&sim, Some("alice-token"));
    let many = sim.entity_id("P/many").unwrap();
    let (_, folder) = alice.get(&format!("/entity/{many}")).await;
    let project = folder["parentId"].as_str().unwrap().to_owned();
    let list = |parent: &str, extra: Value| {
        let mut body = json!({"parentId": parent, "includeTypes": ["file", "folder"]});
        let fields = extra.as_object().unwrap().clone();
        body.as_object_mut().unwrap().extend(fields);
        body
    };
    assert_refused(
        &alice
            .post("/entity/children", json!({"parentId": project}))
            .await,
        StatusCode::BAD_REQUEST,
        "EntityChildrenRequest.includeTypes is required.",
    );
    assert_refused(
        &alice
            .post(
                "/entity/children",
                list(&project, json!({"includeTypes": []})),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "EntityChildrenRequest.includeTypes must include at least one type",
    );
    for (token, reason) in [
        ("51a0", "Limit must not exceed: 50"),
        ("10", "Unknow token format: 10"),
        ("xa0", "For input string: \"x\""),
    ] {
        let answer = alice
            .post(
                "/entity/children",
                list(&many, json!({"nextPageToken": token})),
            )
            .await;
        assert_refused(&answer, StatusCode::BAD_REQUEST, reason);
    }
    let (status, page) = alice
        .post(
            "/entity/children",
            list(&many, json!({"nextPageToken": "10a20"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["page"].as_array().unwrap().len(), 10);
    assert_eq!(page["page"][0]["name"], "f20.txt");
    assert_eq!(page["nextPageToken"], "10a30");
    // No parent: the projects the caller can read (carol: none).
    let (_, projects) = alice.post("/entity/children", json!({})).await;
    assert_eq!(projects["page"][0]["id"], project.as_str(), "{projects}");
    let (_, projects) = Api::new(&sim, Some("carol-token"))
        .post("/entity/children", json!({}))
        .await;
    assert_eq!(projects["page"], json!([]), "{projects}");
    sim.shutdown().await;
}

/// Version listing: offset and limit bounds, the total as the server estimates it; version
/// bundles: the 404 of a missing version, handles only with DOWNLOAD, a version's annotations
/// with the zero etag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_listing_and_bundles_follow_the_server() {
    let sim = start(&small_fixture()).await;
    let alice = Api::new(&sim, Some("alice-token"));
    let id = sim.entity_id("P/multi.txt").unwrap();
    for (query, reason) in [
        ("offset=-1", "pagination offset must be 0 or greater"),
        ("limit=0", "pagination limit must be 1 or greater"),
    ] {
        let answer = alice.get(&format!("/entity/{id}/version?{query}")).await;
        assert_refused(&answer, StatusCode::BAD_REQUEST, reason);
    }
    // A full page says "at least one more"; a short one gives the exact count.
    for (query, total) in [("limit=2", 3), ("limit=3", 4), ("offset=2&limit=2", 3)] {
        let (_, page) = alice.get(&format!("/entity/{id}/version?{query}")).await;
        assert_eq!(page["totalNumberOfResults"], total, "{query}: {page}");
    }
    let request = json!({"includeEntity": true, "includeAnnotations": true,
                         "includeFileHandles": true});
    assert_refused(
        &alice
            .post(&format!("/entity/{id}/version/9/bundle2"), request.clone())
            .await,
        StatusCode::NOT_FOUND,
        &format!("Cannot find a node with id {id} and version 9"),
    );
    let (_, v1) = alice
        .post(&format!("/entity/{id}/version/1/bundle2"), request.clone())
        .await;
    assert_eq!(v1["entity"]["versionNumber"], 1);
    assert_eq!(
        v1["annotations"]["etag"],
        "00000000-0000-0000-0000-000000000000"
    );
    assert_eq!(v1["fileHandles"].as_array().unwrap().len(), 1);
    // Bob may read P but not download: no handles in his bundle.
    let (status, bobs) = Api::new(&sim, Some("bob-token"))
        .post(&format!("/entity/{id}/bundle2"), request)
        .await;
    assert_eq!(status, StatusCode::OK, "{bobs}");
    assert_eq!(bobs["fileHandles"], json!([]));
    sim.shutdown().await;
}

/// The version number and `modifiedOn` the children listing shows for file `id` under `parent`.
async fn listed(api: &Api, parent: &str, id: &str) -> (Value, Value) {
    let body = json!({"parentId": parent, "includeTypes": ["file"]});
    let (status, page) = api.post("/entity/children", body).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let header = page["page"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["id"] == id)
        .unwrap_or_else(|| panic!("{id} is not listed: {page}"))
        .clone();
    (
        header["versionNumber"].clone(),
        header["modifiedOn"].clone(),
    )
}

/// The children listing shows each file's current version with that version's `modifiedOn`
/// (`NodeDAOImpl.ENTITY_HEADER_ROWMAPPER` reads the current revision's MODIFIED_ON), and every
/// change moves it (`NodeDAOImpl.touch` stamps the current revision): a swap of an older
/// version's handle as much as a new version. A re-run trusts this to skip unchanged files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_show_the_current_versions_modified_on_and_every_change_moves_it() {
    let sim = start(&small_fixture()).await;
    let alice = Api::new(&sim, Some("alice-token"));
    let id = sim.entity_id("P/multi.txt").unwrap();
    let (_, entity) = alice.get(&format!("/entity/{id}")).await;
    let parent = entity["parentId"].as_str().unwrap().to_owned();
    let (version, first) = listed(&alice, &parent, &id).await;
    assert_eq!(version, entity["versionNumber"]);
    assert_eq!(first, entity["modifiedOn"]);
    assert!(first.is_string(), "{first}");

    // An older version's handle swapped: same version listed, a later modifiedOn.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let (_, v1) = alice.get(&format!("/entity/{id}/version/1")).await;
    let same = in_destination(&sim, &alice, "dest/m/one.txt", b"one\n").await;
    let swap = json!({"oldFileHandleId": v1["dataFileHandleId"], "newFileHandleId": same});
    let (status, body) = alice
        .put(&format!("/entity/{id}/version/1/filehandle"), swap)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (after_version, after_swap) = listed(&alice, &parent, &id).await;
    assert_eq!(after_version, version);
    assert_ne!(after_swap, first);

    // New bytes: a new version, listed with its own modifiedOn.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let (_, entity) = alice.get(&format!("/entity/{id}")).await;
    let other = in_destination(&sim, &alice, "dest/m/new.txt", b"new bytes\n").await;
    let (status, body) = put_with_handle(&alice, &id, &entity, &other).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (new_version, after_put) = listed(&alice, &parent, &id).await;
    assert_eq!(new_version, json!(version.as_i64().unwrap() + 1));
    assert_eq!(after_put, body["modifiedOn"]);
    assert_ne!(after_put, after_swap);
    sim.shutdown().await;
}
