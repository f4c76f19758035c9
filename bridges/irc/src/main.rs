//! `irc-bridge --config config.yaml [generate-registration | migrate-store …]`

fn main() -> std::process::ExitCode {
    bridgekit::cli::main(irc_bridge::IrcBridge::default())
}
