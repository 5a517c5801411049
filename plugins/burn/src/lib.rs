//! Task type `burn`: hashes for about `ms` milliseconds of wall-clock time.
//!
//! Payload: `{"ms": 50}` (or `{"rounds": 64000}` for a fixed amount of
//! work). Stands in for a CPU-bound task: it chains SHA-256
//! over a 4 KiB buffer until the time is up and returns how many rounds it
//! ran, the final digest, and when it started and finished (unix ms), which
//! tests use to see which tasks ran at the same time.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wasmq_guest::{Failure, Handler, Task};

#[derive(Deserialize)]
struct Params {
    /// Hash for this many milliseconds...
    #[serde(default)]
    ms: u64,
    /// ...or for exactly this many rounds (fixed work, for benchmarks).
    rounds: Option<u64>,
}

#[derive(Serialize)]
struct Burned {
    rounds: u64,
    digest: String,
    started_ms: u128,
    finished_ms: u128,
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis())
}

struct Burn;

impl Handler for Burn {
    type Payload = Params;
    type Output = Burned;

    fn handle(task: &Task, params: Params) -> Result<Burned, Failure> {
        let budget = Duration::from_millis(params.ms);
        let started_ms = unix_ms();
        let started = Instant::now();
        let mut block = [0u8; 4096];
        block[..task.id.len().min(4096)]
            .copy_from_slice(&task.id.as_bytes()[..task.id.len().min(4096)]);
        let mut rounds = 0u64;
        let mut digest = [0u8; 32];
        let enough = |rounds: u64| match params.rounds {
            Some(wanted) => rounds >= wanted,
            None => started.elapsed() >= budget && rounds > 0,
        };
        while !enough(rounds) {
            for _ in 0..64 {
                block[..32].copy_from_slice(&digest);
                digest = Sha256::digest(block).into();
                rounds += 1;
            }
        }
        Ok(Burned {
            rounds,
            digest: digest.iter().map(|b| format!("{b:02x}")).collect(),
            started_ms,
            finished_ms: unix_ms(),
        })
    }
}

wasmq_guest::plugin! {
    handler: Burn,
    name: "burn",
    task_types: ["burn"],
    manifest: "wasmq.toml",
}
