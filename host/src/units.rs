//! Sizes and durations as people write them, on the command line and in
//! manifests and schedule files alike: one parser each, so that what one
//! place accepts every place accepts.

use std::time::Duration;

use crate::task::MAX_DELAY;

/// Parses a byte size such as `4096`, `64_000`, `512KiB`, `128MiB` or
/// `1GiB` (K/M/G mean KiB/MiB/GiB; KB/MB/GB are powers of 1000; `_` may
/// group digits).
pub(crate) fn size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '_')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.replace('_', "").parse().map_err(|_| {
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
                "unknown size unit {other:?} in {text:?}; use B, KiB, MiB or GiB"
            ));
        }
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// A number of seconds (from a JSON file) as a duration: not negative, not
/// NaN, within the 100-year ceiling.
pub(crate) fn seconds(seconds: f64) -> Result<Duration, String> {
    if seconds.is_nan() || seconds < 0.0 {
        return Err(format!("must be a number of seconds, not {seconds}"));
    }
    match Duration::try_from_secs_f64(seconds) {
        Ok(duration) if duration <= crate::task::MAX_DELAY => Ok(duration),
        _ => Err(format!(
            "{seconds} seconds is over the ceiling of 100 years (3155760000 seconds)"
        )),
    }
}

/// Parses an RFC 3339 time such as `2026-11-22T03:00:00Z`, no more than
/// 100 years from now.
pub(crate) fn time(text: &str) -> Result<std::time::SystemTime, String> {
    let at = humantime::parse_rfc3339_weak(text.trim())
        .map_err(|err| format!("{err}; write a UTC time such as 2026-11-22T03:00:00Z"))?;
    crate::task::check_time(&format!("{:?}", text.trim()), at)?;
    Ok(at)
}

/// Parses a duration such as `500ms`, `10s`, `1m30s` or `2h`, up to the
/// 100-year ceiling every stored time keeps to.
pub(crate) fn duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let duration = humantime::parse_duration(text).map_err(|err| {
        format!("{text:?} is not a duration ({err}); write one such as 500ms, 10s, 1m30s or 2h")
    })?;
    if duration > MAX_DELAY {
        return Err(format!(
            "{text:?} is over the ceiling of 100 years; write a shorter duration"
        ));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_binary_and_decimal_units_with_grouped_digits() {
        assert_eq!(size("4096"), Ok(4096));
        assert_eq!(size("64_000"), Ok(64_000));
        assert_eq!(size(" 512KiB "), Ok(512 << 10));
        assert_eq!(size("128M"), Ok(128 << 20));
        assert_eq!(size("1GiB"), Ok(1 << 30));
        assert_eq!(size("2MB"), Ok(2_000_000));
        assert!(
            size("12 parsecs")
                .unwrap_err()
                .contains("unknown size unit")
        );
        assert!(size("lots").unwrap_err().contains("is not a size"));
        assert!(size("99999999999GiB").unwrap_err().contains("too large"));
    }

    #[test]
    fn durations_explain_their_format_and_keep_to_the_ceiling() {
        assert_eq!(duration("1m30s"), Ok(Duration::from_secs(90)));
        assert!(duration("soon").unwrap_err().contains("such as 500ms"));
        assert!(duration("200years").unwrap_err().contains("100 years"));
    }
}
