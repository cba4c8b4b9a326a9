//! The two copy engines: how one source file handle becomes a file handle in the destination.
//!
//! - [`SynapseEngine`] (default) drives Synapse's multipart copy: start, presign part URLs in small
//!   batches just before use, PUT each presigned UploadPartCopy URL, add the part, complete, then
//!   read the new handles back (`POST /fileHandle/batch`, 100 per call) and check each against
//!   its source. It works for every source the token may download, Synapse's own storage
//!   included.
//! - [`DirectEngine`] copies with the deployment's own S3 permissions (CopyObject, or
//!   UploadPartCopy parts pinned to the source's ETag) and then registers the object with one
//!   `POST /externalFileHandle/s3`: two Synapse calls per file instead of five or more, which is
//!   what gets a migration past Synapse's 600 requests per minute.
//!
//! Both implement [`CopyEngine`], whose calls map onto the pipeline's stages:
//! `start` (StartCopy) opens or resumes the copy and says which parts are already done;
//! `copy_parts` (CopyParts) copies a batch of parts with bounded concurrency; `complete` and
//! `complete_all` (Complete) finish, verify and return the destination handles; `abort` gives up
//! for good.
//! Every call is idempotent given the [`EngineState`] returned by `start`, which is small JSON
//! meant for the `FH#` record ([`EngineState::to_document`]) and Step Functions payloads.
//!
//! [`choose`] picks the engine for a [`CopyMode`]; [`Engines`] holds both and finds the one a
//! saved state belongs to. Errors are the library's [`Error`]: Synapse failures keep their class,
//! S3 failures are classified by status and code (SlowDown/503 `Retryable.Throttled`, 5xx and
//! timeouts `Retryable.Transient`, PreconditionFailed `Fatal.Verification`, AccessDenied
//! `Fatal.Forbidden`, NoSuchKey/NoSuchBucket `Fatal.NotFound`).

mod direct;
mod names;
pub mod parts;
mod s3error;
mod synapse;
pub mod verify;

use async_trait::async_trait;
use futures::{stream, StreamExt};
use serde::{Deserialize, Serialize};
use synapse_model::{FileHandle, FileHandleAssociation, StorageLocationSetting};

use crate::error::{Error, Result};
use parts::GIB;

pub use direct::{destination_key, DirectEngine, MAX_COPY_OBJECT_SIZE};
pub use names::{is_valid_file_name, sanitize_file_name};
pub use synapse::SynapseEngine;

/// The association type of a file entity's handle in Synapse requests.
pub const FILE_ENTITY_ASSOCIATION: &str = "FileEntity";
/// The association type of a handle a table's cell names.
pub const TABLE_ENTITY_ASSOCIATION: &str = "TableEntity";
/// File handles per `POST /fileHandle/batch` (Synapse's limit).
pub const FILE_HANDLE_BATCH: usize = 100;

/// One source file handle to copy into the destination storage location.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyRequest {
    /// An entity that uses the handle; Synapse authorises reading the source through it.
    pub entity_id: String,
    /// `entity_id` is a table one of whose cells names the handle (not a file entity).
    pub in_table: bool,
    pub version: Option<i64>,
    /// The source S3 file handle, as the index read it.
    pub source: FileHandle,
    pub destination: StorageLocationSetting,
    /// Part size from [`parts::PartPlan::part_size`].
    pub part_size: u64,
    /// The sanitised name to give the copy when the source's fails Synapse's rule; `None` keeps it.
    pub file_name: Option<String>,
}

impl CopyRequest {
    /// The name the copy gets: the sanitised one if any, else the source's.
    pub fn target_file_name(&self) -> Result<&str> {
        self.file_name
            .as_deref()
            .or(self.source.file_name.as_deref())
            .ok_or_else(|| {
                Error::InvalidInput(format!("file handle {} has no file name", self.source.id))
            })
    }

    /// The source's size, which every engine needs to plan and to verify.
    pub fn source_size(&self) -> Result<u64> {
        self.source.content_size.ok_or_else(|| {
            Error::InvalidInput(format!("file handle {} has no contentSize", self.source.id))
        })
    }

    /// How Synapse lets the caller read the source: through the entity that uses it.
    pub fn association(&self) -> FileHandleAssociation {
        FileHandleAssociation {
            file_handle_id: self.source.id.clone(),
            associate_object_id: self.entity_id.clone(),
            associate_object_type: self.association_type().to_owned(),
        }
    }

    /// How `entity_id` uses the handle, as Synapse's associations name it.
    pub fn association_type(&self) -> &'static str {
        match self.in_table {
            true => TABLE_ENTITY_ASSOCIATION,
            false => FILE_ENTITY_ASSOCIATION,
        }
    }
}

/// Which engine copies a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EngineKind {
    Synapse,
    Direct,
}

/// The `copyMode` option.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CopyMode {
    #[default]
    Synapse,
    Direct,
    /// Direct where it can work, Synapse elsewhere; see [`choose`].
    Auto,
}

/// What an engine needs to resume, complete or abort a copy. Small on purpose: it is stored in
/// the `FH#` record and passed through Step Functions (256 KiB payloads).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "engine", rename_all = "camelCase")]
pub enum EngineState {
    /// A Synapse multipart copy; Synapse keeps the parts and the destination key.
    #[serde(rename_all = "camelCase")]
    Synapse {
        upload_id: String,
        part_size: u64,
        part_count: u32,
    },
    /// A copy by the deployment's S3 role into `bucket`/`key`. `upload_id` is `None` for a
    /// single CopyObject. `source_etag` pins every request to the source version seen at start.
    #[serde(rename_all = "camelCase")]
    Direct {
        bucket: String,
        key: String,
        upload_id: Option<String>,
        source_etag: String,
        part_size: u64,
        part_count: u32,
    },
}

impl EngineState {
    pub fn kind(&self) -> EngineKind {
        match self {
            Self::Synapse { .. } => EngineKind::Synapse,
            Self::Direct { .. } => EngineKind::Direct,
        }
    }

    pub fn part_size(&self) -> u64 {
        match self {
            Self::Synapse { part_size, .. } | Self::Direct { part_size, .. } => *part_size,
        }
    }

    pub fn part_count(&self) -> u32 {
        match self {
            Self::Synapse { part_count, .. } | Self::Direct { part_count, .. } => *part_count,
        }
    }

    /// The multipart upload id (Synapse's or S3's), if the copy has one.
    pub fn upload_id(&self) -> Option<&str> {
        match self {
            Self::Synapse { upload_id, .. } => Some(upload_id),
            Self::Direct { upload_id, .. } => upload_id.as_deref(),
        }
    }

    /// The JSON document kept in `CopyRecord::engine_state`.
    pub fn to_document(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("an engine state always serialises")
    }

    /// Reads a document written by [`EngineState::to_document`].
    pub fn from_document(document: &serde_json::Value) -> Result<Self> {
        serde_json::from_value(document.clone())
            .map_err(|e| Error::Internal(format!("unreadable copy engine state: {e}")))
    }
}

/// Outcome of [`CopyEngine::start`].
#[derive(Debug, Clone, PartialEq)]
pub struct Started {
    pub state: EngineState,
    /// Parts already copied (ascending); empty for a fresh copy.
    pub parts_done: Vec<u32>,
    /// Set when the copy had already completed: the destination handle, nothing left to do.
    pub completed: Option<FileHandle>,
}

impl Started {
    /// The parts still to copy, ascending.
    pub fn parts_missing(&self) -> Vec<u32> {
        if self.completed.is_some() {
            return Vec::new();
        }
        (1..=self.state.part_count())
            .filter(|n| self.parts_done.binary_search(n).is_err())
            .collect()
    }
}

/// Knobs shared by both engines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Parts copied at the same time within one `copy_parts` call.
    pub concurrency: usize,
    /// Parts presigned per Synapse call. Presigned URLs expire after 15 minutes, so only as many
    /// as are about to be used; the default equals `concurrency`.
    pub presign_batch: usize,
    /// Tries of one part whose presigned URL S3 refused (expired): each try presigns again.
    pub presign_attempts: u32,
    /// Direct engine: sources up to this size are copied with one CopyObject (at most 5 GiB).
    pub copy_object_threshold: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            concurrency: 8,
            presign_batch: 8,
            presign_attempts: 4,
            copy_object_threshold: GIB,
        }
    }
}

impl EngineConfig {
    fn concurrency(&self) -> usize {
        self.concurrency.max(1)
    }
}

/// Told before an engine asks Synapse for a new file handle. A crash between Synapse creating
/// the handle and the caller recording it leaves a handle no one can find again (Synapse has no
/// lookup by key), so the caller writes down that one may exist, and the report counts them.
#[async_trait]
pub trait HandleJournal: Send + Sync {
    async fn before_new_handle(&self, request: &CopyRequest) -> Result<()>;
}

/// One way of copying a source handle into the destination. See the module docs.
#[async_trait]
pub trait CopyEngine: Send + Sync {
    fn kind(&self) -> EngineKind;

    /// Opens the copy, or resumes the one `resume` describes, and reports the parts already
    /// done. Calling it again with the same request gives the same upload.
    async fn start(&self, request: &CopyRequest, resume: Option<&EngineState>) -> Result<Started>;

    /// Copies `parts` (1-based numbers), at most `concurrency` at a time. Copying a part twice
    /// is harmless.
    async fn copy_parts(
        &self,
        request: &CopyRequest,
        state: &EngineState,
        parts: &[u32],
    ) -> Result<()>;

    /// Finishes the copy, checks it against the source and returns the destination file handle,
    /// registered in Synapse. Repeating it after a success returns the same handle (Synapse
    /// engine) or registers the same object again (direct engine: `journal` hears of it first).
    async fn complete(
        &self,
        request: &CopyRequest,
        state: &EngineState,
        journal: &dyn HandleJournal,
    ) -> Result<FileHandle>;

    /// [`Self::complete`] for several copies, at most `concurrency` at a time, answers in the
    /// order given. An engine may check the copies together (the Synapse engine reads their
    /// handles 100 per call); `Err` when such a shared call failed, for all of them.
    async fn complete_all(
        &self,
        copies: &[(&CopyRequest, &EngineState)],
        concurrency: usize,
        journal: &dyn HandleJournal,
    ) -> Result<Vec<Result<FileHandle>>> {
        Ok(stream::iter(copies)
            .map(|(request, state)| self.complete(request, state, journal))
            // Boxing erases the closure's lifetimes, which the `Send` check of the trait's
            // future cannot otherwise prove general enough.
            .boxed()
            .buffered(concurrency.max(1))
            .collect()
            .await)
    }

    /// Gives up a copy that will never complete.
    async fn abort(&self, state: &EngineState) -> Result<()>;
}

/// Both engines, to pick one by kind or by the state a copy saved.
pub struct Engines {
    pub synapse: SynapseEngine,
    pub direct: DirectEngine,
}

impl Engines {
    pub fn get(&self, kind: EngineKind) -> &dyn CopyEngine {
        match kind {
            EngineKind::Synapse => &self.synapse,
            EngineKind::Direct => &self.direct,
        }
    }

    /// The engine that wrote `state`: a copy is always resumed by the engine that started it.
    pub fn for_state(&self, state: &EngineState) -> &dyn CopyEngine {
        self.get(state.kind())
    }
}

/// Picks the engine for one file.
///
/// - `Synapse`: always the Synapse engine.
/// - `Direct`: the direct engine; `Fatal.InvalidInput` unless the destination is an external S3
///   location (Synapse registers caller-copied objects only there).
/// - `Auto`: the direct engine when the destination is an external S3 location and the
///   deployment can read the source object (a HeadObject with `s3` succeeds); the Synapse engine
///   when the HeadObject is refused (403) or finds nothing (404: the bucket is not visible to
///   this account). Throttling and transient HeadObject failures are returned, so a retry decides
///   later instead of silently taking the slower path. Write access to the destination bucket is
///   not probed: without it the direct copy fails with `Fatal.Forbidden`.
pub async fn choose(
    mode: CopyMode,
    request: &CopyRequest,
    s3: &aws_sdk_s3::Client,
) -> Result<EngineKind> {
    match mode {
        CopyMode::Synapse => Ok(EngineKind::Synapse),
        CopyMode::Direct if request.destination.is_external_s3() => Ok(EngineKind::Direct),
        CopyMode::Direct => Err(Error::InvalidInput(format!(
            "copyMode direct needs an external S3 destination; storage location {} is {}",
            request.destination.storage_location_id, request.destination.concrete_type
        ))),
        CopyMode::Auto if !request.destination.is_external_s3() => Ok(EngineKind::Synapse),
        CopyMode::Auto => match direct::head_source(s3, request).await {
            Ok(_) => Ok(EngineKind::Direct),
            Err(Error::Forbidden(reason) | Error::NotFound(reason)) => {
                tracing::debug!(source = %request.source.id, %reason, "source not readable, Synapse engine");
                Ok(EngineKind::Synapse)
            }
            Err(other) => Err(other),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_state_documents_round_trip_and_stay_small() {
        let states = [
            EngineState::Synapse {
                upload_id: "42".into(),
                part_size: 5 << 20,
                part_count: 3,
            },
            EngineState::Direct {
                bucket: "destination".into(),
                key: "base/synmigrate/123/a.txt".into(),
                upload_id: Some("s3-upload".into()),
                source_etag: "\"abc\"".into(),
                part_size: 5 << 20,
                part_count: 3,
            },
        ];
        for state in states {
            let document = state.to_document();
            assert!(document.to_string().len() < 1024);
            assert_eq!(EngineState::from_document(&document).unwrap(), state);
        }
        let synapse = serde_json::json!({"engine": "synapse", "uploadId": "7",
                                         "partSize": 5242880, "partCount": 1});
        let state = EngineState::from_document(&synapse).unwrap();
        assert_eq!(state.kind(), EngineKind::Synapse);
        assert_eq!(state.upload_id(), Some("7"));
        let err = EngineState::from_document(&serde_json::json!({"engine": "ftp"})).unwrap_err();
        assert_eq!(err.error_type(), "Fatal.Internal");
    }

    #[test]
    fn parts_missing_skips_done_parts() {
        let started = Started {
            state: EngineState::Synapse {
                upload_id: "1".into(),
                part_size: 5 << 20,
                part_count: 5,
            },
            parts_done: vec![1, 3],
            completed: None,
        };
        assert_eq!(started.parts_missing(), [2, 4, 5]);
    }

    #[test]
    fn copy_mode_reads_the_option_spelling() {
        for (text, mode) in [
            ("\"synapse\"", CopyMode::Synapse),
            ("\"direct\"", CopyMode::Direct),
            ("\"auto\"", CopyMode::Auto),
        ] {
            assert_eq!(serde_json::from_str::<CopyMode>(text).unwrap(), mode);
        }
    }
}
