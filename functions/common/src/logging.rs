//! Log lines as Lambda's logging controls ask (the template's `LoggingConfig`): Lambda sets
//! `AWS_LAMBDA_LOG_FORMAT` (`JSON` or `Text`) and `AWS_LAMBDA_LOG_LEVEL` (`TRACE` .. `FATAL`),
//! and with JSON drops lines below the level by their `level` field. Without them (a local run)
//! `RUST_LOG` filters, as JSON.

use tracing_subscriber::EnvFilter;

/// Lambda's variables (its advanced logging controls).
pub const LOG_FORMAT_ENV: &str = "AWS_LAMBDA_LOG_FORMAT";
pub const LOG_LEVEL_ENV: &str = "AWS_LAMBDA_LOG_LEVEL";

/// How the function logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    pub json: bool,
    /// An `EnvFilter` directive.
    pub filter: String,
}

impl LogSettings {
    /// From the environment `lookup` reads: Lambda's level wins over `RUST_LOG`; `FATAL`, which
    /// tracing lacks, is `error`; an unknown level is `info`. Any format but `Text` is JSON.
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let json = !lookup(LOG_FORMAT_ENV).is_some_and(|f| f.eq_ignore_ascii_case("text"));
        let filter = match lookup(LOG_LEVEL_ENV).map(|l| l.trim().to_ascii_lowercase()) {
            Some(level) => match level.as_str() {
                "trace" | "debug" | "info" | "warn" | "error" => level,
                "fatal" => "error".to_owned(),
                _ => "info".to_owned(),
            },
            None => lookup("RUST_LOG")
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| "info".to_owned()),
        };
        Self { json, filter }
    }

    /// Installs the process's subscriber: lines to stdout, where Lambda collects them.
    pub fn init(&self) {
        let filter = EnvFilter::try_new(&self.filter).unwrap_or_else(|_| EnvFilter::new("info"));
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_target(false)
            .with_ansi(false);
        if self.json {
            builder.json().with_current_span(false).init();
        } else {
            builder.init();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> LogSettings {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        LogSettings::from_env(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn lambda_controls_win_over_rust_log() {
        let both = settings(&[
            (LOG_LEVEL_ENV, "DEBUG"),
            ("RUST_LOG", "warn"),
            (LOG_FORMAT_ENV, "JSON"),
        ]);
        assert_eq!(
            both,
            LogSettings {
                json: true,
                filter: "debug".into()
            }
        );
        assert_eq!(settings(&[(LOG_LEVEL_ENV, "FATAL")]).filter, "error");
        assert_eq!(settings(&[(LOG_LEVEL_ENV, "LOUD")]).filter, "info");
        assert!(!settings(&[(LOG_FORMAT_ENV, "Text")]).json);
    }

    #[test]
    fn without_lambda_controls_rust_log_filters_json_lines() {
        assert_eq!(
            settings(&[("RUST_LOG", "synmigrate=debug,warn")]),
            LogSettings {
                json: true,
                filter: "synmigrate=debug,warn".into()
            }
        );
        assert_eq!(settings(&[]).filter, "info");
    }
}
