//! What the commands read from the state table: the migration the flags name, its items page
//! by page, its newest run.

use synmigrate::state::dynamo::DynamoStore;
use synmigrate::state::{ItemRecord, MigrationKey, RunRecord, StateStore};

use crate::args::MigrationArgs;
use crate::error::CliError;
use crate::naming::{check_destination, check_project};

/// Items per state table page.
const PAGE: u32 = 500;

pub(crate) fn migration(args: &MigrationArgs) -> Result<MigrationKey, CliError> {
    check_project(&args.project)?;
    check_destination(args.destination)?;
    MigrationKey::with_destination(&args.project, args.destination).map_err(CliError::from)
}

/// Visits every item of the migration, page by page (a big project's items do not fit in memory
/// at once).
pub(super) async fn each_item(
    store: &DynamoStore,
    migration: &MigrationKey,
    mut visit: impl FnMut(ItemRecord) -> Result<(), CliError>,
) -> Result<(), CliError> {
    let mut token: Option<String> = None;
    loop {
        let page = store
            .list_items(migration, None, PAGE, token.as_deref())
            .await?;
        page.items.into_iter().try_for_each(&mut visit)?;
        match page.next_token {
            Some(next) => token = Some(next),
            None => return Ok(()),
        }
    }
}

pub(crate) fn newest_run(runs: &[RunRecord]) -> Option<&RunRecord> {
    runs.iter()
        .max_by(|a, b| (a.started_at, &a.run_id).cmp(&(b.started_at, &b.run_id)))
}
