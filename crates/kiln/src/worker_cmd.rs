//! `kiln worker --hub URL`: a build worker on this machine.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use kiln_build::HelperCommand;
use kiln_worker::worker::WorkerConfig;

use crate::build_cmd::HELPER_SUBCOMMAND;

#[derive(clap::Args)]
pub struct WorkerArgs {
    /// Checkouts, scratch and the builder's store (layers, cache).
    #[arg(long, default_value = "kiln-worker", env = "KILN_WORKER_DIR")]
    pub data_dir: PathBuf,
    /// The name the hub records as lease holder (default: the host name).
    #[arg(long)]
    pub name: Option<String>,
    /// Builds run at once.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
}

fn helper() -> Result<HelperCommand> {
    Ok(HelperCommand {
        program: std::env::current_exe().context("locating the kiln binary for its helper")?,
        args: vec![HELPER_SUBCOMMAND.to_string()],
    })
}

/// A worker inside `kiln serve`.
pub fn local_worker_config(hub: &str, data_dir: &Path, name: &str) -> Result<WorkerConfig> {
    Ok(WorkerConfig {
        hub: hub.to_string(),
        token: None,
        name: name.to_string(),
        data_dir: data_dir.to_path_buf(),
        helper: helper()?,
        poll: Duration::from_millis(500),
        concurrency: 1,
    })
}

/// `hub` and `token` are the global `--hub` and `--token` (an admin token
/// when the hub requires auth).
pub async fn run(
    hub: String,
    token: Option<String>,
    args: WorkerArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let name = match args.name {
        Some(n) => n,
        None => rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned(),
    };
    let config = WorkerConfig {
        hub,
        token,
        name,
        data_dir: args.data_dir,
        helper: helper()?,
        poll: Duration::from_secs(1),
        concurrency: args.concurrency.max(1),
    };
    eprintln!("kiln worker {} serving {}", config.name, config.hub);
    kiln_worker::worker::run(config, shutdown).await?;
    Ok(())
}
