//! Named crash points: places where a test kills the function process with SIGKILL, to prove
//! that every boundary between two durable writes survives a real crash.
//!
//! In release builds (every deployed function) [`point`] is an empty function. In debug builds
//! (the local stack's function binaries) a point fires when the directory named by [`CRASH_DIR_ENV`] holds a file
//! `armed/<n>-<point>`: the first process to reach that point renames the file into `fired/`
//! (a rename is atomic, so exactly one process wins each armed file) and kills itself. Arming a
//! point `k` times crashes it `k` times, which exhausts the state machine's retries.

/// The environment variable naming the crash directory (tests only).
pub const CRASH_DIR_ENV: &str = "SYNMIGRATE_CRASH_DIR";

/// Init: the project lock is taken, the run not yet opened.
pub const INIT_AFTER_LOCK: &str = "init.after-lock";
/// Index: a page's items are written, the frontier is not.
pub const INDEX_AFTER_PAGE: &str = "index.after-page";
/// Plan: the manifest is written, the Map has not read it.
pub const PLAN_AFTER_MANIFEST: &str = "plan.after-manifest";
/// StartCopy: the unit's items are claimed, no copy started.
pub const START_COPY_AFTER_CLAIM: &str = "start-copy.after-claim";
/// StartCopy: a copy's upload exists (S3 or Synapse), its id is not saved yet.
pub const START_COPY_AFTER_UPLOAD_STARTED: &str = "start-copy.after-upload-started";
/// An engine copied one part of a multipart copy (CopyParts, mid-batch).
pub const AFTER_PART_COPIED: &str = "copy.after-part";
/// Complete: the S3 or Synapse multipart upload is completed, nothing checked or registered.
pub const COMPLETE_AFTER_UPLOAD_COMPLETED: &str = "complete.after-upload-completed";
/// Complete: the copy's file handle exists in Synapse, the copy is not recorded.
pub const COMPLETE_AFTER_HANDLE: &str = "complete.after-handle";
/// Complete: the copy is recorded COPIED, no entity updated.
pub const COMPLETE_AFTER_COPY_RECORDED: &str = "complete.after-copy-recorded";
/// Complete: the entity points at the copy, the item is not recorded MIGRATED.
pub const COMPLETE_AFTER_ENTITY_UPDATE: &str = "complete.after-entity-update";
/// RecordFailure: one of the failed unit's items is recorded ERRORED, the others are not.
pub const RECORD_FAILURE_AFTER_FIRST_ITEM: &str = "record-failure.after-first-item";
/// Report: the report is written and the run closed, the lock not released.
pub const REPORT_BEFORE_LOCK_RELEASE: &str = "report.before-lock-release";

/// Nothing: release builds have no crash points.
#[cfg(not(debug_assertions))]
#[inline(always)]
pub(crate) fn point(_name: &str) {}

/// Kills this process if a test armed the point (debug builds only).
#[cfg(debug_assertions)]
pub(crate) fn point(name: &str) {
    let Some(dir) = std::env::var_os(CRASH_DIR_ENV).map(std::path::PathBuf::from) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(dir.join("armed")) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let armed_here = file
            .to_str()
            .and_then(|f| f.split_once('-'))
            .is_some_and(|(_, point)| point == name);
        if armed_here && std::fs::rename(entry.path(), dir.join("fired").join(&file)).is_ok() {
            tracing::error!(point = name, "crash point armed: killing this process");
            // SAFETY: kill(2) on our own pid with a valid signal number has no memory effects.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
    }
}
