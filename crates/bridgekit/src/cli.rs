//! The command line every bridge gets: `--config PATH [run | generate-registration [--force]]`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::bridge::Bridge;
use crate::config::Config;
use crate::registration::Registration;

#[derive(Parser)]
#[command(
    version,
    about = "A Matrix application-service bridge, built with bridgekit."
)]
struct Cli {
    /// The bridge's YAML config file.
    #[arg(long, short, default_value = "config.yaml", env = "BRIDGEKIT_CONFIG")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the bridge (the default).
    Run,
    /// Write the registration file for the homeserver (appservice.registration).
    GenerateRegistration {
        /// Replace an existing registration file.
        #[arg(long)]
        force: bool,
    },
}

/// Parses the command line, sets up logging, and runs the chosen command with `bridge`.
/// Returns the process exit code; errors are printed as one line saying what to fix.
pub fn main(bridge: impl Bridge) -> std::process::ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    init_logging(&config.log_level);
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::GenerateRegistration { force } => {
            let path = config.appservice.registration.clone();
            Registration::generate(&config, bridge.protocols()).write(&path, force).map(|()| {
                println!("wrote {}", path.display());
                println!("next: add it to app_service_config_files in the homeserver's config, restart the homeserver, then start the bridge");
            }).map_err(|e| e.to_string())
        }
        Command::Run => tokio::runtime::Runtime::new()
            .map_err(|e| e.to_string())
            .and_then(|rt| {
                rt.block_on(crate::run(bridge, config))
                    .map_err(|e| e.to_string())
            }),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` if set, else by `level`.
pub fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}
