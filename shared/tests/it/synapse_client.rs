//! The Synapse client against the real simulator (in process) backed by moto S3: every call the
//! migration makes round-trips, retries recover from throttling and injected 5xx, a stale etag is
//! handled, and a multi-part server-side copy keeps the bytes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use md5::{Digest, Md5};
use synapse_model::{
    add_part_state, concrete, entity_type, upload_state, AnnotationValue, Annotations2,
    BatchFileRequest, EntityBundleRequest, FileHandle, FileHandleAssociation,
    FileHandleVersionUpdate, MultipartUploadCopyRequest, S3FileHandleCreate,
};
use synapse_sim::{
    content_bytes, Burst, Content, FaultConfig, Fixture, RunningSim, ThrottleConfig,
};
use synmigrate::synapse::{ClientConfig, RateLimiter, SynapseClient, SynapseError};

use crate::common::{bounded, client_config, fixture_from, handle_bytes, numbered_files, SimEnv};

const TOKEN: &str = "migrator-token";
const OTHER_TOKEN: &str = "other-token";
const PROJECT: &str = "Client Project";
const DEST: i64 = 7001;
const MIB: u64 = 1024 * 1024;
/// The big file spans three 5 MiB parts, the last one short.
const BIG: Content = Content::Generated {
    size: 12 * MIB + 12345,
    seed: 42,
};
const MANY_FILES: usize = 55;
/// Upper bound for any single test, so that a hang fails instead of blocking the run.
const TEST_TIMEOUT: Duration = Duration::from_secs(180);

fn fixture() -> Fixture {
    let many = numbered_files(MANY_FILES, "file");
    let big = serde_json::to_value(&BIG).unwrap();
    let json = serde_json::json!({
        "users": [
            {"userName": "migrator", "ownerId": "3350001", "token": TOKEN},
            {"userName": "other", "ownerId": "3350002", "token": OTHER_TOKEN}
        ],
        "storageLocations": [
            {"storageLocationId": 1, "kind": "synapse", "bucket": "synapse-storage"},
            {"storageLocationId": DEST, "kind": "externalS3", "bucket": "destination",
             "baseKey": "migrated", "createdBy": "migrator"}
        ],
        "projects": [{
            "name": PROJECT, "owner": "migrator", "acl": {"other": ["READ"]},
            "children": [
                {"type": "folder", "name": "data", "children": [
                    {"type": "file", "name": "big.bin",
                     "versions": [{"content": {"text": "first version"}}, {"content": big}]},
                    {"type": "file", "name": "small.txt",
                     "versions": [{"content": {"text": "hello synapse"}, "contentType": "text/plain"}],
                     "annotations": {"tissue": ["liver"]}}
                ]},
                {"type": "folder", "name": "many", "children": many}
            ]
        }]
    });
    fixture_from(json)
}

/// A moto stack and a simulator seeded with [`fixture`]; both stop when this is dropped. (A type
/// of this module's own: the other modules of the test binary add their own helpers to theirs.)
struct Env(SimEnv);

impl std::ops::Deref for Env {
    type Target = SimEnv;

    fn deref(&self) -> &SimEnv {
        &self.0
    }
}

impl Env {
    async fn start(throttle: ThrottleConfig) -> anyhow::Result<Self> {
        SimEnv::seeded(&fixture(), throttle).await.map(Self)
    }

    fn id(&self, path: &str) -> String {
        self.sim
            .entity_id(&format!("{PROJECT}/{path}"))
            .unwrap_or_else(|| panic!("no entity at {path}"))
    }

    fn config(&self, token: &str) -> ClientConfig {
        client_config(&self.sim, token, 10, Duration::from_millis(200))
    }

    fn client(&self) -> SynapseClient {
        SynapseClient::new(self.config(TOKEN)).unwrap()
    }

    async fn object(&self, handle: &FileHandle) -> anyhow::Result<Vec<u8>> {
        handle_bytes(&self.s3, handle).await
    }

    /// Puts `body` at `key` in the destination bucket; returns the request that registers it.
    async fn put_destination_object(
        &self,
        key: &str,
        body: &[u8],
        content_type: Option<&str>,
    ) -> anyhow::Result<S3FileHandleCreate> {
        self.s3
            .put_object()
            .bucket("destination")
            .key(key)
            .body(body.to_vec().into())
            .send()
            .await?;
        Ok(S3FileHandleCreate {
            concrete_type: concrete::S3_FILE_HANDLE.into(),
            bucket_name: "destination".into(),
            key: key.into(),
            storage_location_id: DEST,
            content_md5: Some(hex::encode(Md5::digest(body))),
            content_size: Some(body.len() as u64),
            file_name: key.rsplit('/').next().map(str::to_owned),
            content_type: content_type.map(str::to_owned),
        })
    }
}

fn latest_handle(sim: &RunningSim, id: &str) -> FileHandle {
    let snapshot = sim.entity(id).expect("entity exists");
    let handle_id = snapshot.entity.data_file_handle_id.expect("a file");
    sim.file_handle(&handle_id).expect("handle exists")
}

fn copy_request(entity_id: &str, handle_id: &str, part_size: u64) -> MultipartUploadCopyRequest {
    MultipartUploadCopyRequest {
        concrete_type: concrete::MULTIPART_UPLOAD_COPY_REQUEST.into(),
        file_name: None,
        generate_preview: Some(false),
        part_size_bytes: part_size,
        storage_location_id: DEST,
        source_file_handle_association: FileHandleAssociation {
            file_handle_id: handle_id.into(),
            associate_object_id: entity_id.into(),
            associate_object_type: "FileEntity".into(),
        },
    }
}

/// Copies one file through start / presign / PUT / add / complete; returns the new handle id.
async fn copy_file(
    client: &SynapseClient,
    entity_id: &str,
    handle_id: &str,
    part_size: u64,
) -> anyhow::Result<String> {
    let status = client
        .start_multipart_copy(&copy_request(entity_id, handle_id, part_size), false)
        .await?;
    let parts: Vec<u32> = status
        .parts_state
        .as_deref()
        .unwrap_or_default()
        .char_indices()
        .filter(|(_, state)| *state == '0')
        .map(|(i, _)| i as u32 + 1)
        .collect();
    let presigned = client.presign_parts(&status.upload_id, &parts).await?;
    assert_eq!(presigned.part_presigned_urls.len(), parts.len());
    for part in &presigned.part_presigned_urls {
        let etag = client
            .put_presigned_part(&part.upload_presigned_url, &part.signed_headers)
            .await?;
        let added = client
            .add_part(&status.upload_id, part.part_number, &etag)
            .await?;
        if added.add_part_state != add_part_state::ADD_SUCCESS {
            bail!(
                "part {} not added: {:?}",
                part.part_number,
                added.error_message
            );
        }
    }
    let done = client.complete_multipart(&status.upload_id).await?;
    assert_eq!(done.state, upload_state::COMPLETED);
    done.result_file_handle_id.context("no result handle")
}

/// Two clients (two function instances behind one address) sending 3 requests each at once: each
/// is its own session from its first request, so Synapse's limit of 3 in flight per user, session
/// and address holds for each, and none is throttled.
#[tokio::test]
async fn each_client_is_its_own_session_from_its_first_request() -> anyhow::Result<()> {
    bounded(TEST_TIMEOUT, async {
        let env = Env::start(ThrottleConfig::default()).await?;
        let (a, b) = (env.client(), env.client());
        env.sim.reset_requests();
        let burst = |client: &SynapseClient| {
            let client = client.clone();
            async move {
                let calls = (0..3).map(|_| client.user_profile());
                futures::future::try_join_all(calls).await
            }
        };
        let (from_a, from_b) = tokio::join!(burst(&a), burst(&b));
        from_a?;
        from_b?;
        let requests = env.sim.requests();
        assert_eq!(requests.len(), 6);
        assert!(requests.iter().all(|r| r.status == 200), "{requests:?}");
        let sessions: std::collections::BTreeSet<_> =
            requests.iter().map(|r| r.session_id.clone()).collect();
        assert_eq!(sessions.len(), 2, "{sessions:?}");
        assert!(sessions.iter().all(Option::is_some), "{sessions:?}");
        Ok(())
    })
    .await
}

/// An answer longer than the client reads is refused as a protocol error naming the limit, not
/// read into memory.
#[tokio::test]
async fn answers_longer_than_the_limit_are_refused() -> anyhow::Result<()> {
    bounded(TEST_TIMEOUT, async {
        let env = Env::start(ThrottleConfig::disabled()).await?;
        let small = SynapseClient::new(ClientConfig {
            max_response_bytes: 16,
            ..env.config(TOKEN)
        })?;
        let error = small.user_profile().await.unwrap_err();
        assert!(
            matches!(&error, SynapseError::Protocol { message, .. } if message.contains("16 bytes")),
            "{error}"
        );
        // The same call within the default limit.
        env.client().user_profile().await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn read_calls_round_trip() -> anyhow::Result<()> {
    bounded(TEST_TIMEOUT, async {
        let env = Env::start(ThrottleConfig::disabled()).await?;
        let client = env.client();

        let me = client.user_profile().await?;
        assert_eq!(
            (me.owner_id.as_str(), me.user_name.as_str()),
            ("3350001", "migrator")
        );

        let dest = client.storage_location(DEST).await?;
        assert!(dest.is_external_s3());
        assert_eq!(dest.bucket.as_deref(), Some("destination"));

        let project = env.sim.project_id(PROJECT).context("project")?;
        let top = client
            .children_all(&project, &[entity_type::FOLDER, entity_type::FILE])
            .await?;
        let names: Vec<_> = top.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["data", "many"]);
        assert!(top.iter().all(|c| c.kind == concrete::FOLDER));

        // More children than one page (50) holds: every one comes back, in name order.
        env.sim.reset_requests();
        let many = client
            .children_all(&env.id("many"), &[entity_type::FILE])
            .await?;
        let expected: Vec<_> = (0..MANY_FILES).map(|i| format!("f{i:03}.txt")).collect();
        let names: Vec<_> = many.iter().map(|c| c.name.clone()).collect();
        assert_eq!(names, expected);
        assert_eq!(
            env.sim
                .request_counts()
                .by_endpoint
                .get("POST /entity/children"),
            Some(&2)
        );

        let big = env.id("data/big.bin");
        let bundle = client
            .entity_bundle(&big, None, &EntityBundleRequest::migration())
            .await?;
        let entity = bundle.entity.context("entity")?;
        assert_eq!(entity.version_number, Some(2));
        let handles = bundle.file_handles.context("handles")?;
        let latest = handles
            .iter()
            .find(|h| Some(&h.id) == entity.data_file_handle_id.as_ref())
            .context("the latest handle is in the bundle")?;
        assert_eq!(latest.content_size, Some(BIG.size()));
        assert!(latest.is_s3());

        let first = client
            .entity_bundle(&big, Some(1), &EntityBundleRequest::migration())
            .await?;
        let first = first.entity.context("entity")?;
        assert_eq!(first.version_number, Some(1));
        assert_ne!(first.data_file_handle_id, entity.data_file_handle_id);

        let versions = client.versions_page(&big, 0, 10).await?;
        let mut numbers: Vec<_> = versions.results.iter().map(|v| v.version_number).collect();
        numbers.sort_unstable();
        assert_eq!(numbers, [1, 2]);
        assert!(client.versions_page(&big, 2, 10).await?.results.is_empty());

        let fetched = client.get_entity(&big).await?;
        assert_eq!(fetched.etag, entity.etag);

        let batch = client
            .file_handle_batch(&BatchFileRequest {
                requested_files: vec![FileHandleAssociation {
                    file_handle_id: latest.id.clone(),
                    associate_object_id: big.clone(),
                    associate_object_type: "FileEntity".into(),
                }],
                include_file_handles: true,
                include_pre_signed_urls: false,
                include_preview_pre_signed_urls: false,
            })
            .await?;
        let result = &batch.requested_files[0];
        assert_eq!(result.failure_code, None);
        assert_eq!(result.file_handle.as_ref().map(|h| &h.id), Some(&latest.id));
        Ok(())
    })
    .await
}

#[tokio::test]
async fn errors_map_to_their_types_without_leaking_the_token() -> anyhow::Result<()> {
    bounded(TEST_TIMEOUT, async {
        let env = Env::start(ThrottleConfig::disabled()).await?;
        let client = env.client();

        let err = client.get_entity("syn999999").await.unwrap_err();
        assert_eq!(err.error_type(), "Fatal.NotFound", "{err}");

        let other = SynapseClient::new(env.config(OTHER_TOKEN))?;
        let err = other.storage_location(DEST).await.unwrap_err();
        assert_eq!(err.error_type(), "Fatal.Forbidden", "{err}");

        let bad_token = "not-a-real-token-3f9a";
        let stranger = SynapseClient::new(env.config(bad_token))?;
        let err = stranger.user_profile().await.unwrap_err();
        assert!(matches!(err, SynapseError::Unauthorized { .. }), "{err:?}");
        for shown in [format!("{err:?}"), err.to_string(), format!("{stranger:?}")] {
            assert!(!shown.contains(bad_token), "{shown}");
        }

        // Synapse refuses to copy into a storage location the caller did not create (its own
        // storage included) before it looks at where the source lives.
        let small = env.id("data/small.txt");
        let handle = latest_handle(&env.sim, &small);
        let mut request = copy_request(&small, &handle.id, 5 * MIB);
        request.storage_location_id = 1;
        let err = client
            .start_multipart_copy(&request, false)
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "Fatal.Forbidden", "{err}");
        assert!(err.to_string().contains("does not own"), "{err}");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn multi_part_copy_keeps_the_bytes_and_entity_updates_round_trip() -> anyhow::Result<()> {
    bounded(TEST_TIMEOUT, async {
        let env = Env::start(ThrottleConfig::disabled()).await?;
        let client = env.client();
        let big = env.id("data/big.bin");
        let source = latest_handle(&env.sim, &big);

        let new_id = copy_file(&client, &big, &source.id, 5 * MIB).await?;
        let copy = env.sim.file_handle(&new_id).context("new handle")?;
        assert_eq!(copy.storage_location_id, Some(DEST));
        // Its creator reads the new handle back through the source's entity (no entity uses it
        // yet), as Complete verifies copies; nobody else may, nor anyone an id nobody created (the
        // server checks access before existence).
        let read_back = |client: SynapseClient, id: &str| {
            let request = BatchFileRequest {
                requested_files: vec![FileHandleAssociation {
                    file_handle_id: id.to_owned(),
                    associate_object_id: big.clone(),
                    associate_object_type: "FileEntity".into(),
                }],
                include_file_handles: true,
                include_pre_signed_urls: false,
                include_preview_pre_signed_urls: false,
            };
            async move {
                let mut answer = client.file_handle_batch(&request).await?;
                anyhow::Ok(answer.requested_files.remove(0))
            }
        };
        let mine = read_back(client.clone(), &new_id).await?;
        assert_eq!(mine.file_handle, Some(copy.clone()));
        let other = SynapseClient::new(env.config(OTHER_TOKEN))?;
        let theirs = read_back(other, &new_id).await?;
        assert_eq!(theirs.failure_code.as_deref(), Some("UNAUTHORIZED"));
        assert_eq!(theirs.file_handle, None);
        let unknown = read_back(client.clone(), "999999999").await?;
        assert_eq!(unknown.failure_code.as_deref(), Some("UNAUTHORIZED"));
        assert_eq!(copy.content_md5, source.content_md5);
        let bytes = env.object(&copy).await?;
        assert_eq!(bytes.len() as u64, BIG.size());
        assert!(
            bytes == content_bytes(&BIG),
            "the copy differs from the source"
        );
        assert_eq!(Some(hex::encode(Md5::digest(&bytes))), source.content_md5);

        // Starting the same copy again returns the completed upload and the same handle.
        let again = client
            .start_multipart_copy(&copy_request(&big, &source.id, 5 * MIB), false)
            .await?;
        assert_eq!(again.state, upload_state::COMPLETED);
        assert_eq!(
            again.result_file_handle_id.as_deref(),
            Some(new_id.as_str())
        );

        // Point the entity at the copy as a new version.
        let mut entity = client.get_entity(&big).await?;
        entity.data_file_handle_id = Some(new_id.clone());
        // The label as read is version 2's: Synapse refuses it for a new version.
        let refused = client.put_entity(&big, &entity, true).await;
        assert!(
            matches!(&refused, Err(SynapseError::InvalidRequest { status: 400, reason })
                if reason.contains("UNIQUE_REVISION_LABEL")),
            "{refused:?}"
        );
        entity.version_label = Some("3".into());
        let updated = client.put_entity(&big, &entity, true).await?;
        assert_eq!(updated.version_number, Some(3));
        assert_eq!(updated.version_label.as_deref(), Some("3"));
        assert_eq!(
            updated.data_file_handle_id.as_deref(),
            Some(new_id.as_str())
        );

        // Swap version 2's handle in place; a second identical swap is a conflict.
        let swap = FileHandleVersionUpdate {
            old_file_handle_id: source.id.clone(),
            new_file_handle_id: new_id.clone(),
        };
        client.put_version_file_handle(&big, 2, &swap).await?;
        let snapshot = env.sim.entity(&big).context("entity")?;
        let v2 = snapshot
            .versions
            .iter()
            .find(|v| v.version_number == Some(2))
            .context("version 2")?;
        assert_eq!(v2.data_file_handle_id.as_deref(), Some(new_id.as_str()));
        let err = client
            .put_version_file_handle(&big, 2, &swap)
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "Fatal.Conflict", "{err}");

        // Annotations keep their values through a PUT.
        let small = env.id("data/small.txt");
        let bundle = client
            .entity_bundle(&small, None, &EntityBundleRequest::migration())
            .await?;
        let mut annotations: Annotations2 = bundle.annotations.context("annotations")?;
        assert!(annotations.annotations.contains_key("tissue"));
        annotations.annotations.insert(
            "migrated".into(),
            AnnotationValue {
                kind: "STRING".into(),
                value: vec!["yes".into()],
            },
        );
        let saved = client.put_annotations(&small, &annotations).await?;
        assert_eq!(saved.annotations.len(), 2);
        let stored = env.sim.entity(&small).context("entity")?.annotations;
        assert_eq!(
            stored.annotations.get("migrated"),
            annotations.annotations.get("migrated")
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn registers_an_object_copied_directly_into_the_destination() -> anyhow::Result<()> {
    bounded(TEST_TIMEOUT, async {
        let env = Env::start(ThrottleConfig::disabled()).await?;
        let client = env.client();
        let body = b"copied by the direct engine";
        let request = env
            .put_destination_object("migrated/direct/copied.txt", body, Some("text/plain"))
            .await?;
        assert_eq!(request.file_name.as_deref(), Some("copied.txt"));
        let md5 = hex::encode(Md5::digest(body));
        let handle = client.create_external_s3_file_handle(&request).await?;
        assert!(handle.is_s3());
        assert_eq!(handle.storage_location_id, Some(DEST));
        assert_eq!(handle.content_md5.as_deref(), Some(md5.as_str()));
        assert_eq!(env.sim.file_handle(&handle.id).as_ref(), Some(&handle));
        Ok(())
    })
    .await
}

#[tokio::test]
async fn stale_etag_is_a_conflict_and_update_entity_with_reapplies_the_change() -> anyhow::Result<()>
{
    bounded(TEST_TIMEOUT, async {
        let env = Env::start(ThrottleConfig::disabled()).await?;
        let client = env.client();
        let small = env.id("data/small.txt");

        let mut stale = client.get_entity(&small).await?;
        let mut current = stale.clone();
        current.name = "renamed.txt".into();
        client.put_entity(&small, &current, false).await?;
        stale.name = "lost-update.txt".into();
        let err = client.put_entity(&small, &stale, false).await.unwrap_err();
        assert!(matches!(err, SynapseError::Conflict { .. }), "{err:?}");

        // An entity read earlier is PUT as it is, without a read; when its etag has gone stale
        // (someone else changed the entity), the helper reads it and re-applies the edit.
        let calls = || -> Vec<(String, u16)> {
            let requests = env.sim.requests();
            requests.iter().map(|r| (r.endpoint(), r.status)).collect()
        };
        let (put, get) = ("PUT /entity/{id}".to_owned(), "GET /entity/{id}".to_owned());
        env.sim.reset_requests();
        let mut edits = 0;
        let updated = client
            .update_entity_with(&small, Some(stale.clone()), false, |entity| {
                edits += 1;
                entity.name = "final.txt".into();
                true
            })
            .await?;
        assert_eq!(edits, 2);
        assert_eq!(updated.name, "final.txt");
        assert_eq!(
            env.sim.entity(&small).context("entity")?.entity.name,
            "final.txt"
        );
        assert_eq!(
            calls(),
            [(put.clone(), 412), (get, 200), (put.clone(), 200)]
        );
        // A current one is written with one call.
        env.sim.reset_requests();
        let again = client
            .update_entity_with(&small, Some(updated), false, |entity| {
                entity.name = "final.txt".into();
                true
            })
            .await?;
        assert_eq!(calls(), [(put, 200)]);

        // An edit that finds nothing to do writes nothing.
        env.sim.reset_requests();
        let unchanged = client
            .update_entity_with(&small, Some(again), false, |_| false)
            .await?;
        assert_eq!(unchanged.name, "final.txt");
        assert_eq!(
            env.sim.request_counts().by_endpoint.get("PUT /entity/{id}"),
            None
        );

        // A conflict that never clears gives up after the configured tries.
        let mut config = env.config(TOKEN);
        config.max_conflict_attempts = 3;
        let limited = SynapseClient::new(config)?;
        let mut tries = 0;
        let err = limited
            .update_entity_with(&small, None, false, |entity| {
                tries += 1;
                entity.etag = stale.etag.clone();
                true
            })
            .await
            .unwrap_err();
        assert_eq!(tries, 3);
        assert_eq!(err.error_type(), "Fatal.Conflict");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn throttling_and_injected_server_errors_are_retried() -> anyhow::Result<()> {
    bounded(TEST_TIMEOUT, async {
        let env = Env::start(ThrottleConfig::disabled()).await?;
        let client = env.client();
        let big = env.id("data/big.bin");

        // Every 3 requests, the next 2 answer 429.
        env.sim.set_faults(FaultConfig {
            burst_429: Some(Burst {
                every: 3,
                length: 2,
            }),
            ..FaultConfig::default()
        });
        for _ in 0..6 {
            assert_eq!(
                client.get_entity(&big).await?.id.as_deref(),
                Some(big.as_str())
            );
        }
        let counts = env.sim.request_counts();
        assert!(
            counts.by_status.get(&429).copied().unwrap_or(0) >= 2,
            "{counts:?}"
        );

        // A seeded 40% of 503s on every route: each call still succeeds.
        env.sim.reset_requests();
        env.sim.set_faults(FaultConfig {
            seed: 7,
            error_rates: BTreeMap::from([("*".to_owned(), 0.4)]),
            ..FaultConfig::default()
        });
        let source = latest_handle(&env.sim, &big);
        let new_id = copy_file(&client, &big, &source.id, 5 * MIB).await?;
        for _ in 0..5 {
            client.user_profile().await?;
        }
        let counts = env.sim.request_counts();
        assert!(
            counts.by_status.get(&503).copied().unwrap_or(0) > 0,
            "{counts:?}"
        );
        env.sim.set_faults(FaultConfig::default());
        let copy = env.sim.file_handle(&new_id).context("new handle")?;
        assert!(env.object(&copy).await? == content_bytes(&BIG));
        Ok(())
    })
    .await
}

/// Registers the same object `n` times from concurrent tasks, spread over `clients`. Each
/// registration makes the server read the object from S3, so requests overlap on the server.
async fn register_concurrently(
    env: &Env,
    clients: &[SynapseClient],
    n: usize,
) -> anyhow::Result<()> {
    let request = env
        .put_destination_object(
            "migrated/concurrent/object.txt",
            b"registered many times",
            None,
        )
        .await?;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let client = clients[i % clients.len()].clone();
        let request = request.clone();
        tasks.spawn(async move { client.create_external_s3_file_handle(&request).await });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_shared_limiter_keeps_concurrent_tasks_under_the_server_throttle() -> anyhow::Result<()>
{
    bounded(TEST_TIMEOUT, async {
        // The server admits 3 concurrent requests per user.
        let env = Env::start(ThrottleConfig {
            enabled: true,
            per_minute: 600,
            in_flight: 3,
        })
        .await?;
        let route = "POST /externalFileHandle/s3";

        // Two clients in one process share one limiter of 3 in flight: never a 429.
        let limiter = Arc::new(RateLimiter::new(6000, 100, 3));
        let shared = [
            SynapseClient::with_limiter(env.config(TOKEN), Arc::clone(&limiter))?,
            SynapseClient::with_limiter(env.config(TOKEN), limiter)?,
        ];
        register_concurrently(&env, &shared, 24).await?;
        let counts = env.sim.request_counts();
        assert_eq!(counts.by_endpoint.get(route), Some(&24), "{counts:?}");
        assert_eq!(counts.by_status.get(&429), None, "{counts:?}");

        // A client allowed far more than the server admits gets 429s, retries them, succeeds.
        // Each request holds its server slot for 200 ms, so 24 sent at once must overlap.
        env.sim.reset_requests();
        env.sim.set_faults(FaultConfig {
            latency: Duration::from_millis(200),
            ..FaultConfig::default()
        });
        let mut config = env.config(TOKEN);
        config.max_in_flight = 24;
        config.retry.max_attempts = 40;
        let greedy = SynapseClient::new(config)?;
        register_concurrently(&env, &[greedy], 24).await?;
        let counts = env.sim.request_counts();
        assert_eq!(counts.by_status.get(&200), Some(&24), "{counts:?}");
        assert!(counts.by_status.contains_key(&429), "{counts:?}");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn an_expired_presigned_url_is_rejected_and_a_fresh_one_works() -> anyhow::Result<()> {
    bounded(TEST_TIMEOUT, async {
        let env = Env::start(ThrottleConfig::disabled()).await?;
        let client = env.client();
        let small = env.id("data/small.txt");
        let source = latest_handle(&env.sim, &small);
        let status = client
            .start_multipart_copy(&copy_request(&small, &source.id, 5 * MIB), false)
            .await?;

        env.sim.set_presign_expiry(Duration::from_secs(1));
        let stale = client.presign_parts(&status.upload_id, &[1]).await?;
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let part = &stale.part_presigned_urls[0];
        let err = client
            .put_presigned_part(&part.upload_presigned_url, &part.signed_headers)
            .await
            .unwrap_err();
        assert!(
            matches!(err, SynapseError::PresignedUrlRejected { .. }),
            "{err:?}"
        );
        assert!(err.is_retryable());

        env.sim.set_presign_expiry(Duration::from_secs(900));
        let fresh = client.presign_parts(&status.upload_id, &[1]).await?;
        let part = &fresh.part_presigned_urls[0];
        let etag = client
            .put_presigned_part(&part.upload_presigned_url, &part.signed_headers)
            .await?;
        assert_eq!(
            Some(etag.clone()),
            source.content_md5,
            "a one-part copy's ETag is its MD5"
        );
        client.add_part(&status.upload_id, 1, &etag).await?;
        let done = client.complete_multipart(&status.upload_id).await?;
        let copy = env
            .sim
            .file_handle(done.result_file_handle_id.as_deref().context("result")?)
            .context("new handle")?;
        assert_eq!(env.object(&copy).await?, b"hello synapse");
        Ok(())
    })
    .await
}
