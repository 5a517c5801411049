//! Hostile: tries to read what it was not granted: files, the host's
//! environment, the real clock and real randomness. It reports what it saw
//! and gives up when it saw nothing; it completes (a breach) if it saw
//! anything real.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use wasmq_guest::{Failure, Handler, Task};

#[derive(Serialize)]
struct Seen {
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
            file,
            env,
            wall_clock_secs,
            random: u64::from_le_bytes(bytes),
        };
        // 2001-01-01 or later means a real clock.
        let real_clock = wall_clock_secs > 978_307_200;
        if seen.file.is_some() || !seen.env.is_empty() || real_clock {
            return Ok(seen);
        }
        Err(Failure::give_up(format!(
            "saw nothing: no file, no environment, clock at {} s, random {:x}",
            seen.wall_clock_secs, seen.random
        )))
    }
}

wasmq_guest::plugin! {
    handler: Snoop,
    name: "hostile-snoop",
    task_types: ["hostile:snoop"],
}
