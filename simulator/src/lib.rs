//! A local Synapse server for the endpoints a storage-location migration uses (see
//! `synapse-api.md` in the reference docs), storing bytes in a local S3 (moto) and handing out real
//! SigV4-presigned `UploadPartCopy` URLs, so that both this project's client and the official Python
//! client can migrate through it.
//!
//! ```no_run
//! # async fn demo(sdk: aws_config::SdkConfig) -> Result<(), synapse_sim::SimError> {
//! let fixture = synapse_sim::Fixture::generate(100, 7);
//! let sim = synapse_sim::Simulator::start(synapse_sim::SimConfig::new(sdk), &fixture).await?;
//! println!("{}", sim.repo_endpoint());
//! sim.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Fixture format (JSON)
//!
//! ```json
//! {
//!   "users": [{"userName": "owner", "ownerId": "3350001", "token": "owner-token"}],
//!   "storageLocations": [
//!     {"storageLocationId": 1, "kind": "synapse", "bucket": "synapse-storage"},
//!     {"storageLocationId": 7001, "kind": "externalS3", "bucket": "dest", "baseKey": "migrated",
//!      "createdBy": "owner", "region": "us-east-1", "stsEnabled": false}
//!   ],
//!   "fileHandles": {"shared": {"content": {"text": "same bytes"}, "fileName": "shared.txt"}},
//!   "projects": [{
//!     "name": "Project", "owner": "owner", "acl": {"other": ["READ", "DOWNLOAD", "UPDATE"]},
//!     "children": [
//!       {"type": "folder", "name": "data", "children": [
//!         {"type": "file", "name": "a.bin",
//!          "versions": [{"content": {"size": 1048576, "seed": 1}},
//!                       {"content": {"text": "v2"}, "contentType": "text/plain"}],
//!          "annotations": {"tissue": ["liver"]},
//!          "versionMeta": [{"label": "raw", "comment": "as delivered"},
//!                          {"annotations": {"tissue": ["liver"], "qc": ["passed"]}}],
//!          "acl": {"other": ["READ", "DOWNLOAD"]}},
//!         {"type": "file", "name": "b.txt", "versions": [{"handle": "shared"}]},
//!         {"type": "table", "name": "samples",
//!          "columns": [{"name": "file", "columnType": "FILEHANDLEID"},
//!                      {"name": "label", "columnType": "STRING", "maximumSize": 20},
//!                      {"name": "n", "columnType": "INTEGER"}],
//!          "rows": [{"file": {"content": {"text": "row 1"}, "fileName": "r1.txt"}, "label": "a", "n": 1},
//!                   {"file": {"handle": "shared"}, "label": "b"},
//!                   {"label": "no file"}]}
//!       ]}
//!     ]
//!   }]
//! }
//! ```
//!
//! - `users`: `token` is the bearer token (never logged or printed); `ownerId` is the numeric user id.
//!   Every user has passed the certification quiz but those named (by userName) in the optional
//!   top-level `uncertifiedUsers`: they may update projects only, whatever the ACL grants (403
//!   `Only certified users may create or update content in Synapse.`), as on the server.
//! - `storageLocations`: `kind` is `synapse` (an `S3StorageLocationSetting`, Synapse's own storage)
//!   or `externalS3` (an `ExternalS3StorageLocationSetting`); `createdBy` is a userName (only the
//!   creator may read it, copy into it or register objects in it); `region` defaults to the
//!   simulator's. Every bucket is created at seeding.
//! - `versionMeta`: per version (in the order of `versions`) its `label` (default: its number;
//!   unique per entity), `comment` and `annotations` (default: the file's `annotations`, which
//!   every version carries, as Synapse copies them into each new version).
//! - `fileHandles`: named handles that several versions share (`{"handle": "name"}` in `versions`).
//! - `projects`: the owner gets every permission a creator gets on Synapse (READ, DOWNLOAD,
//!   UPDATE, CREATE, DELETE, CHANGE_PERMISSIONS, CHANGE_SETTINGS, MODERATE); `acl` grants others
//!   (by userName) any of these. Folders and files may carry an `acl` that replaces the inherited
//!   one for their subtree (the project owner keeps every permission). The endpoints check READ,
//!   DOWNLOAD and UPDATE; the others show in `GET /entity/{id}/permissions`.
//! - A version (or named handle) has `kind` = `s3` (default), `external` (with `externalUrl`),
//!   `googleCloud` or `proxy`; `content` is `{"size": N, "seed": S}` (deterministic bytes,
//!   generated and uploaded in streaming parts) or `{"text": "..."}`; `storageLocationId` defaults
//!   to the lowest `synapse` location; `fileName` defaults to the entity name; `contentType`;
//!   `createdBy` (userName, default the project owner); `omitMd5: true` leaves `contentMd5` out;
//!   `declaredSize` makes the handle claim another `contentSize` (to reach the 10,000-part limit).
//! - `table`: a `TableEntity` (one version, labelled `in progress`) with `columns` (`columnType`
//!   `FILEHANDLEID`, `STRING` with `maximumSize` (default 50) or `INTEGER`; at least one, names
//!   distinct; equal definitions share one column model id, from 100) and `rows`: each a map from
//!   column name to cell (text for STRING, a number for INTEGER, for FILEHANDLEID a handle written
//!   as a file version is: `{"handle": "name"}` or the handle itself, `fileName` defaulting to
//!   `<table>-row<n>-<column>`); a column left out is null, a row with no cell is skipped (as the
//!   server skips it). Rows get ids 1, 2, ... and row version 1 (the schema change took id and
//!   version 0); tables may carry an `acl` like files. [`RunningSim::table`] and
//!   `GET /admin/tables/{id}` show the rows.
//! - Entity ids are assigned depth-first in file order from `syn1000`; the S3 key of a handle is
//!   `{baseKey/}{ownerId}/{uuid}/{fileName}`. [`RunningSim::entity_id`] maps `Project/dir/name` to ids.
//!
//! # Behaviour
//! Bearer-token auth (401), per-entity ACL checks (403), the server's `ErrorResponse` JSON
//! (`{"concreteType": "org.sagebionetworks.repo.model.ErrorResponse", "reason": ...}`) with its
//! status codes, per-caller throttling ([`ThrottleConfig`]; its 429s carry only `reason`, as the
//! server's throttle filter writes them), seeded fault injection ([`FaultConfig`])
//! and a request log of every `/repo/v1` and `/file/v1` request (method, route template, status,
//! user id) readable through [`RunningSim`] and `GET /admin/requests` (`POST /admin/requests/reset`).
//! `GET /admin/entities/{id}`, `GET /admin/tables/{id}` and `GET /admin/fileHandles/{id}` show
//! state without auth.
//!
//! # Strict where Synapse is strict
//! Every rule below is traced to the server source and proven by a test that the simulator
//! refuses what the server refuses, with its status and reason; the official client's migration
//! (`tests/it/python_client.rs`) proves the other direction.
//!
#![doc = include_str!("../rules/repo-service.md")]
#![doc = include_str!("../rules/file-service.md")]

mod api;
mod app;
mod config;
mod error;
mod faults;
mod fixture;
mod guard;
mod names;
mod presign;
mod request_log;
mod seed;
mod server;
mod sql;
mod store;
mod tables;
mod throttle;
mod util;

pub use app::{EntitySnapshot, TableRowView, TableView};
pub use config::{Burst, FaultConfig, SimConfig, ThrottleConfig};
pub use error::{ApiError, SimError};
pub use fixture::{
    AclSpec, CellSpec, ColumnSpec, ColumnType, Content, Fixture, HandleKind, HandleSpec,
    LocationKind, NodeSpec, Permission, ProjectSpec, StorageLocationSpec, UserSpec, VersionMeta,
    VersionSpec,
};
pub use request_log::{RequestCounts, RequestRecord};
pub use seed::{content_bytes, ContentStream};
pub use server::{RunningSim, Simulator};
