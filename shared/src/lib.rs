//! Migration core of synmigrate: everything the Lambdas, the CLI and the tests share.
//!
//! synmigrate moves every file of a Synapse project into another storage location without
//! downloading anything: S3 copies the bytes server-side, then each entity is pointed at the copy.
//!
//! # Stages
//! The pipeline is a Step Functions state machine with one Lambda per stage; each stage is one
//! async function in [`stages`], one file (or folder) per stage, taking the shared
//! [`context::Services`] and a small camelCase JSON input (payloads are capped at 256 KiB, so
//! stages pass keys and read state from the store):
//!
//! 1. **init**: validates the input, reads the destination storage location (only its creator
//!    may), takes the project lock (a live holder ends the run with `Fatal.AlreadyRunning`) and
//!    opens the run.
//! 2. **index**, repeated until `done`: walks the project depth-first within a time budget,
//!    saving its frontier after every children page, and writes one item per file version the
//!    strategy selects ([`stages::index::walk`]): INDEXED, ALREADY_MIGRATED, or SKIPPED with a reason.
//! 3. **plan**: pages through the items to copy in plan order (biggest source first, a source's
//!    items together) and groups them into work units as it goes
//!    ([`stages::plan::units::UnitPlanner`]: many small files per unit, one big file per unit,
//!    items sharing a source handle together, the fan-in of a widely shared source spread over
//!    follower units), writing the manifests the Distributed Map reads (leads, then followers).
//! 4. **start_copy** (per unit): leases the items and each source's copy record, starts or
//!    resumes each copy with the chosen [`copy`] engine, copies small files at once and returns
//!    the part batches of big ones.
//! 5. **copy_parts** (per batch): copies one batch of parts with bounded concurrency.
//! 6. **complete** (per unit): finishes each copy, records it, updates each entity
//!    ([`stages::complete::update`]) and records the item MIGRATED; a failing item is recorded ERRORED and the
//!    others go on.
//! 7. **record_failure**: the Catch target; marks a failed unit's unfinished items ERRORED.
//! 8. **report**: counts per status, a CSV report in S3 ([`stages::report::csv`]), finishes the run and
//!    releases the lock.
//!
//! [`runner::run_migration`] calls the same functions in the same order in one process.
//!
//! | stage | file (in `stages/`) | reads | writes | Synapse calls | S3 calls |
//! |---|---|---|---|---|---|
//! | init | `init.rs` | input | lock, run | storage location, entity | - |
//! | index | `index/mod.rs`, `index/walk.rs` | frontier, items | lock, frontier, items, counters | entity bundles, children pages, version pages | - |
//! | plan | `plan/mod.rs`, `plan/units.rs` | items (INDEXED, ERRORED, COPYING, COPIED) | lock, manifest | - | PutObject (manifest) |
//! | start_copy | `start_copy.rs` | items, copy records | items (COPYING/COPIED), copy records and engine state, lock | file handle batch; Synapse engine: start multipart copy, presign parts, add part | HeadObject (auto mode); direct engine: CreateMultipartUpload, UploadPartCopy/CopyObject, ListParts |
//! | copy_parts | `copy_parts.rs` | copy record | copy lease | Synapse engine: presign parts, add part | direct engine: UploadPartCopy |
//! | complete | `complete/mod.rs`, `complete/update.rs` | items, copy records | copy records (COPIED, unused mark), items (MIGRATED/ERRORED), counters | complete multipart copy or create external S3 handle, entity bundle, file handle batch, entity/version update | direct engine: CompleteMultipartUpload, AbortMultipartUpload |
//! | record_failure | `record_failure.rs` | items, copy records | items (ERRORED), copy unused mark, counters | - | - |
//! | report | `report/mod.rs`, `report/csv.rs` | items, copy records, run counters | run (finished), lock released | - | PutObject (report, orphaned copies) |
//!
//! The copy stages share their view of a unit (`stages/unit.rs`); every stage shares
//! [`context`] (services, tuning, run context, the clock), which imports no stage.
//!
//! # State
//! One DynamoDB table ([`state`]) holds, per migration (project and destination): the lock, the
//! runs with their counters, the index frontier, one item per file version and one copy record
//! per source file handle. Items move INDEXED -> COPYING -> COPIED -> MIGRATED, or end as
//! ALREADY_MIGRATED or SKIPPED; ERRORED (with the error type, message and a retryable flag) is
//! reachable from every unfinished status. Every write is conditional, and claims are leases
//! that expire, so the work of a crashed Lambda is picked up again by a later attempt or run.
//!
//! # Idempotency
//! - Re-indexing never overwrites an item in a later state; a file found in the destination
//!   because of one of our items leaves that item to finish instead of replacing it.
//! - A source file handle is copied once, shared by every entity that uses it, and the copy's
//!   destination handle is recorded *before* any entity is touched.
//! - An entity is written only on the condition that it is as indexed: `new` PUTs the entity
//!   read at index with that read's etag, `all`/`latest` swap naming the source as the old
//!   handle. Synapse refuses either with 412 once it changed; only then is it read: if it points
//!   at the copy or any handle in the destination, the item is recorded MIGRATED without a
//!   write, so a crash between update and state write never yields a second version. An entity
//!   that points at another file changed after indexing and is left alone (`Fatal.Conflict`).
//! - Plan retries INDEXED items, retryable ERRORED items under `maxAttempts`, and in-flight
//!   items whose lease expired; a copy is resumed from its saved engine state.
//! - Uploads that fail verification are aborted; sources are never changed or deleted.
//!
//! # Errors
//! Every error has a stable type name ([`error::types`]): `Retryable.*` ones are retried by the
//! state machine and by the next run, `Fatal.*` ones are recorded with a readable message.

pub mod artifacts;
pub mod budget;
pub mod config;
pub mod context;
pub mod copy;
pub mod crash;
pub mod error;
mod error_chain;
mod error_types;
pub mod estimate;
pub mod index;
pub mod manifest;
pub mod metrics;
pub mod plan;
pub mod report;
pub mod runner;
pub mod stages;
pub mod state;
pub mod synapse;
pub mod update;

pub use error::{Error, Result};
pub use error_chain::error_chain;
