//! The `wasmq` binary: everything it does lives in the library's `cli`
//! module (the `cli` feature), so that the command line reaches what an
//! embedding program does not.

fn main() -> std::process::ExitCode {
    wasmq::cli::main()
}
