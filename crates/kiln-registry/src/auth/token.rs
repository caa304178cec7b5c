//! Bearer tokens: HS256 JWTs signed with the registry's own key. Only kiln
//! issues and verifies them, so a shared secret is all that is needed.

use std::fs;
use std::io::{ErrorKind, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::{AuthError, MIN_KEY_LEN};

/// Clock skew tolerated on `exp` and `nbf`.
pub(crate) const LEEWAY_SECS: i64 = 30;
pub(crate) const ISSUER: &str = "kiln";
/// Tokens are small; anything far larger is not ours and not worth hashing.
const MAX_TOKEN_LEN: usize = 64 * 1024;

type HmacSha256 = Hmac<Sha256>;

/// One entry of the `access` claim, as in the Docker token spec.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ResourceActions {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Claims {
    pub iss: String,
    /// The user name, empty for anonymous.
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub nbf: i64,
    pub iat: i64,
    pub jti: String,
    #[serde(default)]
    pub access: Vec<ResourceActions>,
    /// Set only in refresh tokens: a fingerprint of the user's password hash,
    /// so changing the password revokes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("token signature does not match")]
    BadSignature,
    #[error("token algorithm is not HS256")]
    Algorithm,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("token is for another service")]
    WrongAudience,
}

/// Signs and verifies tokens with one key.
#[derive(Clone)]
pub(crate) struct Signer {
    // Keyed once: HMAC key setup is the same for every token.
    mac: HmacSha256,
}

impl Signer {
    pub(crate) fn new(key: &[u8]) -> Option<Self> {
        HmacSha256::new_from_slice(key)
            .ok()
            .map(|mac| Signer { mac })
    }

    pub(crate) fn sign(&self, claims: &Claims) -> Result<String, serde_json::Error> {
        let header = Header {
            alg: "HS256".to_owned(),
            typ: Some("JWT".to_owned()),
        };
        let mut token = encode_json(&header)?;
        token.push('.');
        token.push_str(&encode_json(claims)?);
        let signature = self.mac(token.as_bytes()).finalize().into_bytes();
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(token)
    }

    /// Checks signature, algorithm, audience and validity period at `now`.
    pub(crate) fn verify(
        &self,
        token: &str,
        audience: &str,
        now: i64,
    ) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let (signed, signature) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let (header, payload) = signed.split_once('.').ok_or(TokenError::Malformed)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| TokenError::Malformed)?;
        self.mac(signed.as_bytes())
            .verify_slice(&signature)
            .map_err(|_| TokenError::BadSignature)?;
        let header: Header = decode_json(header)?;
        if header.alg != "HS256" {
            return Err(TokenError::Algorithm);
        }
        let claims: Claims = decode_json(payload)?;
        check_claims(&claims, audience, now)?;
        Ok(claims)
    }

    fn mac(&self, data: &[u8]) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(data);
        mac
    }
}

fn check_claims(claims: &Claims, audience: &str, now: i64) -> Result<(), TokenError> {
    if claims.aud != audience {
        return Err(TokenError::WrongAudience);
    }
    if now > claims.exp.saturating_add(LEEWAY_SECS) {
        return Err(TokenError::Expired);
    }
    if now < claims.nbf.saturating_sub(LEEWAY_SECS) {
        return Err(TokenError::NotYetValid);
    }
    Ok(())
}

fn encode_json<T: Serialize>(value: &T) -> Result<String, serde_json::Error> {
    Ok(URL_SAFE_NO_PAD.encode(serde_json::to_vec(value)?))
}

fn decode_json<T: for<'de> Deserialize<'de>>(part: &str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

/// Reads the token signing key at `path`, creating 32 random bytes there
/// (mode 0600) if the file does not exist.
pub fn load_or_create_key(path: &Path) -> Result<Vec<u8>, AuthError> {
    match fs::read(path) {
        Ok(key) => checked_key(path, key),
        Err(e) if e.kind() == ErrorKind::NotFound => create_key(path),
        Err(source) => Err(key_io(path, source)),
    }
}

fn checked_key(path: &Path, key: Vec<u8>) -> Result<Vec<u8>, AuthError> {
    if key.len() < MIN_KEY_LEN {
        return Err(AuthError::KeyTooShort {
            path: path.to_owned(),
            len: key.len(),
        });
    }
    warn_if_exposed(path);
    Ok(key)
}

#[cfg(unix)]
fn warn_if_exposed(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(path = %path.display(), "token key file is readable by others; anyone who reads it can forge tokens");
    }
}

#[cfg(not(unix))]
fn warn_if_exposed(_path: &Path) {}

fn create_key(path: &Path) -> Result<Vec<u8>, AuthError> {
    let mut key = vec![0u8; MIN_KEY_LEN];
    rand::fill(&mut key[..]);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|e| key_io(dir, e))?;
    }
    // Written aside and linked into place, so no reader ever sees a partial
    // key, and a key that appeared meanwhile wins: processes starting
    // together must all sign with the same key.
    let file_name = path
        .file_name()
        .map_or("token.key".into(), |n| n.to_string_lossy());
    let aside = path.with_file_name(format!(".{file_name}.{}.tmp", random_id()));
    write_private(&aside, &key).map_err(|e| key_io(&aside, e))?;
    let placed = match fs::hard_link(&aside, path) {
        Err(e) if e.kind() == ErrorKind::AlreadyExists => None,
        // Filesystems without hard links: a plain rename is nearly as good.
        Err(_) => Some(fs::rename(&aside, path)),
        Ok(()) => Some(Ok(())),
    };
    // Best effort: after a rename it is already gone.
    let _ = fs::remove_file(&aside);
    match placed {
        None => {
            let key = fs::read(path).map_err(|e| key_io(path, e))?;
            checked_key(path, key)
        }
        Some(Ok(())) => {
            tracing::info!(path = %path.display(), "created a new token signing key");
            Ok(key)
        }
        Some(Err(source)) => Err(key_io(path, source)),
    }
}

fn write_private(path: &Path, key: &[u8]) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(key)?;
    file.sync_all()
}

fn key_io(path: &Path, source: std::io::Error) -> AuthError {
    AuthError::KeyIo {
        path: path.to_owned(),
        source,
    }
}

/// A random token id.
pub(crate) fn random_id() -> String {
    let mut bytes = [0u8; 16];
    rand::fill(&mut bytes[..]);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `2024-05-01T12:00:00Z` for a Unix time (the `issued_at` field).
pub(crate) fn rfc3339(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
}

/// Proleptic Gregorian date of a day count since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn signer() -> Signer {
        Signer::new(&[7u8; 32]).expect("hmac takes any key")
    }

    fn claims() -> Claims {
        Claims {
            iss: ISSUER.to_owned(),
            sub: "alice".to_owned(),
            aud: "kiln".to_owned(),
            exp: NOW + 300,
            nbf: NOW,
            iat: NOW,
            jti: random_id(),
            access: vec![ResourceActions {
                kind: "repository".to_owned(),
                name: "a/b".to_owned(),
                actions: vec!["pull".to_owned()],
            }],
            refresh: None,
        }
    }

    #[test]
    fn sign_then_verify_round_trips() {
        let token = signer().sign(&claims()).expect("serializable");
        assert_eq!(token.matches('.').count(), 2);
        let verified = signer()
            .verify(&token, "kiln", NOW + 10)
            .expect("valid token");
        assert_eq!(verified, claims_with_jti(&verified.jti));
    }

    fn claims_with_jti(jti: &str) -> Claims {
        Claims {
            jti: jti.to_owned(),
            ..claims()
        }
    }

    #[test]
    fn header_is_hs256_jwt() {
        let token = signer().sign(&claims()).expect("serializable");
        let header = token.split('.').next().expect("three parts");
        let header = URL_SAFE_NO_PAD.decode(header).expect("base64url");
        assert_eq!(header, br#"{"alg":"HS256","typ":"JWT"}"#);
    }

    #[test]
    fn expiry_and_not_before_allow_leeway() {
        let token = signer().sign(&claims()).expect("serializable");
        let at = |now| signer().verify(&token, "kiln", now).map(|_| ());
        assert_eq!(at(NOW + 300 + LEEWAY_SECS), Ok(()));
        assert_eq!(at(NOW + 301 + LEEWAY_SECS), Err(TokenError::Expired));
        assert_eq!(at(NOW - LEEWAY_SECS), Ok(()));
        assert_eq!(at(NOW - LEEWAY_SECS - 1), Err(TokenError::NotYetValid));
    }

    #[test]
    fn wrong_audience_is_rejected() {
        let token = signer().sign(&claims()).expect("serializable");
        assert_eq!(
            signer().verify(&token, "other", NOW).map(|_| ()),
            Err(TokenError::WrongAudience)
        );
    }

    #[test]
    fn tampering_is_detected() {
        let token = signer().sign(&claims()).expect("serializable");
        let parts: Vec<&str> = token.split('.').collect();
        let mut forged = claims();
        forged.access[0].actions.push("push".to_owned());
        let forged_payload = encode_json(&forged).expect("serializable");
        let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(
            signer().verify(&tampered, "kiln", NOW).map(|_| ()),
            Err(TokenError::BadSignature)
        );
        let other_key = Signer::new(&[8u8; 32]).expect("hmac takes any key");
        assert_eq!(
            other_key.verify(&token, "kiln", NOW).map(|_| ()),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn unsigned_and_garbage_tokens_are_rejected() {
        let payload = encode_json(&claims()).expect("serializable");
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        for token in [
            format!("{none_header}.{payload}."),
            format!("{none_header}.{payload}"),
            "".to_owned(),
            "a.b.c".to_owned(),
            "....".to_owned(),
            "x".repeat(MAX_TOKEN_LEN + 1),
        ] {
            assert!(signer().verify(&token, "kiln", NOW).is_err(), "{token:.40}");
        }
    }

    #[test]
    fn other_algorithms_are_rejected_even_when_signed() {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#);
        let payload = encode_json(&claims()).expect("serializable");
        let signed = format!("{header}.{payload}");
        let signature = signer().mac(signed.as_bytes()).finalize().into_bytes();
        let token = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature));
        assert_eq!(
            signer().verify(&token, "kiln", NOW).map(|_| ()),
            Err(TokenError::Algorithm)
        );
    }

    #[test]
    fn rfc3339_formatting() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_827_696), "2000-02-29T12:34:56Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn ids_are_random() {
        assert_ne!(random_id(), random_id());
        assert_eq!(random_id().len(), 22);
    }

    #[test]
    fn key_is_created_once_and_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("auth").join("token.key");
        let key = load_or_create_key(&path).expect("created");
        assert_eq!(key.len(), MIN_KEY_LEN);
        assert_eq!(load_or_create_key(&path).expect("loaded"), key);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).expect("exists").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let leftovers = fs::read_dir(path.parent().expect("has parent"))
            .expect("readable")
            .count();
        assert_eq!(leftovers, 1, "no temporary files left behind");
    }

    #[test]
    fn short_key_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token.key");
        fs::write(&path, b"short").expect("written");
        assert!(matches!(
            load_or_create_key(&path),
            Err(AuthError::KeyTooShort { len: 5, .. })
        ));
    }
}
