//! The `handsign` command: the gateway and its tools. Everything lives in the library; this only
//! hands over the arguments.

fn main() -> std::process::ExitCode {
    handsign::cli::main()
}
