//! Auth, profiles, storage locations, bundles, children paging and version listing.

mod common;

use common::{small_fixture, start, Api};
use reqwest::StatusCode;
use serde_json::json;

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
    assert_eq!(
        alice.get("/storageLocation/999").await.0,
        StatusCode::NOT_FOUND
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
    assert_eq!(
        alice.post("/entity/syn999999/bundle2", json!({})).await.0,
        StatusCode::NOT_FOUND
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
    assert!(body["reason"].is_string());
    sim.shutdown().await;
}
