//! Configuration: the per-run [`MigrationOptions`] a user passes with each execution, and the
//! per-deployment [`Settings`] the Lambdas and the CLI read from their environment.
//!
//! Options travel inside Step Functions payloads, so they are small, camelCase JSON with defaults
//! for every field; [`MigrationOptions::validate`] names the offending field in its error.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::copy::parts::{MAX_PART_SIZE, MIB, MIN_PART_SIZE};
pub use crate::copy::verify::VerifyLevel;
use crate::copy::CopyMode;
use crate::manifest::{parse_location, ManifestEntry, MAX_INLINE_ENTITIES};
use crate::synapse::{check_endpoint, TokenSource};

/// Errors of configuration: always the caller's to fix, never retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// An option is out of range; names the field as written in the JSON input.
    #[error("invalid option {field}: {message}")]
    InvalidOption {
        field: &'static str,
        message: String,
    },
    /// A deployment setting is missing from the environment.
    #[error("environment variable {0} is not set")]
    MissingVariable(&'static str),
    /// A deployment setting is present but malformed.
    #[error("environment variable {name} is invalid: {message}")]
    InvalidVariable { name: &'static str, message: String },
}

/// Which file versions a run migrates (the official client's `file_version_strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileVersionStrategy {
    /// Copy the latest version's file and store it as a new version (the entity keeps its history).
    #[default]
    New,
    /// Swap the file handle of every version in place.
    All,
    /// Swap the file handle of the latest version in place.
    Latest,
}

impl FileVersionStrategy {
    pub fn as_str(self) -> &'static str {
        match self {
            FileVersionStrategy::New => "new",
            FileVersionStrategy::All => "all",
            FileVersionStrategy::Latest => "latest",
        }
    }
}

/// What a user chooses for one run. Every field has a default, so `{}` is a valid input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct MigrationOptions {
    pub file_version_strategy: FileVersionStrategy,
    /// Only files in these storage locations are migrated; empty means all.
    pub source_storage_location_ids: Vec<i64>,
    /// Keep going after a file fails (the failure is recorded and reported either way).
    pub continue_on_error: bool,
    /// Index and report only; copy nothing.
    pub dry_run: bool,
    /// Which engine copies (see [`crate::copy::choose`]).
    pub copy_mode: CopyMode,
    /// Preferred part size; raised for big files so that no file needs more than 10,000 parts.
    pub part_size_bytes: u64,
    /// Work units processed at the same time (the Distributed Map's MaxConcurrency).
    pub max_concurrency: u32,
    /// Synapse requests per minute of the whole run, shared by every function instance
    /// ([`crate::budget`]; Synapse allows 600 per user, session and IP).
    pub max_synapse_requests_per_minute: u32,
    /// Replace characters Synapse refuses in file names instead of skipping the file.
    pub sanitize_file_names: bool,
    /// Copy attempts per file before a retryable error is final.
    pub max_attempts: u32,
    /// Share of work units (percent) that may fail before the run stops copying (the Distributed
    /// Map's tolerated failure percentage). With `continueOnError` no unit stops the run.
    pub tolerated_failure_percentage: u32,
    /// How each copy is proven before its entities are updated.
    pub verify: VerifyLevel,
    /// Delete each source file handle once every file that used it points at its verified copy
    /// (`all`/`latest` only; see `stages::complete::cleanup`).
    pub delete_source_file_handles: bool,
    /// Migrate these entities instead of the whole project: files (`syn123`, or `syn123.4` for
    /// that version alone) and folders, which are walked ([`crate::manifest`]); at most
    /// [`MAX_INLINE_ENTITIES`].
    pub entities: Vec<String>,
    /// The same list in a CSV or JSON file in the deployment's bucket, `s3://<bucket>/<key>`.
    pub manifest: Option<String>,
    /// Also migrate the files that tables' FILEHANDLEID cells name, and point the cells at the
    /// copies (the official client's `include_table_files`).
    pub include_table_files: bool,
}

impl Default for MigrationOptions {
    fn default() -> Self {
        Self {
            file_version_strategy: FileVersionStrategy::New,
            source_storage_location_ids: Vec::new(),
            continue_on_error: false,
            dry_run: false,
            copy_mode: CopyMode::Synapse,
            part_size_bytes: 100 * MIB,
            max_concurrency: 10,
            max_synapse_requests_per_minute: 540,
            sanitize_file_names: true,
            max_attempts: 3,
            tolerated_failure_percentage: 0,
            verify: VerifyLevel::Metadata,
            delete_source_file_handles: false,
            entities: Vec::new(),
            manifest: None,
            include_table_files: false,
        }
    }
}

/// Highest accepted `maxConcurrency`: the Distributed Map allows more, but every unit shares the
/// one Synapse rate limit, so more than this only queues.
pub const MAX_CONCURRENCY: u32 = 1_000;
/// Most `sourceStorageLocationIds`: options travel in every Step Functions payload (256 KiB).
pub const MAX_SOURCE_LOCATIONS: usize = 100;
/// Synapse's published per-user limit.
pub const SYNAPSE_REQUESTS_PER_MINUTE_LIMIT: u32 = 600;

impl MigrationOptions {
    /// Checks ranges; the error names the JSON field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, message: String| Err(ConfigError::InvalidOption { field, message });
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&self.part_size_bytes) {
            return invalid(
                "partSizeBytes",
                format!(
                    "{} is outside {MIN_PART_SIZE}..={MAX_PART_SIZE} (5 MiB to 5 GiB)",
                    self.part_size_bytes
                ),
            );
        }
        if !(1..=MAX_CONCURRENCY).contains(&self.max_concurrency) {
            return invalid(
                "maxConcurrency",
                format!("{} is outside 1..={MAX_CONCURRENCY}", self.max_concurrency),
            );
        }
        if !(1..=SYNAPSE_REQUESTS_PER_MINUTE_LIMIT).contains(&self.max_synapse_requests_per_minute)
        {
            return invalid(
                "maxSynapseRequestsPerMinute",
                format!(
                    "{} is outside 1..={SYNAPSE_REQUESTS_PER_MINUTE_LIMIT}",
                    self.max_synapse_requests_per_minute
                ),
            );
        }
        if !(1..=100).contains(&self.max_attempts) {
            return invalid(
                "maxAttempts",
                format!("{} is outside 1..=100", self.max_attempts),
            );
        }
        if self.tolerated_failure_percentage > 100 {
            return invalid(
                "toleratedFailurePercentage",
                format!("{} is outside 0..=100", self.tolerated_failure_percentage),
            );
        }
        if self.delete_source_file_handles && self.file_version_strategy == FileVersionStrategy::New
        {
            return invalid(
                "deleteSourceFileHandles",
                "needs fileVersionStrategy all or latest: with new, the files' earlier versions \
                 still point at their old file handles"
                    .to_owned(),
            );
        }
        if self.entities.len() > MAX_INLINE_ENTITIES {
            return invalid(
                "entities",
                format!(
                    "{} entities are more than the {MAX_INLINE_ENTITIES} an input may carry: \
                     list them in a manifest file",
                    self.entities.len()
                ),
            );
        }
        if !self.entities.is_empty() && self.manifest.is_some() {
            return invalid(
                "manifest",
                "give entities or a manifest, not both".to_owned(),
            );
        }
        if let Some(uri) = &self.manifest {
            parse_location(uri).map_err(|message| ConfigError::InvalidOption {
                field: "manifest",
                message,
            })?;
        }
        for text in &self.entities {
            let entry: ManifestEntry =
                text.parse().map_err(|message| ConfigError::InvalidOption {
                    field: "entities",
                    message,
                })?;
            self.check_entry(&entry)
                .map_err(|message| ConfigError::InvalidOption {
                    field: "entities",
                    message,
                })?;
        }
        if self.source_storage_location_ids.len() > MAX_SOURCE_LOCATIONS {
            return invalid(
                "sourceStorageLocationIds",
                format!(
                    "{} locations are more than the {MAX_SOURCE_LOCATIONS} an input may carry",
                    self.source_storage_location_ids.len()
                ),
            );
        }
        if let Some(bad) = self.source_storage_location_ids.iter().find(|id| **id <= 0) {
            return invalid(
                "sourceStorageLocationIds",
                format!("{bad} is not a storage location id"),
            );
        }
        Ok(())
    }

    /// Whether a manifest entry can be migrated under these options: a version alone needs a
    /// strategy that swaps handles in place (`new` copies the latest version only).
    pub fn check_entry(&self, entry: &ManifestEntry) -> Result<(), String> {
        match entry.version {
            Some(version) if self.file_version_strategy == FileVersionStrategy::New => {
                Err(format!(
                    "{}.{version} names a version: that needs fileVersionStrategy all or latest \
                 (new stores a copy of the latest version as a new one)",
                    entry.entity_id
                ))
            }
            _ => Ok(()),
        }
    }

    /// Whether a file in `storage_location_id` is selected by `sourceStorageLocationIds`.
    pub fn selects_source(&self, storage_location_id: Option<i64>) -> bool {
        self.source_storage_location_ids.is_empty()
            || storage_location_id.is_some_and(|id| self.source_storage_location_ids.contains(&id))
    }
}

/// Environment variable names of the deployment settings.
pub mod env {
    pub const TABLE: &str = "SYNMIGRATE_TABLE";
    pub const BUCKET: &str = "SYNMIGRATE_BUCKET";
    /// Name of the environment variable holding the token (default `SYNAPSE_AUTH_TOKEN`).
    pub const TOKEN_ENV: &str = "SYNMIGRATE_TOKEN_ENV";
    /// A file holding the token instead (e.g. a mounted secret); wins over `TOKEN_ENV`.
    pub const TOKEN_FILE: &str = "SYNMIGRATE_TOKEN_FILE";
    pub const REPO_ENDPOINT: &str = "SYNAPSE_REPO_ENDPOINT";
    pub const FILE_ENDPOINT: &str = "SYNAPSE_FILE_ENDPOINT";
    /// The migration state machine (for the CLI).
    pub const STATE_MACHINE_ARN: &str = "SYNMIGRATE_STATE_MACHINE_ARN";
    /// The SQS queue RecordFailure reports failed units to.
    pub const FAILURE_QUEUE_URL: &str = "SYNMIGRATE_FAILURE_QUEUE_URL";
    /// Synapse requests per minute of one function instance.
    pub const MAX_SYNAPSE_RPM: &str = "SYNMIGRATE_MAX_SYNAPSE_RPM";
    /// `true` for S3 endpoints that are IP addresses (the local stack): see [`super::s3_client`].
    pub const S3_FORCE_PATH_STYLE: &str = "SYNMIGRATE_S3_FORCE_PATH_STYLE";
    /// The S3 endpoint of the artifacts bucket ([`BUCKET`]) where it differs from the data's
    /// (`AWS_ENDPOINT_URL_S3`): only the local deployment with a separate S3 for the data sets it,
    /// since its Step Functions reads the manifests from the stack's own S3. See
    /// [`super::s3_client_routing`].
    pub const ARTIFACTS_S3_ENDPOINT: &str = "SYNMIGRATE_ARTIFACTS_S3_ENDPOINT";
}

/// The S3 client every component builds from its SDK configuration; `path_style` is needed where
/// the endpoint is an IP address (the local stack), virtual-hosted style is S3's default.
pub fn s3_client(sdk: &aws_config::SdkConfig, path_style: bool) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(s3_config(sdk, path_style).build())
}

/// S3 attempts per request: the SDK's default 3 gives up on a short burst of SlowDown or
/// "200 with an error body" answers, and a copy that gives up waits for the next run.
const S3_MAX_ATTEMPTS: u32 = 8;

fn s3_config(sdk: &aws_config::SdkConfig, path_style: bool) -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(path_style)
        .retry_config(
            aws_sdk_s3::config::retry::RetryConfig::standard()
                .with_max_attempts(S3_MAX_ATTEMPTS)
                .with_max_backoff(std::time::Duration::from_secs(10)),
        )
}

/// [`s3_client`], except that requests for `bucket` go to `endpoint` (see
/// [`env::ARTIFACTS_S3_ENDPOINT`]); every other bucket's go where the SDK configuration says.
pub fn s3_client_routing(
    sdk: &aws_config::SdkConfig,
    path_style: bool,
    bucket: &str,
    endpoint: &str,
) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        s3_config(sdk, path_style)
            .endpoint_resolver(BucketEndpoint {
                bucket: bucket.to_owned(),
                endpoint: endpoint.to_owned(),
                default: aws_sdk_s3::config::endpoint::DefaultResolver::new(),
            })
            .build(),
    )
}

/// S3's own endpoint rules, with the endpoint of one bucket replaced.
#[derive(Debug)]
struct BucketEndpoint {
    bucket: String,
    endpoint: String,
    default: aws_sdk_s3::config::endpoint::DefaultResolver,
}

impl aws_sdk_s3::config::endpoint::ResolveEndpoint for BucketEndpoint {
    fn resolve_endpoint<'a>(
        &'a self,
        params: &'a aws_sdk_s3::config::endpoint::Params,
    ) -> aws_sdk_s3::config::endpoint::EndpointFuture<'a> {
        use aws_sdk_s3::config::endpoint::{EndpointFuture, Params, ResolveEndpoint};
        if params.bucket() != Some(self.bucket.as_str()) {
            return ResolveEndpoint::resolve_endpoint(&self.default, params);
        }
        let p = params;
        let routed = Params::builder()
            .set_bucket(p.bucket().map(str::to_owned))
            .set_region(p.region().map(str::to_owned))
            .set_use_fips(p.use_fips())
            .set_use_dual_stack(p.use_dual_stack())
            .set_endpoint(Some(self.endpoint.clone()))
            .set_force_path_style(p.force_path_style())
            .set_accelerate(p.accelerate())
            .set_use_global_endpoint(p.use_global_endpoint())
            .set_use_object_lambda_endpoint(p.use_object_lambda_endpoint())
            .set_key(p.key().map(str::to_owned))
            .set_prefix(p.prefix().map(str::to_owned))
            .set_copy_source(p.copy_source().map(str::to_owned))
            .set_disable_access_points(p.disable_access_points())
            .set_disable_multi_region_access_points(p.disable_multi_region_access_points())
            .set_use_arn_region(p.use_arn_region())
            .set_use_s3_express_control_endpoint(p.use_s3_express_control_endpoint())
            .set_disable_s3_express_session_auth(p.disable_s3_express_session_auth())
            .build();
        EndpointFuture::new(async move {
            match routed {
                Ok(routed) => ResolveEndpoint::resolve_endpoint(&self.default, &routed).await,
                Err(error) => Err(error.into()),
            }
        })
    }
}

/// Deployment configuration shared by every Lambda and the CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The DynamoDB state table.
    pub table: String,
    /// The bucket for manifests and reports.
    pub bucket: String,
    pub token_source: TokenSource,
    /// Synapse endpoints; `None` means production.
    pub repo_endpoint: Option<String>,
    pub file_endpoint: Option<String>,
}

impl Settings {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup` (the environment, or a map in tests). Empty values
    /// count as missing.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &'static str| lookup(name).filter(|value| !value.trim().is_empty());
        let required = |name: &'static str| get(name).ok_or(ConfigError::MissingVariable(name));
        let token_source = match (get(env::TOKEN_FILE), get(env::TOKEN_ENV)) {
            (Some(path), _) => TokenSource::File(PathBuf::from(path)),
            (None, Some(var)) => TokenSource::Env(var),
            (None, None) => TokenSource::default(),
        };
        let endpoint = |name: &'static str| -> Result<Option<String>, ConfigError> {
            get(name)
                .map(|value| {
                    check_endpoint(&value)
                        .map_err(|message| ConfigError::InvalidVariable { name, message })?;
                    Ok(value)
                })
                .transpose()
        };
        Ok(Self {
            table: required(env::TABLE)?,
            bucket: required(env::BUCKET)?,
            token_source,
            repo_endpoint: endpoint(env::REPO_ENDPOINT)?,
            file_endpoint: endpoint(env::FILE_ENDPOINT)?,
        })
    }
}

#[cfg(test)]
mod tests;
