#!/usr/bin/env bash
# The fault-injection run behind RELIABILITY.md: 10,000 tasks through 3
# worker processes while one is killed with SIGKILL three times, another is
# frozen with SIGSTOP past its lease, and Redis is killed and restarted from
# its append-only file. Prints a Markdown report; exits non-zero if any task
# was lost or left stuck. Extra arguments go to `wasmq-bench faults`.
set -euo pipefail
cd "$(dirname "$0")/.."

.ci/setup
cargo build -p wasmq -p wasmq-bench
exec target/debug/wasmq-bench faults --wasmq target/debug/wasmq "$@"
