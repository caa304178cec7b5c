//! `kiln serve` (registry + hub + local workers on one address) and
//! `kiln hub serve` (the hub alone).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use kiln_hub::api::logs::LogStore;
use kiln_hub::api::server::{Hub, HubConfig, router, spawn_reaper};
use kiln_hub::db::{Db, DbError};
use kiln_hub::model::Target;

/// `--tls-cert` and `--tls-key`: serve HTTPS. Both or neither.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// Serve HTTPS with this certificate chain (PEM, the server's own
    /// certificate first; needs --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1,
    /// unencrypted; needs --tls-cert).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl TlsArgs {
    /// The files given, if any (clap has made sure it is both or neither).
    pub fn config(&self) -> Option<kiln_registry::TlsConfig> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(kiln_registry::TlsConfig {
                cert_file: cert.clone(),
                key_file: key.clone(),
            }),
            _ => None,
        }
    }
}

#[derive(clap::Args)]
pub struct HubServeArgs {
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Where the database (SQLite by default), logs, registry data and
    /// worker scratch live.
    #[arg(long, default_value = "kiln-data", env = "KILN_DATA_DIR")]
    pub data_dir: PathBuf,
    /// PostgreSQL (`postgres://USER:PASSWORD@HOST/DB`) or SQLite
    /// (`sqlite://PATH?mode=rwc`); default: SQLite in the data directory.
    #[arg(long, env = "KILN_DATABASE_URL")]
    pub database: Option<String>,
    /// Require a token on every request (`kiln login`); without it the hub
    /// trusts every caller as the admin, fit only for a loopback address.
    #[arg(long)]
    pub auth: bool,
    /// Seconds a worker's claim holds without a heartbeat.
    #[arg(long, default_value_t = 60)]
    pub lease_secs: u64,
    /// Seconds between polls of the package repositories of targets that
    /// take automatic rebuilds (0: no watcher; updates come through
    /// `kiln package-update` only).
    #[arg(long, default_value_t = 60)]
    pub repo_poll_secs: u64,
    /// Builds an automatic rebuild of one image may take before it fails.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=10))]
    pub rebuild_attempts: u32,
    #[command(flatten)]
    pub tls: TlsArgs,
}

#[derive(clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub hub: HubServeArgs,
    /// Workers started in this process.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Registry configuration (TOML, as `kiln registry serve --config`).
    #[arg(long, env = "KILN_CONFIG")]
    pub config: Option<PathBuf>,
}

async fn open_hub(args: &HubServeArgs) -> Result<Arc<Hub>> {
    let hub_dir = args.data_dir.join("hub");
    std::fs::create_dir_all(&hub_dir).with_context(|| format!("creating {}", hub_dir.display()))?;
    let url = match &args.database {
        Some(u) => u.clone(),
        None => format!("sqlite://{}?mode=rwc", hub_dir.join("hub.db").display()),
    };
    let db = Db::open(&url)
        .await
        .with_context(|| format!("opening the hub database {url}"))?;
    let logs = LogStore::open(&hub_dir.join("logs"))
        .with_context(|| format!("opening {}", hub_dir.join("logs").display()))?;
    let config = HubConfig {
        lease_secs: args.lease_secs,
        auth_required: args.auth,
        repo_poll_secs: args.repo_poll_secs,
        rebuild_attempts: args.rebuild_attempts,
        ..HubConfig::default()
    };
    if args.auth {
        bootstrap_admin(&db, &hub_dir).await?;
    }
    Ok(Arc::new(Hub::new(db, logs, config)))
}

/// With auth on, the first start creates the admin `admin` and writes its
/// token (mode 0600) next to the database, for `kiln login`.
async fn bootstrap_admin(db: &Db, hub_dir: &Path) -> Result<()> {
    let path = hub_dir.join("admin.token");
    if path.exists() {
        return Ok(());
    }
    db.put_user(&kiln_hub::model::User {
        name: "admin".to_string(),
        admin: true,
    })
    .await?;
    let token = db.create_token("admin", "created at first start").await?;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    writeln!(f, "{token}")?;
    eprintln!(
        "kiln: admin token written to {} (kiln login --token \"$(cat {})\")",
        path.display(),
        path.display()
    );
    Ok(())
}

/// The single-machine default: a target `default` pushing to this
/// process's own registry, so a first build needs no set-up.
async fn default_target(db: &Db, registry: &str) -> Result<()> {
    match db.get_target("default").await {
        Ok(_) => Ok(()),
        Err(DbError::NotFound { .. }) => {
            db.put_target(&Target {
                name: "default".to_string(),
                allowed_parents: Vec::new(),
                repos: Vec::new(),
                dest_tag: "default-candidate".to_string(),
                registry: registry.to_string(),
                autorebuild: false,
            })
            .await?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// The hub's background work: lease reaping, the rebuild coordinator and
/// the package repository watcher.
fn spawn_background(hub: &Arc<Hub>) {
    spawn_reaper(hub.clone());
    kiln_hub::rebuild::spawn_rebuilder(hub.clone());
    kiln_hub::rebuild::spawn_repo_watcher(hub.clone());
}

pub async fn hub_serve(
    args: HubServeArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    // Checked before any port is taken.
    let tls = kiln_registry::tls::load(args.tls.config().as_ref())?;
    let hub = open_hub(&args).await?;
    spawn_background(&hub);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr()?;
    eprintln!(
        "kiln hub listening on {}://{addr}/api/v1/ (data in {})",
        kiln_registry::tls::scheme(tls.as_ref()),
        args.data_dir.display()
    );
    kiln_registry::server::serve(listener, tls, router(hub), shutdown).await?;
    Ok(())
}

pub async fn serve(
    args: ServeArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let mut registry_config = match &args.config {
        Some(p) => kiln_registry::Config::load(p)?,
        None => kiln_registry::Config::default(),
    };
    // The flags override the registry configuration's [tls], which then
    // serves the hub as well: both are on one port.
    if let Some(files) = args.hub.tls.config() {
        registry_config.tls = Some(files);
    }
    let tls = kiln_registry::tls::load(registry_config.tls.as_ref())?;
    let (_registry, registry_routes) =
        kiln_registry::server::build(&args.hub.data_dir.join("registry"), registry_config)?;
    let hub = open_hub(&args.hub).await?;
    let listener = tokio::net::TcpListener::bind(args.hub.listen)
        .await
        .with_context(|| format!("listening on {}", args.hub.listen))?;
    let addr = listener.local_addr()?;
    default_target(&hub.db, &addr.to_string()).await?;
    spawn_background(&hub);
    let app = registry_routes.merge(router(hub));
    // Behind TLS the local workers reach the hub over plain HTTP on a
    // loopback port of their own: the certificate names the address
    // clients use, which the listening address (0.0.0.0, say) need not be.
    let internal = if tls.is_some() && args.workers > 0 {
        let l = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("listening on 127.0.0.1 for the local workers")?;
        Some(l)
    } else {
        None
    };
    let worker_hub = match &internal {
        Some(l) => format!("http://{}", l.local_addr()?),
        None => format!("http://{addr}"),
    };
    eprintln!(
        "kiln listening on {}://{addr}: registry /v2/, API /api/v1/ ({} worker{}; data in {})",
        kiln_registry::tls::scheme(tls.as_ref()),
        args.workers,
        if args.workers == 1 { "" } else { "s" },
        args.hub.data_dir.display()
    );
    let (internal_stop, internal_stopped) = tokio::sync::oneshot::channel::<()>();
    let internal = internal.map(|l| {
        let app = app.clone();
        tokio::spawn(async move {
            let stop = async move {
                let _ = internal_stopped.await;
            };
            kiln_registry::server::serve(l, None, app, stop).await
        })
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut workers = Vec::new();
    for i in 0..args.workers {
        let config = crate::worker_cmd::local_worker_config(
            &worker_hub,
            &args.hub.data_dir.join(format!("worker-{i}")),
            &format!("local-{i}"),
        )?;
        let mut rx = stop_rx.clone();
        workers.push(tokio::spawn(async move {
            let stop = async move {
                let _ = rx.wait_for(|s| *s).await;
            };
            if let Err(e) = kiln_worker::worker::run(config, stop).await {
                tracing::error!(error = %e, "local worker stopped");
            }
        }));
    }
    let result = kiln_registry::server::serve(listener, tls, app, shutdown).await;
    let _ = stop_tx.send(true);
    for w in workers {
        let _ = w.await;
    }
    // Last: the workers may report to the hub until they stop.
    let _ = internal_stop.send(());
    if let Some(internal) = internal {
        match internal.await {
            Ok(Err(e)) => tracing::warn!(error = %e, "the local workers' listener failed"),
            Err(e) => tracing::warn!(error = %e, "the local workers' listener panicked"),
            Ok(Ok(())) => {}
        }
    }
    result?;
    Ok(())
}
