//! The OS side of the background lane: its threads run at the lowest
//! scheduling priority the kernel offers without a privilege.

/// Starts the background lane's runtime: `threads` threads, each moved to
/// the lowest OS priority as it starts.
pub fn start_lane_runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
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
