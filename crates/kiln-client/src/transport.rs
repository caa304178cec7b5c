//! How a registry host is reached: scheme, certificate checks, and the two
//! HTTP clients (verifying and not) built on rustls with the ring provider.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::error::{Error, Result};

/// How to talk to one registry host: HTTPS; with `verify` off any
/// certificate is accepted, and with `http_fallback` a failed HTTPS
/// connection is retried over plain HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Transport {
    pub verify: bool,
    pub http_fallback: bool,
}

/// The decision for `host` (`name[:port]`, IPv6 in brackets).
///
/// Hosts listed insecure and every host when `tls_verify` is off behave like
/// containers/image's `--tls-verify=false` (and dockerd's
/// `insecure-registries`): HTTPS accepting any certificate, then HTTP if the
/// HTTPS connection fails. Loopback hosts may speak either: HTTPS (its
/// certificate checked as usual) and, when that fails, plain HTTP.
pub(crate) fn transport_for(host: &str, tls_verify: bool, insecure: &[String]) -> Transport {
    if insecure.iter().any(|h| h == host) {
        return Transport {
            verify: false,
            http_fallback: true,
        };
    }
    Transport {
        verify: tls_verify,
        http_fallback: !tls_verify || is_loopback(host),
    }
}

/// `localhost`, `127.0.0.0/8` and `[::1]`, with or without a port.
pub(crate) fn is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The host Docker Hub's API is served on.
pub(crate) fn api_host(registry: &str) -> &str {
    if registry == kiln_oci::reference::DEFAULT_REGISTRY {
        "registry-1.docker.io"
    } else {
        registry
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// An HTTP client; `verify` off accepts any server certificate.
pub(crate) fn http_client(verify: bool, user_agent: &str) -> Result<reqwest::Client> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Setup(e.to_string()))?;
    let mut tls = if verify {
        let verifier = rustls_platform_verifier::Verifier::new(provider)
            .map_err(|e| Error::Setup(format!("loading the system certificates: {e}")))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(
                provider.signature_verification_algorithms,
            )))
            .with_no_client_auth()
    };
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .user_agent(user_agent)
        .connect_timeout(Duration::from_secs(30))
        // Idle time between reads, not the whole transfer: layers are big.
        .read_timeout(Duration::from_secs(300))
        .build()
        .map_err(|e| Error::Setup(e.to_string()))
}

/// `--tls-verify=false`: the handshake signatures are still checked, the
/// certificate chain and name are not.
#[derive(Debug)]
struct AcceptAnyCertificate(rustls::crypto::WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "localhost:5000",
            "127.0.0.1",
            "127.1.2.3:80",
            "[::1]",
            "[::1]:5000",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in [
            "registry.example",
            "10.0.0.1:5000",
            "[::2]:5000",
            "localhost.example",
        ] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn scheme_decisions() {
        let secure = Transport {
            verify: true,
            http_fallback: false,
        };
        let lax = Transport {
            verify: false,
            http_fallback: true,
        };
        assert_eq!(transport_for("quay.io", true, &[]), secure);
        assert_eq!(transport_for("quay.io", false, &[]), lax);
        // Loopback: HTTPS checked as usual, then plain HTTP.
        assert_eq!(
            transport_for("localhost:5000", true, &[]),
            Transport {
                verify: true,
                http_fallback: true,
            }
        );
        let insecure = vec!["reg.lan:5000".to_owned(), "127.0.0.1:5000".to_owned()];
        assert_eq!(transport_for("reg.lan:5000", true, &insecure), lax);
        // Listed beats loopback: the registry may speak TLS after all.
        assert_eq!(transport_for("127.0.0.1:5000", true, &insecure), lax);
        assert_eq!(transport_for("reg.lan", true, &insecure), secure);
    }

    #[test]
    fn builds_both_clients() {
        assert!(http_client(true, "kiln-test").is_ok());
        assert!(http_client(false, "kiln-test").is_ok());
    }

    #[test]
    fn docker_hub_api_host() {
        assert_eq!(api_host("docker.io"), "registry-1.docker.io");
        assert_eq!(api_host("quay.io"), "quay.io");
    }
}
