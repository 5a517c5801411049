//! Hostile: tries to read what it was not granted: files, the host's
//! environment, the real clock and real randomness, and what an earlier
//! task left in memory (it marks its statics on every run, low and high in
//! its linear memory, and checks for those marks first). It reports what it
//! saw and gives up when it saw nothing; it completes (a breach) if it saw
//! anything real.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use wasmq_guest::{Failure, Handler, Task};

/// Marks left by every run: a fresh instance must never see them.
static mut LOW_MARK: u64 = 0;
/// A static large enough that its far end lies megabytes into memory.
static mut FAR: [u8; 6 << 20] = [0; 6 << 20];
const MARK: u64 = 0x5eed_1eff_0000_0001;

#[derive(Serialize)]
struct Seen {
    leftover: bool,
    file: Option<String>,
    env: Vec<(String, String)>,
    wall_clock_secs: u64,
    random: u64,
}

struct Snoop;

impl Handler for Snoop {
    type Payload = serde_json::Value;
    type Output = Seen;

    fn handle(_task: &Task, _payload: serde_json::Value) -> Result<Seen, Failure> {
        // SAFETY: one task per instance; nothing else touches the statics.
        let leftover = unsafe {
            let far = &raw mut FAR;
            let seen = LOW_MARK == MARK || (*far)[(6 << 20) - 1] == 0x5e;
            LOW_MARK = MARK;
            (*far)[(6 << 20) - 1] = 0x5e;
            seen
        };
        let file = ["/etc/passwd", "/proc/self/environ", "Cargo.toml", "."]
            .iter()
            .find_map(|path| std::fs::read_to_string(path).ok());
        let env: Vec<(String, String)> = std::env::vars().collect();
        let wall_clock_secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let mut bytes = [0u8; 8];
        // std's HashMap seeds come from the WASI random source.
        let random = {
            use std::hash::{BuildHasher, RandomState};
            RandomState::new().hash_one(42u64)
        };
        bytes.copy_from_slice(&random.to_le_bytes());
        let seen = Seen {
            leftover,
            file,
            env,
            wall_clock_secs,
            random: u64::from_le_bytes(bytes),
        };
        // 2001-01-01 or later means a real clock.
        let real_clock = wall_clock_secs > 978_307_200;
        if seen.leftover || seen.file.is_some() || !seen.env.is_empty() || real_clock {
            return Ok(seen);
        }
        Err(Failure::give_up(format!(
            "saw nothing: no leftovers, no file, no environment, clock at {} s, random {:x}",
            seen.wall_clock_secs, seen.random
        )))
    }
}

wasmq_guest::plugin! {
    handler: Snoop,
    name: "hostile-snoop",
    task_types: ["hostile:snoop"],
}
