//! The background lane: where the attempts of plugins on probation run, a
//! few at a time, and the park where their other tasks wait for a turn.
//!
//! The lane holds at most `lane_capacity + park_capacity` tasks (running
//! or parked) and [`PARK_MAX_BYTES`] of their payloads. Past that, a task
//! goes back to its queue for `postpone`; while the park stays full, each
//! further park-full of tasks waits one `postpone` longer, so that a large
//! backlog comes back spread out rather than all at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The most payload bytes parked at once, whatever `park_capacity` says.
pub const PARK_MAX_BYTES: usize = 64 << 20;

/// The longest a task is put back for when the park is full.
const MAX_POSTPONE: Duration = Duration::from_secs(600);

/// The lane's threads and the tasks it holds.
pub struct Lane {
    runtime: tokio::runtime::Handle,
    /// One permit per task allowed to run at once.
    turns: Arc<Semaphore>,
    /// Most tasks held, running or parked.
    capacity: usize,
    /// Tasks that fill the park once: the unit of the spread-out delays.
    park_capacity: usize,
    /// How long a task goes back for when the park is full.
    postpone: Duration,
    held: Arc<Held>,
}

/// Tasks held (parked or running), and their payload bytes.
#[derive(Debug, Default)]
struct Held {
    tasks: AtomicUsize,
    bytes: AtomicUsize,
    /// Tasks put back since the park last had room: each waits a little
    /// longer than the one before.
    overflow: AtomicUsize,
}

/// A task's place in the lane (parked, then running), given back when
/// dropped.
#[derive(Debug)]
pub struct LaneTicket {
    held: Arc<Held>,
    bytes: usize,
}

impl Drop for LaneTicket {
    fn drop(&mut self) {
        self.held.tasks.fetch_sub(1, Ordering::AcqRel);
        self.held.bytes.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

impl Lane {
    /// A lane running `lane_capacity` tasks at once on `runtime`, parking
    /// up to `park_capacity` more, putting back the rest for `postpone`.
    pub fn new(
        runtime: tokio::runtime::Handle,
        lane_capacity: usize,
        park_capacity: usize,
        postpone: Duration,
    ) -> Self {
        let lane_capacity = lane_capacity.max(1);
        Lane {
            runtime,
            turns: Arc::new(Semaphore::new(lane_capacity)),
            capacity: lane_capacity + park_capacity,
            park_capacity,
            postpone,
            held: Arc::new(Held::default()),
        }
    }

    /// Takes a place for a task with `payload_bytes` of payload, or says how
    /// long it goes back to its queue for when the lane is full.
    pub fn reserve(&self, payload_bytes: usize) -> Result<LaneTicket, Duration> {
        let held = &self.held;
        if held
            .tasks
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |tasks| {
                (tasks < self.capacity).then_some(tasks + 1)
            })
            .is_err()
        {
            return Err(self.overflowed());
        }
        let bytes_before = held.bytes.fetch_add(payload_bytes, Ordering::AcqRel);
        let ticket = LaneTicket {
            held: held.clone(),
            bytes: payload_bytes,
        };
        // The first task always fits, however large its payload.
        if bytes_before > 0 && bytes_before + payload_bytes > PARK_MAX_BYTES {
            drop(ticket);
            return Err(self.overflowed());
        }
        held.overflow.store(0, Ordering::Release);
        Ok(ticket)
    }

    /// The park is full: `postpone`, plus as many more as park-fulls were
    /// put back before this task since the park last had room (at most ten
    /// minutes).
    fn overflowed(&self) -> Duration {
        let ahead = self.held.overflow.fetch_add(1, Ordering::AcqRel);
        let rounds = 1 + ahead / self.park_capacity.max(1);
        let delay = self.postpone.saturating_mul(rounds as u32);
        delay.min(MAX_POSTPONE).max(self.postpone)
    }

    /// Waits for a turn to run (first come, first served).
    pub async fn turn(&self) -> OwnedSemaphorePermit {
        self.turns
            .clone()
            .acquire_owned()
            .await
            .expect("the lane's semaphore is never closed")
    }

    /// Where the lane's attempts run.
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lane holding `held` tasks in all (one running, the rest parked),
    /// putting back for a second.
    fn lane(held: usize) -> (tokio::runtime::Runtime, Lane) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let lane = Lane::new(
            runtime.handle().clone(),
            1,
            held - 1,
            Duration::from_secs(1),
        );
        (runtime, lane)
    }

    #[test]
    fn the_lane_holds_at_most_its_capacity() {
        let (_runtime, lane) = lane(2);
        let first = lane.reserve(10).expect("room");
        let _second = lane.reserve(10).expect("room");
        assert!(lane.reserve(10).is_err());
        drop(first);
        assert!(lane.reserve(10).is_ok());
    }

    #[test]
    fn payloads_past_the_park_byte_cap_are_postponed() {
        let (_runtime, lane) = lane(10);
        let big = PARK_MAX_BYTES / 2 + 1;
        let first = lane.reserve(big).expect("the first always fits");
        assert!(lane.reserve(big).is_err());
        assert!(lane.reserve(10).is_ok());
        drop(first);
        assert!(lane.reserve(big).is_ok());
    }

    #[test]
    fn a_backlog_past_the_park_is_put_back_spread_out() {
        let (_runtime, lane) = lane(3);
        let held: Vec<_> = (0..3).map(|_| lane.reserve(10).unwrap()).collect();
        let delays: Vec<Duration> = (0..6).map(|_| lane.reserve(10).unwrap_err()).collect();
        let second = Duration::from_secs(1);
        assert_eq!(
            delays,
            [1, 1, 2, 2, 3, 3].map(|n| second * n),
            "one more second per park-full (two places) put back"
        );
        // Once the park has had room, the count starts again.
        drop(held);
        let _held: Vec<_> = (0..3).map(|_| lane.reserve(10).unwrap()).collect();
        assert_eq!(lane.reserve(10).unwrap_err(), second);
    }

    #[test]
    fn parked_tasks_take_their_turns_one_at_a_time() {
        let (runtime, lane) = lane(3);
        runtime.block_on(async {
            let running = lane.turn().await;
            let waiting = tokio::time::timeout(Duration::from_millis(50), lane.turn()).await;
            assert!(waiting.is_err(), "the second waits while the first runs");
            drop(running);
            let _turn = tokio::time::timeout(Duration::from_secs(5), lane.turn())
                .await
                .expect("the second runs once the first is done");
        });
    }
}
