//! Passwords: argon2 hashing, Basic credentials, and a cache of successful
//! verifications (argon2 costs tens of milliseconds by design, too much to
//! pay on every request of a client that sends Basic auth each time).

use std::collections::HashSet;
use std::fmt;
use std::sync::{Mutex, PoisonError};

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD_PAD_INDIFFERENT, URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::AuthError;

/// Bounds the cache; only correct passwords get in, so this is plenty.
const CACHE_CAPACITY: usize = 4096;

/// Hashes a password into an argon2id PHC string for `[[auth.users]]`.
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    if password.is_empty() {
        return Err(AuthError::Hash("the password is empty".to_owned()));
    }
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// A user's configured password hash, parsed once.
#[derive(Clone, Debug)]
pub(crate) struct StoredHash {
    phc: PasswordHash,
    text: String,
}

impl StoredHash {
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let phc = PasswordHash::new(text).map_err(|e| e.to_string())?;
        let algorithm = phc.algorithm.as_str();
        if !matches!(algorithm, "argon2id" | "argon2i" | "argon2d") {
            return Err(format!("algorithm {algorithm:?} is not argon2"));
        }
        if phc.salt.is_none() || phc.hash.is_none() {
            return Err("salt or hash missing".to_owned());
        }
        argon2::Params::try_from(&phc).map_err(|e| format!("parameters: {e}"))?;
        Ok(StoredHash {
            phc,
            text: text.to_owned(),
        })
    }

    /// Changes whenever the hash does, so tokens bound to it die with a
    /// password change; reveals nothing useful about the hash itself.
    pub(crate) fn fingerprint(&self) -> String {
        URL_SAFE_NO_PAD.encode(&Sha256::digest(self.text.as_bytes())[..12])
    }

    fn verify(&self, password: &str) -> bool {
        Argon2::default()
            .verify_password(password.as_bytes(), &self.phc)
            .is_ok()
    }
}

/// Credentials from an `Authorization: Basic` header.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub user: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Decodes the part after `Basic `. The user name ends at the first colon:
/// names cannot hold one, passwords can.
pub(crate) fn parse_basic(encoded: &str) -> Option<Credentials> {
    let decoded = STANDARD_PAD_INDIFFERENT.decode(encoded.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some(Credentials {
        user: user.to_owned(),
        password: password.to_owned(),
    })
}

/// Verifies passwords, remembering the ones that were right.
pub(crate) struct PasswordChecker {
    /// Keys are MACs under a per-process secret, not plain hashes: a memory
    /// dump must not turn argon2-protected passwords into SHA-256 ones.
    cache_key: Hmac<Sha256>,
    verified: Mutex<HashSet<[u8; 32]>>,
    /// Checked for unknown users so they cost as much as a wrong password.
    decoy: Option<StoredHash>,
}

impl PasswordChecker {
    /// `decoy`: a hash with the cost parameters real users have.
    pub(crate) fn new(decoy: Option<StoredHash>) -> Self {
        let mut secret = [0u8; 64];
        rand::fill(&mut secret[..]);
        PasswordChecker {
            cache_key: <Hmac<Sha256> as KeyInit>::new(&secret.into()),
            verified: Mutex::new(HashSet::new()),
            decoy,
        }
    }

    /// Whether `password` is right for `user`, whose hash is `stored`
    /// (`None` for an unknown user, which always fails).
    pub(crate) fn verify(&self, user: &str, password: &str, stored: Option<&StoredHash>) -> bool {
        let Some(stored) = stored else {
            if let Some(decoy) = &self.decoy {
                decoy.verify(password);
            }
            return false;
        };
        let key = self.key(user, password, stored);
        if self.cache().contains(&key) {
            return true;
        }
        let ok = stored.verify(password);
        if ok {
            self.remember(key);
        }
        ok
    }

    /// Whether a check would be answered from the cache (no argon2 work).
    #[cfg(test)]
    fn is_cached(&self, user: &str, password: &str, stored: &StoredHash) -> bool {
        self.cache().contains(&self.key(user, password, stored))
    }

    fn key(&self, user: &str, password: &str, stored: &StoredHash) -> [u8; 32] {
        let mut mac = self.cache_key.clone();
        for part in [user, "\0", password, "\0", &stored.text] {
            mac.update(part.as_bytes());
        }
        mac.finalize().into_bytes().into()
    }

    fn remember(&self, key: [u8; 32]) {
        let mut cache = self.cache();
        if cache.len() >= CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(key);
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashSet<[u8; 32]>> {
        // The set stays consistent even if a holder panicked.
        self.verified.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A cheap hash (tests run unoptimized; real parameters take seconds).
    pub(crate) fn cheap_hash(password: &str) -> String {
        let params = argon2::Params::new(8, 1, 1, None).expect("valid params");
        let argon = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        argon
            .hash_password(password.as_bytes())
            .expect("hashable")
            .to_string()
    }

    fn basic(raw: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(raw)
    }

    #[test]
    fn basic_credentials_split_at_first_colon() {
        let creds = parse_basic(&basic("alice:pa:ss:word")).expect("valid");
        assert_eq!(creds.user, "alice");
        assert_eq!(creds.password, "pa:ss:word");
        let creds = parse_basic(&basic("bob:")).expect("valid");
        assert_eq!(creds.password, "");
        assert!(!format!("{creds:?}").contains("pa:ss"));
    }

    #[test]
    fn basic_without_padding_or_colon() {
        let unpadded = basic("al:x").trim_end_matches('=').to_owned();
        assert_eq!(parse_basic(&unpadded).expect("valid").password, "x");
        assert_eq!(parse_basic(&basic("nocolon")), None);
        assert_eq!(parse_basic("!!!"), None);
        assert_eq!(
            parse_basic(&base64::engine::general_purpose::STANDARD.encode([0xff, b':'])),
            None
        );
    }

    #[test]
    fn default_hash_is_argon2id_and_verifies() {
        // One real-cost hash, to check the PHC string we hand to admins.
        let hash = hash_password("s3cret").expect("hashable");
        assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
        let stored = StoredHash::parse(&hash).expect("parses");
        assert!(stored.verify("s3cret"));
        assert!(hash_password("").is_err());
    }

    #[test]
    fn non_argon2_hashes_are_rejected() {
        for bad in [
            "",
            "plain",
            "$2y$05$abcdefghijklmnopqrstuu5Ow0pmi5EZ3cC1Vqqdby0FIYoq1ZaKO",
            "$pbkdf2-sha256$i=1000$c2FsdA$aGFzaA",
            "$argon2id$v=19$m=8,t=1,p=1",
        ] {
            assert!(StoredHash::parse(bad).is_err(), "{bad}");
        }
        assert!(StoredHash::parse(&cheap_hash("x")).is_ok());
    }

    #[test]
    fn verification_and_cache() {
        let stored = StoredHash::parse(&cheap_hash("right")).expect("parses");
        let checker = PasswordChecker::new(Some(stored.clone()));
        assert!(!checker.verify("alice", "wrong", Some(&stored)));
        assert!(!checker.is_cached("alice", "wrong", &stored));
        assert!(checker.verify("alice", "right", Some(&stored)));
        assert!(checker.is_cached("alice", "right", &stored));
        assert!(checker.verify("alice", "right", Some(&stored)));
        // The cache is per user and per hash.
        assert!(!checker.is_cached("bob", "right", &stored));
        let other = StoredHash::parse(&cheap_hash("right")).expect("parses");
        assert!(!checker.is_cached("alice", "right", &other));
        // Unknown users fail even with the decoy's own password.
        assert!(!checker.verify("mallory", "right", None));
    }

    #[test]
    fn fingerprint_follows_the_hash() {
        let a = StoredHash::parse(&cheap_hash("pw")).expect("parses");
        let b = StoredHash::parse(&cheap_hash("pw")).expect("parses");
        assert_eq!(a.fingerprint(), a.clone().fingerprint());
        assert_ne!(a.fingerprint(), b.fingerprint());
    }
}
