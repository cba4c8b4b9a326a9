//! `synmigrate verify`: proves every finished copy of a migration again from what its record
//! keeps (both objects and the source's MD5). S3 only, no Synapse call, so it can run long after
//! the migration, and with `--level bytes` it reads copies of any size (the functions read up to
//! their limit and fall back to `checksum` above it).

use std::io::Write;

use futures::{stream, StreamExt};
use synmigrate::config::VerifyLevel;
use synmigrate::copy::verify::{CopyProof, Verifier, VerifyLimits};
use synmigrate::error::types;
use synmigrate::report::csv_line;
use synmigrate::state::{CopyRecord, CopyStatus, StateStore};

use crate::args::{Deployment, VerifyArgs};
use crate::aws::Aws;
use crate::commands::migration;
use crate::error::{CliError, Verdict};

/// The header of `verify`'s CSV.
pub const VERIFY_HEADER: &str = "from_file_handle_id,to_file_handle_id,destination,result,proof";

/// Copy records per state table page.
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
            .list_copies(&migration, PAGE, token.as_deref())
            .await?;
        let finished: Vec<&CopyRecord> = page
            .items
            .iter()
            .filter(|copy| copy.status == CopyStatus::Copied)
            .collect();
        let checked: Vec<(Outcome, String)> = stream::iter(finished)
            .map(|copy| check(&verifier, level, copy))
            .buffered(args.concurrency.max(1))
            .collect()
            .await;
        for (outcome, row) in checked {
            counts[outcome as usize] += 1;
            out.write_all(row.as_bytes())?;
        }
        match page.next_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    let [proven, unproven, failed, errors, not_recorded] = counts;
    eprintln!(
        "{} copies checked at level {}: {proven} proven, {unproven} without a proof S3 can \
         give, {failed} FAILED, {errors} not checked (S3 errors), {not_recorded} without \
         recorded objects",
        counts.iter().sum::<u64>(),
        level.as_str()
    );
    Ok(if failed + errors > 0 {
        Verdict::Failures
    } else {
        Verdict::Clean
    })
}

/// Proves one finished copy again; its outcome and CSV row.
async fn check(verifier: &Verifier, level: VerifyLevel, copy: &CopyRecord) -> (Outcome, String) {
    let to = copy
        .destination_file_handle_id
        .as_deref()
        .unwrap_or_default();
    let row = |outcome: Outcome, destination: &str, proof: &str| {
        let fields = [
            copy.source_file_handle_id.as_str(),
            to,
            destination,
            outcome.as_str(),
            proof,
        ];
        (outcome, csv_line(&fields))
    };
    let recorded = CopyProof::from_document(copy.verification.as_ref());
    let Some(object) = recorded.and_then(|proof| proof.object) else {
        return row(
            Outcome::NotRecorded,
            "",
            "the record keeps no objects (copied before proofs were kept, or not S3)",
        );
    };
    let destination = object.destination.to_string();
    let proven = match level {
        VerifyLevel::Bytes => verifier.prove_bytes_unbounded(&object).await,
        other => verifier.prove(other, &object).await,
    };
    match proven {
        Ok(verified) if verified.is_unproven() => {
            row(Outcome::Unproven, &destination, &verified.to_string())
        }
        Ok(verified) => row(Outcome::Proven, &destination, &verified.to_string()),
        Err(error) if error.error_type() == types::VERIFICATION => {
            row(Outcome::Failed, &destination, &error.to_string())
        }
        Err(error) => row(Outcome::Error, &destination, &error.to_string()),
    }
}
