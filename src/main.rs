//! `tidewater serve`: start a broker.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use tidewater::config::{Config, PROPERTIES};
use tidewater::shard::{runtime, Shared};

#[derive(Parser)]
#[command(
    name = "tidewater",
    version,
    about = "Kafka-API-compatible streaming broker"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start a broker (single node) with embedded defaults.
    Serve {
        /// Data directory (`log.dirs`).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Listener HOST:PORT (`listeners`).
        #[arg(long)]
        listen: Option<String>,
        /// HOST:PORT given to clients (`advertised.listeners`).
        #[arg(long)]
        advertised: Option<String>,
        /// Shards, one per core (`tidewater.cores`; 0 = all cores).
        #[arg(long)]
        cores: Option<usize>,
        /// TOML file with properties (Kafka names, e.g. `"log.retention.ms" = 3600000`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Any property as NAME=VALUE (repeatable).
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
    },
    /// List every configuration property with its default.
    Properties,
}

fn main() -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TIDEWATER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: log files and collectors get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match Cli::parse().cmd {
        Cmd::Properties => {
            for (k, v, doc) in PROPERTIES {
                println!("{k} = {v:?}\n    {doc}");
            }
            Ok(())
        }
        Cmd::Serve {
            data_dir,
            listen,
            advertised,
            cores,
            config,
            set,
        } => {
            let mut o = BTreeMap::new();
            for kv in set {
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| anyhow::anyhow!("--set takes NAME=VALUE, got {kv}"))?;
                o.insert(k.to_string(), v.to_string());
            }
            if let Some(d) = data_dir {
                o.insert("log.dirs".into(), d.display().to_string());
            }
            if let Some(l) = listen {
                o.insert("listeners".into(), l);
            }
            if let Some(a) = advertised {
                o.insert("advertised.listeners".into(), a);
            }
            if let Some(c) = cores {
                o.insert("tidewater.cores".into(), c.to_string());
            }
            let cfg = Config::load(config.as_deref(), &o)?;
            let shared = Arc::new(Shared::default());
            let s = shared.clone();
            let mut signals = signal_hook::iterator::Signals::new([
                signal_hook::consts::SIGTERM,
                signal_hook::consts::SIGINT,
            ])?;
            std::thread::spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    tracing::info!(signal = sig, "shutting down");
                    s.request_shutdown();
                }
            });
            runtime::run(cfg, shared)?;
            tracing::info!("stopped cleanly");
            Ok(())
        }
    }
}
