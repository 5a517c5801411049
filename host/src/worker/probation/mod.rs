//! Probation: a plugin whose attempts keep ending at its limits runs in a
//! background lane, on the CPU that well-behaved plugins leave idle.
//!
//! Limits stop each hostile attempt, but every such attempt still burns its
//! whole budget (its fuel, its pages, its time) on the same cores as
//! everyone else. After `strikes` attempts in a row of one plugin version
//! ended at a limit ([`standing::is_strike`]), the worker puts that plugin
//! on probation:
//! - its tasks run on the lane's threads, at the lowest OS priority
//!   (`os.rs`), which get the CPU only when nothing else wants it,
//!   `lane_capacity` at a time;
//! - a leased task waiting for its turn is parked: it keeps its lease
//!   (renewed like any running task) but not one of the worker's
//!   concurrency slots, so the worker goes on fetching other work;
//! - when the park is full (`lane.rs`), a further task goes back to its
//!   queue for a while, without counting an attempt.
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
//! its last attempt that ended did so within its limits. Until then (a
//! version this worker has not run yet, or one whose last attempt struck)
//! it is on trial: at most as many of its attempts run with everyone else
//! as it has strikes left before probation, and its other tasks wait
//! (keeping their slots; shown as parked) for the next of its attempts to
//! end. They wait only while the trial moves: once none of the attempts
//! being tried has ended for [`standing::VERDICT_GRACE`], waiting tasks
//! and any further ones go back to their queue for as long as the trial
//! has been stuck (up to the plugin's timeout), without counting an
//! attempt, so a plugin whose attempts hang cannot hold the worker's
//! slots until its timeout.
//!
//! The rules live in `standing.rs`, a state machine with no runtime of its
//! own; this file joins them to the lane and to waiting. Standing is per
//! worker and kept in memory: a restarted worker puts every plugin on
//! trial again.

mod lane;
mod os;
mod standing;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;

pub use standing::Change;
use standing::{Standings, Verdict, overdue_delay};

use super::lease::{CancelReason, RunningTask};
use crate::plugins::Plugin;
use crate::task::FailureKind;

pub(crate) use os::start_lane_runtime;

/// When plugins are put on probation, and how their tasks are held then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbationConfig {
    /// Attempts in a row ending at a limit that put a plugin on probation
    /// (0: never; nothing is on trial either).
    pub strikes: u32,
    /// Tasks of plugins on probation that run at once.
    pub lane_capacity: usize,
    /// Tasks of plugins on probation a worker holds leased while they wait
    /// for the lane.
    pub park_capacity: usize,
    /// How long a task of a plugin on probation goes back to its queue when
    /// the park is full.
    pub postpone: Duration,
    /// Whether a plugin not yet trusted on this worker runs on trial (at
    /// most as many attempts at once as it has strikes left).
    pub trial: bool,
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
            trial: true,
        }
    }
}

/// What becomes of a task of a plugin, as its standing says.
pub(crate) enum Admission {
    /// Run the attempt now, holding the seat until it has ended.
    Run(Seat),
    /// Put the task back in its queue for `delay`, its attempt not counted,
    /// with `why` as its note.
    Postpone {
        /// How long it goes back for.
        delay: Duration,
        /// Why, for the task's last error.
        why: String,
    },
}

/// Where an admitted attempt runs, and the place it holds while it runs
/// (given back when dropped).
#[derive(Default)]
pub(crate) struct Seat {
    /// The lane's runtime, for an attempt of a plugin on probation (else
    /// the worker's sandbox runtime).
    pub lane: Option<tokio::runtime::Handle>,
    _trial: Option<TrialSeat>,
    _lane_place: Option<(lane::LaneTicket, OwnedSemaphorePermit)>,
}

/// One of the attempts of a plugin on trial, running with everyone else:
/// given back, and the tasks waiting for a verdict woken, when dropped.
struct TrialSeat {
    probation: Probation,
    plugin: String,
    version: String,
}

impl Drop for TrialSeat {
    fn drop(&mut self) {
        self.probation
            .standings()
            .trial_ended(&self.plugin, &self.version, Instant::now());
        self.probation.inner.verdicts.notify_waiters();
    }
}

/// What a parked task watches while it waits: its own cancellation and the
/// worker's shutdown.
pub(crate) struct Parking<'a> {
    /// The task.
    pub running: &'a RunningTask,
    /// Cancelled when the worker starts shutting down.
    pub stopping: &'a CancellationToken,
}

impl Parking<'_> {
    /// Waits, parked, for `waiting`. Returns why it stopped waiting instead,
    /// when the worker shuts down (the task is then put back) or the task
    /// is cancelled or its lease lost.
    async fn wait<T>(&self, waiting: impl Future<Output = T>) -> Result<T, &'static str> {
        self.running.set_parked(true);
        let waited = tokio::select! {
            done = waiting => Ok(done),
            _ = self.stopping.cancelled() => {
                // Shutting down: back to the queue rather than start now.
                self.running.stop(CancelReason::Shutdown);
                Err("the worker shut down while the task was parked")
            }
            _ = self.running.cancel.cancelled() => {
                Err("stopped while parked, waiting for its plugin's turn")
            }
        };
        self.running.set_parked(false);
        waited
    }
}

/// The standing of every plugin this worker has run, and the lane.
#[derive(Clone)]
pub(crate) struct Probation {
    inner: Arc<Inner>,
}

struct Inner {
    config: ProbationConfig,
    standings: Mutex<Standings>,
    /// How many plugins are on probation: read without the lock.
    on_probation: AtomicUsize,
    /// Woken whenever an attempt of a plugin ends: tasks waiting for a
    /// verdict look again.
    verdicts: Notify,
    lane: lane::Lane,
}

impl Probation {
    /// Standing for a worker whose lane runs on `lane`.
    pub fn new(config: ProbationConfig, lane: tokio::runtime::Handle) -> Self {
        Probation {
            inner: Arc::new(Inner {
                config,
                standings: Mutex::new(if config.trial {
                    Standings::new(config.strikes)
                } else {
                    Standings::without_trials(config.strikes)
                }),
                on_probation: AtomicUsize::new(0),
                verdicts: Notify::new(),
                lane: lane::Lane::new(
                    lane,
                    config.lane_capacity,
                    config.park_capacity,
                    config.postpone,
                ),
            }),
        }
    }

    /// The rules in force.
    pub fn config(&self) -> &ProbationConfig {
        &self.inner.config
    }

    fn standings(&self) -> MutexGuard<'_, Standings> {
        // Every method of Standings leaves it consistent when it returns:
        // a panic elsewhere cannot leave it half-updated.
        self.inner
            .standings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Decides where the attempt of a task of `plugin` (with a payload of
    /// `payload_bytes`) runs, waiting, parked, for a verdict on a plugin on
    /// trial or for a turn in the lane. `slot`, the task's concurrency
    /// slot, is given back when the task parks for the lane. Returns why
    /// the task stopped waiting instead, if it did (see [`Parking`]).
    pub async fn admit(
        &self,
        plugin: &Plugin,
        payload_bytes: usize,
        parking: Parking<'_>,
        slot: &mut Option<OwnedSemaphorePermit>,
    ) -> Result<Admission, &'static str> {
        let (name, version) = (&plugin.manifest.name, &plugin.manifest.version);
        loop {
            // Registered before looking, so an attempt that ends while we
            // look is not missed.
            let ended = self.inner.verdicts.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            let now = Instant::now();
            let verdict = self.standings().place(name, version, now);
            match verdict {
                Verdict::Regular => return Ok(Admission::Run(Seat::default())),
                Verdict::Trial => {
                    return Ok(Admission::Run(Seat {
                        _trial: Some(TrialSeat {
                            probation: self.clone(),
                            plugin: name.clone(),
                            version: version.clone(),
                        }),
                        ..Seat::default()
                    }));
                }
                Verdict::Await { until } => {
                    // The task keeps its slot meanwhile, so that a worker
                    // does not lease more tasks of a plugin it does not
                    // trust yet than it has slots.
                    let wait = until.saturating_duration_since(now);
                    parking
                        .wait(async {
                            let _ = tokio::time::timeout(wait, ended).await;
                        })
                        .await?;
                }
                Verdict::Overdue { stuck_for } => {
                    let why = format!(
                        "the plugin for this task is on trial on this worker (not run here yet, or its last attempt ended at a limit), and none of the attempts being tried (as many at once as it has strikes left before probation) has ended for {}",
                        humantime::format_duration(super::whole_ms(stuck_for)),
                    );
                    return Ok(Admission::Postpone {
                        delay: overdue_delay(stuck_for, Some(plugin.limits.timeout)),
                        why,
                    });
                }
                Verdict::Lane => {
                    let lane = &self.inner.lane;
                    let ticket = match lane.reserve(payload_bytes) {
                        Ok(ticket) => ticket,
                        Err(delay) => {
                            let config = &self.inner.config;
                            let why = format!(
                                "its plugin is on probation (its last {} attempts in a row ended at a limit) and this worker already holds as many of such tasks as it parks ({})",
                                config.strikes, config.park_capacity,
                            );
                            return Ok(Admission::Postpone { delay, why });
                        }
                    };
                    // Parked: the slot goes back, so the worker goes on
                    // fetching other work while this task waits its turn.
                    drop(slot.take());
                    let turn = parking.wait(lane.turn()).await?;
                    return Ok(Admission::Run(Seat {
                        lane: Some(lane.runtime().clone()),
                        _trial: None,
                        _lane_place: Some((ticket, turn)),
                    }));
                }
            }
        }
    }

    /// Records how an attempt of this version of `plugin` ended (`None`:
    /// it succeeded) and returns the change of standing it made, if any.
    pub fn record(
        &self,
        plugin: &str,
        version: &str,
        failure: Option<FailureKind>,
    ) -> Option<Change> {
        let change = {
            let mut standings = self.standings();
            let change = standings.record(plugin, version, failure, Instant::now());
            self.inner
                .on_probation
                .store(standings.on_probation(), Ordering::Release);
            change
        };
        self.inner.verdicts.notify_waiters();
        change
    }

    /// Whether this version of the plugin is on probation.
    pub fn is_on_probation(&self, plugin: &str, version: &str) -> bool {
        self.inner.on_probation.load(Ordering::Acquire) > 0
            && self.standings().is_on_probation(plugin, version)
    }
}
