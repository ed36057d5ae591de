//! The `berth` binary: everything is in the library's `cli` module.

fn main() -> std::process::ExitCode {
    berth::cli::main()
}
