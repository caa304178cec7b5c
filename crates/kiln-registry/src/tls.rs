//! HTTPS: the certificate and key files, and a listener that hands
//! `axum::serve` finished TLS streams.
//!
//! rustls on the ring provider (as kiln-client): no OpenSSL, no aws-lc.
//! Handshakes run in tasks of their own, so a client that connects and
//! stalls holds up nobody but itself, and only until [`HANDSHAKE_TIMEOUT`].

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// What [`load_server_config`] gives and [`TlsListener`] takes.
pub use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::ParsedCertificate;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client may take to finish its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in flight at once; past this the listener stops accepting
/// and connections wait in the kernel's backlog.
const MAX_HANDSHAKES: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The reason is the error's source (kept out of the message so that
    /// `{:#}` says it once).
    #[error("cannot read the TLS {what} file {path}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("the TLS {what} file {path} is not valid PEM")]
    Pem {
        what: &'static str,
        path: PathBuf,
        source: pem::Error,
    },
    #[error(
        "the TLS certificate file {0} holds no certificate (expected PEM `BEGIN CERTIFICATE` blocks)"
    )]
    NoCertificate(PathBuf),
    #[error(
        "the TLS key file {0} holds no private key (expected an unencrypted PEM PKCS#8, PKCS#1 or SEC1 key)"
    )]
    NoKey(PathBuf),
    #[error("the TLS certificate file {path} holds a certificate that cannot be used: {reason}")]
    BadCertificate { path: PathBuf, reason: String },
    #[error("the TLS key file {path} holds a key that cannot be used: {reason}")]
    BadKey { path: PathBuf, reason: String },
    #[error("the TLS key file {key} does not match the certificate in {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("TLS set-up")]
    Setup(#[source] rustls::Error),
}

/// The certificates in `pem`, in file order; other PEM blocks (a key in
/// the same file) are skipped.
pub fn parse_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, pem::Error> {
    CertificateDer::pem_slice_iter(pem).collect()
}

/// The first private key in `pem`, whichever of PKCS#8, PKCS#1 and SEC1
/// it is; `None` when there is none (an encrypted key counts as none).
pub fn parse_private_key(pem: &[u8]) -> Result<Option<PrivateKeyDer<'static>>, pem::Error> {
    match PrivateKeyDer::from_pem_slice(pem) {
        Ok(key) => Ok(Some(key)),
        Err(pem::Error::NoItemsFound) => Ok(None),
        Err(e) => Err(e),
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads and checks the certificate chain and key: the first certificate
/// must be the key's. ALPN offers HTTP/2 and HTTP/1.1, both of which
/// `axum::serve` speaks.
pub fn load_server_config(
    cert_file: &Path,
    key_file: &Path,
) -> Result<Arc<ServerConfig>, TlsError> {
    let read = |what, path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            what,
            path: path.into(),
            source,
        })
    };
    let cert_pem = read("certificate", cert_file)?;
    let key_pem = read("key", key_file)?;
    let certs = parse_certificates(&cert_pem).map_err(|source| TlsError::Pem {
        what: "certificate",
        path: cert_file.into(),
        source,
    })?;
    let leaf = certs
        .first()
        .ok_or_else(|| TlsError::NoCertificate(cert_file.into()))?;
    ParsedCertificate::try_from(leaf).map_err(|e| TlsError::BadCertificate {
        path: cert_file.into(),
        reason: e.to_string(),
    })?;
    let key = parse_private_key(&key_pem)
        .map_err(|source| TlsError::Pem {
            what: "key",
            path: key_file.into(),
            source,
        })?
        .ok_or_else(|| TlsError::NoKey(key_file.into()))?;
    let provider = provider();
    let signing_key =
        provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| TlsError::BadKey {
                path: key_file.into(),
                reason: e.to_string(),
            })?;
    let certified = CertifiedKey::new(certs, signing_key);
    match certified.keys_match() {
        Ok(()) => {}
        // ring can always derive the public key; kept for other providers.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(_)) => {
            return Err(TlsError::KeyMismatch {
                cert: cert_file.into(),
                key: key_file.into(),
            });
        }
        Err(e) => {
            return Err(TlsError::BadCertificate {
                path: cert_file.into(),
                reason: e.to_string(),
            });
        }
    }
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Setup)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The server configuration of a `[tls]` table (or of `--tls-cert` and
/// `--tls-key`), read and checked; None without one.
pub fn load(files: Option<&crate::TlsConfig>) -> Result<Option<Arc<ServerConfig>>, TlsError> {
    files
        .map(|t| load_server_config(&t.cert_file, &t.key_file))
        .transpose()
}

/// `https` with a TLS configuration, else `http`.
pub fn scheme(tls: Option<&Arc<ServerConfig>>) -> &'static str {
    if tls.is_some() { "https" } else { "http" }
}

/// A TCP listener whose [`accept`](axum::serve::Listener::accept) yields
/// connections that finished their TLS handshake. A background task
/// accepts TCP connections and runs each handshake in a task of its own;
/// failed and timed-out handshakes are logged at debug and dropped. The
/// background work stops when the listener is dropped.
pub struct TlsListener {
    local_addr: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    accepting: JoinHandle<()>,
}

impl TlsListener {
    /// Must be called inside a tokio runtime.
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> io::Result<TlsListener> {
        Self::with_handshake_timeout(tcp, config, HANDSHAKE_TIMEOUT)
    }

    pub fn with_handshake_timeout(
        tcp: TcpListener,
        config: Arc<ServerConfig>,
        timeout: Duration,
    ) -> io::Result<TlsListener> {
        let local_addr = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let accepting = tokio::spawn(accept_loop(tcp, TlsAcceptor::from(config), timeout, tx));
        Ok(TlsListener {
            local_addr,
            ready,
            accepting,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        // Closes the port; handshakes in flight find the channel closed.
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            None => {
                // Only a panic ends the accept loop.
                tracing::error!(addr = %self.local_addr, "the TLS accept loop stopped");
                std::future::pending().await
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    timeout: Duration,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, addr) = match tcp.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                accept_error(e).await;
                continue;
            }
        };
        // As the plain listener: small registry responses must not wait
        // for Nagle.
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let result = tokio::time::timeout(timeout, acceptor.accept(stream)).await;
            drop(slot);
            match result {
                Ok(Ok(tls)) => {
                    // A send error means the server is shutting down.
                    let _ = ready.send((tls, addr)).await;
                }
                Ok(Err(e)) => tracing::debug!(%addr, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%addr, ?timeout, "TLS handshake timed out"),
            }
        });
    }
}

/// As `axum::serve`'s own TCP listener: a connection that died before it
/// was accepted is nobody's problem; anything else (out of file
/// descriptors) is logged and waited out.
async fn accept_error(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept error");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::TlsConnector;

    use super::*;

    /// Runs the `openssl` CLI in `dir` (scripts/install-test-deps.sh
    /// installs it); `args` split at whitespace.
    fn openssl(dir: &Path, args: &str) {
        let out = Command::new("openssl")
            .current_dir(dir)
            .args(args.split_whitespace())
            .output()
            .expect("the openssl CLI (scripts/install-test-deps.sh)");
        assert!(
            out.status.success(),
            "openssl {args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A CA (`ca.crt`) and, signed by it for 127.0.0.1, `server.crt` with
    /// its PKCS#8 EC key `server.key`.
    fn pki() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
        openssl(
            d,
            &format!(
                "req -x509 {ec} -keyout ca.key -out ca.crt -days 2 -subj /CN=test-CA \
                 -addext basicConstraints=critical,CA:TRUE \
                 -addext keyUsage=critical,keyCertSign,cRLSign"
            ),
        );
        openssl(
            d,
            &format!("req -new {ec} -keyout server.key -out server.csr -subj /CN=127.0.0.1"),
        );
        std::fs::write(
            d.join("server.ext"),
            "subjectAltName = IP:127.0.0.1\nextendedKeyUsage = serverAuth\n",
        )
        .expect("write");
        openssl(
            d,
            "x509 -req -in server.csr -CA ca.crt -CAkey ca.key -set_serial 2 -days 2 \
             -extfile server.ext -out server.crt",
        );
        dir
    }

    fn read(dir: &Path, name: &str) -> String {
        std::fs::read_to_string(dir.join(name)).expect("read")
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    #[test]
    fn pem_without_certificates_or_keys() {
        assert!(parse_certificates(b"").expect("parses").is_empty());
        assert!(
            parse_certificates(b"just text\n")
                .expect("parses")
                .is_empty()
        );
        assert!(parse_private_key(b"just text\n").expect("parses").is_none());
        // Encrypted keys need a passphrase we do not take.
        let encrypted =
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert!(parse_private_key(encrypted).expect("parses").is_none());
        let unterminated = b"-----BEGIN CERTIFICATE-----\nAAAA\n";
        assert!(parse_certificates(unterminated).is_err());
    }

    #[test]
    fn loads_pkcs8_with_its_chain_and_a_combined_file() {
        let dir = pki();
        let d = dir.path();
        assert!(read(d, "server.key").starts_with("-----BEGIN PRIVATE KEY-----"));
        load_server_config(&d.join("server.crt"), &d.join("server.key")).expect("pkcs8");

        let chain = write(
            d,
            "chain.pem",
            &(read(d, "server.crt") + &read(d, "ca.crt")),
        );
        assert_eq!(
            parse_certificates(read(d, "chain.pem").as_bytes())
                .expect("parses")
                .len(),
            2
        );
        let config = load_server_config(&chain, &d.join("server.key")).expect("chain");
        assert_eq!(
            config.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );

        let both = write(
            d,
            "both.pem",
            &(read(d, "server.key") + &read(d, "server.crt")),
        );
        load_server_config(&both, &both).expect("one file with key and certificate");
    }

    #[test]
    fn loads_sec1_and_pkcs1_keys() {
        let dir = pki();
        let d = dir.path();
        openssl(d, "ec -in server.key -out server.sec1");
        assert!(read(d, "server.sec1").starts_with("-----BEGIN EC PRIVATE KEY-----"));
        load_server_config(&d.join("server.crt"), &d.join("server.sec1")).expect("sec1");

        openssl(
            d,
            "genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.p8",
        );
        openssl(d, "rsa -in rsa.p8 -traditional -out rsa.key");
        assert!(read(d, "rsa.key").starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        openssl(
            d,
            "req -x509 -key rsa.key -out rsa.crt -days 2 -subj /CN=127.0.0.1",
        );
        load_server_config(&d.join("rsa.crt"), &d.join("rsa.key")).expect("pkcs1");
    }

    #[test]
    fn bad_files_name_the_file() {
        let dir = pki();
        let d = dir.path();
        let cert = d.join("server.crt");
        let key = d.join("server.key");
        let missing = d.join("missing.pem");

        let e = load_server_config(&missing, &key).unwrap_err();
        assert!(
            matches!(&e, TlsError::Read { what: "certificate", path, .. } if *path == missing),
            "{e:?}"
        );
        let e = load_server_config(&cert, &missing).unwrap_err();
        assert!(
            matches!(&e, TlsError::Read { what: "key", path, .. } if *path == missing),
            "{e:?}"
        );
        let e = load_server_config(&key, &key).unwrap_err();
        assert!(
            matches!(&e, TlsError::NoCertificate(p) if *p == key),
            "{e:?}"
        );
        let e = load_server_config(&cert, &cert).unwrap_err();
        assert!(matches!(&e, TlsError::NoKey(p) if *p == cert), "{e:?}");

        openssl(
            d,
            "genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out other.key",
        );
        let other = d.join("other.key");
        let e = load_server_config(&cert, &other).unwrap_err();
        assert!(
            matches!(&e, TlsError::KeyMismatch { cert: c, key: k } if *c == cert && *k == other),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            format!(
                "the TLS key file {} does not match the certificate in {}",
                other.display(),
                cert.display()
            )
        );

        // Well-formed PEM around bytes that are no certificate.
        let junk = write(
            d,
            "junk.crt",
            "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
        );
        let e = load_server_config(&junk, &key).unwrap_err();
        assert!(
            matches!(&e, TlsError::BadCertificate { path, .. } if *path == junk),
            "{e:?}"
        );
        let unterminated = write(d, "cut.crt", "-----BEGIN CERTIFICATE-----\naGVsbG8=\n");
        let e = load_server_config(&unterminated, &key).unwrap_err();
        assert!(
            matches!(&e, TlsError::Pem { what: "certificate", path, .. } if *path == unterminated),
            "{e:?}"
        );
    }

    /// A TLS client trusting only `dir`'s CA, offering `alpn`.
    fn connector(dir: &Path, alpn: &[&[u8]]) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        for ca in parse_certificates(read(dir, "ca.crt").as_bytes()).expect("ca") {
            roots.add(ca).expect("root");
        }
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        TlsConnector::from(Arc::new(config))
    }

    /// `GET /` over HTTP/1.1 through TLS: the status line.
    async fn get(connector: &TlsConnector, addr: SocketAddr) -> String {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let name = ServerName::IpAddress(addr.ip().into());
        let mut tls = connector.connect(name, tcp).await.expect("handshake");
        tls.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut reply = String::new();
        tls.read_to_string(&mut reply).await.expect("read");
        reply.lines().next().unwrap_or_default().to_owned()
    }

    /// axum on a [`TlsListener`] answering `GET /` with "ok"; `stop` ends it.
    async fn serve(
        dir: &Path,
        timeout: Duration,
    ) -> (
        SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        JoinHandle<io::Result<()>>,
    ) {
        let config =
            load_server_config(&dir.join("server.crt"), &dir.join("server.key")).expect("config");
        let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let listener = TlsListener::with_handshake_timeout(tcp, config, timeout).expect("listener");
        let addr = axum::serve::Listener::local_addr(&listener).expect("addr");
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
        });
        (addr, stop, server)
    }

    #[tokio::test]
    async fn serves_http1_and_offers_h2_then_shuts_down() {
        let dir = pki();
        let (addr, stop, server) = serve(dir.path(), HANDSHAKE_TIMEOUT).await;
        let client = connector(dir.path(), &[b"http/1.1"]);
        assert_eq!(get(&client, addr).await, "HTTP/1.1 200 OK");

        let tcp = TcpStream::connect(addr).await.expect("connect");
        let tls = connector(dir.path(), &[b"h2", b"http/1.1"])
            .connect(ServerName::IpAddress(addr.ip().into()), tcp)
            .await
            .expect("handshake");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        drop(tls);

        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("graceful shutdown finishes")
            .expect("no panic")
            .expect("serve");
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "the port is closed after shutdown"
        );
    }

    #[tokio::test]
    async fn a_stalled_handshake_holds_up_nobody_and_times_out() {
        let dir = pki();
        let (addr, _stop, _server) = serve(dir.path(), Duration::from_secs(2)).await;
        // Connects and never says hello.
        let mut stalled = TcpStream::connect(addr).await.expect("connect");
        let client = connector(dir.path(), &[b"http/1.1"]);
        let served = tokio::time::timeout(Duration::from_secs(1), get(&client, addr)).await;
        assert_eq!(
            served.expect("not queued behind the stalled handshake"),
            "HTTP/1.1 200 OK"
        );

        let mut buf = [0u8; 16];
        let closed = tokio::time::timeout(Duration::from_secs(10), stalled.read(&mut buf))
            .await
            .expect("the stalled connection is dropped after the handshake timeout");
        assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
        // A client that fails its handshake leaves the server serving.
        let plain = TcpStream::connect(addr).await;
        drop(plain);
        assert_eq!(get(&client, addr).await, "HTTP/1.1 200 OK");
    }
}
