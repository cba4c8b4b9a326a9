//! `synmigrate status`: the lock and the runs of a migration.

use std::io::Write;

use synmigrate::stages::now;
use synmigrate::state::StateStore;

use super::records::migration;
use crate::args::{Deployment, MigrationArgs};
use crate::aws::Aws;
use crate::error::{CliError, Verdict};
use crate::render;

pub(super) async fn status(
    deployment: &Deployment,
    args: &MigrationArgs,
    out: &mut dyn Write,
) -> Result<Verdict, CliError> {
    let migration = migration(args)?;
    let table = deployment.table()?;
    let store = Aws::load().await.store(table);
    let lock = store.get_lock(&migration).await?;
    let runs = store.list_runs(&migration).await?;
    let text = render::status_text(&args.project, args.destination, lock.as_ref(), &runs, now());
    out.write_all(text.as_bytes())?;
    Ok(Verdict::Clean)
}
