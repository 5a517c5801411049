//! The `wasmq` binary: everything it does lives in the library's `cli`
//! module (the `cli` feature), so that the command line reaches what an
//! embedding program does not.

/// jemalloc instead of glibc's malloc. A worker allocates on one thread
/// and frees on another all the time (a task leased on the threads that
/// talk to Redis runs and ends on a sandbox thread; an outgoing response is
/// read on one and consumed on another), where glibc's arenas lock and
/// consolidate: with jemalloc a worker spends up to 30% less CPU per task
/// (a webhook-style load; a Wasm no-op's is unchanged) and tasks wait less
/// to start (BENCHMARKS.md, "The allocator").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    wasmq::cli::main()
}
