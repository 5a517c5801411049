//! The standing of each plugin on one worker: a small state machine with
//! no clock and no runtime of its own (times come in as arguments), so
//! every rule of probation is tested without Redis, threads or waiting.
//!
//! Per plugin it keeps one version's record: strikes in a row (attempts
//! that ended at a limit, see [`is_strike`]), whether its last attempt that
//! ended did so within its limits (trusted), how many of its attempts run
//! on trial, and when its trial last moved.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::task::FailureKind;

/// How long the tasks of a plugin on trial wait, in their slots, for one
/// of its attempts being tried to end. Attempts of a plugin that works
/// mostly end well within it; those of one that hangs end only at its
/// timeout.
pub const VERDICT_GRACE: Duration = Duration::from_millis(100);

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

/// Where the next attempt of a plugin goes, as its standing says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// With everyone else: the plugin is trusted (or probation is off).
    Regular,
    /// With everyone else, as one of the attempts of a plugin on trial: a
    /// seat the caller gives back with [`Standings::trial_ended`].
    Trial,
    /// The plugin is on trial and has as many attempts running as it has
    /// strikes left: wait until one of them ends, or `until` at most, and
    /// ask again.
    Await {
        /// When the trial will have gone [`VERDICT_GRACE`] without an
        /// attempt ending.
        until: Instant,
    },
    /// The plugin is on trial, has as many attempts running as it has
    /// strikes left, and none of them has ended for `stuck_for`: put the
    /// task back in its queue for a while.
    Overdue {
        /// How long since the trial last moved.
        stuck_for: Duration,
    },
    /// The plugin is on probation: its attempts run in the background
    /// lane.
    Lane,
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
#[derive(Debug)]
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
    /// The version this one replaced was on probation, which the next
    /// record reports as ended.
    replaced_on_probation: bool,
}

impl Standing {
    /// A version this worker has not run yet: on trial, no strikes.
    fn new(version: &str, now: Instant) -> Self {
        Standing {
            version: version.to_string(),
            strikes: 0,
            trusted: false,
            on_trial: 0,
            moved: now,
            replaced_on_probation: false,
        }
    }
}

/// The standing of every plugin a worker has run, by plugin name.
#[derive(Debug)]
pub struct Standings {
    /// Strikes in a row that put a plugin on probation (0: never).
    strikes: u32,
    /// Whether a plugin not yet trusted runs on trial (else with everyone
    /// else until it is on probation).
    trial: bool,
    by_plugin: HashMap<String, Standing>,
}

impl Standings {
    /// No plugin known yet; `strikes` in a row put one on probation (0:
    /// never, and nothing is ever on trial).
    pub fn new(strikes: u32) -> Self {
        Standings {
            strikes,
            trial: true,
            by_plugin: HashMap::new(),
        }
    }

    /// The same, with trials off: a plugin runs with everyone else until
    /// it is on probation.
    pub fn without_trials(strikes: u32) -> Self {
        Standings {
            trial: false,
            ..Standings::new(strikes)
        }
    }

    /// The record of `plugin`, about `version` (a clean one if the record
    /// was about another version).
    fn standing(&mut self, plugin: &str, version: &str, now: Instant) -> &mut Standing {
        let threshold = self.strikes;
        let standing = self
            .by_plugin
            .entry(plugin.to_string())
            .or_insert_with(|| Standing::new(version, now));
        if standing.version != version {
            let replaced_on_probation = standing.strikes >= threshold;
            *standing = Standing::new(version, now);
            standing.replaced_on_probation = replaced_on_probation;
        }
        standing
    }

    /// Where the next attempt of this version of `plugin` goes, at `now`.
    /// [`Verdict::Trial`] takes a seat, given back with
    /// [`Standings::trial_ended`].
    pub fn place(&mut self, plugin: &str, version: &str, now: Instant) -> Verdict {
        let (threshold, trial) = (self.strikes, self.trial);
        if threshold == 0 {
            return Verdict::Regular;
        }
        let standing = self.standing(plugin, version, now);
        if standing.strikes >= threshold {
            return Verdict::Lane;
        }
        if standing.trusted || !trial {
            return Verdict::Regular;
        }
        if standing.on_trial >= threshold - standing.strikes {
            let until = standing.moved + VERDICT_GRACE;
            if now >= until {
                return Verdict::Overdue {
                    stuck_for: now.saturating_duration_since(standing.moved),
                };
            }
            return Verdict::Await { until };
        }
        if standing.on_trial == 0 {
            standing.moved = now;
        }
        standing.on_trial += 1;
        Verdict::Trial
    }

    /// Gives back a seat [`Standings::place`] gave as [`Verdict::Trial`]:
    /// that attempt is over, and its trial moved.
    pub fn trial_ended(&mut self, plugin: &str, version: &str, now: Instant) {
        if let Some(standing) = self.by_plugin.get_mut(plugin)
            && standing.version == version
        {
            standing.on_trial = standing.on_trial.saturating_sub(1);
            standing.moved = now;
        }
    }

    /// Records how an attempt of this version of `plugin` ended (`None`: it
    /// succeeded) and returns the change of standing it made, if any.
    pub fn record(
        &mut self,
        plugin: &str,
        version: &str,
        failure: Option<FailureKind>,
        now: Instant,
    ) -> Option<Change> {
        let threshold = self.strikes;
        if threshold == 0 {
            return None;
        }
        let standing = self.standing(plugin, version, now);
        standing.moved = now;
        if failure == Some(FailureKind::WorkerBusy) {
            // The worker had no room for the instance: nothing ran, so
            // nothing is known of the plugin.
            return None;
        }
        let mut change =
            std::mem::take(&mut standing.replaced_on_probation).then_some(Change::Cleared);
        let was_on_probation = standing.strikes >= threshold;
        if failure.is_some_and(is_strike) {
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
        change
    }

    /// Whether this version of `plugin` is on probation.
    pub fn is_on_probation(&self, plugin: &str, version: &str) -> bool {
        self.strikes > 0
            && self.by_plugin.get(plugin).is_some_and(|standing| {
                standing.version == version && standing.strikes >= self.strikes
            })
    }

    /// How many plugins are on probation.
    pub fn on_probation(&self) -> usize {
        if self.strikes == 0 {
            return 0;
        }
        self.by_plugin
            .values()
            .filter(|standing| standing.strikes >= self.strikes)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(
        standings: &mut Standings,
        plugin: &str,
        failure: Option<FailureKind>,
    ) -> Option<Change> {
        standings.record(plugin, "1", failure, Instant::now())
    }

    fn place(standings: &mut Standings, plugin: &str, version: &str) -> Verdict {
        standings.place(plugin, version, Instant::now())
    }

    #[test]
    fn strikes_in_a_row_put_a_plugin_on_probation_and_a_success_clears_it() {
        let mut standings = Standings::new(3);
        assert_eq!(
            record(&mut standings, "spin", Some(FailureKind::OutOfFuel)),
            None
        );
        assert_eq!(
            record(&mut standings, "spin", Some(FailureKind::Timeout)),
            None
        );
        assert!(!standings.is_on_probation("spin", "1"));
        assert_eq!(
            record(&mut standings, "spin", Some(FailureKind::OutOfMemory)),
            Some(Change::OnProbation)
        );
        assert!(standings.is_on_probation("spin", "1"));
        assert_eq!(standings.on_probation(), 1);
        // Further strikes change nothing; another version is not affected.
        assert_eq!(
            record(&mut standings, "spin", Some(FailureKind::Panic)),
            None
        );
        assert!(!standings.is_on_probation("spin", "2"));
        assert_eq!(record(&mut standings, "spin", None), Some(Change::Cleared));
        assert!(!standings.is_on_probation("spin", "1"));
        assert_eq!(record(&mut standings, "spin", None), None);
    }

    #[test]
    fn a_new_version_starts_with_a_clean_record() {
        let mut standings = Standings::new(2);
        record(&mut standings, "spin", Some(FailureKind::OutOfFuel));
        record(&mut standings, "spin", Some(FailureKind::OutOfFuel));
        assert!(standings.is_on_probation("spin", "1"));
        let now = Instant::now();
        assert_eq!(
            standings.record("spin", "2", Some(FailureKind::OutOfFuel), now),
            Some(Change::Cleared),
            "the old version's probation ended with it"
        );
        assert!(!standings.is_on_probation("spin", "1"));
        assert!(!standings.is_on_probation("spin", "2"));
        assert_eq!(
            standings.record("spin", "2", Some(FailureKind::OutOfFuel), now),
            Some(Change::OnProbation)
        );
    }

    #[test]
    fn a_success_between_strikes_starts_the_count_again() {
        let mut standings = Standings::new(2);
        record(&mut standings, "flaky", Some(FailureKind::Trap));
        assert_eq!(record(&mut standings, "flaky", None), None);
        assert_eq!(
            record(&mut standings, "flaky", Some(FailureKind::Trap)),
            None
        );
        assert!(!standings.is_on_probation("flaky", "1"));
    }

    #[test]
    fn failures_that_are_not_the_plugins_doing_do_not_count() {
        let mut standings = Standings::new(1);
        for kind in [
            FailureKind::HandlerError,
            FailureKind::GaveUp,
            FailureKind::BadPayload,
            FailureKind::NoHandler,
            FailureKind::LeaseExpired,
            FailureKind::Cancelled,
            FailureKind::SlotBusy,
        ] {
            assert_eq!(
                record(&mut standings, "webhook", Some(kind)),
                None,
                "{kind}"
            );
        }
        assert!(!standings.is_on_probation("webhook", "1"));
    }

    #[test]
    fn a_task_the_worker_had_no_room_for_says_nothing_of_its_plugin() {
        assert!(!is_strike(FailureKind::WorkerBusy));
        let mut standings = Standings::new(2);
        record(&mut standings, "hog", Some(FailureKind::OutOfMemory));
        for _ in 0..5 {
            assert_eq!(
                record(&mut standings, "hog", Some(FailureKind::WorkerBusy)),
                None
            );
        }
        assert!(!standings.is_on_probation("hog", "1"));
        // Neither a strike nor a clean attempt: the count goes on.
        assert_eq!(
            record(&mut standings, "hog", Some(FailureKind::OutOfMemory)),
            Some(Change::OnProbation)
        );
        // Nor does it end a probation.
        record(&mut standings, "hog", Some(FailureKind::WorkerBusy));
        assert!(standings.is_on_probation("hog", "1"));
    }

    #[test]
    fn a_plugin_on_probation_goes_to_the_lane_and_others_do_not() {
        let mut standings = Standings::new(1);
        record(&mut standings, "echo", None);
        record(&mut standings, "spin", Some(FailureKind::OutOfFuel));
        assert_eq!(place(&mut standings, "spin", "1"), Verdict::Lane);
        assert_eq!(place(&mut standings, "echo", "1"), Verdict::Regular);
    }

    #[test]
    fn a_plugin_on_trial_runs_only_as_many_attempts_as_it_has_strikes_left() {
        let mut standings = Standings::new(3);
        // Never run here: three attempts with everyone else, no more.
        for _ in 0..3 {
            assert_eq!(place(&mut standings, "bomb", "1"), Verdict::Trial);
        }
        assert!(matches!(
            place(&mut standings, "bomb", "1"),
            Verdict::Await { .. }
        ));
        // Its first attempt strikes: two strikes left, and two attempts
        // still running, so the next task still waits.
        let now = Instant::now();
        standings.record("bomb", "1", Some(FailureKind::OutOfMemory), now);
        standings.trial_ended("bomb", "1", now);
        assert!(matches!(
            place(&mut standings, "bomb", "1"),
            Verdict::Await { .. }
        ));
        // Two more strikes: on probation, and the lane takes the rest.
        for _ in 0..2 {
            standings.record("bomb", "1", Some(FailureKind::OutOfMemory), now);
            standings.trial_ended("bomb", "1", now);
        }
        assert!(standings.is_on_probation("bomb", "1"));
        assert_eq!(place(&mut standings, "bomb", "1"), Verdict::Lane);
    }

    #[test]
    fn a_success_makes_a_plugin_trusted_and_a_strike_puts_it_back_on_trial() {
        let mut standings = Standings::new(2);
        let now = Instant::now();
        assert_eq!(place(&mut standings, "echo", "1"), Verdict::Trial);
        standings.record("echo", "1", None, now);
        standings.trial_ended("echo", "1", now);
        for _ in 0..10 {
            assert_eq!(place(&mut standings, "echo", "1"), Verdict::Regular);
        }
        // One strike: one attempt with everyone else until one succeeds.
        standings.record("echo", "1", Some(FailureKind::Timeout), now);
        assert_eq!(place(&mut standings, "echo", "1"), Verdict::Trial);
        assert!(matches!(
            place(&mut standings, "echo", "1"),
            Verdict::Await { .. }
        ));
        standings.record("echo", "1", None, now);
        standings.trial_ended("echo", "1", now);
        assert_eq!(place(&mut standings, "echo", "1"), Verdict::Regular);
        // A new version is on trial again.
        assert_eq!(place(&mut standings, "echo", "2"), Verdict::Trial);
    }

    #[test]
    fn an_attempt_that_ends_within_its_limits_ends_the_trial_even_if_it_failed() {
        let mut standings = Standings::new(3);
        let now = Instant::now();
        assert_eq!(place(&mut standings, "webhook", "1"), Verdict::Trial);
        standings.record("webhook", "1", Some(FailureKind::HandlerError), now);
        standings.trial_ended("webhook", "1", now);
        for _ in 0..10 {
            assert_eq!(place(&mut standings, "webhook", "1"), Verdict::Regular);
        }
    }

    #[test]
    fn tasks_wait_for_a_verdict_only_while_the_trial_moves() {
        let mut standings = Standings::new(2);
        let start = Instant::now();
        for _ in 0..2 {
            assert_eq!(standings.place("hang", "1", start), Verdict::Trial);
        }
        let halfway = start + VERDICT_GRACE / 2;
        let Verdict::Await { until } = standings.place("hang", "1", halfway) else {
            panic!("a third attempt waits for a verdict");
        };
        assert_eq!(until, start + VERDICT_GRACE);
        // Neither attempt has ended for the whole grace: they may hang
        // until their timeout, so further tasks do not wait for them.
        assert_eq!(
            standings.place("hang", "1", until),
            Verdict::Overdue {
                stuck_for: VERDICT_GRACE
            }
        );
        // One ends (at a limit): the trial moved, and tasks wait again.
        let ended = start + VERDICT_GRACE * 3;
        standings.record("hang", "1", Some(FailureKind::Timeout), ended);
        assert!(matches!(
            standings.place("hang", "1", ended),
            Verdict::Await { .. }
        ));
        assert_eq!(
            standings.place("hang", "1", ended + VERDICT_GRACE * 2),
            Verdict::Overdue {
                stuck_for: VERDICT_GRACE * 2
            }
        );
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
    fn zero_strikes_turns_probation_and_trials_off() {
        let mut standings = Standings::new(0);
        for _ in 0..10 {
            assert_eq!(
                record(&mut standings, "spin", Some(FailureKind::OutOfFuel)),
                None
            );
            assert_eq!(place(&mut standings, "spin", "1"), Verdict::Regular);
        }
        assert_eq!(standings.on_probation(), 0);
    }
}
