//! Cron schedules: a spec (with an optional seconds field) in a time zone,
//! checked field by field so that a bad spec is refused with the position
//! of the error, and the tick times it yields.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
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
    pub fn parse(spec: &str, tz: &str) -> Result<Schedule, ScheduleError> {
        let tz = parse_tz(tz)?;
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

    /// The first tick strictly after `after_ms` (unix ms).
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        let from = self.at(after_ms)?;
        self.cron
            .find_next_occurrence(&from, false)
            .ok()
            .map(|tick| tick.timestamp_millis())
    }

    /// The last tick at or before `until_ms`.
    pub fn last_at_or_before(&self, until_ms: i64) -> Option<i64> {
        let until = self.at(until_ms)?;
        self.cron
            .find_previous_occurrence(&until, true)
            .ok()
            .map(|tick| tick.timestamp_millis())
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
