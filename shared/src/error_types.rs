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
pub const INTERNAL: &str = "Fatal.Internal";

/// Prefix shared by every error the state machine may retry.
pub const RETRYABLE_PREFIX: &str = "Retryable.";
