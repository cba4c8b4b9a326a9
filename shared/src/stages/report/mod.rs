//! Stage 8, Report: counts the items per status, writes the CSV report ([`csv`]) and the list
//! of orphaned copies to S3, finishes the run and releases the lock.

use serde::{Deserialize, Serialize};

use super::estimate;
use crate::artifacts::ArtifactWriter;
use crate::context::{now, RunContext, Services, LIST_PAGE};
use crate::estimate::Estimate;
use crate::state::{copies_where, ItemRecord, RunCounters, RunStatus, StatusName};
use crate::Result;

pub mod csv;
mod uploads;

use self::csv::{
    csv_row, folder_row, orphaned_copy_row, ItemTotals, CSV_HEADER, FOLDERS_HEADER,
    ORPHANED_COPIES_HEADER,
};
use uploads::{cleanup_advice, unfinished_upload, upload_note};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportInput {
    pub run: RunContext,
    /// The run stopped early (a stage failed, or an error with `continueOnError` off).
    #[serde(default)]
    pub aborted: bool,
}

/// The run's result, as the last stage returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub project_id: String,
    /// `None`: an aligned run (each file went to its folder's upload location).
    pub destination_storage_location_id: Option<i64>,
    pub run_id: String,
    pub status: RunStatus,
    pub dry_run: bool,
    /// Every item of this migration (all runs so far) by status.
    pub totals: ItemTotals,
    /// What this run did (items indexed, migrated, errored; bytes it copied).
    pub run_counters: RunCounters,
    pub report_bucket: String,
    pub report_key: String,
    /// Finished copies no entity points at (their updates failed), over all runs so far.
    pub orphaned_copies: u64,
    /// Handles the direct engine may have registered in Synapse that no record names (an
    /// attempt crashed between registering and recording), over all runs so far; listed in the
    /// orphaned copies' CSV.
    #[serde(default)]
    pub possibly_orphaned_handles: u64,
    /// Multipart uploads left unfinished in the destination (their copies failed or wait for a
    /// retry), over all runs so far; listed in the orphaned copies' CSV.
    #[serde(default)]
    pub unfinished_uploads: u64,
    /// What becomes of those uploads' parts and what to do (the destination bucket's lifecycle
    /// rule, checked where the deployment may read it); absent when there are none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_cleanup: Option<String>,
    /// The CSV listing them with the reason (`from_file_handle_id,to_file_handle_id,reason`);
    /// absent when there are none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orphaned_copies_key: Option<String>,
    /// Files this run left unmigrated without an error: still INDEXED, or COPYING/COPIED under
    /// another attempt's lease (a crashed invocation's, until it expires). A run with any is not
    /// a success, whatever `continueOnError` says.
    #[serde(default)]
    pub unfinished: u64,
    /// What to do about them, for the execution's failure cause and the CLI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unfinished_message: Option<String>,
    /// An aligned run's plan per folder; absent for a run with one destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folders: Option<FolderList>,
    /// A dry run's estimate of the run it stands for: what copying the files it indexed would
    /// take ([`crate::estimate`]); absent for other runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate: Option<Estimate>,
}

/// The items a finished run left behind without an error (see [`Summary::unfinished`]).
#[derive(Debug, Default)]
pub(super) struct Unfinished {
    /// INDEXED: no unit took them on.
    waiting: u64,
    /// COPYING/COPIED under an unexpired lease, and when the last such lease expires.
    held: u64,
    held_until: Option<i64>,
    /// COPYING/COPIED whose lease ran out: the next run takes them over.
    abandoned: u64,
}

impl Unfinished {
    pub(super) fn add(&mut self, item: &ItemRecord, at: i64) {
        match item.status.name() {
            StatusName::Indexed => self.waiting += 1,
            StatusName::Copying | StatusName::Copied => {
                match item.lease.as_ref().filter(|l| l.expires_at > at) {
                    Some(lease) => {
                        self.held += 1;
                        self.held_until = self.held_until.max(Some(lease.expires_at));
                    }
                    None => self.abandoned += 1,
                }
            }
            _ => {}
        }
    }

    pub(super) fn count(&self) -> u64 {
        self.waiting + self.held + self.abandoned
    }

    pub(super) fn message(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(until) = self.held_until {
            let until = aws_sdk_s3::primitives::DateTime::from_secs(until)
                .fmt(aws_sdk_s3::primitives::DateTimeFormat::DateTime)
                .unwrap_or_else(|_| until.to_string());
            parts.push(format!(
                "{} files are held by an earlier attempt until {until}; run again after that",
                self.held
            ));
        }
        if self.waiting + self.abandoned > 0 {
            parts.push(format!(
                "{} files were not migrated by this run; run again",
                self.waiting + self.abandoned
            ));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// In a dry run with `deleteSourceFileHandles`, a file to migrate as the report shows it: with
/// the deletion its source handle would get (Complete decides it for real).
fn would_delete(run: &RunContext, item: &ItemRecord) -> Option<ItemRecord> {
    let planned = run.options.dry_run
        && run.options.delete_source_file_handles
        && item.status == crate::state::ItemStatus::Indexed;
    planned.then(|| ItemRecord {
        source_handle: Some(
            "would be deleted once every file using it points at its copy, unless Synapse \
             finds another use or another creator"
                .to_owned(),
        ),
        ..item.clone()
    })
}

/// Writes the CSV report, finishes the run and releases the lock.
pub async fn report(services: &Services, input: ReportInput) -> Result<Summary> {
    let run = &input.run;
    let migration = run.migration()?;
    let mut totals = ItemTotals::default();
    let mut unfinished = Unfinished::default();
    let at = now();
    let key = run.report_key();
    // Page by page into a multipart upload: memory does not grow with the project.
    let mut csv = ArtifactWriter::new(services, key.clone(), "text/csv");
    csv.write(format!("{CSV_HEADER}\n").as_bytes()).await?;
    let mut token: Option<String> = None;
    loop {
        let page = services
            .store
            .list_items(&migration, None, LIST_PAGE, token.as_deref())
            .await?;
        let mut rows = String::new();
        for item in &page.items {
            totals.add(item);
            if run.takes(item) {
                unfinished.add(item, at);
            }
            let destination = run.destination_storage_location_id;
            match would_delete(run, item) {
                Some(planned) => rows.push_str(&csv_row(&planned, destination)),
                None => rows.push_str(&csv_row(item, destination)),
            }
        }
        csv.write(rows.as_bytes()).await?;
        match page.next_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    csv.finish().await?;
    let folders = report_folders(services, run).await?;
    let estimate = match run.options.dry_run {
        true => Some(estimate(services.store.as_ref(), run, &services.tuning).await?),
        false => None,
    };
    let orphans = report_orphaned_copies(services, run, at).await?;
    let upload_cleanup = match orphans.uploads {
        0 => None,
        count => Some(cleanup_advice(services, run, count).await),
    };
    if let Some(advice) = &upload_cleanup {
        tracing::warn!(run = %run.run_id, %advice, "unfinished multipart uploads");
    }
    let counters = services
        .store
        .get_run(&migration, &run.run_id)
        .await?
        .map(|r| r.counters)
        .unwrap_or_default();
    let errored_now = counters
        .by_status
        .get(&StatusName::Errored)
        .copied()
        .unwrap_or_default();
    // A dry run leaves every file INDEXED on purpose.
    let unfinished = if run.options.dry_run {
        Unfinished::default()
    } else {
        unfinished
    };
    let status = if input.aborted {
        RunStatus::Aborted
    } else if errored_now > 0 || unfinished.count() > 0 {
        RunStatus::Failed
    } else {
        RunStatus::Succeeded
    };
    let unfinished_message = unfinished.message();
    if let Some(message) = &unfinished_message {
        tracing::warn!(run = %run.run_id, %message, "the run left files unmigrated");
    }
    services
        .store
        .finish_run(&migration, &run.run_id, status, now())
        .await?;
    crate::crash::point(crate::crash::REPORT_BEFORE_LOCK_RELEASE);
    services.store.release_lock(&migration, &run.run_id).await?;
    tracing::info!(run = %run.run_id, status = status.as_str(), items = totals.items, "run finished");
    Ok(Summary {
        project_id: run.project_id.clone(),
        destination_storage_location_id: run.destination_storage_location_id,
        run_id: run.run_id.clone(),
        status,
        dry_run: run.options.dry_run,
        totals,
        run_counters: counters,
        report_bucket: services.bucket.clone(),
        report_key: key,
        orphaned_copies: orphans.copies,
        possibly_orphaned_handles: orphans.handles,
        unfinished_uploads: orphans.uploads,
        upload_cleanup,
        orphaned_copies_key: orphans.key,
        unfinished: unfinished.count(),
        unfinished_message,
        folders,
        estimate,
    })
}

/// An aligned run's folder list: where each folder's files go and what the walk found there.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FolderList {
    /// The CSV (see [`csv::FOLDERS_HEADER`]).
    pub key: String,
    /// Folders (and the project) the run walked.
    pub folders: u64,
    /// Those whose upload location cannot take copies, and the first of them with the reason.
    pub not_writable: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_not_writable: Option<String>,
}

/// Writes an aligned run's folder list, page by page; `None` for a run with one destination.
async fn report_folders(services: &Services, run: &RunContext) -> Result<Option<FolderList>> {
    if run.destination_storage_location_id.is_some() {
        return Ok(None);
    }
    let migration = run.migration()?;
    let mut list = FolderList {
        key: run.folders_key(),
        ..FolderList::default()
    };
    let mut csv = ArtifactWriter::new(services, list.key.clone(), "text/csv");
    csv.write(format!("{FOLDERS_HEADER}\n").as_bytes()).await?;
    let mut token: Option<String> = None;
    loop {
        let page = services
            .store
            .list_folders(&migration, &run.run_id, LIST_PAGE, token.as_deref())
            .await?;
        let mut rows = String::new();
        for folder in &page.items {
            list.folders += 1;
            if let Some(why) = &folder.not_writable {
                list.not_writable += 1;
                list.first_not_writable.get_or_insert_with(|| {
                    format!(
                        "{} uploads to storage location {}: {why}",
                        folder.folder_id, folder.destination_storage_location_id
                    )
                });
            }
            rows.push_str(&folder_row(folder));
        }
        csv.write(rows.as_bytes()).await?;
        match page.next_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    csv.finish().await?;
    Ok(Some(list))
}

/// What the orphaned copies' CSV lists.
#[derive(Debug, Default)]
struct Orphans {
    copies: u64,
    handles: u64,
    uploads: u64,
    key: Option<String>,
}

/// Lists the finished copies no entity points at, the handles no record names and the uploads
/// left unfinished in their own CSV; returns their counts and the CSV's key (none when there
/// are none).
async fn report_orphaned_copies(services: &Services, run: &RunContext, at: i64) -> Result<Orphans> {
    let listed = copies_where(services.store.as_ref(), &run.migration()?, |copy| {
        copy.is_orphaned()
            || copy.unrecorded_handles() > 0
            || unfinished_upload(copy, run, at).is_some()
    })
    .await?;
    if listed.is_empty() {
        return Ok(Orphans::default());
    }
    let key = run.orphaned_copies_key();
    let mut csv = ArtifactWriter::new(services, key.clone(), "text/csv");
    csv.write(format!("{ORPHANED_COPIES_HEADER}\n").as_bytes())
        .await?;
    let mut orphans = Orphans::default();
    for copy in &listed {
        let mut rows = orphaned_copy_row(copy);
        orphans.copies += u64::from(copy.is_orphaned());
        orphans.handles += u64::from(copy.unrecorded_handles());
        if let Some(upload) = unfinished_upload(copy, run, at) {
            orphans.uploads += 1;
            rows.push_str(&self::csv::note_row(copy, &upload_note(&upload)));
        }
        csv.write(rows.as_bytes()).await?;
    }
    csv.finish().await?;
    tracing::warn!(copies = orphans.copies, handles = orphans.handles, uploads = orphans.uploads,
                   %key, "copies no entity points at, handles no record names, unfinished uploads");
    orphans.key = Some(key);
    Ok(orphans)
}
