//! Error type names: a leaf module, so that every error type (of the state store, the Synapse
//! client, the library) can name its class without depending on the library's error module,
//! which re-exports these names as `error::types`.

/// Error type names. Kept in one place so the template, the handlers and the tests agree.
pub const THROTTLED: &str = "Retryable.Throttled";
pub const TRANSIENT: &str = "Retryable.Transient";
pub const LEASE_HELD: &str = "Retryable.LeaseHeld";
pub const INVALID_INPUT: &str = "Fatal.InvalidInput";
pub const NOT_FOUND: &str = "Fatal.NotFound";
pub const UNAUTHORIZED: &str = "Fatal.Unauthorized";
pub const FORBIDDEN: &str = "Fatal.Forbidden";
pub const CONFLICT: &str = "Fatal.Conflict";
pub const VERIFICATION: &str = "Fatal.Verification";
pub const ALREADY_RUNNING: &str = "Fatal.AlreadyRunning";
/// The run's lock expired and another execution took it: fatal for the run (the state machine
/// does not retry it), not for its files (RecordFailure records them retryable).
pub const LOCK_LOST: &str = "Fatal.LockLost";
pub const INTERNAL: &str = "Fatal.Internal";
/// The execution's error when files were left unmigrated without an error of their own (held by
/// a crashed attempt's lease); set by the state machine from the run's summary.
pub const UNFINISHED: &str = "Fatal.Unfinished";

/// Prefix shared by every error the state machine may retry.
pub const RETRYABLE_PREFIX: &str = "Retryable.";

/// What Lambda reports when the function process itself failed: it ran out of time or memory, or
/// exited (a panic, SIGKILL). The work of every stage may be repeated, so the state machine
/// retries these too, and items a unit left behind with one are retried by the next run.
pub const CRASH_ERRORS: [&str; 5] = [
    "Lambda.Unknown",
    "Runtime.ExitError",
    "Runtime.OutOfMemory",
    "Runtime.Unknown",
    "Sandbox.Timedout",
];

/// Errors of the Lambda service rather than of the function (throttled, unavailable).
pub const LAMBDA_SERVICE_ERRORS: [&str; 4] = [
    "Lambda.ServiceException",
    "Lambda.TooManyRequestsException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
];

/// Whether a file that failed with this error may succeed when tried again: our `Retryable.*`
/// errors, a crashed function, the Lambda service's own failures, and a run that lost its lock.
pub fn is_retryable(error: &str) -> bool {
    error.starts_with(RETRYABLE_PREFIX)
        || error == LOCK_LOST
        || CRASH_ERRORS.contains(&error)
        || LAMBDA_SERVICE_ERRORS.contains(&error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crashes_and_lambda_failures_are_retryable_fatal_errors_are_not() {
        for error in [
            THROTTLED,
            TRANSIENT,
            LEASE_HELD,
            "Runtime.ExitError",
            "Sandbox.Timedout",
        ] {
            assert!(is_retryable(error), "{error}");
        }
        for error in [
            "Lambda.ServiceException",
            "Lambda.Unknown",
            "Runtime.OutOfMemory",
        ] {
            assert!(is_retryable(error), "{error}");
        }
        for error in [
            INVALID_INPUT,
            CONFLICT,
            INTERNAL,
            "States.Runtime",
            "States.TaskFailed",
        ] {
            assert!(!is_retryable(error), "{error}");
        }
    }
}
