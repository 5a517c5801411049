//! What to record after an attempt: a pure function of how the attempt
//! ended, why it was stopped (if it was) and the task's own facts. No
//! Redis, no clock and no randomness of its own, so every rule is a unit
//! test.

use std::time::Duration;

use super::lease::CancelReason;
use crate::broker::Settlement;
use crate::task::{ErrorRecord, FailureKind, TaskFailure};

/// How long a task goes back to its queue for when the worker had no room
/// for an instance of its plugin.
pub const BUSY_POSTPONE: Duration = Duration::from_millis(500);

/// The facts of a task that decide what follows an attempt.
#[derive(Debug, Clone, Copy)]
pub struct Facts {
    /// Which attempt this was (1-based).
    pub attempt: u32,
    /// Retries allowed after the first attempt.
    pub max_retry: u32,
    /// When the task must have ended by (unix ms), if ever.
    pub deadline_ms: Option<i64>,
}

/// What follows an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Record this, for this reason.
    Record(Settlement, Why),
    /// Record nothing: the task is someone else's now (its lease was lost)
    /// or was archived when it was cancelled.
    Drop(CancelReason),
}

/// Why a settlement was chosen, for the worker's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The attempt succeeded.
    Succeeded,
    /// It failed and has retries left.
    WillRetry,
    /// Its failure is one no retry can fix.
    NotRetryable,
    /// Its deadline has passed.
    DeadlinePassed,
    /// It failed on its last allowed attempt.
    NoRetriesLeft,
    /// The worker had no room for an instance: no attempt was made.
    NoRoom,
    /// The worker stopped it to shut down.
    ShuttingDown,
}

impl Why {
    /// The reason as the log says it.
    pub fn as_str(self) -> &'static str {
        match self {
            Why::Succeeded => "succeeded",
            Why::WillRetry => "will retry",
            Why::NotRetryable => "not retryable",
            Why::DeadlinePassed => "deadline passed",
            Why::NoRetriesLeft => "no retries left",
            Why::NoRoom => "no room for an instance",
            Why::ShuttingDown => "the worker is shutting down",
        }
    }
}

/// Decides what follows an attempt that ended with `outcome` at `now_ms`
/// (unix ms), the task having been stopped for `stopped` if it was;
/// `retry_delay` gives the backoff before attempt `n + 1`.
pub fn decide(
    outcome: Result<Vec<u8>, TaskFailure>,
    stopped: Option<CancelReason>,
    facts: Facts,
    now_ms: i64,
    retry_delay: impl FnOnce(u32) -> Duration,
) -> Decision {
    match (stopped, &outcome) {
        (Some(reason @ (CancelReason::LeaseLost | CancelReason::Cancelled)), _) => {
            return Decision::Drop(reason);
        }
        (Some(CancelReason::Shutdown), Err(_)) => {
            return Decision::Record(Settlement::Requeue, Why::ShuttingDown);
        }
        _ => {}
    }
    let failure = match outcome {
        Ok(result) => return Decision::Record(Settlement::Complete { result }, Why::Succeeded),
        Err(failure) => failure,
    };
    let error = |failure: TaskFailure| ErrorRecord {
        kind: failure.kind,
        message: failure.message,
        attempt: facts.attempt,
        at_ms: now_ms,
    };
    if failure.kind == FailureKind::WorkerBusy {
        // Nothing ran: the task goes back for a moment, its attempt not
        // counted.
        let note = ErrorRecord {
            message: format!(
                "postponed {}: {}",
                humantime::format_duration(BUSY_POSTPONE),
                failure.message
            ),
            ..error(failure)
        };
        return Decision::Record(
            Settlement::Postpone {
                delay: BUSY_POSTPONE,
                note,
            },
            Why::NoRoom,
        );
    }
    let deadline_passed = facts.deadline_ms.is_some_and(|deadline| deadline <= now_ms);
    let why = if !failure.kind.is_retryable() {
        Why::NotRetryable
    } else if deadline_passed {
        Why::DeadlinePassed
    } else if facts.attempt > facts.max_retry {
        Why::NoRetriesLeft
    } else {
        let delay = retry_delay(facts.attempt);
        return Decision::Record(
            Settlement::Retry {
                delay,
                error: error(failure),
            },
            Why::WillRetry,
        );
    };
    Decision::Record(
        Settlement::Archive {
            error: error(failure),
        },
        why,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn facts(attempt: u32, max_retry: u32) -> Facts {
        Facts {
            attempt,
            max_retry,
            deadline_ms: None,
        }
    }

    fn failed(kind: FailureKind) -> Result<Vec<u8>, TaskFailure> {
        Err(TaskFailure::new(kind, "it went wrong"))
    }

    fn seconds(n: u32) -> Duration {
        Duration::from_secs(u64::from(n))
    }

    #[test]
    fn a_success_completes_the_task_with_its_result() {
        let decision = decide(Ok(b"42".to_vec()), None, facts(1, 3), NOW, seconds);
        assert_eq!(
            decision,
            Decision::Record(
                Settlement::Complete {
                    result: b"42".to_vec()
                },
                Why::Succeeded
            )
        );
    }

    #[test]
    fn a_retryable_failure_with_retries_left_is_retried_after_the_backoff() {
        let decision = decide(
            failed(FailureKind::HandlerError),
            None,
            facts(2, 3),
            NOW,
            seconds,
        );
        let Decision::Record(Settlement::Retry { delay, error }, Why::WillRetry) = decision else {
            panic!("retried: {decision:?}");
        };
        assert_eq!(delay, seconds(2), "the backoff of attempt 2");
        assert_eq!(error.kind, FailureKind::HandlerError);
        assert_eq!(error.attempt, 2);
        assert_eq!(error.at_ms, NOW);
        assert_eq!(error.message, "it went wrong");
    }

    #[test]
    fn the_last_allowed_attempt_is_archived() {
        // max_retry 3: attempts 1 to 4 are allowed, and the fourth is the last.
        let retried = decide(failed(FailureKind::Trap), None, facts(3, 3), NOW, seconds);
        assert!(matches!(
            retried,
            Decision::Record(Settlement::Retry { .. }, _)
        ));
        let archived = decide(failed(FailureKind::Trap), None, facts(4, 3), NOW, seconds);
        assert!(matches!(
            archived,
            Decision::Record(Settlement::Archive { .. }, Why::NoRetriesLeft)
        ));
        let never = decide(failed(FailureKind::Trap), None, facts(1, 0), NOW, seconds);
        assert!(matches!(
            never,
            Decision::Record(Settlement::Archive { .. }, Why::NoRetriesLeft)
        ));
    }

    #[test]
    fn failures_no_retry_can_fix_are_archived_at_once() {
        for kind in [
            FailureKind::GaveUp,
            FailureKind::BadPayload,
            FailureKind::Cancelled,
            FailureKind::SlotBusy,
        ] {
            let decision = decide(failed(kind), None, facts(1, 25), NOW, seconds);
            let Decision::Record(Settlement::Archive { error }, Why::NotRetryable) = decision
            else {
                panic!("{kind} archived: {decision:?}");
            };
            assert_eq!(error.kind, kind);
        }
    }

    #[test]
    fn a_task_past_its_deadline_is_not_retried() {
        let mut facts = facts(1, 25);
        facts.deadline_ms = Some(NOW);
        let decision = decide(failed(FailureKind::Timeout), None, facts, NOW, seconds);
        assert!(matches!(
            decision,
            Decision::Record(Settlement::Archive { .. }, Why::DeadlinePassed)
        ));
        facts.deadline_ms = Some(NOW + 1);
        let decision = decide(failed(FailureKind::Timeout), None, facts, NOW, seconds);
        assert!(matches!(
            decision,
            Decision::Record(Settlement::Retry { .. }, _)
        ));
    }

    #[test]
    fn no_room_for_an_instance_postpones_without_counting_an_attempt() {
        let decision = decide(
            failed(FailureKind::WorkerBusy),
            None,
            facts(4, 3),
            NOW,
            seconds,
        );
        let Decision::Record(Settlement::Postpone { delay, note }, Why::NoRoom) = decision else {
            panic!("postponed: {decision:?}");
        };
        assert_eq!(delay, BUSY_POSTPONE);
        assert_eq!(note.kind, FailureKind::WorkerBusy);
        assert!(
            note.message.starts_with("postponed 500ms: "),
            "{}",
            note.message
        );
    }

    #[test]
    fn a_task_stopped_by_shutdown_goes_back_unless_it_completed() {
        let stopped = Some(CancelReason::Shutdown);
        assert_eq!(
            decide(
                failed(FailureKind::Cancelled),
                stopped,
                facts(1, 3),
                NOW,
                seconds
            ),
            Decision::Record(Settlement::Requeue, Why::ShuttingDown)
        );
        assert!(matches!(
            decide(Ok(vec![]), stopped, facts(1, 3), NOW, seconds),
            Decision::Record(Settlement::Complete { .. }, Why::Succeeded)
        ));
    }

    #[test]
    fn a_lost_lease_or_a_cancellation_records_nothing() {
        for reason in [CancelReason::LeaseLost, CancelReason::Cancelled] {
            assert_eq!(
                decide(Ok(vec![]), Some(reason), facts(1, 3), NOW, seconds),
                Decision::Drop(reason)
            );
            assert_eq!(
                decide(
                    failed(FailureKind::Cancelled),
                    Some(reason),
                    facts(1, 3),
                    NOW,
                    seconds
                ),
                Decision::Drop(reason)
            );
        }
    }
}
