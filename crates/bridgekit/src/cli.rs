//! The command line every bridge gets:
//! `--config PATH [run | generate-registration [--force] | migrate-store --to-postgres URL | --to-sled DIR]`.

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
        /// Also write a double-puppet registration to this path (a second appservice that
        /// may act as the homeserver's users; add it to the homeserver too).
        #[arg(long, value_name = "PATH")]
        double_puppet: Option<PathBuf>,
    },
    /// Copy every record of the configured store into a new, empty store of the other kind.
    /// Stop the bridge first; afterwards, point `store.*` in the config at the new store.
    MigrateStore {
        /// The PostgreSQL database to copy into (a `postgresql://` URL or key=value string).
        #[arg(long, conflicts_with = "to_sled", required_unless_present = "to_sled")]
        to_postgres: Option<String>,
        /// The schema for the bridge's tables (default: as `store.postgres_schema` would be).
        #[arg(long, requires = "to_postgres")]
        schema: Option<String>,
        /// The directory of a new sled store to copy into.
        #[arg(long)]
        to_sled: Option<PathBuf>,
    },
}

/// Writes the registration (and the double-puppet one, when asked) and says what is next.
fn generate_registration(
    config: &Config,
    bridge: &impl Bridge,
    force: bool,
    double_puppet: Option<&std::path::Path>,
) -> Result<(), String> {
    let path = config.appservice.registration.clone();
    Registration::generate(config, bridge.protocols())
        .write(&path, force)
        .map_err(|e| e.to_string())?;
    println!("wrote {}", path.display());
    let mut files = path.display().to_string();
    if let Some(puppet_path) = double_puppet {
        let registration = Registration::double_puppet(
            config.homeserver.server_name.as_str(),
            config.bridge.double_puppet.as_token.clone(),
        );
        registration
            .write(puppet_path, force)
            .map_err(|e| e.to_string())?;
        println!("wrote {}", puppet_path.display());
        if config.bridge.double_puppet.as_token.is_none() {
            println!(
                "add to the bridge's config: double_puppet: {{secrets: {{{}: \"as_token:{}\"}}}}",
                config.homeserver.server_name, registration.as_token
            );
        }
        files = format!("{files} and {}", puppet_path.display());
    }
    println!(
        "next: add {files} to app_service_config_files in the homeserver's config, restart the homeserver, then start the bridge"
    );
    Ok(())
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
        Command::GenerateRegistration {
            force,
            double_puppet,
        } => generate_registration(&config, &bridge, force, double_puppet.as_deref()),
        Command::MigrateStore {
            to_postgres,
            schema,
            to_sled,
        } => {
            let target = match (to_postgres, to_sled) {
                (Some(url), _) => crate::store::StoreLocation::Postgres {
                    url,
                    schema: schema.unwrap_or_else(|| default_schema(&config)),
                },
                (None, Some(path)) => crate::store::StoreLocation::Sled {
                    path,
                    cache_bytes: crate::store::DEFAULT_CACHE_BYTES,
                },
                (None, None) => unreachable!("clap requires one target"),
            };
            tokio::runtime::Runtime::new()
                .map_err(|e| e.to_string())
                .and_then(|rt| rt.block_on(migrate_store(&config, &target)))
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

/// The schema a Postgres store of this bridge would use by default.
fn default_schema(config: &Config) -> String {
    match &config.store.location {
        crate::store::StoreLocation::Postgres { schema, .. } => schema.clone(),
        _ => config
            .appservice
            .id
            .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
            .to_ascii_lowercase(),
    }
}

async fn migrate_store(
    config: &Config,
    target: &crate::store::StoreLocation,
) -> Result<(), String> {
    let source = crate::store::open(&config.store.location)
        .await
        .map_err(|e| format!("source {}: {e}", config.store.location))?;
    let destination = crate::store::open(target)
        .await
        .map_err(|e| format!("target {target}: {e}"))?;
    let started = std::time::Instant::now();
    let report = crate::store::export::migrate(&*source, &*destination)
        .await
        .map_err(|e| {
            format!(
                "migration from {} to {target} failed: {e}; the source is unchanged",
                config.store.location
            )
        })?;
    println!(
        "copied {} messages, {} reactions, {} portals, {} ghosts, {} logins and {} other records from {} to {target} in {:.1} s",
        report.messages,
        report.reactions,
        report.portals,
        report.ghosts,
        report.logins,
        report.other,
        config.store.location,
        started.elapsed().as_secs_f64()
    );
    match target {
        crate::store::StoreLocation::Postgres { schema, .. } => println!(
            "next: set store.postgres_url (and store.postgres_schema: {schema}) in {}, then start the bridge",
            config.path.display()
        ),
        crate::store::StoreLocation::Sled { path, .. } => println!(
            "next: set store.path: {} and remove store.postgres_url in {}, then start the bridge",
            path.display(),
            config.path.display()
        ),
    }
    Ok(())
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
