//! The library's error type and the stable error type names the state machine matches on.
//!
//! Step Functions `Retry`/`Catch` blocks match on an error *name*, never on a message, so every
//! error maps to one name from a fixed list (`Retryable.*` or `Fatal.*`). The Lambda handlers
//! report `error_type()` as the error name; the template retries exactly the `Retryable.*` ones.

use crate::copy::parts::PlanError;
use crate::state::{update_retry_allowed, ItemError, StateError, MAX_ERROR_MESSAGE_CHARS};
use crate::synapse::SynapseError;

/// Error type names. Kept in one place so the template, the handlers and the tests agree.
/// (Defined in a leaf module that the state store and the Synapse client use directly.)
pub mod types {
    pub use crate::error_types::*;
}

/// Errors of the migration core. Variants carry a human-readable message; the class is the variant.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The remote service asked us to slow down (HTTP 429, S3 SlowDown, DynamoDB throughput).
    #[error("throttled: {0}")]
    Throttled(String),
    /// A failure that may succeed on retry (timeouts, 5xx, connection resets).
    #[error("transient failure: {0}")]
    Transient(String),
    /// Another worker holds the lease on this record; retry after it expires.
    #[error("lease held: {0}")]
    LeaseHeld(String),
    /// The request or the configuration is wrong; retrying cannot help.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// The credentials lack a permission (Synapse 403, S3 AccessDenied).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The record changed under us in a way that retrying the same request cannot fix.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A copy finished but does not match its source (size, MD5, ETag).
    #[error("verification failed: {0}")]
    Verification(String),
    /// The project lock is held by a live execution.
    #[error("a migration of this project to this destination is already running: {0}")]
    AlreadyRunning(String),
    /// This run's lock expired and another execution took it: this run stops, its files are left
    /// for that one (or the next) to retry.
    #[error("the run lost its lock: {0}")]
    LockLost(String),
    /// A bug or an unexpected response; not retried.
    #[error("internal error: {0}")]
    Internal(String),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Synapse(#[from] SynapseError),
}

impl Error {
    /// The stable name Step Functions matches on.
    pub fn error_type(&self) -> &'static str {
        match self {
            Error::Throttled(_) => types::THROTTLED,
            Error::Transient(_) => types::TRANSIENT,
            Error::LeaseHeld(_) => types::LEASE_HELD,
            Error::InvalidInput(_) => types::INVALID_INPUT,
            Error::NotFound(_) => types::NOT_FOUND,
            Error::Forbidden(_) => types::FORBIDDEN,
            Error::Conflict(_) => types::CONFLICT,
            Error::Verification(_) => types::VERIFICATION,
            Error::AlreadyRunning(_) => types::ALREADY_RUNNING,
            Error::LockLost(_) => types::LOCK_LOST,
            Error::Internal(_) => types::INTERNAL,
            Error::State(e) => e.error_type(),
            Error::Plan(_) => types::INVALID_INPUT,
            Error::Synapse(e) => e.error_type(),
        }
    }

    /// Whether a later attempt of the same operation may succeed.
    pub fn is_retryable(&self) -> bool {
        self.error_type().starts_with(types::RETRYABLE_PREFIX)
    }
}

/// Convenience alias for the library's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<&Error> for ItemError {
    fn from(error: &Error) -> Self {
        Self {
            class: error.error_type().to_owned(),
            message: error
                .to_string()
                .chars()
                .take(MAX_ERROR_MESSAGE_CHARS)
                .collect(),
            retryable: error.is_retryable(),
        }
    }
}

impl ItemError {
    /// The error of an entity update that failed after the item's copy was recorded. The copy is
    /// kept, so the next run retries the update (under `maxAttempts`) unless the entity itself
    /// rules it out (see [`crate::state::ItemRecord::due_for_retry`]): a refusal that is not the
    /// entity's fault must not leave the copy orphaned for ever.
    pub fn of_update(error: &Error) -> Self {
        let mut item_error = Self::from(error);
        item_error.retryable |= update_retry_allowed(&item_error.class);
        item_error
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{ItemKey, ItemRecord, ItemStatus};

    #[test]
    fn retryable_follows_the_type_name() {
        let cases = [
            (Error::Throttled("x".into()), types::THROTTLED, true),
            (Error::Transient("x".into()), types::TRANSIENT, true),
            (Error::LeaseHeld("x".into()), types::LEASE_HELD, true),
            (Error::InvalidInput("x".into()), types::INVALID_INPUT, false),
            (Error::NotFound("x".into()), types::NOT_FOUND, false),
            (Error::Forbidden("x".into()), types::FORBIDDEN, false),
            (Error::Conflict("x".into()), types::CONFLICT, false),
            (Error::Verification("x".into()), types::VERIFICATION, false),
            (
                Error::AlreadyRunning("x".into()),
                types::ALREADY_RUNNING,
                false,
            ),
            (Error::Internal("x".into()), types::INTERNAL, false),
        ];
        for (error, name, retryable) in cases {
            assert_eq!(error.error_type(), name, "{error}");
            assert_eq!(error.is_retryable(), retryable, "{error}");
        }
    }

    #[test]
    fn state_and_plan_errors_keep_their_class() {
        let throttled: Error = StateError::Throttled("ProvisionedThroughputExceeded".into()).into();
        assert_eq!(throttled.error_type(), types::THROTTLED);
        assert!(throttled.is_retryable());

        let held: Error = StateError::LeaseHeld {
            record: "LOCK".into(),
            owner: "run-1".into(),
            expires_at: 10,
        }
        .into();
        assert_eq!(held.error_type(), types::LEASE_HELD);

        let plan: Error = PlanError::EmptyFile.into();
        assert_eq!(plan.error_type(), types::INVALID_INPUT);
        assert!(!plan.is_retryable());
    }

    #[test]
    fn refused_updates_after_a_copy_are_retried_unless_the_entity_rules_it_out() {
        // At write time: a 400 or 403 of the update is retryable, a 404 or 412 is final.
        for (error, retryable) in [
            (Error::InvalidInput("label used".into()), true),
            (Error::Forbidden("read-only".into()), true),
            (Error::NotFound("deleted".into()), false),
            (Error::Conflict("changed".into()), false),
            (Error::Transient("timeout".into()), true),
        ] {
            assert_eq!(ItemError::of_update(&error).retryable, retryable, "{error}");
        }
        // At read time: an item recorded before that rule (not retryable, a copy recorded) is
        // retried all the same, under the attempt limit; without a copy it is not.
        let old_record = |class: &str, destination: Option<&str>, attempts| ItemRecord {
            key: ItemKey::new("syn1", 1).unwrap(),
            source_file_handle_id: "7".into(),
            size: 1,
            content_md5: None,
            source_storage_location_id: None,
            file_name: "f".into(),
            destination_file_name: None,
            entity: None,
            status: ItemStatus::Errored(ItemError {
                class: class.into(),
                message: "refused".into(),
                retryable: false,
            }),
            destination_file_handle_id: destination.map(str::to_owned),
            attempts,
            lease: None,
            updated_at: 0,
            run_id: "r".into(),
            verified_by: None,
            source_handle: None,
            destination_storage_location_id: None,
            column_name: None,
        };
        assert!(old_record(types::INVALID_INPUT, Some("9"), 1).due_for_retry(3));
        assert!(!old_record(types::INVALID_INPUT, Some("9"), 3).due_for_retry(3));
        assert!(!old_record(types::INVALID_INPUT, None, 1).due_for_retry(3));
        assert!(!old_record(types::CONFLICT, Some("9"), 1).due_for_retry(3));
        assert!(!old_record(types::NOT_FOUND, Some("9"), 1).due_for_retry(3));
    }

    #[test]
    fn item_errors_carry_the_error_type() {
        let error = Error::Throttled("slow down".into());
        let item_error = ItemError::from(&error);
        assert_eq!(item_error.class, types::THROTTLED);
        assert!(item_error.retryable);
        assert!(item_error.message.contains("slow down"));
        let long = ItemError::from(&Error::Internal("é".repeat(5_000)));
        assert_eq!(long.message.chars().count(), MAX_ERROR_MESSAGE_CHARS);
    }
}
