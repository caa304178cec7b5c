//! The `kiln` command line: wiring only; the work is in the library crates.

mod build_cmd;
mod hub_cmd;
mod rebuild_cmd;
mod serve_cmd;
mod worker_cmd;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use kiln_registry::Config;

#[derive(Parser)]
#[command(
    name = "kiln",
    version,
    about = "kiln: a layered container image build service"
)]
struct Cli {
    #[command(flatten)]
    hub: hub_cmd::HubArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The OCI registry.
    #[command(subcommand)]
    Registry(RegistryCommand),
    /// Build an image from a Dockerfile (daemonless; runs as root).
    Build(Box<build_cmd::BuildArgs>),
    /// Registry, build hub and local workers on one address (the
    /// single-machine service).
    Serve(Box<serve_cmd::ServeArgs>),
    /// The build hub alone (API under /api/v1/).
    #[command(subcommand)]
    Hub(HubServerCommand),
    /// A build worker claiming tasks from --hub.
    Worker(worker_cmd::WorkerArgs),
    #[command(flatten)]
    Client(hub_cmd::HubCommand),
    #[command(flatten)]
    Rebuild(rebuild_cmd::RebuildCommand),
}

#[derive(Subcommand)]
enum HubServerCommand {
    /// Serve the hub's API.
    Serve(serve_cmd::HubServeArgs),
}

#[derive(clap::Args)]
struct RegistryArgs {
    /// Where blobs, manifests and upload sessions are kept.
    #[arg(long, default_value = "kiln-data", env = "KILN_DATA_DIR")]
    data_dir: PathBuf,
    /// TOML configuration (storage, auth, gc, limits, tls); defaults when absent.
    #[arg(long, env = "KILN_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum RegistryCommand {
    /// Serve the registry over HTTP, or HTTPS with --tls-cert and --tls-key.
    Serve {
        #[arg(long, default_value = "127.0.0.1:5000")]
        listen: SocketAddr,
        #[command(flatten)]
        args: RegistryArgs,
        // Overrides the configuration's [tls].
        #[command(flatten)]
        tls: serve_cmd::TlsArgs,
    },
    /// Remove blobs no manifest references, and abandoned uploads.
    Gc {
        #[command(flatten)]
        args: RegistryArgs,
        /// Report what would be removed without removing it.
        #[arg(long)]
        dry_run: bool,
        /// Override the config's grace period (seconds): younger blobs stay.
        #[arg(long)]
        grace_secs: Option<u64>,
    },
    /// Read a password on stdin and print its hash for the config's [[auth.users]].
    HashPassword,
}

fn load_config(args: &RegistryArgs) -> Result<Config> {
    match &args.config {
        Some(p) => Ok(Config::load(p)?),
        None => Ok(Config::default()),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}

async fn registry(cmd: RegistryCommand) -> Result<()> {
    match cmd {
        RegistryCommand::Serve { listen, args, tls } => {
            let mut config = load_config(&args)?;
            if let Some(files) = tls.config() {
                config.tls = Some(files);
            }
            let server = kiln_registry::Server::bind(listen, &args.data_dir, config).await?;
            let addr = server.local_addr()?;
            let scheme = server.scheme();
            tracing::info!(%addr, scheme, data_dir = %args.data_dir.display(), "kiln registry listening");
            eprintln!(
                "kiln registry listening on {scheme}://{addr} (data in {})",
                args.data_dir.display()
            );
            server.run(shutdown_signal()).await?;
            Ok(())
        }
        RegistryCommand::Gc {
            args,
            dry_run,
            grace_secs,
        } => {
            let config = load_config(&args)?;
            let opts = kiln_registry::gc::GcOptions {
                grace: Duration::from_secs(grace_secs.unwrap_or(config.gc.grace_secs)),
                upload_ttl: Duration::from_secs(config.gc.upload_ttl_secs),
                dry_run,
            };
            let (registry, _) = kiln_registry::server::build(&args.data_dir, config)?;
            let report = kiln_registry::gc::collect(&registry, &opts)
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        RegistryCommand::HashPassword => {
            let mut password = String::new();
            std::io::stdin()
                .read_line(&mut password)
                .context("reading the password from stdin")?;
            let password = password.trim_end_matches(['\n', '\r']);
            anyhow::ensure!(!password.is_empty(), "the password on stdin is empty");
            println!("{}", kiln_registry::auth::hash_password(password)?);
            Ok(())
        }
    }
}

fn main() {
    // Helper processes (RUN sandboxes, file operations) must stay
    // single-threaded: dispatch them before the runtime starts.
    if let Some(code) = build_cmd::maybe_helper() {
        std::process::exit(code);
    }
    keep_freed_memory();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .and_then(|rt| rt.block_on(async_main()));
    if let Err(e) = result {
        // One line a user can act on (with its causes), never a backtrace.
        eprintln!("Error: {e:#}");
        std::process::exit(1);
    }
}

/// glibc gives large freed blocks back to the kernel at once (trim, munmap),
/// so a server that receives blobs faults and zeroes fresh pages for every
/// few MiB it reads: ~25 000 page faults and ~10 % of the CPU of a 512 MiB
/// push. Keeping up to 64 MiB of freed heap per arena, and serving buffers
/// of up to 16 MiB from the heap, lets uploads reuse their memory; the cost
/// is that much more resident memory after a burst.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it runs before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 16 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}

async fn async_main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KILN_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Registry(cmd) => registry(cmd).await,
        Command::Build(args) => build_cmd::run(*args).await,
        Command::Serve(args) => serve_cmd::serve(*args, shutdown_signal()).await,
        Command::Hub(HubServerCommand::Serve(args)) => {
            serve_cmd::hub_serve(args, shutdown_signal()).await
        }
        Command::Worker(args) => {
            worker_cmd::run(cli.hub.hub, cli.hub.token, args, shutdown_signal()).await
        }
        Command::Client(cmd) => {
            let code = hub_cmd::run(cli.hub, cmd).await?;
            if code != 0 {
                std::process::exit(code);
            }
            Ok(())
        }
        Command::Rebuild(cmd) => {
            let code = rebuild_cmd::run(cli.hub, cmd).await?;
            if code != 0 {
                std::process::exit(code);
            }
            Ok(())
        }
    }
}
