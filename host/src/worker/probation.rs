//! Probation: a plugin whose attempts keep ending at its limits runs in a
//! background lane, on the CPU that well-behaved plugins leave idle.
//!
//! Limits stop each hostile attempt, but every such attempt still burns its
//! whole budget (its fuel, its pages, its time) on the same cores as
//! everyone else. After `strikes` attempts in a row of one plugin version
//! ended at a limit (see [`is_strike`]), the worker puts that plugin on
//! probation:
//! - its tasks run on the lane's threads, at the lowest OS priority, which
//!   get the CPU only when nothing else wants it, `lane_capacity` at a time;
//! - a leased task waiting for its turn is parked: it keeps its lease
//!   (renewed like any running task) but not one of the worker's
//!   concurrency slots, so the worker goes on fetching other work;
//! - when `park_capacity` tasks (or [`PARK_MAX_BYTES`] of payloads) are
//!   parked, a further task goes back to its queue for `postpone`, without
//!   counting an attempt; while the park stays full, each further
//!   `park_capacity` tasks wait one `postpone` longer, so that a large
//!   backlog comes back spread out rather than all at once.
//!
//! One attempt of the plugin that succeeds ends the probation; a new
//! version of the plugin starts with a clean record. On shutdown, parked
//! tasks are put back at the head of their queues at once, without
//! starting.
//!
//! **On trial.** A strike is only known once an attempt ends, and a worker
//! with free slots would otherwise start attempt after attempt of a plugin
//! it knows nothing about: a memory bomb's tasks would fill every slot
//! before the first three had failed. So a plugin is trusted only while
//! its last attempt that ended did so within its limits (it succeeded, or
//! failed in a way that is not a strike). Until then (a version this worker
//! has not run yet, or one whose last attempt struck) it is on trial: at
//! most as many of its attempts run with everyone else as it has strikes
//! left before probation, and its other tasks wait (keeping their slots,
//! so that the worker does not lease more of them than it has slots; shown
//! as parked) for the next of its attempts to end, then are placed again.
//! They wait only while the trial moves: once none of the attempts being
//! tried has ended for [`VERDICT_GRACE`] (they hang, or just take long),
//! waiting tasks and any further ones go back to their queue instead,
//! without counting an attempt, so that a plugin whose attempts hang cannot
//! hold the worker's slots until its timeout. Each goes back for as long as
//! the trial has been stuck (up to the plugin's timeout, by which its
//! attempts end): a plugin that is merely slow gets its tasks back soon, and
//! one that hangs has each of its tasks leased again only a few times.
//! Standing is per worker and kept in memory: a restarted worker puts every
//! plugin on trial again.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::task::FailureKind;

/// The most payload bytes parked at once, whatever `park_capacity` says.
pub const PARK_MAX_BYTES: usize = 64 << 20;

/// The longest a task is put back for when the park is full.
const MAX_POSTPONE: Duration = Duration::from_secs(600);

/// How long the tasks of a plugin on trial wait, in their slots, for one
/// of its attempts being tried to end. Attempts of a plugin that works
/// mostly end well within it; those of one that hangs end only at its
/// timeout.
pub const VERDICT_GRACE: Duration = Duration::from_millis(100);

/// When plugins are put on probation, and how their tasks are held then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbationConfig {
    /// Attempts in a row ending at a limit that put a plugin on probation
    /// (0: never).
    pub strikes: u32,
    /// Tasks of plugins on probation that run at once.
    pub lane_capacity: usize,
    /// Tasks of plugins on probation this worker holds leased while they
    /// wait for the lane.
    pub park_capacity: usize,
    /// How long a task of a plugin on probation goes back to its queue when
    /// the park is full.
    pub postpone: Duration,
}

impl Default for ProbationConfig {
    /// Three strikes; one task running in the lane at a time, up to 5,000
    /// parked; five seconds back in the queue beyond that. One at a time:
    /// even at the lowest priority, a second hostile attempt running beside
    /// the first took measurably more from the other plugins (through the
    /// kernel: page faults, memory resets) than it gave its own backlog.
    fn default() -> Self {
        ProbationConfig {
            strikes: 3,
            lane_capacity: 1,
            park_capacity: 5000,
            postpone: Duration::from_secs(5),
        }
    }
}

/// How long a task of a plugin on trial goes back to its queue for when
/// none of the attempts being tried has ended for `stuck_for`: as long
/// again, so that a plugin that hangs has each of its tasks leased again
/// only a few times (the wait doubling each time) while one that is merely
/// slow gets them back soon; never longer than the plugin's `timeout`, by
/// which those attempts have ended, nor shorter than [`VERDICT_GRACE`].
pub fn overdue_delay(stuck_for: Duration, timeout: Option<Duration>) -> Duration {
    let delay = match timeout {
        Some(timeout) => stuck_for.min(timeout),
        None => stuck_for,
    };
    delay.max(VERDICT_GRACE)
}

/// Whether a failure counts against the plugin: it hit one of its limits,
/// was refused a capability, trapped or panicked. Failures a handler
/// reports itself, bad payloads and failures of the worker do not count.
pub fn is_strike(kind: FailureKind) -> bool {
    matches!(
        kind,
        FailureKind::OutOfFuel
            | FailureKind::Timeout
            | FailureKind::OutOfMemory
            | FailureKind::StackOverflow
            | FailureKind::Panic
            | FailureKind::Trap
            | FailureKind::ResultTooLarge
            | FailureKind::CapabilityDenied
            | FailureKind::LogLimit
    )
}

/// Where an attempt of a plugin runs.
pub enum Placement {
    /// With everyone else.
    Regular,
    /// With everyone else, as one of the attempts of a plugin on trial.
    Trial(#[allow(dead_code, reason = "held for what its drop does")] TrialSeat),
    /// The plugin is on trial and has as many attempts running as it has
    /// strikes left: wait (parked) until one of them ends, or `until` at
    /// most, then place the task again.
    AwaitVerdict {
        /// Changes when one of the plugin's attempts ends.
        ended: watch::Receiver<u64>,
        /// When the trial will have gone [`VERDICT_GRACE`] without an
        /// attempt ending.
        until: Instant,
    },
    /// The plugin is on trial, has as many attempts running as it has
    /// strikes left, and none of them has ended for `stuck_for` (at least
    /// [`VERDICT_GRACE`]): put the task back in its queue for a while.
    VerdictOverdue {
        /// How long since the trial last moved.
        stuck_for: Duration,
    },
    /// In the background lane, once its turn comes.
    Lane(LaneTicket),
    /// The plugin is on probation and the park is full: put the task back
    /// in its queue for this long.
    Full(Duration),
}

/// The lane's threads and the tasks it holds.
struct Lane {
    runtime: tokio::runtime::Handle,
    /// One permit per task allowed to run at once.
    turns: Arc<Semaphore>,
    /// Tasks held (parked or running), and their payload bytes.
    held: AtomicUsize,
    held_bytes: AtomicUsize,
    /// Tasks put back since the park last had room: each waits a little
    /// longer than the one before, so that a large backlog comes back
    /// spread out instead of all at once, again and again.
    overflow: AtomicUsize,
}

/// A task's place in the lane (parked, then running), given back when
/// dropped.
pub struct LaneTicket {
    lane: Arc<Lane>,
    bytes: usize,
}

impl LaneTicket {
    /// Waits for the task's turn to run (first come, first served).
    pub async fn turn(&self) -> OwnedSemaphorePermit {
        self.lane
            .turns
            .clone()
            .acquire_owned()
            .await
            .expect("the lane's semaphore is never closed")
    }

    /// Where the attempt runs.
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.lane.runtime
    }
}

impl Drop for LaneTicket {
    fn drop(&mut self) {
        self.lane.held.fetch_sub(1, Ordering::AcqRel);
        self.lane.held_bytes.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// A change of a plugin's standing, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The plugin has just been put on probation.
    OnProbation,
    /// The plugin's probation has just ended.
    Cleared,
}

/// One plugin's record, about one version of it.
struct Standing {
    version: String,
    /// Attempts in a row that ended at a limit.
    strikes: u32,
    /// Whether its last attempt that ended did so within its limits.
    trusted: bool,
    /// Attempts placed with everyone else while on trial, not ended yet.
    on_trial: u32,
    /// When the trial last moved: its first attempt was placed, or one of
    /// its attempts ended.
    moved: Instant,
    /// Counts the plugin's attempts that ended: tasks waiting for a verdict
    /// watch it.
    ended: watch::Sender<u64>,
    /// The version this one replaced was on probation, which the next
    /// record reports as ended.
    replaced_on_probation: bool,
}

impl Standing {
    /// A version this worker has not run yet: on trial, no strikes.
    fn new(version: &str) -> Self {
        Standing {
            version: version.to_string(),
            strikes: 0,
            trusted: false,
            on_trial: 0,
            moved: Instant::now(),
            ended: watch::Sender::new(0),
            replaced_on_probation: false,
        }
    }

    /// One of the plugin's attempts ended: its trial moved, and the tasks
    /// waiting for a verdict are woken.
    fn attempt_ended(&mut self) {
        self.moved = Instant::now();
        self.ended.send_modify(|ended| *ended += 1);
    }

    /// Makes this the record of `version`, a clean one if it was about
    /// another version; returns whether it was.
    fn about(&mut self, version: &str, threshold: u32) -> bool {
        if self.version == version {
            return false;
        }
        let replaced_on_probation = self.strikes >= threshold;
        *self = Standing::new(version);
        self.replaced_on_probation = replaced_on_probation;
        true
    }
}

type Standings = Arc<Mutex<HashMap<String, Standing>>>;

/// A seat of a plugin on trial: one of its attempts running with everyone
/// else. Given back, and the tasks waiting for a verdict woken, when
/// dropped (after the attempt's outcome was recorded).
pub struct TrialSeat {
    standings: Standings,
    plugin: String,
    version: String,
}

impl Drop for TrialSeat {
    fn drop(&mut self) {
        let mut standings = self.standings.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(standing) = standings.get_mut(&self.plugin)
            && standing.version == self.version
        {
            standing.on_trial = standing.on_trial.saturating_sub(1);
            standing.attempt_ended();
        }
    }
}

/// The standing of every plugin this worker has run, and the lane.
pub struct Probation {
    config: ProbationConfig,
    /// Records by plugin name.
    standings: Standings,
    /// How many plugins are on probation: read without the lock.
    on_probation: AtomicUsize,
    lane: Arc<Lane>,
}

impl Probation {
    /// Standing for a worker whose lane runs on `lane`.
    pub fn new(config: ProbationConfig, lane: tokio::runtime::Handle) -> Self {
        Probation {
            config,
            standings: Arc::new(Mutex::new(HashMap::new())),
            on_probation: AtomicUsize::new(0),
            lane: Arc::new(Lane {
                runtime: lane,
                turns: Arc::new(Semaphore::new(config.lane_capacity.max(1))),
                held: AtomicUsize::new(0),
                held_bytes: AtomicUsize::new(0),
                overflow: AtomicUsize::new(0),
            }),
        }
    }

    /// The rules in force.
    pub fn config(&self) -> &ProbationConfig {
        &self.config
    }

    /// Whether any plugin is on probation (no lock taken).
    pub fn anyone_on_probation(&self) -> bool {
        self.on_probation.load(Ordering::Acquire) > 0
    }

    /// Whether this version of the plugin is on probation.
    pub fn is_on_probation(&self, plugin: &str, version: &str) -> bool {
        if !self.anyone_on_probation() {
            return false;
        }
        let standings = self.standings.lock().unwrap_or_else(|e| e.into_inner());
        standings.get(plugin).is_some_and(|standing| {
            standing.version == version && standing.strikes >= self.config.strikes
        })
    }

    /// Where the plugin's next attempt runs; `payload_bytes` is the size
    /// of the task's payload (what parking it holds in memory).
    pub fn place(&self, plugin: &str, version: &str, payload_bytes: usize) -> Placement {
        self.place_at(plugin, version, payload_bytes, Instant::now())
    }

    /// [`Probation::place`] at `now`.
    fn place_at(
        &self,
        plugin: &str,
        version: &str,
        payload_bytes: usize,
        now: Instant,
    ) -> Placement {
        let threshold = self.config.strikes;
        if threshold == 0 {
            return Placement::Regular;
        }
        {
            let mut standings = self.standings.lock().unwrap_or_else(|e| e.into_inner());
            if !standings.contains_key(plugin) {
                standings.insert(plugin.to_string(), Standing::new(version));
            }
            let standing = standings.get_mut(plugin).expect("inserted above");
            if standing.about(version, threshold) {
                drop(standings);
                self.count_on_probation();
                return self.place_at(plugin, version, payload_bytes, now);
            }
            if standing.strikes < threshold {
                if standing.trusted {
                    return Placement::Regular;
                }
                if standing.on_trial >= threshold - standing.strikes {
                    let until = standing.moved + VERDICT_GRACE;
                    if now >= until {
                        return Placement::VerdictOverdue {
                            stuck_for: now.saturating_duration_since(standing.moved),
                        };
                    }
                    return Placement::AwaitVerdict {
                        ended: standing.ended.subscribe(),
                        until,
                    };
                }
                if standing.on_trial == 0 {
                    standing.moved = now;
                }
                standing.on_trial += 1;
                return Placement::Trial(TrialSeat {
                    standings: self.standings.clone(),
                    plugin: plugin.to_string(),
                    version: version.to_string(),
                });
            }
        }
        let lane = &self.lane;
        let capacity = self.config.lane_capacity.max(1) + self.config.park_capacity;
        if lane
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held < capacity).then_some(held + 1)
            })
            .is_err()
        {
            return self.overflowed();
        }
        let bytes_before = lane.held_bytes.fetch_add(payload_bytes, Ordering::AcqRel);
        let ticket = LaneTicket {
            lane: lane.clone(),
            bytes: payload_bytes,
        };
        // The first task always fits, however large its payload.
        if bytes_before > 0 && bytes_before + payload_bytes > PARK_MAX_BYTES {
            drop(ticket);
            return self.overflowed();
        }
        lane.overflow.store(0, Ordering::Release);
        Placement::Lane(ticket)
    }

    /// The park is full: `postpone`, plus as many more as park-fulls were
    /// put back before this task since the park last had room (at most
    /// ten minutes).
    fn overflowed(&self) -> Placement {
        let ahead = self.lane.overflow.fetch_add(1, Ordering::AcqRel);
        let rounds = 1 + ahead / self.config.park_capacity.max(1);
        let delay = self.config.postpone.saturating_mul(rounds as u32);
        Placement::Full(delay.min(MAX_POSTPONE).max(self.config.postpone))
    }

    /// Records how an attempt of this version of the plugin ended (`None`:
    /// it succeeded) and returns the change of standing it made, if any.
    pub fn record(
        &self,
        plugin: &str,
        version: &str,
        failure: Option<FailureKind>,
    ) -> Option<Change> {
        let threshold = self.config.strikes;
        if threshold == 0 {
            return None;
        }
        let strike = failure.is_some_and(is_strike);
        let mut standings = self.standings.lock().unwrap_or_else(|e| e.into_inner());
        let standing = standings
            .entry(plugin.to_string())
            .or_insert_with(|| Standing::new(version));
        // A new version starts with a clean record; the old version's
        // probation ends with it.
        standing.about(version, threshold);
        if failure == Some(FailureKind::WorkerBusy) {
            // The worker had no room for the instance: nothing ran, so
            // nothing is known of the plugin. Waiting tasks look again.
            standing.attempt_ended();
            return None;
        }
        let mut change =
            std::mem::take(&mut standing.replaced_on_probation).then_some(Change::Cleared);
        let was_on_probation = standing.strikes >= threshold;
        if strike {
            standing.trusted = false;
            standing.strikes = standing.strikes.saturating_add(1);
            if standing.strikes == threshold {
                change = Some(Change::OnProbation);
            }
        } else {
            // The attempt ended within its limits: the plugin is trusted.
            standing.trusted = true;
            // A success clears the record; a failure that says nothing
            // about the plugin (its handler's own, a bad payload, the
            // worker's) leaves it.
            if failure.is_none() {
                standing.strikes = 0;
                if was_on_probation {
                    change = Some(Change::Cleared);
                }
            }
        }
        standing.attempt_ended();
        drop(standings);
        self.count_on_probation();
        change
    }

    /// Refreshes the count of plugins on probation.
    fn count_on_probation(&self) {
        let threshold = self.config.strikes;
        let standings = self.standings.lock().unwrap_or_else(|e| e.into_inner());
        self.on_probation.store(
            standings
                .values()
                .filter(|standing| standing.strikes >= threshold)
                .count(),
            Ordering::Release,
        );
    }
}

/// Starts the background lane: `threads` threads at the lowest OS
/// priority.
pub fn start_lane(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name("wasmq-probation")
        .on_thread_start(lowest_priority)
        .enable_all()
        .build()
}

/// Moves the calling thread (and only it: Linux schedules threads on their
/// own) to `SCHED_IDLE`, the policy for work that should run only when a
/// CPU has nothing else to do: any other thread that wakes up takes the CPU
/// from it at once. Where that is refused, the lowest nice value instead.
/// Neither needs a privilege; if both fail anyway, the lane still bounds
/// how many tasks run in it.
fn lowest_priority() {
    // SAFETY: plain system calls on the calling thread's own id, with a
    // parameter struct that lives across the call.
    let thread = unsafe { libc::gettid() };
    let param = libc::sched_param { sched_priority: 0 };
    if unsafe { libc::sched_setscheduler(thread, libc::SCHED_IDLE, &param) } == 0 {
        return;
    }
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, thread as libc::id_t, 19) } != 0 {
        tracing::debug!(
            err = %std::io::Error::last_os_error(),
            "could not lower the probation lane's priority"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Probation whose lane holds `lane_capacity` tasks in all (one
    /// running, the rest parked).
    fn probation(strikes: u32, lane_capacity: usize) -> (tokio::runtime::Runtime, Probation) {
        let lane = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let probation = probation_on(lane.handle().clone(), strikes, lane_capacity);
        (lane, probation)
    }

    fn probation_on(lane: tokio::runtime::Handle, strikes: u32, lane_capacity: usize) -> Probation {
        let config = ProbationConfig {
            strikes,
            lane_capacity: 1,
            park_capacity: lane_capacity - 1,
            postpone: Duration::from_secs(1),
        };
        Probation::new(config, lane)
    }

    #[test]
    fn strikes_in_a_row_put_a_plugin_on_probation_and_a_success_clears_it() {
        let (_lane, probation) = probation(3, 2);
        assert_eq!(
            probation.record("spin", "1", Some(FailureKind::OutOfFuel)),
            None
        );
        assert_eq!(
            probation.record("spin", "1", Some(FailureKind::Timeout)),
            None
        );
        assert!(!probation.is_on_probation("spin", "1"));
        assert_eq!(
            probation.record("spin", "1", Some(FailureKind::OutOfMemory)),
            Some(Change::OnProbation)
        );
        assert!(probation.is_on_probation("spin", "1"));
        // Further strikes change nothing; another version is not affected.
        assert_eq!(
            probation.record("spin", "1", Some(FailureKind::Panic)),
            None
        );
        assert!(!probation.is_on_probation("spin", "2"));
        assert_eq!(probation.record("spin", "1", None), Some(Change::Cleared));
        assert!(!probation.is_on_probation("spin", "1"));
        assert_eq!(probation.record("spin", "1", None), None);
    }

    #[test]
    fn a_new_version_starts_with_a_clean_record() {
        let (_lane, probation) = probation(2, 2);
        probation.record("spin", "1", Some(FailureKind::OutOfFuel));
        probation.record("spin", "1", Some(FailureKind::OutOfFuel));
        assert!(probation.is_on_probation("spin", "1"));
        assert_eq!(
            probation.record("spin", "2", Some(FailureKind::OutOfFuel)),
            Some(Change::Cleared),
            "the old version's probation ended with it"
        );
        assert!(!probation.is_on_probation("spin", "1"));
        assert!(!probation.is_on_probation("spin", "2"));
        assert_eq!(
            probation.record("spin", "2", Some(FailureKind::OutOfFuel)),
            Some(Change::OnProbation)
        );
    }

    #[test]
    fn a_success_between_strikes_starts_the_count_again() {
        let (_lane, probation) = probation(2, 2);
        probation.record("flaky", "1", Some(FailureKind::Trap));
        assert_eq!(probation.record("flaky", "1", None), None);
        assert_eq!(
            probation.record("flaky", "1", Some(FailureKind::Trap)),
            None
        );
        assert!(!probation.is_on_probation("flaky", "1"));
    }

    #[test]
    fn failures_that_are_not_the_plugins_doing_do_not_count() {
        let (_lane, probation) = probation(1, 2);
        for kind in [
            FailureKind::HandlerError,
            FailureKind::GaveUp,
            FailureKind::BadPayload,
            FailureKind::NoHandler,
            FailureKind::LeaseExpired,
            FailureKind::Cancelled,
            FailureKind::SlotBusy,
        ] {
            assert_eq!(probation.record("webhook", "1", Some(kind)), None, "{kind}");
        }
        assert!(!probation.is_on_probation("webhook", "1"));
    }

    #[test]
    fn a_task_the_worker_had_no_room_for_says_nothing_of_its_plugin() {
        assert!(!is_strike(FailureKind::WorkerBusy));
        let (_lane, probation) = probation(2, 2);
        probation.record("hog", "1", Some(FailureKind::OutOfMemory));
        for _ in 0..5 {
            assert_eq!(
                probation.record("hog", "1", Some(FailureKind::WorkerBusy)),
                None
            );
        }
        assert!(!probation.is_on_probation("hog", "1"));
        // Neither a strike nor a clean attempt: the count goes on.
        assert_eq!(
            probation.record("hog", "1", Some(FailureKind::OutOfMemory)),
            Some(Change::OnProbation)
        );
        // Nor does it end a probation.
        probation.record("hog", "1", Some(FailureKind::WorkerBusy));
        assert!(probation.is_on_probation("hog", "1"));
    }

    #[test]
    fn the_lane_holds_at_most_its_capacity() {
        let (_lane, probation) = probation(1, 2);
        probation.record("echo", "1", None);
        probation.record("spin", "1", Some(FailureKind::OutOfFuel));
        let first = probation.place("spin", "1", 10);
        let second = probation.place("spin", "1", 10);
        assert!(matches!(first, Placement::Lane(_)));
        assert!(matches!(second, Placement::Lane(_)));
        assert!(matches!(
            probation.place("spin", "1", 10),
            Placement::Full(_)
        ));
        // Plugins in good standing never wait for the lane.
        assert!(matches!(
            probation.place("echo", "1", 10),
            Placement::Regular
        ));
        drop(first);
        assert!(matches!(
            probation.place("spin", "1", 10),
            Placement::Lane(_)
        ));
    }

    #[test]
    fn a_plugin_on_trial_runs_only_as_many_attempts_as_it_has_strikes_left() {
        let (_lane, probation) = probation(3, 2);
        // Never run here: three attempts with everyone else, no more.
        let seats: Vec<Placement> = (0..3).map(|_| probation.place("bomb", "1", 10)).collect();
        assert!(seats.iter().all(|seat| matches!(seat, Placement::Trial(_))));
        let Placement::AwaitVerdict { ended: verdict, .. } = probation.place("bomb", "1", 10)
        else {
            panic!("a fourth attempt waits for a verdict");
        };
        assert!(!verdict.has_changed().unwrap());
        // Its first attempt strikes: two strikes left, and two attempts
        // still running, so the next task still waits.
        probation.record("bomb", "1", Some(FailureKind::OutOfMemory));
        assert!(verdict.has_changed().unwrap(), "an ended attempt wakes it");
        let mut seats = seats.into_iter();
        drop(seats.next());
        assert!(matches!(
            probation.place("bomb", "1", 10),
            Placement::AwaitVerdict { .. }
        ));
        // Two more strikes: on probation, and the lane takes the rest.
        probation.record("bomb", "1", Some(FailureKind::OutOfMemory));
        probation.record("bomb", "1", Some(FailureKind::OutOfMemory));
        drop(seats);
        assert!(probation.is_on_probation("bomb", "1"));
        assert!(matches!(
            probation.place("bomb", "1", 10),
            Placement::Lane(_)
        ));
    }

    #[test]
    fn a_success_makes_a_plugin_trusted_and_a_strike_puts_it_back_on_trial() {
        let (_lane, probation) = probation(2, 2);
        let seat = probation.place("echo", "1", 10);
        assert!(matches!(seat, Placement::Trial(_)));
        probation.record("echo", "1", None);
        drop(seat);
        for _ in 0..10 {
            assert!(matches!(
                probation.place("echo", "1", 10),
                Placement::Regular
            ));
        }
        // One strike: one attempt with everyone else until one succeeds.
        probation.record("echo", "1", Some(FailureKind::Timeout));
        let seat = probation.place("echo", "1", 10);
        assert!(matches!(seat, Placement::Trial(_)));
        assert!(matches!(
            probation.place("echo", "1", 10),
            Placement::AwaitVerdict { .. }
        ));
        probation.record("echo", "1", None);
        drop(seat);
        assert!(matches!(
            probation.place("echo", "1", 10),
            Placement::Regular
        ));
        // A new version is on trial again.
        assert!(matches!(
            probation.place("echo", "2", 10),
            Placement::Trial(_)
        ));
    }

    #[test]
    fn an_attempt_that_ends_within_its_limits_ends_the_trial_even_if_it_failed() {
        let (_lane, probation) = probation(3, 2);
        let seat = probation.place("webhook", "1", 10);
        assert!(matches!(seat, Placement::Trial(_)));
        probation.record("webhook", "1", Some(FailureKind::HandlerError));
        drop(seat);
        for _ in 0..10 {
            assert!(matches!(
                probation.place("webhook", "1", 10),
                Placement::Regular
            ));
        }
    }

    #[test]
    fn tasks_wait_for_a_verdict_only_while_the_trial_moves() {
        let (_lane, probation) = probation(2, 2);
        let start = Instant::now();
        let seats: Vec<Placement> = (0..2)
            .map(|_| probation.place_at("hang", "1", 10, start))
            .collect();
        assert!(seats.iter().all(|seat| matches!(seat, Placement::Trial(_))));
        let halfway = start + VERDICT_GRACE / 2;
        let Placement::AwaitVerdict { until, .. } = probation.place_at("hang", "1", 10, halfway)
        else {
            panic!("a third attempt waits for a verdict");
        };
        assert_eq!(until, start + VERDICT_GRACE);
        // Neither attempt has ended for the whole grace: they may hang
        // until their timeout, so further tasks do not wait for them.
        assert!(matches!(
            probation.place_at("hang", "1", 10, until),
            Placement::VerdictOverdue { stuck_for } if stuck_for == VERDICT_GRACE
        ));
        // One ends (at a limit): the trial moved, and tasks wait again.
        probation.record("hang", "1", Some(FailureKind::Timeout));
        let ended = Instant::now();
        assert!(matches!(
            probation.place_at("hang", "1", 10, ended),
            Placement::AwaitVerdict { .. }
        ));
        assert!(matches!(
            probation.place_at("hang", "1", 10, ended + VERDICT_GRACE * 2),
            Placement::VerdictOverdue { stuck_for } if stuck_for >= VERDICT_GRACE * 2
        ));
        drop(seats);
    }

    #[test]
    fn a_task_goes_back_for_as_long_as_the_trial_was_stuck_up_to_the_timeout() {
        let secs = Duration::from_secs;
        assert_eq!(overdue_delay(secs(3), Some(secs(30))), secs(3));
        assert_eq!(overdue_delay(secs(45), Some(secs(30))), secs(30));
        assert_eq!(overdue_delay(secs(45), None), secs(45));
        assert_eq!(
            overdue_delay(Duration::ZERO, Some(Duration::ZERO)),
            VERDICT_GRACE
        );
        // Stuck, put back, leased again and put back once more: each time
        // for about twice as long as the time before.
        let mut stuck = VERDICT_GRACE;
        let mut leased = 1;
        while stuck < secs(30) {
            stuck += overdue_delay(stuck, Some(secs(30)));
            leased += 1;
        }
        assert!(leased <= 10, "leased {leased} times in 30 s");
    }

    #[test]
    fn without_strikes_nothing_is_on_trial() {
        let (_lane, probation) = probation(0, 2);
        for _ in 0..10 {
            assert!(matches!(
                probation.place("bomb", "1", 10),
                Placement::Regular
            ));
        }
    }

    #[tokio::test]
    async fn parked_tasks_take_their_turns_one_lane_place_at_a_time() {
        let probation = probation_on(tokio::runtime::Handle::current(), 1, 3);
        probation.record("spin", "1", Some(FailureKind::OutOfFuel));
        let (Placement::Lane(first), Placement::Lane(second)) = (
            probation.place("spin", "1", 10),
            probation.place("spin", "1", 10),
        ) else {
            panic!("both fit in the lane");
        };
        let running = first.turn().await;
        let waiting = tokio::time::timeout(Duration::from_millis(50), second.turn()).await;
        assert!(waiting.is_err(), "the second waits while the first runs");
        drop(running);
        drop(first);
        let _turn = tokio::time::timeout(Duration::from_secs(5), second.turn())
            .await
            .expect("the second runs once the first is done");
    }

    #[test]
    fn payloads_past_the_park_byte_cap_are_postponed() {
        let (_lane, probation) = probation(1, 10);
        probation.record("spin", "1", Some(FailureKind::OutOfFuel));
        let big = PARK_MAX_BYTES / 2 + 1;
        let first = probation.place("spin", "1", big);
        assert!(matches!(first, Placement::Lane(_)));
        assert!(matches!(
            probation.place("spin", "1", big),
            Placement::Full(_)
        ));
        assert!(matches!(
            probation.place("spin", "1", 10),
            Placement::Lane(_)
        ));
        drop(first);
        assert!(matches!(
            probation.place("spin", "1", big),
            Placement::Lane(_)
        ));
    }

    #[test]
    fn a_backlog_past_the_park_is_put_back_spread_out() {
        let (_lane, probation) = probation(1, 3);
        probation.record("spin", "1", Some(FailureKind::OutOfFuel));
        let held: Vec<_> = (0..3).map(|_| probation.place("spin", "1", 10)).collect();
        let delays: Vec<Duration> = (0..6)
            .map(|_| match probation.place("spin", "1", 10) {
                Placement::Full(delay) => delay,
                _ => panic!("the park is full"),
            })
            .collect();
        let second = Duration::from_secs(1);
        assert_eq!(
            delays,
            [1, 1, 2, 2, 3, 3].map(|n| second * n),
            "one more second per park-full (two places) put back"
        );
        // Once the park has had room, the count starts again.
        drop(held);
        let _held: Vec<_> = (0..3).map(|_| probation.place("spin", "1", 10)).collect();
        assert!(matches!(
            probation.place("spin", "1", 10),
            Placement::Full(delay) if delay == second
        ));
    }

    #[test]
    fn zero_strikes_turns_probation_off() {
        let (_lane, probation) = probation(0, 2);
        for _ in 0..10 {
            assert_eq!(
                probation.record("spin", "1", Some(FailureKind::OutOfFuel)),
                None
            );
        }
        assert!(matches!(
            probation.place("spin", "1", 10),
            Placement::Regular
        ));
    }
}
