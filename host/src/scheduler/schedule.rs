//! Cron schedules: a spec (with an optional seconds field, or a macro such
//! as `@daily`) in a time zone, checked field by field so that a bad spec is
//! refused with the position of the error, and the tick times it yields.
//!
//! Ticks are found in local wall-clock time, then placed on the timeline
//! with one rule for every spec at a daylight-saving change:
//! - a tick whose local time is skipped (spring forward) fires at the first
//!   instant after the gap, once, however many ticks fell in the gap (so
//!   `30 2 * * *` and `*/15 2 * * *` both fire once at 03:00 in
//!   America/New_York on the day clocks jump from 02:00 to 03:00, a tick at
//!   03:00 itself included);
//! - a tick whose local time occurs twice (fall back) fires once, at its
//!   first occurrence.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// A checked cron schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    tz: Tz,
}

/// Why a spec or a time zone was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleError {
    /// The text that was refused.
    pub input: String,
    /// Where the problem starts in it (0-based byte offset).
    pub position: usize,
    /// How long the offending part is.
    pub length: usize,
    /// What is wrong and what to write instead.
    pub message: String,
}

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} (at column {})", self.message, self.position + 1)?;
        writeln!(f, "  {}", self.input)?;
        write!(
            f,
            "  {}{}",
            " ".repeat(self.position),
            "^".repeat(self.length.max(1))
        )
    }
}

impl std::error::Error for ScheduleError {}

/// One field of a spec: its name and the values it takes.
struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const SECOND: Field = Field {
    name: "second",
    min: 0,
    max: 59,
    names: &[],
};
const MINUTE: Field = Field {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Field = Field {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY_OF_MONTH: Field = Field {
    name: "day of month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ],
};
const DAY_OF_WEEK: Field = Field {
    name: "day of week",
    min: 0,
    max: 7,
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
};

impl Schedule {
    /// Parses `spec` (`[second] minute hour day-of-month month day-of-week`)
    /// in the IANA time zone `tz` (e.g. `Asia/Seoul`, `UTC`).
    ///
    /// The macros `@yearly` (`@annually`), `@monthly`, `@weekly`, `@daily`
    /// (`@midnight`) and `@hourly` are accepted, and `@every D` when D
    /// divides a minute, an hour or a day evenly (`@every 5s`, `@every
    /// 15m`, `@every 6h`). A spec that can never fire (`0 0 0 30 2 *`) is
    /// refused.
    pub fn parse(spec: &str, tz: &str) -> Result<Schedule, ScheduleError> {
        let tz = parse_tz(tz)?;
        let expanded = expand_macro(spec)?;
        let spec = expanded.as_deref().unwrap_or(spec);
        check_fields(spec)?;
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build();
        let cron = parser.parse(spec).map_err(|err| ScheduleError {
            input: spec.to_string(),
            position: 0,
            length: spec.len(),
            message: format!("invalid cron spec: {err}"),
        })?;
        // Every possible date recurs within 400 years (the Gregorian
        // cycle): a spec with no tick from today on never fires.
        let today = Utc::now().naive_utc();
        if cron.find_next_occurrence(&today, false).is_err() {
            return Err(ScheduleError {
                input: spec.to_string(),
                position: 0,
                length: spec.len(),
                message: "this cron spec can never fire: no date matches its day-of-month and month fields together (such as February 30th); check the day and the month".into(),
            });
        }
        Ok(Schedule { cron, tz })
    }

    /// The time zone.
    pub fn tz(&self) -> Tz {
        self.tz
    }

    fn at(&self, ms: i64) -> Option<DateTime<Tz>> {
        Utc.timestamp_millis_opt(ms)
            .single()
            .map(|utc| utc.with_timezone(&self.tz))
    }

    /// The local wall-clock time at `ms`.
    fn local(&self, ms: i64) -> Option<NaiveDateTime> {
        self.at(ms).map(|at| at.naive_local())
    }

    /// The instant a tick at local time `local` fires (see the module
    /// docs): its only instant, the first of two, or the end of the gap.
    fn instant(&self, local: NaiveDateTime) -> Option<i64> {
        match self.tz.from_local_datetime(&local) {
            LocalResult::Single(at) => Some(at.timestamp_millis()),
            LocalResult::Ambiguous(first, _) => Some(first.timestamp_millis()),
            LocalResult::None => self.gap_end(local),
        }
    }

    /// The first instant whose local time is past `local`, a time the
    /// clocks skipped: the instant they jumped.
    fn gap_end(&self, local: NaiveDateTime) -> Option<i64> {
        const TWO_DAYS_MS: i64 = 2 * 86_400_000;
        // UTC offsets stay within ±26h, so local time is before `local` at
        // `low` and past it at `high`.
        let guess = local.and_utc().timestamp_millis();
        let (mut low, mut high) = (guess - TWO_DAYS_MS, guess + TWO_DAYS_MS);
        while high - low > 1 {
            let mid = low + (high - low) / 2;
            if self.local(mid)? > local {
                high = mid;
            } else {
                low = mid;
            }
        }
        Some(high)
    }

    /// The first tick strictly after `after_ms` (unix ms).
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        let mut cursor = self.local(after_ms)?;
        // Ticks placed at or before `after_ms` (the second pass of a
        // repeated hour, the rest of a gap) are passed over.
        for _ in 0..MAX_PASSED_OVER {
            let tick = self.cron.find_next_occurrence(&cursor, false).ok()?;
            let at = self.instant(tick)?;
            if at > after_ms {
                return Some(at);
            }
            cursor = tick;
        }
        None
    }

    /// The last tick at or before `until_ms`.
    pub fn last_at_or_before(&self, until_ms: i64) -> Option<i64> {
        let mut cursor = self.local(until_ms)?;
        let mut inclusive = true;
        for _ in 0..MAX_PASSED_OVER {
            let tick = self
                .cron
                .find_previous_occurrence(&cursor, inclusive)
                .ok()?;
            let at = self.instant(tick)?;
            if at <= until_ms {
                return Some(at);
            }
            cursor = tick;
            inclusive = false;
        }
        None
    }

    /// Ticks `t` with `after_ms < t <= until_ms`, oldest first, at most
    /// `max` of them.
    pub fn ticks_between(&self, after_ms: i64, until_ms: i64, max: usize) -> Vec<i64> {
        let mut ticks = Vec::new();
        let mut cursor = after_ms;
        while ticks.len() < max {
            match self.next_after(cursor) {
                Some(tick) if tick <= until_ms => {
                    ticks.push(tick);
                    cursor = tick;
                }
                _ => break,
            }
        }
        ticks
    }

    /// The newest `count` ticks `t` with `after_ms < t <= until_ms`, oldest
    /// first.
    pub fn last_ticks(&self, after_ms: i64, until_ms: i64, count: usize) -> Vec<i64> {
        let mut ticks = Vec::new();
        let mut cursor = until_ms;
        while ticks.len() < count {
            match self.last_at_or_before(cursor) {
                Some(tick) if tick > after_ms => {
                    ticks.push(tick);
                    cursor = tick - 1;
                }
                _ => break,
            }
        }
        ticks.reverse();
        ticks
    }
}

/// The most ticks one search passes over (a repeated hour of a
/// per-second spec is 3,600).
const MAX_PASSED_OVER: usize = 10_000;

/// The spec a macro stands for, `None` when `spec` is no macro.
fn expand_macro(spec: &str) -> Result<Option<String>, ScheduleError> {
    let trimmed = spec.trim();
    if !trimmed.starts_with('@') {
        return Ok(None);
    }
    let refuse = |message: String| ScheduleError {
        input: spec.to_string(),
        position: spec.len() - spec.trim_start().len(),
        length: trimmed.len(),
        message,
    };
    let fixed = match trimmed.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => "0 0 0 1 1 *",
        "@monthly" => "0 0 0 1 * *",
        "@weekly" => "0 0 0 * * SUN",
        "@daily" | "@midnight" => "0 0 0 * * *",
        "@hourly" => "0 0 * * * *",
        other => {
            let Some(every) = other.strip_prefix("@every") else {
                return Err(refuse(format!(
                    "unknown macro {trimmed:?}: use @yearly, @monthly, @weekly, @daily, @hourly or @every DURATION (e.g. @every 5m), or a cron spec"
                )));
            };
            return every_spec(every.trim()).map(Some).map_err(refuse);
        }
    };
    Ok(Some(fixed.to_string()))
}

/// The cron spec for `@every DURATION`, when the duration divides a
/// minute, an hour or a day evenly (cron steps restart each minute, hour
/// and day, so no other interval can be kept exactly).
fn every_spec(text: &str) -> Result<String, String> {
    let hint = "write a cron spec instead, e.g. \"*/5 * * * * *\" (every 5 seconds), \"0 */10 * * * *\" (every 10 minutes) or \"0 0 */6 * * *\" (every 6 hours)";
    let duration = humantime::parse_duration(text)
        .map_err(|err| format!("@every needs a duration such as 5s, 10m or 6h ({err})"))?;
    let seconds = duration.as_secs();
    if duration.subsec_nanos() != 0 || seconds == 0 {
        return Err(format!(
            "@every {text}: the interval must be a whole number of seconds, at least 1s; {hint}"
        ));
    }
    let step = |n: u64, unit: u64| (n.is_multiple_of(unit)).then_some(n / unit);
    match (step(seconds, 1), step(seconds, 60), step(seconds, 3600)) {
        (Some(s), _, _) if s < 60 && 60 % s == 0 => Ok(format!("*/{s} * * * * *")),
        (_, Some(m), _) if m < 60 && 60 % m == 0 => Ok(format!("0 */{m} * * * *")),
        (_, _, Some(h)) if h < 24 && 24 % h == 0 => Ok(format!("0 0 */{h} * * *")),
        _ if seconds == 86_400 => Ok("0 0 0 * * *".into()),
        _ => Err(format!(
            "@every {text} cannot be kept exactly by a cron schedule (only intervals that divide a minute, an hour or a day evenly can); {hint}"
        )),
    }
}

/// Parses an IANA time zone name, suggesting the right spelling when the
/// name is close to one.
pub fn parse_tz(name: &str) -> Result<Tz, ScheduleError> {
    if let Ok(tz) = Tz::from_str(name) {
        return Ok(tz);
    }
    let wanted = name.to_ascii_lowercase();
    let suggestion = chrono_tz::TZ_VARIANTS
        .iter()
        .map(|tz| tz.name())
        .find(|candidate| {
            let candidate = candidate.to_ascii_lowercase();
            candidate == wanted || candidate.rsplit('/').next() == Some(wanted.as_str())
        });
    let hint = match suggestion {
        Some(name) => format!("; did you mean {name}?"),
        None => "; use an IANA name such as UTC, Europe/Paris or Asia/Seoul".to_string(),
    };
    Err(ScheduleError {
        input: name.to_string(),
        position: 0,
        length: name.len(),
        message: format!("unknown time zone {name:?}{hint}"),
    })
}

/// Checks every field's values against its range, so that an error names
/// the field and its position.
fn check_fields(spec: &str) -> Result<(), ScheduleError> {
    let fields: Vec<(usize, &str)> = spec
        .split_whitespace()
        .map(|field| (field.as_ptr() as usize - spec.as_ptr() as usize, field))
        .collect();
    let layout: &[Field] = match fields.len() {
        6 => &[SECOND, MINUTE, HOUR, DAY_OF_MONTH, MONTH, DAY_OF_WEEK],
        5 => &[MINUTE, HOUR, DAY_OF_MONTH, MONTH, DAY_OF_WEEK],
        n => {
            return Err(ScheduleError {
                input: spec.to_string(),
                position: 0,
                length: spec.len(),
                message: format!(
                    "a cron spec has 5 fields (minute hour day-of-month month day-of-week) or 6 (with a leading second), not {n}; e.g. \"0 0 3 * * *\" is 03:00:00 every day"
                ),
            });
        }
    };
    for ((offset, text), field) in fields.iter().zip(layout) {
        check_field(spec, *offset, text, field)?;
    }
    Ok(())
}

fn check_field(spec: &str, offset: usize, text: &str, field: &Field) -> Result<(), ScheduleError> {
    let error = |at: usize, length: usize, message: String| ScheduleError {
        input: spec.to_string(),
        position: offset + at,
        length,
        message: format!("{} field {text:?}: {message}", field.name),
    };
    let mut at = 0;
    for part in text.split(',') {
        if part.is_empty() {
            return Err(error(at, 1, "an empty item in a list".into()));
        }
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => (range, Some(step)),
            None => (part, None),
        };
        if let Some(step) = step {
            let step_at = at + range.len() + 1;
            match step.parse::<u32>() {
                Ok(n) if n >= 1 && n <= field.max.max(1) => {}
                _ => {
                    return Err(error(
                        step_at,
                        step.len().max(1),
                        format!(
                            "the step after '/' must be a number from 1 to {}",
                            field.max
                        ),
                    ));
                }
            }
        }
        // Special forms (L, W, #, ?) are left to the full parser.
        let special = range.contains(['L', 'W', '#', '?']) || range.contains(['l', 'w']);
        if range != "*" && !special {
            let mut value_at = at;
            for value in range.splitn(2, '-') {
                if parse_value(value, field).is_none() {
                    let names = if field.names.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " or a name ({}-{})",
                            field.names[0],
                            field.names[field.names.len() - 1]
                        )
                    };
                    return Err(error(
                        value_at,
                        value.len().max(1),
                        format!(
                            "{value:?} is not a value from {} to {}{names}",
                            field.min, field.max
                        ),
                    ));
                }
                value_at += value.len() + 1;
            }
        }
        at += part.len() + 1;
    }
    Ok(())
}

fn parse_value(value: &str, field: &Field) -> Option<u32> {
    if let Ok(n) = value.parse::<u32>() {
        return (field.min..=field.max).contains(&n).then_some(n);
    }
    let upper = value.to_ascii_uppercase();
    field
        .names
        .iter()
        .position(|name| *name == upper)
        .map(|index| index as u32 + field.min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn six_fields_include_seconds_and_five_do_not() {
        let every_two = Schedule::parse("*/2 * * * * *", "UTC").unwrap();
        let t0 = 1_790_000_000_000; // a whole second
        assert_eq!(every_two.ticks_between(t0, t0 + 10_000, 100).len(), 5);
        let every_minute = Schedule::parse("* * * * *", "UTC").unwrap();
        assert_eq!(every_minute.ticks_between(t0, t0 + 600_000, 100).len(), 10);
    }

    #[test]
    fn ticks_follow_the_time_zone() {
        // 03:00 in Seoul (UTC+9) is 18:00 UTC the day before.
        let nightly = Schedule::parse("0 0 3 * * *", "Asia/Seoul").unwrap();
        let start = DateTime::parse_from_rfc3339("2026-11-22T00:00:00Z")
            .unwrap()
            .timestamp_millis();
        let next = nightly.next_after(start).unwrap();
        assert_eq!(
            Utc.timestamp_millis_opt(next).unwrap().to_rfc3339(),
            "2026-11-22T18:00:00+00:00"
        );
    }

    #[test]
    fn last_ticks_are_the_newest_before_a_time() {
        let every_second = Schedule::parse("* * * * * *", "UTC").unwrap();
        let t0 = 1_790_000_000_000;
        assert_eq!(
            every_second.last_ticks(t0, t0 + 10_000, 3),
            vec![t0 + 8_000, t0 + 9_000, t0 + 10_000]
        );
        assert_eq!(
            every_second.last_ticks(t0 + 8_500, t0 + 10_000, 5),
            vec![t0 + 9_000, t0 + 10_000]
        );
    }

    #[test]
    fn a_bad_field_is_named_with_its_position() {
        let err = Schedule::parse("0 0 25 * * *", "UTC").unwrap_err();
        assert_eq!((err.position, err.length), (4, 2));
        assert!(err.message.contains("hour field \"25\""), "{err}");
        assert!(
            err.to_string().ends_with("  0 0 25 * * *\n      ^^"),
            "{err}"
        );

        let err = Schedule::parse("*/0 * * * *", "UTC").unwrap_err();
        assert_eq!(err.position, 2);
        assert!(err.message.contains("step"), "{err}");

        let err = Schedule::parse("0 0 * FOO *", "UTC").unwrap_err();
        assert_eq!(err.position, 6);
        assert!(err.message.contains("JAN-DEC"), "{err}");

        let err = Schedule::parse("0 0 * *", "UTC").unwrap_err();
        assert!(err.message.contains("5 fields"), "{err}");
    }

    fn utc_ms(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_millis()
    }

    fn utc(ms: i64) -> String {
        Utc.timestamp_millis_opt(ms).unwrap().to_rfc3339()
    }

    #[test]
    fn a_spec_that_can_never_fire_is_refused() {
        for never in ["0 0 0 30 2 *", "0 0 31 4 *", "0 0 0 31 2,4,6,9,11 *"] {
            let err = Schedule::parse(never, "UTC").unwrap_err();
            assert!(err.message.contains("can never fire"), "{never}: {err}");
        }
        // Rare is not never: February 29th comes every four years.
        assert!(Schedule::parse("0 0 0 29 2 *", "UTC").is_ok());
    }

    #[test]
    fn macros_are_accepted_or_refused_with_what_to_write() {
        let start = utc_ms("2026-11-22T10:20:30Z");
        let next = |spec: &str| {
            utc(Schedule::parse(spec, "UTC")
                .unwrap()
                .next_after(start)
                .unwrap())
        };
        assert_eq!(next("@hourly"), "2026-11-22T11:00:00+00:00");
        assert_eq!(next("@daily"), "2026-11-23T00:00:00+00:00");
        assert_eq!(next("@midnight"), "2026-11-23T00:00:00+00:00");
        assert_eq!(next("@weekly"), "2026-11-29T00:00:00+00:00");
        assert_eq!(next("@monthly"), "2026-12-01T00:00:00+00:00");
        assert_eq!(next("@yearly"), "2027-01-01T00:00:00+00:00");
        assert_eq!(next("@annually"), "2027-01-01T00:00:00+00:00");
        assert_eq!(next("@every 5s"), "2026-11-22T10:20:35+00:00");
        assert_eq!(next("@every 15m"), "2026-11-22T10:30:00+00:00");
        assert_eq!(next("@every 6h"), "2026-11-22T12:00:00+00:00");
        for (bad, says) in [
            ("@every 7s", "write a cron spec instead"),
            ("@every 90m", "write a cron spec instead"),
            ("@every soon", "duration"),
            ("@fortnightly", "unknown macro"),
        ] {
            let err = Schedule::parse(bad, "UTC").unwrap_err();
            assert!(err.message.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn every_tick_in_a_skipped_hour_fires_once_after_the_gap() {
        // 2027-03-14: New York jumps from 02:00 EST to 03:00 EDT (07:00Z).
        let before = utc_ms("2027-03-14T06:00:00Z"); // 01:00 EST
        let after_gap = "2027-03-14T07:00:00+00:00"; // 03:00 EDT
        for spec in ["0 30 2 14 3 *", "0 */15 2 14 3 *", "0 0,30 2,3 14 3 *"] {
            let schedule = Schedule::parse(spec, "America/New_York").unwrap();
            let first = schedule.next_after(before).unwrap();
            assert_eq!(utc(first), after_gap, "{spec}");
            let second = schedule.next_after(first).unwrap();
            assert!(
                second > first + 60_000,
                "{spec}: fired twice: {}",
                utc(second)
            );
            assert_eq!(schedule.last_at_or_before(first), Some(first), "{spec}");
            let ticks = schedule.ticks_between(before, first + 1_000, 100);
            assert_eq!(ticks, vec![first], "{spec}");
        }
        // An ordinary day keeps its ticks.
        let daily = Schedule::parse("0 30 2 * * *", "America/New_York").unwrap();
        assert_eq!(
            utc(daily.next_after(utc_ms("2027-03-15T00:00:00Z")).unwrap()),
            "2027-03-15T06:30:00+00:00"
        );
    }

    #[test]
    fn a_tick_in_a_repeated_hour_fires_once() {
        // 2027-11-07: New York falls back from 02:00 EDT to 01:00 EST.
        let schedule = Schedule::parse("0 30 1 * * *", "America/New_York").unwrap();
        let start = utc_ms("2027-11-07T04:00:00Z"); // 00:00 EDT
        let ticks = schedule.ticks_between(start, start + 6 * 3_600_000, 10);
        assert_eq!(
            ticks.iter().map(|t| utc(*t)).collect::<Vec<_>>(),
            vec!["2027-11-07T05:30:00+00:00"]
        );
    }

    #[test]
    fn unknown_time_zones_are_refused_with_a_suggestion() {
        let err = Schedule::parse("* * * * *", "asia/seoul").unwrap_err();
        assert!(err.message.contains("did you mean Asia/Seoul?"), "{err}");
        let err = Schedule::parse("* * * * *", "Seoul").unwrap_err();
        assert!(err.message.contains("did you mean Asia/Seoul?"), "{err}");
        let err = Schedule::parse("* * * * *", "Mars/Olympus").unwrap_err();
        assert!(err.message.contains("IANA"), "{err}");
        assert!(Schedule::parse("MON-FRI", "UTC").is_err());
        assert!(Schedule::parse("0 9 * * MON-FRI", "Europe/Paris").is_ok());
    }
}
