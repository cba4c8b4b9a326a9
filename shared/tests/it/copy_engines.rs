//! Both copy engines against the simulator (in process) and moto S3: one-part and multi-part
//! copies keep the bytes and leave the sources alone, a crashed copy resumes with only the missing
//! parts, expired presigned URLs are presigned again, Synapse's refusals keep their reason, a
//! source that changes mid-copy stops a direct copy for good, and `choose` falls back to Synapse.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{ensure, Context};
use async_trait::async_trait;
use md5::{Digest, Md5};
use synapse_model::{FileHandle, StorageLocationSetting};
use synapse_sim::{Content, FaultConfig, Fixture, ThrottleConfig};
use synmigrate::copy::{
    choose, destination_key, sanitize_file_name, CopyEngine, CopyMode, CopyRequest, DirectEngine,
    EngineConfig, EngineKind, EngineState, HandleJournal, Started, SynapseEngine,
};
use synmigrate::plan::{PartPlan, MIB};
use synmigrate::synapse::SynapseClient;

use crate::common::{bounded, client_config, fixture_from, handle_bytes, SimEnv};

const TOKEN: &str = "migrator-token";
const OTHER_TOKEN: &str = "other-token";
const PROJECT: &str = "Engines";
const DEST: i64 = 7001;
const DEST_BUCKET: &str = "destination";
/// An external location created by another user: the migrator may not copy into it.
const FOREIGN: i64 = 7002;
const SYNAPSE_STORAGE: i64 = 1;
const PART_SIZE: u64 = 5 * MIB;
/// Three 5 MiB parts, the last one short.
const BIG: Content = Content::Generated {
    size: 12 * MIB + 12345,
    seed: 42,
};
const ODD_NAME: &str = "résumé #1.txt";
/// Upper bound for any single test, so that a hang fails instead of blocking the run.
const TEST_TIMEOUT: Duration = Duration::from_secs(240);

fn fixture() -> Fixture {
    let big = serde_json::to_value(&BIG).unwrap();
    let json = serde_json::json!({
        "users": [
            {"userName": "migrator", "ownerId": "3350001", "token": TOKEN},
            {"userName": "other", "ownerId": "3350002", "token": OTHER_TOKEN}
        ],
        "storageLocations": [
            {"storageLocationId": SYNAPSE_STORAGE, "kind": "synapse", "bucket": "synapse-storage"},
            {"storageLocationId": DEST, "kind": "externalS3", "bucket": DEST_BUCKET,
             "baseKey": "migrated", "createdBy": "migrator"},
            {"storageLocationId": FOREIGN, "kind": "externalS3", "bucket": "foreign",
             "createdBy": "other"}
        ],
        "projects": [{
            "name": PROJECT, "owner": "migrator",
            "children": [
                {"type": "file", "name": "small.txt",
                 "versions": [{"content": {"text": "hello engines"}, "contentType": "text/plain"}]},
                {"type": "file", "name": "big.bin",
                 "versions": [{"content": big, "contentType": "application/octet-stream"}]},
                {"type": "file", "name": "empty.txt", "versions": [{"content": {"text": ""}}]},
                {"type": "file", "name": "already.txt",
                 "versions": [{"content": {"text": "in place"}, "storageLocationId": DEST}]},
                {"type": "file", "name": "odd.txt",
                 "versions": [{"content": {"text": "odd name"}, "fileName": ODD_NAME}]}
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
    async fn start() -> anyhow::Result<Self> {
        SimEnv::seeded(&fixture(), ThrottleConfig::disabled())
            .await
            .map(Self)
    }

    fn client(&self) -> SynapseClient {
        SynapseClient::new(client_config(
            &self.sim,
            TOKEN,
            5,
            Duration::from_millis(200),
        ))
        .unwrap()
    }

    fn synapse_engine(&self, config: EngineConfig) -> SynapseEngine {
        SynapseEngine::new(self.client(), config)
    }

    fn direct_engine(&self, config: EngineConfig) -> DirectEngine {
        DirectEngine::new(self.s3.clone(), self.client(), config)
    }

    fn location(&self, id: i64) -> StorageLocationSetting {
        self.sim.storage_location(id).expect("seeded location")
    }

    /// The copy of `name`'s latest handle into `destination`, named as the pipeline would.
    fn request(&self, name: &str, destination: i64) -> CopyRequest {
        let entity_id = self
            .sim
            .entity_id(&format!("{PROJECT}/{name}"))
            .unwrap_or_else(|| panic!("no entity {name}"));
        let snapshot = self.sim.entity(&entity_id).expect("entity exists");
        let handle_id = snapshot.entity.data_file_handle_id.expect("a file");
        let source = self.sim.file_handle(&handle_id).expect("handle exists");
        let size = source.content_size.unwrap_or_default();
        let part_size = PartPlan::new(size, PART_SIZE)
            .map(|p| p.part_size())
            .unwrap_or(PART_SIZE);
        let file_name = source.file_name.as_deref().and_then(sanitize_file_name);
        CopyRequest {
            entity_id,
            in_table: false,
            version: snapshot.entity.version_number,
            source,
            destination: self.location(destination),
            part_size,
            file_name,
        }
    }

    /// Checks a finished copy: the handle Synapse holds is in the destination with the source's
    /// size and MD5, the object's bytes hash to that MD5, and the source object is unchanged.
    async fn check_copy(&self, request: &CopyRequest, returned: &FileHandle) -> anyhow::Result<()> {
        let stored = self
            .sim
            .file_handle(&returned.id)
            .context("the returned handle exists in Synapse")?;
        for handle in [returned, &stored] {
            ensure!(handle.storage_location_id == Some(DEST), "{handle:?}");
            ensure!(
                handle.content_size == request.source.content_size,
                "{handle:?}"
            );
            ensure!(
                handle.content_md5 == request.source.content_md5,
                "{handle:?}"
            );
        }
        let md5 = request.source.content_md5.clone().context("source MD5")?;
        let copied = handle_bytes(&self.s3, &stored).await?;
        ensure!(
            hex::encode(Md5::digest(&copied)) == md5,
            "copied bytes differ"
        );
        let source = handle_bytes(&self.s3, &request.source).await?;
        ensure!(
            hex::encode(Md5::digest(&source)) == md5,
            "the source changed"
        );
        Ok(())
    }

    /// Requests the simulator served whose route contains `fragment`.
    fn served(&self, fragment: &str) -> usize {
        self.sim
            .request_counts()
            .by_endpoint
            .iter()
            .filter(|(endpoint, _)| endpoint.contains(fragment))
            .map(|(_, n)| n)
            .sum()
    }
}

/// start, copy every missing part, complete.
/// Counts the new handles an engine announces (the stages write each down on the copy record).
#[derive(Default)]
struct Journal(AtomicU32);

impl Journal {
    fn announced(&self) -> u32 {
        self.0.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl HandleJournal for Journal {
    async fn before_new_handle(&self, _request: &CopyRequest) -> synmigrate::Result<()> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

async fn copy(engine: &dyn CopyEngine, request: &CopyRequest) -> anyhow::Result<FileHandle> {
    let started = engine.start(request, None).await?;
    copy_started(engine, request, &started).await
}

/// Copies the missing parts of a started copy and completes it.
async fn copy_started(
    engine: &dyn CopyEngine,
    request: &CopyRequest,
    started: &Started,
) -> anyhow::Result<FileHandle> {
    engine
        .copy_parts(request, &started.state, &started.parts_missing())
        .await?;
    Ok(engine
        .complete(request, &started.state, &Journal::default())
        .await?)
}

#[tokio::test]
async fn synapse_engine_copies_one_part_and_multi_part_files() -> anyhow::Result<()> {
    bounded(TEST_TIMEOUT, async {
        let env = Env::start().await?;
        let engine = env.synapse_engine(EngineConfig::default());
        for (name, parts) in [("small.txt", 1), ("big.bin", 3)] {
            let request = env.request(name, DEST);
            let started = engine.start(&request, None).await?;
            assert_eq!(started.state.kind(), EngineKind::Synapse);
            assert_eq!(started.state.part_count(), parts, "{name}");
            assert!(started.parts_done.is_empty() && started.completed.is_none());
            engine
                .copy_parts(&request, &started.state, &started.parts_missing())
                .await?;
            let handle = engine
                .complete(&request, &started.state, &Journal::default())
                .await?;
            env.check_copy(&request, &handle).await?;
            // The handle is Synapse's own, read back: the destination's bucket and key included.
            assert_eq!(env.sim.file_handle(&handle.id).as_ref(), Some(&handle));
            assert_eq!(handle.bucket_name.as_deref(), Some(DEST_BUCKET));
            let key = handle.key.as_deref().unwrap_or_default();
            assert!(key.starts_with("migrated/"), "{key}");

            // Starting the same copy again finds it completed, with the same verified handle.
            let again = engine.start(&request, Some(&started.state)).await?;
            assert_eq!(again.state, started.state);
            assert_eq!(again.completed.as_ref(), Some(&handle));
            assert!(again.parts_missing().is_empty());
        }
        Ok(())
    })
    .await
}

#[tokio::test]
async fn synapse_engine_resumes_after_a_crash() -> anyhow::Result<()> {
    bounded(TEST_TIMEOUT, async {
        let env = Env::start().await?;
        let request = env.request("big.bin", DEST);
        let saved = {
            let engine = env.synapse_engine(EngineConfig::default());
            let started = engine.start(&request, None).await?;
            engine.copy_parts(&request, &started.state, &[1, 3]).await?;
            // The engine is dropped here: only the saved state survives the "crash".
            EngineState::from_document(&started.state.to_document())?
        };
        let engine = env.synapse_engine(EngineConfig::default());
        let resumed = engine.start(&request, Some(&saved)).await?;
        assert_eq!(resumed.state, saved, "the same upload is resumed");
        assert_eq!(resumed.parts_done, [1, 3]);
        assert_eq!(resumed.parts_missing(), [2]);
        let presigned_before = env.served("presigned/url/batch");
        engine
            .copy_parts(&request, &resumed.state, &resumed.parts_missing())
            .await?;
        assert_eq!(env.served("presigned/url/batch"), presigned_before + 1);
        let handle = engine
            .complete(&request, &resumed.state, &Journal::default())
            .await?;
        env.check_copy(&request, &handle).await
    })
    .await
}

#[tokio::test]
async fn synapse_engine_presigns_expired_urls_again() -> anyhow::Result<()> {
    bounded(TEST_TIMEOUT, async {
        let env = Env::start().await?;
        // Every URL expires a second after signing and every API request takes longer than that:
        // the URLs of a batch that wait behind another part's add call are expired when used.
        env.sim.set_faults(FaultConfig {
            early_expiry_rate: 1.0,
            early_expiry: Duration::from_secs(1),
            latency: Duration::from_millis(1100),
            ..FaultConfig::default()
        });
        let config = |presign_attempts| EngineConfig {
            concurrency: 1,
            presign_batch: 3,
            presign_attempts,
            ..EngineConfig::default()
        };
        let request = env.request("big.bin", DEST);
        // Without presigning again, the expired URL fails the copy (retryably).
        let err = copy(&env.synapse_engine(config(1)), &request)
            .await
            .unwrap_err();
        let err = err.downcast::<synmigrate::Error>()?;
        assert_eq!(err.error_type(), "Retryable.Transient", "{err}");
        assert!(err.to_string().contains("expired"), "{err}");

        env.sim.reset_requests();
        let handle = copy(&env.synapse_engine(config(6)), &request).await?;
        env.sim.set_faults(FaultConfig::default());
        let presigns = env.served("presigned/url/batch");
        // Part 1 was copied by the first engine: one batch for parts 2 and 3, then part 3
        // (used after part 2's add call) at least once more.
        assert!(presigns >= 2, "{presigns} presign calls");
        env.check_copy(&request, &handle).await
    })
    .await
}

#[tokio::test]
async fn synapse_engine_refusals_are_fatal_with_the_servers_reason() -> anyhow::Result<()> {
    bounded(TEST_TIMEOUT, async {
        let env = Env::start().await?;
        let engine = env.synapse_engine(EngineConfig::default());
        let cases = [
            (
                "small.txt",
                FOREIGN,
                "Fatal.Forbidden",
                "does not own the destination",
            ),
            (
                "empty.txt",
                DEST,
                "Fatal.InvalidInput",
                "File size must be at least one byte",
            ),
            (
                "already.txt",
                DEST,
                "Fatal.InvalidInput",
                "already in the given destination",
            ),
        ];
        for (name, destination, error_type, reason) in cases {
            let err = engine
                .start(&env.request(name, destination), None)
                .await
                .unwrap_err();
            assert_eq!(err.error_type(), error_type, "{name}: {err}");
            assert!(err.to_string().contains(reason), "{name}: {err}");
        }

        // A name that fails Synapse's rule is refused as is and copied under its sanitised form.
        let mut request = env.request("odd.txt", DEST);
        assert_eq!(request.file_name.as_deref(), Some("r_sum_ _1.txt"));
        let sanitised = request.file_name.take();
        let err = engine.start(&request, None).await.unwrap_err();
        assert_eq!(err.error_type(), "Fatal.InvalidInput", "{err}");
        assert!(err.to_string().contains("Invalid Name"), "{err}");
        request.file_name = sanitised;
        let handle = copy(&engine, &request).await?;
        env.check_copy(&request, &handle).await?;
        let stored = env.sim.file_handle(&handle.id).context("new handle")?;
        assert_eq!(stored.file_name.as_deref(), Some("r_sum_ _1.txt"));
        Ok(())
    })
    .await
}

/// CopyObject up to 6 MiB, so `big.bin` takes the multipart path.
fn direct_config() -> EngineConfig {
    EngineConfig {
        copy_object_threshold: 6 * MIB,
        ..EngineConfig::default()
    }
}

#[tokio::test]
async fn direct_engine_copies_with_copy_object_and_multipart() -> anyhow::Result<()> {
    bounded(TEST_TIMEOUT, async {
        let env = Env::start().await?;
        let engine = env.direct_engine(direct_config());
        for (name, multipart, parts) in [("small.txt", false, 1), ("big.bin", true, 3)] {
            let request = env.request(name, DEST);
            env.sim.reset_requests();
            let started = engine.start(&request, None).await?;
            let EngineState::Direct {
                bucket,
                key,
                upload_id,
                ..
            } = &started.state
            else {
                panic!("not a direct state: {:?}", started.state);
            };
            assert_eq!((bucket.clone(), key.clone()), destination_key(&request)?);
            assert_eq!(upload_id.is_some(), multipart, "{name}");
            assert_eq!(started.state.part_count(), parts, "{name}");
            engine
                .copy_parts(&request, &started.state, &started.parts_missing())
                .await?;
            let handle = engine
                .complete(&request, &started.state, &Journal::default())
                .await?;
            assert_eq!(handle.key.as_ref(), Some(key));
            env.check_copy(&request, &handle).await?;
            // One Synapse call per file: registering the object.
            let counts = env.sim.request_counts();
            assert_eq!(counts.total, 1, "{counts:?}");
            assert_eq!(env.served("externalFileHandle/s3"), 1, "{counts:?}");
        }
        Ok(())
    })
    .await
}

/// A file of several parts at the part size but under the CopyObject threshold is one CopyObject:
/// its state records one part, and completing it must not hold that against the part plan.
#[tokio::test]
async fn direct_engine_copies_a_multi_part_sized_file_in_one_request() -> anyhow::Result<()> {
    bounded(TEST_TIMEOUT, async {
        let env = Env::start().await?;
        let engine = env.direct_engine(EngineConfig::default());
        let request = env.request("big.bin", DEST);
        let started = engine.start(&request, None).await?;
        assert!(
            matches!(
                &started.state,
                EngineState::Direct {
                    upload_id: None,
                    ..
                }
            ),
            "{:?}",
            started.state
        );
        assert_eq!(started.state.part_count(), 1);
        let handle = copy(&engine, &request).await?;
        env.check_copy(&request, &handle).await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn direct_engine_resumes_after_a_crash() -> anyhow::Result<()> {
    bounded(TEST_TIMEOUT, async {
        let env = Env::start().await?;
        let request = env.request("big.bin", DEST);
        let saved = {
            let engine = env.direct_engine(direct_config());
            let started = engine.start(&request, None).await?;
            engine.copy_parts(&request, &started.state, &[2]).await?;
            EngineState::from_document(&started.state.to_document())?
        };
        let engine = env.direct_engine(direct_config());
        let resumed = engine.start(&request, Some(&saved)).await?;
        assert_eq!(resumed.state, saved, "the same S3 upload is resumed");
        assert_eq!(resumed.parts_done, [2]);
        assert_eq!(resumed.parts_missing(), [1, 3]);
        engine
            .copy_parts(&request, &resumed.state, &resumed.parts_missing())
            .await?;
        let journal = Journal::default();
        let handle = engine.complete(&request, &resumed.state, &journal).await?;
        env.check_copy(&request, &handle).await?;

        // Completing again after a crash between CompleteMultipartUpload and the registration
        // finds the upload gone and the object in place, made from this source by that upload
        // (its metadata and part count say so), and registers it: announced to the journal
        // first, as the first registration was.
        let again = engine.complete(&request, &resumed.state, &journal).await?;
        assert_ne!(again.id, handle.id);
        assert_eq!(journal.announced(), 2);
        env.check_copy(&request, &again).await?;

        // Another object of the same size at the key is not taken for the copy.
        let (bucket, key) = destination_key(&request)?;
        let size = usize::try_from(request.source_size()?)?;
        env.s3
            .put_object()
            .bucket(&bucket)
            .key(&key)
            .body(vec![b'x'; size].into())
            .send()
            .await?;
        let refused = engine
            .complete(&request, &resumed.state, &journal)
            .await
            .expect_err("an object this upload did not make");
        assert_eq!(refused.error_type(), "Fatal.Verification", "{refused}");
        assert_eq!(journal.announced(), 2, "nothing registered");
        Ok(())
    })
    .await
}

/// A start that crashed before its upload id was saved left an upload at the copy's key: the
/// next start finds it by key and aborts it, so no unfinished upload lingers.
#[tokio::test]
async fn direct_engine_aborts_the_upload_a_crashed_start_left() -> anyhow::Result<()> {
    bounded(TEST_TIMEOUT, async {
        let env = Env::start().await?;
        let engine = env.direct_engine(direct_config());
        let request = env.request("big.bin", DEST);
        let lost = engine.start(&request, None).await?;
        let again = engine.start(&request, None).await?;
        let (bucket, key) = destination_key(&request)?;
        let uploads = env
            .s3
            .list_multipart_uploads()
            .bucket(&bucket)
            .send()
            .await?;
        let held: Vec<(Option<&str>, Option<&str>)> = uploads
            .uploads()
            .iter()
            .map(|u| (u.key(), u.upload_id()))
            .collect();
        assert_eq!(held, [(Some(key.as_str()), again.state.upload_id())]);
        assert_ne!(lost.state.upload_id(), again.state.upload_id());
        let handle = copy_started(&engine, &request, &again).await?;
        env.check_copy(&request, &handle).await
    })
    .await
}

#[tokio::test]
async fn direct_engine_stops_and_aborts_when_the_source_changes() -> anyhow::Result<()> {
    bounded(TEST_TIMEOUT, async {
        let env = Env::start().await?;
        let engine = env.direct_engine(direct_config());
        let request = env.request("big.bin", DEST);
        let started = engine.start(&request, None).await?;
        let upload_id = started.state.upload_id().context("multipart")?.to_owned();
        let (bucket, key) = destination_key(&request)?;

        // Someone rewrites the source between start and copy: its ETag no longer matches.
        let size = request.source.content_size.context("size")? as usize;
        env.s3
            .put_object()
            .bucket(request.source.bucket_name.as_deref().context("bucket")?)
            .key(request.source.key.as_deref().context("key")?)
            .body(vec![7u8; size].into())
            .send()
            .await?;
        let err = engine
            .copy_parts(&request, &started.state, &started.parts_missing())
            .await
            .unwrap_err();
        assert!(!err.is_retryable(), "{err}");
        assert_eq!(err.error_type(), "Fatal.Verification", "{err}");

        let uploads = env
            .s3
            .list_multipart_uploads()
            .bucket(&bucket)
            .send()
            .await?;
        assert!(
            uploads
                .uploads()
                .iter()
                .all(|u| u.upload_id() != Some(upload_id.as_str())),
            "the upload was aborted"
        );
        let listed = env
            .s3
            .list_parts()
            .bucket(&bucket)
            .key(&key)
            .upload_id(&upload_id)
            .send()
            .await;
        assert!(listed.is_err(), "no parts remain listed");
        // The destination never got an object.
        assert!(env
            .s3
            .head_object()
            .bucket(&bucket)
            .key(&key)
            .send()
            .await
            .is_err());
        Ok(())
    })
    .await
}

#[tokio::test]
async fn auto_mode_takes_direct_only_where_it_can_work() -> anyhow::Result<()> {
    bounded(TEST_TIMEOUT, async {
        let env = Env::start().await?;
        let readable = env.request("small.txt", DEST);
        let mut unreadable = readable.clone();
        unreadable.source.bucket_name = Some("bucket-this-deployment-cannot-see".into());
        let to_synapse_storage = env.request("already.txt", SYNAPSE_STORAGE);

        assert_eq!(
            choose(CopyMode::Auto, &readable, &env.s3).await?,
            EngineKind::Direct
        );
        assert_eq!(
            choose(CopyMode::Auto, &unreadable, &env.s3).await?,
            EngineKind::Synapse
        );
        assert_eq!(
            choose(CopyMode::Auto, &to_synapse_storage, &env.s3).await?,
            EngineKind::Synapse
        );
        assert_eq!(
            choose(CopyMode::Synapse, &readable, &env.s3).await?,
            EngineKind::Synapse
        );
        assert_eq!(
            choose(CopyMode::Direct, &readable, &env.s3).await?,
            EngineKind::Direct
        );
        let err = choose(CopyMode::Direct, &to_synapse_storage, &env.s3)
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "Fatal.InvalidInput", "{err}");

        // The direct engine refuses the unreadable source as not found, not as a retryable error.
        let err = env
            .direct_engine(direct_config())
            .start(&unreadable, None)
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "Fatal.NotFound", "{err}");
        Ok(())
    })
    .await
}
