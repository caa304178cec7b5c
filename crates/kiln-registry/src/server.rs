//! Wiring: storage, auth and routes into a listening server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::auth::{AuthError, Authorizer, load_or_create_key};
use crate::config::Config;
use crate::error::RegistryError;
use crate::gc::{GcOptions, collect};
use crate::http::{AppState, router};
use crate::registry::Registry;
use crate::tls::{TlsError, TlsListener};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
    #[error("registry: {0}")]
    Registry(#[from] RegistryError),
    #[error("auth: {0}")]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

pub struct Server {
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    registry: Arc<Registry>,
    app: axum::Router,
}

/// The registry and its routes, for embedding in a larger server.
pub fn build(
    data_dir: &Path,
    config: Config,
) -> Result<(Arc<Registry>, axum::Router), ServerError> {
    std::fs::create_dir_all(data_dir)?;
    let auth = match &config.auth {
        Some(a) => {
            let key_file = a
                .key_file
                .clone()
                .unwrap_or_else(|| data_dir.join("auth").join("token.key"));
            let key = load_or_create_key(&key_file)?;
            let https = config.tls.is_some();
            Some(Arc::new(Authorizer::new(a.clone(), key)?.with_https(https)))
        }
        None => None,
    };
    let registry = Arc::new(Registry::open(data_dir, config)?);
    let app = router(Arc::new(AppState {
        registry: registry.clone(),
        auth,
    }));
    Ok((registry, app))
}

/// Serves `app` on `listener` until `shutdown` resolves (then lets the
/// requests in flight finish): over TLS with `tls`, else plain HTTP.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    match tls {
        Some(config) => {
            axum::serve(TlsListener::new(listener, config)?, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        None => {
            use axum::serve::ListenerExt as _;
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
}

impl Server {
    /// With `config.tls`, the certificate and key are read and checked
    /// before anything else, so bad files fail before the port is taken.
    pub async fn bind(
        addr: SocketAddr,
        data_dir: &Path,
        config: Config,
    ) -> Result<Server, ServerError> {
        let tls = crate::tls::load(config.tls.as_ref())?;
        let (registry, app) = build(data_dir, config)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        Ok(Server {
            listener,
            tls,
            registry,
            app,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// `https` when serving TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        crate::tls::scheme(self.tls.as_ref())
    }

    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    /// Serves until `shutdown` resolves, running periodic GC when configured.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let gc = spawn_periodic_gc(self.registry.clone());
        let result = serve(self.listener, self.tls, self.app, shutdown).await;
        if let Some(gc) = gc {
            gc.abort();
        }
        result.map_err(ServerError::Io)
    }
}

fn spawn_periodic_gc(registry: Arc<Registry>) -> Option<tokio::task::JoinHandle<()>> {
    let g = &registry.config.gc;
    if g.interval_secs == 0 {
        return None;
    }
    let every = Duration::from_secs(g.interval_secs);
    let opts = GcOptions {
        grace: Duration::from_secs(g.grace_secs),
        upload_ttl: Duration::from_secs(g.upload_ttl_secs),
        dry_run: false,
    };
    Some(tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            match collect(&registry, &opts).await {
                Ok(r) => tracing::info!(?r, "periodic gc done"),
                Err(e) => tracing::warn!(error = %e.message, "periodic gc failed"),
            }
        }
    }))
}

/// Where `serve` keeps things under the data directory.
pub fn default_data_dir() -> PathBuf {
    PathBuf::from("kiln-data")
}
