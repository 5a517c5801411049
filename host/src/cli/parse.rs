//! Parsing of command-line values (durations, sizes, times) and the mapping
//! from errors to exit codes.

use std::time::{Duration, SystemTime};

use crate::broker;

/// Parses a duration such as `500ms`, `10s`, `1m30s`, `2h`, up to the
/// 100-year ceiling every stored time keeps to.
pub(crate) fn duration(text: &str) -> Result<Duration, String> {
    crate::units::duration(text)
}

/// Parses a byte size such as `512KiB`, `128MiB`, `1GiB` or `4096`.
pub(crate) fn bytes(text: &str) -> Result<u64, String> {
    crate::units::size(text)
}

/// Parses an RFC 3339 time such as `2026-11-22T03:00:00Z`, no more than
/// 100 years from now.
pub(crate) fn time(text: &str) -> Result<SystemTime, String> {
    crate::units::time(text)
}

/// The exit codes of `wasmq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExitCode {
    /// Something failed.
    Error = 1,
    /// The task was refused as a duplicate.
    Duplicate = 3,
    /// Redis could not be reached.
    Unreachable = 4,
    /// What was asked for does not exist.
    NotFound = 5,
}

/// A failed command: the error to print and the exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    /// The exit code.
    pub(crate) code: ExitCode,
    /// The error, with its context.
    pub(crate) error: anyhow::Error,
    /// What to do about it on the command line, printed after it.
    pub(crate) hint: Option<&'static str>,
}

impl Failure {
    /// A "not found" failure.
    pub(crate) fn not_found(message: String) -> Self {
        Failure {
            code: ExitCode::NotFound,
            error: anyhow::anyhow!(message),
            hint: None,
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        let broker_error = error
            .chain()
            .find_map(|cause| cause.downcast_ref::<broker::Error>());
        let hint = broker_error.and_then(hint);
        let code = match broker_error {
            Some(broker::Error::DuplicateId { .. } | broker::Error::DuplicateUnique { .. }) => {
                ExitCode::Duplicate
            }
            Some(err) if err.is_unreachable() => ExitCode::Unreachable,
            _ => ExitCode::Error,
        };
        Failure { code, error, hint }
    }
}

impl From<broker::Error> for Failure {
    fn from(error: broker::Error) -> Self {
        anyhow::Error::from(error).into()
    }
}

/// What to do about a broker error on the command line, where the
/// library's own words (which know no flags) cannot say it.
pub(crate) fn hint(error: &broker::Error) -> Option<&'static str> {
    match error {
        broker::Error::Unreachable { .. } | broker::Error::Auth { .. } => {
            Some("give the URL with --redis URL (or WASMQ_REDIS_URL)")
        }
        broker::Error::OutOfMemory { .. } => Some(
            "results are kept for their task's --retention, and workers hold each queue's results to --result-budget",
        ),
        broker::Error::QueueNotEmpty { .. } => {
            Some("to remove it with its unfinished tasks, pass --force")
        }
        broker::Error::AmbiguousId { .. } => Some("pass --queue NAME"),
        broker::Error::Tls { kind, .. } => match kind {
            broker::TlsFailure::UnknownIssuer => {
                Some("pass it with --tls-ca FILE (or WASMQ_TLS_CA)")
            }
            broker::TlsFailure::WrongName => {
                Some("--tls-skip-hostname-check (or WASMQ_TLS_SKIP_HOSTNAME_CHECK=true) skips it")
            }
            broker::TlsFailure::ClientCertificateRequired => Some(
                "pass --tls-cert FILE and --tls-key FILE (or WASMQ_TLS_CERT and WASMQ_TLS_KEY)",
            ),
            broker::TlsFailure::Files => {
                Some("check the files given with --tls-ca, --tls-cert and --tls-key")
            }
            _ => None,
        },
        broker::Error::NotReplicated { .. } => {
            Some("wait for fewer replicas (--wait-replicas) or longer (--wait-timeout)")
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_times_explain_their_format() {
        assert_eq!(duration("1m30s"), Ok(Duration::from_secs(90)));
        assert!(duration("soon").unwrap_err().contains("such as"));
        assert!(time("2026-11-22T03:00:00Z").is_ok());
        assert!(time("tomorrow").unwrap_err().contains("UTC time"));
    }

    #[test]
    fn durations_past_the_ceiling_are_refused() {
        assert!(duration("5000000000y").unwrap_err().contains("100 years"));
        assert!(duration("99y").is_ok());
        assert!(
            time("9999-01-01T00:00:00Z")
                .unwrap_err()
                .contains("100 years")
        );
        assert_eq!(crate::units::seconds(1.5), Ok(Duration::from_millis(1500)));
        assert!(
            crate::units::seconds(1e30)
                .unwrap_err()
                .contains("100 years")
        );
        assert!(
            crate::units::seconds(1e300)
                .unwrap_err()
                .contains("100 years")
        );
        assert!(crate::units::seconds(-1.0).unwrap_err().contains("not -1"));
        assert!(crate::units::seconds(f64::NAN).is_err());
    }
}
