//! `echo-bridge --config PATH [run | generate-registration]`

fn main() -> std::process::ExitCode {
    bridgekit::cli::main(echo_bridge::EchoBridge)
}
