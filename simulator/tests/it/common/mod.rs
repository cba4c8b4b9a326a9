//! Shared by the simulator's integration tests: a local AWS stack and a simulator per test (both
//! stopped by the test), a tiny JSON client and the full multipart-copy dance.

use std::ops::Deref;
use std::time::Duration;

use md5::{Digest, Md5};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use synapse_sim::{Fixture, RunningSim, SimConfig, Simulator, ThrottleConfig};
use synmigrate_testkit::{object_bytes, AwsStack};

pub const MIB: u64 = 1024 * 1024;
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// A simulator over its own local AWS stack; `shutdown` (or drop) stops both.
pub struct TestSim {
    sim: RunningSim,
    stack: AwsStack,
}

impl Deref for TestSim {
    type Target = RunningSim;

    fn deref(&self) -> &RunningSim {
        &self.sim
    }
}

impl TestSim {
    pub fn stack(&self) -> &AwsStack {
        &self.stack
    }

    pub async fn shutdown(self) {
        self.sim.shutdown().await;
        drop(self.stack);
    }

    /// MD5 hex of an S3 object's bytes.
    pub async fn object_md5(&self, bucket: &str, key: &str) -> String {
        let bytes = object_bytes(&self.stack.s3_client().await, bucket, key)
            .await
            .expect("object exists");
        hex::encode(Md5::digest(&bytes))
    }
}

/// A local AWS stack for this test (started off the async runtime: it blocks while moto starts).
pub async fn stack() -> AwsStack {
    tokio::task::spawn_blocking(AwsStack::start)
        .await
        .expect("stack thread")
        .expect("local AWS stack starts")
}

/// A simulator over `fixture` with the throttle off (tests that want it turn it on).
pub async fn start(fixture: &Fixture) -> TestSim {
    start_with(fixture, |_| {}).await
}

pub async fn start_with(fixture: &Fixture, tweak: impl FnOnce(&mut SimConfig)) -> TestSim {
    let stack = stack().await;
    let mut config = SimConfig::new(stack.sdk_config().await);
    config.throttle = ThrottleConfig::disabled();
    tweak(&mut config);
    let sim = tokio::time::timeout(TIMEOUT, Simulator::start(config, fixture))
        .await
        .expect("seeding in time")
        .expect("simulator starts");
    TestSim { sim, stack }
}

/// The shipped sample project (`fixtures/sample-project.json`).
pub fn sample() -> Fixture {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/sample-project.json"
    );
    Fixture::from_file(std::path::Path::new(path)).expect("sample fixture parses")
}

/// Users: alice (owner, id 101), bob (READ on the project, id 102), carol (nothing, id 103).
/// Locations: 1 Synapse storage; 7001 alice's destination (base key `dest`); 7002 bob's;
/// 7003 alice's in another region; 7004 alice's, STS-enabled (base key `sts`). Files cover every
/// copy refusal.
pub fn small_fixture() -> Fixture {
    let batch: Vec<Value> = (0..60)
        .map(|i| {
            json!({"type": "file", "name": format!("f{i:02}.txt"),
                   "versions": [{"content": {"text": format!("file {i}\n")}}]})
        })
        .collect();
    Fixture::from_json(
        &json!({
            "users": [
                {"userName": "alice", "ownerId": "101", "token": "alice-token"},
                {"userName": "bob", "ownerId": "102", "token": "bob-token"},
                {"userName": "carol", "ownerId": "103", "token": "carol-token"}
            ],
            "storageLocations": [
                {"storageLocationId": 1, "kind": "synapse", "bucket": "sim-synapse"},
                {"storageLocationId": 7001, "kind": "externalS3", "bucket": "sim-dest",
                 "baseKey": "dest", "createdBy": "alice"},
                {"storageLocationId": 7002, "kind": "externalS3", "bucket": "sim-bob",
                 "createdBy": "bob"},
                {"storageLocationId": 7003, "kind": "externalS3", "bucket": "sim-eu",
                 "createdBy": "alice", "region": "eu-west-1"},
                {"storageLocationId": 7004, "kind": "externalS3", "bucket": "sim-sts",
                 "baseKey": "sts", "stsEnabled": true, "createdBy": "alice"}
            ],
            "fileHandles": {"same": {"content": {"text": "identical bytes\n"}, "createdBy": "alice"}},
            "projects": [{
                "name": "P", "owner": "alice", "acl": {"bob": ["READ"]},
                "children": [
                    {"type": "folder", "name": "many", "children": batch},
                    {"type": "folder", "name": "sub", "uploadLocations": [7001, 7003], "children": [
                        {"type": "folder", "name": "inner", "children": []}
                    ]},
                    {"type": "file", "name": "multi.txt", "versions": [
                        {"content": {"text": "one\n"}}, {"content": {"text": "two\n"}},
                        {"content": {"text": "three\n"}}
                    ], "annotations": {"k": ["v"]}},
                    {"type": "file", "name": "big.bin", "versions": [
                        {"content": {"size": 12 * MIB + 12345, "seed": 77},
                         "contentType": "application/octet-stream"}
                    ]},
                    {"type": "file", "name": "copy1.txt", "versions": [{"handle": "same"}]},
                    {"type": "file", "name": "copy2.txt", "versions": [{"handle": "same"}]},
                    {"type": "file", "name": "in-dest.bin", "versions": [
                        {"content": {"size": 1000, "seed": 1}, "storageLocationId": 7001}
                    ]},
                    {"type": "file", "name": "link.txt", "versions": [
                        {"kind": "external", "externalUrl": "https://example.org/x"}
                    ]},
                    {"type": "file", "name": "gcs.bin", "versions": [
                        {"kind": "googleCloud", "content": {"size": 10, "seed": 2}}
                    ]},
                    {"type": "file", "name": "empty.txt", "versions": [{"content": {"text": ""}}]},
                    {"type": "file", "name": "no-md5.txt", "versions": [
                        {"content": {"text": "x"}, "omitMd5": true}
                    ]},
                    {"type": "file", "name": "huge.bin", "versions": [
                        {"content": {"text": "claims 60 GiB"}, "declaredSize": 60u64 * 1024 * MIB}
                    ]},
                    {"type": "file", "name": "bad name 1.txt", "versions": [
                        {"content": {"text": "bad name\n"}, "fileName": "bad#name&[1].txt"}
                    ]},
                    {"type": "file", "name": "locked.txt", "versions": [{"content": {"text": "l\n"}}],
                     "acl": {"bob": ["READ"]}},
                    {"type": "file", "name": "bob-can-copy.txt",
                     "versions": [{"content": {"text": "b\n"}}],
                     "acl": {"bob": ["READ", "DOWNLOAD", "UPDATE"]}},
                    {"type": "file", "name": "sized-link.txt", "versions": [
                        {"kind": "external", "externalUrl": "https://example.org/y",
                         "content": {"text": "has a size and an MD5\n"}}
                    ]}
                ]
            }]
        })
        .to_string(),
    )
    .expect("small fixture parses")
}

/// Asserts a refusal: its status and the server's error body with exactly `reason`.
pub fn assert_refused(answer: &(StatusCode, Value), status: StatusCode, reason: &str) {
    let (actual, body) = answer;
    assert_eq!(*actual, status, "{body}");
    assert_eq!(
        body["concreteType"], "org.sagebionetworks.repo.model.ErrorResponse",
        "{body}"
    );
    assert_eq!(body["reason"], reason, "{body}");
}

/// Puts `bytes` in S3 and registers them with /externalFileHandle/s3; returns (status, body).
pub async fn register(
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

/// A bearer-token JSON client for one user.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    pub repo: String,
    pub file: String,
    token: Option<String>,
}

impl Api {
    pub fn new(sim: &RunningSim, token: Option<&str>) -> Self {
        Self {
            http: synmigrate_testkit::http_client_builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
            repo: sim.repo_endpoint(),
            file: sim.file_endpoint(),
            token: token.map(str::to_owned),
        }
    }

    /// Sends a request; returns the status and the JSON body (`Null` when empty).
    pub async fn call(
        &self,
        method: Method,
        url: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let text = response.text().await.expect("body");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON body, got {text}"))
        };
        (status, value)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, &format!("{}{path}", self.repo), None)
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, &format!("{}{path}", self.repo), Some(body))
            .await
    }

    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, &format!("{}{path}", self.repo), Some(body))
            .await
    }

    pub async fn file_get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, &format!("{}{path}", self.file), None)
            .await
    }

    pub async fn file_post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, &format!("{}{path}", self.file), Some(body))
            .await
    }

    pub async fn file_put(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::PUT, &format!("{}{path}", self.file), None)
            .await
    }

    pub async fn file_delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, &format!("{}{path}", self.file), None)
            .await
    }

    /// The latest entity JSON and its file handle (if any).
    pub async fn bundle(&self, id: &str) -> Value {
        let (status, bundle) = self
            .post(
                &format!("/entity/{id}/bundle2"),
                json!({"includeEntity": true, "includeAnnotations": true,
                       "includeFileHandles": true, "includeRestrictionInformation": true}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{bundle}");
        bundle
    }

    /// POST /file/multipart for a copy of `entity`'s latest handle into `destination`.
    pub async fn start_copy(
        &self,
        entity: &str,
        handle: &str,
        destination: i64,
        part_size: u64,
        file_name: Option<&str>,
        force_restart: bool,
    ) -> (StatusCode, Value) {
        self.file_post(
            &format!("/file/multipart?forceRestart={force_restart}"),
            copy_request(entity, handle, destination, part_size, file_name),
        )
        .await
    }

    /// Starts a copy of `handle` (file handle JSON) of `entity` under its own name, no restart.
    pub async fn copy_handle(
        &self,
        entity: &str,
        handle: &Value,
        destination: i64,
        part_size: u64,
    ) -> (StatusCode, Value) {
        let id = handle["id"].as_str().expect("file handle id");
        self.start_copy(entity, id, destination, part_size, None, false)
            .await
    }

    /// Presigned UploadPartCopy URLs for `parts` of `upload`.
    pub async fn presign(&self, upload: &str, parts: &[u32]) -> (StatusCode, Value) {
        self.file_post(
            &format!("/file/multipart/{upload}/presigned/url/batch"),
            json!({"uploadId": upload, "partNumbers": parts}),
        )
        .await
    }

    /// Records part `part` of `upload` as copied, with the ETag S3 returned.
    pub async fn add_part(&self, upload: &str, part: u64, md5_hex: &str) -> (StatusCode, Value) {
        self.file_put(&format!(
            "/file/multipart/{upload}/add/{part}?partMD5Hex={md5_hex}"
        ))
        .await
    }

    pub async fn complete(&self, upload: &str) -> (StatusCode, Value) {
        self.file_put(&format!("/file/multipart/{upload}/complete"))
            .await
    }
}

/// The body the official client sends to start a copy.
pub fn copy_request(
    entity: &str,
    handle: &str,
    destination: i64,
    part_size: u64,
    file_name: Option<&str>,
) -> Value {
    json!({
        "concreteType": "org.sagebionetworks.repo.model.file.MultipartUploadCopyRequest",
        "fileName": file_name, "generatePreview": false, "partSizeBytes": part_size,
        "storageLocationId": destination,
        "sourceFileHandleAssociation": {"fileHandleId": handle, "associateObjectId": entity,
                                        "associateObjectType": "FileEntity"}
    })
}

/// The `<ETag>` of an S3 CopyPartResult, without quotes.
pub fn copy_part_etag(xml: &str) -> String {
    let start = xml.find("<ETag>").expect("ETag in CopyPartResult") + "<ETag>".len();
    let end = xml[start..].find("</ETag>").expect("ETag closes") + start;
    xml[start..end].replace("&quot;", "").replace('"', "")
}

/// PUTs one presigned part URL with its signed headers; returns (status, body).
pub async fn put_part(part: &Value) -> (StatusCode, String) {
    let http = synmigrate_testkit::http_client_builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client");
    let mut request = http.put(part["uploadPresignedUrl"].as_str().expect("url"));
    for (name, value) in part["signedHeaders"].as_object().expect("headers") {
        request = request.header(name, value.as_str().expect("header value"));
    }
    let response = request.send().await.expect("PUT part");
    let status = response.status();
    (status, response.text().await.expect("body"))
}

/// Start, presign, copy each part, add it and complete; returns the final status JSON.
pub async fn copy_file(
    api: &Api,
    entity: &str,
    handle: &str,
    destination: i64,
    part_size: u64,
) -> Value {
    let (status, upload) = api
        .start_copy(entity, handle, destination, part_size, None, false)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{upload}");
    finish_copy(api, &upload).await
}

/// Copies every part still `0` in `upload`'s partsState, then completes.
pub async fn finish_copy(api: &Api, upload: &Value) -> Value {
    let id = upload["uploadId"].as_str().expect("uploadId");
    let missing: Vec<u32> = upload["partsState"]
        .as_str()
        .expect("partsState")
        .chars()
        .enumerate()
        .filter(|(_, c)| *c == '0')
        .map(|(i, _)| i as u32 + 1)
        .collect();
    if !missing.is_empty() {
        let (status, urls) = api.presign(id, &missing).await;
        assert_eq!(status, StatusCode::CREATED, "{urls}");
        for part in urls["partPresignedUrls"].as_array().expect("urls") {
            let (status, body) = put_part(part).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let n = part["partNumber"].as_u64().expect("partNumber");
            let (status, added) = api.add_part(id, n, &copy_part_etag(&body)).await;
            assert_eq!(status, StatusCode::CREATED, "{added}");
            assert_eq!(added["addPartState"], "ADD_SUCCESS");
        }
    }
    let (status, done) = api.complete(id).await;
    assert_eq!(status, StatusCode::CREATED, "{done}");
    assert_eq!(done["state"], "COMPLETED");
    done
}

/// The latest file handle of `path` in the small fixture: (entity id, handle JSON).
pub async fn file_at(api: &Api, sim: &RunningSim, path: &str) -> (String, Value) {
    let id = sim
        .entity_id(path)
        .unwrap_or_else(|| panic!("{path} seeded"));
    let bundle = api.bundle(&id).await;
    (id, bundle["fileHandles"][0].clone())
}
