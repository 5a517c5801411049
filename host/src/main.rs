//! The `wasmq` binary: parses arguments, sets up logging, runs the command
//! and turns its outcome into an exit code. Everything else lives in the
//! library and in `cli`.

mod cli;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    if !matches!(
        args.command,
        cli::Command::Worker(_) | cli::Command::Scheduler(_)
    ) {
        // Output piped into `head` or a pager that quits ends the command
        // quietly, as Unix tools do, instead of a panic in println!. Rust
        // ignores SIGPIPE by default; restore the default action. Workers
        // and schedulers print nothing to stdout and keep ignoring it, so a
        // closed log pipe never stops them (Redis sockets never raise it).
        // SAFETY: setting a signal disposition before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let default_filter = match &args.command {
        cli::Command::Dev(_) => "info",
        cli::Command::Worker(_) => "info",
        _ => "warn",
    };
    let filter = args
        .log
        .clone()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| default_filter.to_string());
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        // Colours only for people: logs written to files stay plain.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(failure) => {
            // The error and its causes, each cause once: most of them are
            // already part of the message above them.
            let mut message = failure.error.to_string();
            for cause in failure.error.chain().skip(1) {
                let cause = cause.to_string();
                if !message.contains(&cause) {
                    message.push_str(": ");
                    message.push_str(&cause);
                }
            }
            eprintln!("error: {message}");
            std::process::ExitCode::from(failure.code as u8)
        }
    }
}
