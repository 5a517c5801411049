//! Parsing of command-line values (durations, sizes, times) and the mapping
//! from errors to exit codes.

use std::time::{Duration, SystemTime};

use wasmq::broker;

/// Parses a duration such as `500ms`, `10s`, `1m30s`, `2h`, up to the
/// 100-year ceiling every stored time keeps to.
pub fn duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text.trim())
        .map_err(|err| format!("{err}; write a duration such as 500ms, 10s, 1m30s or 2h"))?;
    if duration > wasmq::task::MAX_DELAY {
        return Err(format!(
            "{:?} is over the ceiling of 100 years; write a shorter duration",
            text.trim()
        ));
    }
    Ok(duration)
}

/// A number of seconds (from a JSON file) as a duration: not negative, not
/// NaN, within the 100-year ceiling.
pub fn seconds(seconds: f64) -> Result<Duration, String> {
    if seconds.is_nan() || seconds < 0.0 {
        return Err(format!("must be a number of seconds, not {seconds}"));
    }
    match Duration::try_from_secs_f64(seconds) {
        Ok(duration) if duration <= wasmq::task::MAX_DELAY => Ok(duration),
        _ => Err(format!(
            "{seconds} seconds is over the ceiling of 100 years (3155760000 seconds)"
        )),
    }
}

/// Parses a byte size such as `512KiB`, `128MiB`, `1GiB` or `4096`
/// (K/M/G mean KiB/MiB/GiB; KB/MB/GB are powers of 1000).
pub fn bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| {
        format!("{text:?} is not a size; write one such as 4096, 512KiB, 128MiB or 1GiB")
    })?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown size unit {other:?}; use B, KiB, MiB or GiB"
            ));
        }
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// Parses an RFC 3339 time such as `2026-11-22T03:00:00Z`, no more than
/// 100 years from now.
pub fn time(text: &str) -> Result<SystemTime, String> {
    let at = humantime::parse_rfc3339_weak(text.trim())
        .map_err(|err| format!("{err}; write a UTC time such as 2026-11-22T03:00:00Z"))?;
    wasmq::task::check_time(&format!("{:?}", text.trim()), at)?;
    Ok(at)
}

/// The exit codes of `wasmq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
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
pub struct Failure {
    /// The exit code.
    pub code: ExitCode,
    /// The error, with its context.
    pub error: anyhow::Error,
}

impl Failure {
    /// A "not found" failure.
    pub fn not_found(message: String) -> Self {
        Failure {
            code: ExitCode::NotFound,
            error: anyhow::anyhow!(message),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        let code = match error
            .chain()
            .find_map(|cause| cause.downcast_ref::<broker::Error>())
        {
            Some(broker::Error::DuplicateId { .. } | broker::Error::DuplicateUnique { .. }) => {
                ExitCode::Duplicate
            }
            Some(err) if err.is_unreachable() => ExitCode::Unreachable,
            _ => ExitCode::Error,
        };
        Failure { code, error }
    }
}

impl From<broker::Error> for Failure {
    fn from(error: broker::Error) -> Self {
        anyhow::Error::from(error).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_binary_and_decimal_units() {
        assert_eq!(bytes("4096"), Ok(4096));
        assert_eq!(bytes("512KiB"), Ok(512 * 1024));
        assert_eq!(bytes("128M"), Ok(128 << 20));
        assert_eq!(bytes("1GB"), Ok(1_000_000_000));
        assert!(
            bytes("12 parsecs")
                .unwrap_err()
                .contains("unknown size unit")
        );
        assert!(bytes("lots").unwrap_err().contains("not a size"));
    }

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
        assert_eq!(seconds(1.5), Ok(Duration::from_millis(1500)));
        assert!(seconds(1e30).unwrap_err().contains("100 years"));
        assert!(seconds(1e300).unwrap_err().contains("100 years"));
        assert!(seconds(-1.0).unwrap_err().contains("not -1"));
        assert!(seconds(f64::NAN).is_err());
    }
}
