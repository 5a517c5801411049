//! Progress reports from running tasks (the WIT's `progress` interface):
//! checked, held to one write every [`MIN_INTERVAL`] (the latest report
//! wins), and the last one written when the attempt ends.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::value::RawValue;

use super::bindings::wasmq::plugin::progress;
use super::host::HostState;

/// The shortest time between two writes of one attempt's progress.
pub const MIN_INTERVAL: Duration = Duration::from_millis(250);

/// The longest note a report may carry.
pub const MAX_NOTE_BYTES: usize = 1024;

/// One report, as stored for the task (JSON).
#[derive(Debug, Clone, Serialize)]
pub struct ProgressReport {
    /// How far it got (the plugin's unit), if it said.
    pub done: Option<f64>,
    /// Its note (JSON), if any.
    pub note: Option<Box<RawValue>>,
    /// The attempt that reported it.
    pub attempt: u32,
    /// When (unix ms, the worker's clock).
    pub at_ms: i64,
}

/// The shortest time between two lease renewals asked by heartbeats.
pub const MIN_RENEWAL_INTERVAL: Duration = Duration::from_secs(1);

/// An attempt's reports: when the last was written, and the latest not
/// written yet; when a heartbeat last renewed the lease.
#[derive(Debug, Default)]
pub struct ProgressReports {
    last_renewed: Option<Instant>,
    last_written: Option<Instant>,
    latest: Option<ProgressReport>,
    unwritten: bool,
}

impl HostState {
    /// Takes `report` as the attempt's latest, and writes it unless the
    /// last write was less than [`MIN_INTERVAL`] ago.
    async fn take_report(&mut self, report: ProgressReport) {
        self.progress.latest = Some(report);
        self.progress.unwritten = true;
        let due = self
            .progress
            .last_written
            .is_none_or(|at| at.elapsed() >= MIN_INTERVAL);
        if due {
            self.write_progress().await;
        }
    }

    /// Writes the latest report if it was not written yet: when the
    /// attempt ends, so that the last report is the one kept.
    pub async fn flush_progress(&mut self) {
        if self.progress.unwritten {
            self.write_progress().await;
        }
    }

    async fn write_progress(&mut self) {
        let Some(report) = &self.progress.latest else {
            return;
        };
        // A report holds numbers and checked JSON: it always encodes.
        let json = serde_json::to_string(report).expect("a progress report always encodes");
        self.progress.last_written = Some(Instant::now());
        self.progress.unwritten = false;
        let written = self
            .services
            .progress(self.label.queue.clone(), self.label.task_id.clone(), json)
            .await;
        if let Err(err) = written {
            tracing::debug!("a progress report was not written: {err}");
        }
    }

    fn report_now(&self, done: Option<f64>, note: Option<Box<RawValue>>) -> ProgressReport {
        ProgressReport {
            done,
            note,
            attempt: self.label.attempt,
            at_ms: unix_ms(),
        }
    }
}

impl progress::Host for HostState {
    async fn report(&mut self, done: f64, note: String) -> wasmtime::Result<Result<(), String>> {
        if !done.is_finite() {
            return Ok(Err(format!(
                "progress: done must be a finite number, not {done}"
            )));
        }
        if note.len() > MAX_NOTE_BYTES {
            return Ok(Err(format!(
                "progress: a note of {} bytes is over the {MAX_NOTE_BYTES}-byte limit",
                note.len()
            )));
        }
        let note = match RawValue::from_string(note) {
            Ok(raw) if raw.get() == "null" => None,
            Ok(raw) => Some(raw),
            Err(err) => {
                return Ok(Err(format!(
                    "progress: the note is not JSON text ({err}); pass \"null\" for none"
                )));
            }
        };
        let report = self.report_now(Some(done), note);
        self.take_report(report).await;
        Ok(Ok(()))
    }

    async fn heartbeat(&mut self) -> wasmtime::Result<()> {
        let due = self
            .progress
            .last_renewed
            .is_none_or(|at| at.elapsed() >= MIN_RENEWAL_INTERVAL);
        if due {
            self.progress.last_renewed = Some(Instant::now());
            let renewed = self
                .services
                .heartbeat(self.label.queue.clone(), self.label.task_id.clone())
                .await;
            if let Err(err) = renewed {
                tracing::debug!("a heartbeat did not renew the lease: {err}");
            }
        }
        let (done, note) = match &self.progress.latest {
            Some(last) => (last.done, last.note.clone()),
            None => (None, None),
        };
        let report = self.report_now(done, note);
        self.take_report(report).await;
        Ok(())
    }
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}
