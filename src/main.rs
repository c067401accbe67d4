//! The `hydrant` command: run the daemon, or check a config file.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hydrant::config::Config;

#[derive(Parser)]
#[command(
    name = "hydrant",
    version,
    about = "Self-hosted streaming delivery with the Firehose API"
)]
struct Cli {
    /// Log format: text or json.
    #[arg(
        long,
        global = true,
        default_value = "text",
        env = "HYDRANT_LOG_FORMAT"
    )]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (with no config: log in ./hydrant-data, stream `default`
    /// delivering JSON lines to ./hydrant-data/out).
    Run {
        /// The YAML config file.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Listen on this address instead of the config's `listen`.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Check a config file and print every error with its YAML path.
    Validate {
        /// The YAML config file.
        file: PathBuf,
    },
}

fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HYDRANT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { file } => match Config::load(&file) {
            Ok(c) => {
                println!("{}: ok ({} streams)", file.display(), c.streams.len());
                ExitCode::SUCCESS
            }
            Err(errors) => {
                for e in &errors.0 {
                    eprintln!("{}: {e}", file.display());
                }
                eprintln!("{}: {} error(s)", file.display(), errors.0.len());
                ExitCode::from(1)
            }
        },
        Command::Run { config, listen } => {
            init_tracing(&cli.log_format);
            let loaded = match &config {
                Some(path) => Config::load(path),
                None => Config::embedded_default(),
            };
            let config = match loaded {
                Ok(mut c) => {
                    if let Some(addr) = listen {
                        c.listen = addr;
                    }
                    c
                }
                Err(errors) => {
                    for e in &errors.0 {
                        eprintln!("config error: {e}");
                    }
                    return ExitCode::from(1);
                }
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("cannot start the runtime: {e}");
                    return ExitCode::from(1);
                }
            };
            match runtime.block_on(hydrant::ops::daemon::run(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("hydrant: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
