//! The Synapse personal access token, kept out of every log line, error and Debug output.

use std::fmt;
use std::path::PathBuf;

use super::error::SynapseError;

/// Environment variable the CLI and local runs read the token from.
pub const TOKEN_ENV_VAR: &str = "SYNAPSE_AUTH_TOKEN";

/// A Synapse bearer token. Debug and Display print `[redacted]` so that deriving Debug on any
/// struct holding it, or formatting it by mistake, cannot leak the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SynapseToken(String);

impl SynapseToken {
    /// Wraps a token; surrounding whitespace (a trailing newline in a file) is dropped.
    pub fn new(token: impl Into<String>) -> Result<Self, SynapseError> {
        let token = token.into();
        let trimmed = token.trim();
        if trimmed.is_empty() {
            return Err(SynapseError::Config("the Synapse token is empty".into()));
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The secret itself; only the client's Authorization header should need this.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SynapseToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SynapseToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Where a token comes from. Deployed Lambdas will add a Secrets Manager variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// An environment variable holding the token itself.
    Env(String),
    /// A file whose whole content is the token.
    File(PathBuf),
}

impl Default for TokenSource {
    fn default() -> Self {
        Self::Env(TOKEN_ENV_VAR.to_owned())
    }
}

impl TokenSource {
    /// Reads the token. Errors name the source, never its content.
    pub fn load(&self) -> Result<SynapseToken, SynapseError> {
        match self {
            Self::Env(var) => {
                let value = std::env::var(var).map_err(|_| {
                    SynapseError::Config(format!("environment variable {var} is not set"))
                })?;
                SynapseToken::new(value)
            }
            Self::File(path) => {
                let value = std::fs::read_to_string(path).map_err(|e| {
                    SynapseError::Config(format!(
                        "cannot read the token file {}: {}",
                        path.display(),
                        e.kind()
                    ))
                })?;
                SynapseToken::new(value)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "eyJ0eXAiOiJKV1QiLCJraWQiOi-secret-token";

    #[test]
    fn token_is_redacted_in_debug_and_display() {
        let token = SynapseToken::new(format!("  {SECRET}\n")).unwrap();
        assert_eq!(token.expose(), SECRET);
        assert_eq!(format!("{token:?}"), "[redacted]");
        assert_eq!(format!("{token}"), "[redacted]");
        assert!(!format!("{:?}", Some(token.clone())).contains(SECRET));
    }

    #[test]
    fn empty_token_is_refused() {
        let err = SynapseToken::new(" \n").unwrap_err();
        assert_eq!(err.error_type(), "Fatal.InvalidInput");
    }

    #[test]
    fn loads_from_a_file_and_trims_it() {
        let dir = std::env::temp_dir().join(format!("synmigrate-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, format!("{SECRET}\n")).unwrap();
        let token = TokenSource::File(path.clone()).load().unwrap();
        assert_eq!(token.expose(), SECRET);
        std::fs::remove_dir_all(&dir).unwrap();

        let err = TokenSource::File(path).load().unwrap_err();
        assert!(format!("{err}").contains("cannot read the token file"));
    }

    #[test]
    fn loads_from_an_env_var_and_never_echoes_it() {
        // A variable name unique to this test, so parallel tests cannot race on it.
        let var = "SYNMIGRATE_TEST_TOKEN_LOADS_FROM_ENV";
        std::env::set_var(var, SECRET);
        let token = TokenSource::Env(var.into()).load().unwrap();
        std::env::remove_var(var);
        assert_eq!(token.expose(), SECRET);

        let err = TokenSource::Env(var.into()).load().unwrap_err();
        assert!(format!("{err:?}").contains(var));
        assert!(!format!("{err:?}").contains(SECRET));
    }
}
