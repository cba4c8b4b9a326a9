//! `synmigrate verify`: proves the copy of every migrated file again from what the copy's record
//! keeps (both objects and the source's MD5), one row per file. S3 only, no Synapse call, so it
//! can run long after the migration, and with `--level bytes` it reads copies of any size (the
//! functions read up to their limit and fall back to `checksum` above it). A copy several files
//! share is proven once per page of files.

use std::collections::BTreeMap;
use std::io::Write;

use futures::{stream, StreamExt};
use synmigrate::config::VerifyLevel;
use synmigrate::copy::verify::{CopyProof, Verifier, VerifyLimits};
use synmigrate::error::types;
use synmigrate::report::csv_line;
use synmigrate::state::dynamo::DynamoStore;
use synmigrate::state::{CopyStatus, MigrationKey, StateStore, StatusName};

use super::records::migration;
use crate::args::{Deployment, VerifyArgs};
use crate::aws::Aws;
use crate::error::{CliError, Verdict};

/// The header of `verify`'s CSV.
pub const VERIFY_HEADER: &str =
    "id,version,from_file_handle_id,to_file_handle_id,destination,result,proof";

/// Items per state table page.
const PAGE: u32 = 500;

/// What one copy's check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Proven,
    /// S3 offers no proof for it (the reason is in the row).
    Unproven,
    /// The proof shows a difference.
    Failed,
    /// The check could not be made (S3 refused or failed).
    Error,
    /// The record keeps no objects to prove (a copy recorded before proofs were kept).
    NotRecorded,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Proven => "proven",
            Outcome::Unproven => "unproven",
            Outcome::Failed => "FAILED",
            Outcome::Error => "error",
            Outcome::NotRecorded => "not recorded",
        }
    }
}

pub(crate) async fn verify(
    deployment: &Deployment,
    args: &VerifyArgs,
    out: &mut dyn Write,
) -> Result<Verdict, CliError> {
    let migration = migration(&args.migration)?;
    let level = VerifyLevel::from(args.level);
    if level == VerifyLevel::Metadata {
        return Err(CliError::Usage(
            "--level metadata proves nothing S3 can show: use checksum or bytes".to_owned(),
        ));
    }
    let table = deployment.table()?;
    let aws = Aws::load().await;
    let store = aws.store(table);
    let verifier = Verifier::new(aws.s3(), VerifyLimits::default());
    writeln!(out, "{VERIFY_HEADER}")?;
    let mut counts = [0u64; 5];
    let mut token: Option<String> = None;
    loop {
        let page = store
            .list_items(&migration, None, PAGE, token.as_deref())
            .await?;
        let migrated: Vec<_> = page
            .items
            .iter()
            .filter(|item| item.status.name() == StatusName::Migrated)
            .collect();
        // One check per copy (an aligned run may copy a source into two locations).
        let mut copies: Vec<String> = migrated.iter().map(|item| item.copy_id()).collect();
        copies.sort_unstable();
        copies.dedup();
        let checked: BTreeMap<String, Checked> = stream::iter(copies)
            .map(|copy| {
                let (store, verifier, migration) = (&store, &verifier, &migration);
                async move {
                    let checked = check(store, verifier, level, migration, &copy).await;
                    (copy, checked)
                }
            })
            .buffered(args.concurrency.max(1))
            .collect()
            .await;
        for item in migrated {
            let checked = &checked[&item.copy_id()];
            counts[checked.outcome as usize] += 1;
            let fields = [
                item.key.entity_id.as_str(),
                &item.key.version.to_string(),
                &item.source_file_handle_id,
                item.destination_file_handle_id
                    .as_deref()
                    .unwrap_or_default(),
                &checked.destination,
                checked.outcome.as_str(),
                &checked.proof,
            ];
            out.write_all(csv_line(&fields).as_bytes())?;
        }
        match page.next_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    let [proven, unproven, failed, errors, not_recorded] = counts;
    eprintln!(
        "{} migrated files checked at level {}: {proven} proven, {unproven} without a proof S3 \
         can give, {failed} FAILED, {errors} not checked (S3 or state errors), {not_recorded} \
         without recorded objects",
        counts.iter().sum::<u64>(),
        level.as_str()
    );
    Ok(if failed + errors > 0 {
        Verdict::Failures
    } else {
        Verdict::Clean
    })
}

/// What proving one copy again found.
struct Checked {
    outcome: Outcome,
    destination: String,
    proof: String,
}

/// Proves the finished copy `copy_id` ([`synmigrate::state::copy_id`]) again.
async fn check(
    store: &DynamoStore,
    verifier: &Verifier,
    level: VerifyLevel,
    migration: &MigrationKey,
    copy_id: &str,
) -> Checked {
    let checked = |outcome: Outcome, destination: String, proof: String| Checked {
        outcome,
        destination,
        proof,
    };
    let copy = match store.get_copy(migration, copy_id).await {
        Ok(Some(copy)) if copy.status == CopyStatus::Copied => copy,
        Ok(_) => {
            return checked(
                Outcome::NotRecorded,
                String::new(),
                "no finished copy is recorded".to_owned(),
            )
        }
        Err(error) => return checked(Outcome::Error, String::new(), error.to_string()),
    };
    let recorded = CopyProof::from_document(copy.verification.as_ref());
    let Some(object) = recorded.and_then(|proof| proof.object) else {
        return checked(
            Outcome::NotRecorded,
            String::new(),
            "the record keeps no objects (copied before proofs were kept, or not S3)".to_owned(),
        );
    };
    let destination = object.destination.to_string();
    let proven = match level {
        VerifyLevel::Bytes => verifier.prove_bytes_unbounded(&object).await,
        other => verifier.prove(other, &object).await,
    };
    match proven {
        Ok(verified) if verified.is_unproven() => {
            checked(Outcome::Unproven, destination, verified.to_string())
        }
        Ok(verified) => checked(Outcome::Proven, destination, verified.to_string()),
        Err(error) if error.error_type() == types::VERIFICATION => {
            checked(Outcome::Failed, destination, error.to_string())
        }
        Err(error) => checked(Outcome::Error, destination, error.to_string()),
    }
}
