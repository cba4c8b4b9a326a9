//! The shipped sample fixture seeds as documented, and its 101 MiB file copies in two parts at the
//! official client's 100 MiB copy part size.

use reqwest::StatusCode;
use serde_json::json;
use synapse_sim::Fixture;

use crate::common::{copy_file, sample, start, Api, MIB};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_project_seeds_and_its_big_file_copies_in_two_parts() {
    let started = std::time::Instant::now();
    let sim = start(&sample()).await;
    eprintln!("seeded in {:?}", started.elapsed());
    let api = Api::new(&sim, Some("migrator-token"));
    let project = sim.project_id("Sample Project").unwrap();
    assert_eq!(project, "syn1000");

    let batch = sim.entity_id("Sample Project/raw/batch-01").unwrap();
    let (_, first) = api
        .post(
            "/entity/children",
            json!({"parentId": batch, "includeTypes": ["file"]}),
        )
        .await;
    assert_eq!(first["page"].as_array().unwrap().len(), 50);
    assert!(first["nextPageToken"].is_string());

    let shared_a = api
        .bundle(
            &sim.entity_id("Sample Project/analysis/shared-a.txt")
                .unwrap(),
        )
        .await;
    let shared_b = api
        .bundle(&sim.entity_id("Sample Project/shared-b.txt").unwrap())
        .await;
    assert_eq!(
        shared_a["entity"]["dataFileHandleId"],
        shared_b["entity"]["dataFileHandleId"]
    );
    let results = api
        .bundle(
            &sim.entity_id("Sample Project/analysis/results.tsv")
                .unwrap(),
        )
        .await;
    assert_eq!(
        results["annotations"]["annotations"]["tissue"]["value"],
        json!(["liver", "lung"])
    );
    let multi = sim
        .entity_id("Sample Project/raw/multi-version.csv")
        .unwrap();
    assert_eq!(sim.entity(&multi).unwrap().versions.len(), 3);
    let in_dest = api
        .bundle(
            &sim.entity_id("Sample Project/already-migrated.bin")
                .unwrap(),
        )
        .await;
    assert_eq!(in_dest["fileHandles"][0]["storageLocationId"], 7001);
    let link = api
        .bundle(&sim.entity_id("Sample Project/external-link.txt").unwrap())
        .await;
    assert_eq!(
        link["fileHandles"][0]["concreteType"],
        "org.sagebionetworks.repo.model.file.ExternalFileHandle"
    );
    let empty = api
        .bundle(&sim.entity_id("Sample Project/empty.txt").unwrap())
        .await;
    assert_eq!(empty["fileHandles"][0]["contentSize"], 0);
    let odd = api
        .bundle(&sim.entity_id("Sample Project/resume 1.txt").unwrap())
        .await;
    assert_eq!(odd["fileHandles"][0]["fileName"], "résumé #1.txt");
    let (status, location) = api.get("/storageLocation/7001").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(location["createdBy"], 3350001);

    let big_id = sim.entity_id("Sample Project/big-101MiB.bin").unwrap();
    let big = api.bundle(&big_id).await;
    let handle = &big["fileHandles"][0];
    assert_eq!(handle["contentSize"], 101 * MIB);
    let done = copy_file(
        &api,
        &big_id,
        handle["id"].as_str().unwrap(),
        7001,
        100 * MIB,
    )
    .await;
    assert_eq!(done["partsState"], "11");
    let copy = sim
        .file_handle(done["resultFileHandleId"].as_str().unwrap())
        .unwrap();
    assert_eq!(copy.content_md5.as_deref(), handle["contentMd5"].as_str());
    let copied = sim
        .object_md5("migration-destination", copy.key.as_deref().unwrap())
        .await;
    assert_eq!(Some(copied.as_str()), handle["contentMd5"].as_str());
    sim.shutdown().await;
}

/// Seeding holds what Synapse holds: per-version labels, comments and annotations as given, and
/// a clear refusal of what the server never stores (an invalid name, two siblings of one name,
/// a label twice on one entity).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeding_keeps_version_metadata_and_refuses_what_synapse_never_holds() {
    let fixture = |file: serde_json::Value| {
        Fixture::from_json(
            &json!({
                "users": [{"userName": "u", "ownerId": "1", "token": "t"}],
                "storageLocations": [{"storageLocationId": 1, "kind": "synapse", "bucket": "seed-rules"}],
                "projects": [{"name": "P", "owner": "u", "children": [file]}]
            })
            .to_string(),
        )
        .unwrap()
    };
    let text = |t: &str| json!({"content": {"text": t}});
    let sim = start(&fixture(json!({
        "type": "file", "name": "f.txt", "annotations": {"k": ["all"]},
        "versions": [text("one"), text("two")],
        "versionMeta": [{"label": "raw", "comment": "first"}, {"annotations": {"k": ["own"]}}]
    })))
    .await;
    let api = Api::new(&sim, Some("t"));
    let id = sim.entity_id("P/f.txt").unwrap();
    let (_, v1) = api.get(&format!("/entity/{id}/version/1")).await;
    assert_eq!(
        (&v1["versionLabel"], &v1["versionComment"]),
        (&json!("raw"), &json!("first"))
    );
    let (_, v2) = api.get(&format!("/entity/{id}")).await;
    assert_eq!(v2["versionLabel"], "2");
    for (version, value) in [(1, "all"), (2, "own")] {
        let (_, a) = api
            .get(&format!("/entity/{id}/version/{version}/annotations2"))
            .await;
        assert_eq!(a["annotations"]["k"]["value"], json!([value]), "v{version}");
    }
    sim.shutdown().await;

    let stack = crate::common::stack().await;
    for (file, refusal) in [
        (
            json!({"type": "file", "name": "a#b.txt", "versions": [text("x")]}),
            "Invalid Name",
        ),
        (
            json!({"type": "folder", "name": "d", "children": [
                {"type": "file", "name": "x", "versions": [text("1")]},
                {"type": "file", "name": "x", "versions": [text("2")]}]}),
            "two entities named \"x\"",
        ),
        (
            json!({"type": "file", "name": "l.txt", "versions": [text("1"), text("2")],
                   "versionMeta": [{"label": "2"}]}),
            "uses the version label 2 twice",
        ),
    ] {
        let config = synapse_sim::SimConfig::new(stack.sdk_config().await);
        let error = synapse_sim::Simulator::start(config, &fixture(file))
            .await
            .err()
            .expect("seeding refuses the fixture");
        assert!(error.to_string().contains(refusal), "{error}");
    }
    drop(stack);
}
