//! Where everything lives in the object store. Every object is a file-like
//! leaf (no directory markers), so listing a prefix lists real entries on
//! every backend.
//!
//! ```text
//! blobs/<alg>/<hh>/<hex>                                   content, stored once
//! repositories/<name>/_layers/<alg>/<hex>                  blob linked to the repository
//! repositories/<name>/_manifests/revisions/<alg>/<hex>     manifest in the repository (JSON: media type)
//! repositories/<name>/_manifests/tags/<tag>                tag → digest
//! repositories/<name>/_referrers/<alg>/<subject-hex>/<alg>-<hex[..32]>   descriptor of a referrer
//! ```
//! Repository components start with a letter or digit, so `_layers` and
//! friends never collide with a nested repository name.

use kiln_oci::{Algorithm, Digest};

pub const REPOSITORIES: &str = "repositories/";
pub const BLOBS: &str = "blobs/";

pub fn blob(d: &Digest) -> String {
    format!(
        "blobs/{}/{}/{}",
        d.algorithm().as_str(),
        &d.hex()[..2],
        d.hex()
    )
}

pub fn layer_link(repo: &str, d: &Digest) -> String {
    format!(
        "repositories/{repo}/_layers/{}/{}",
        d.algorithm().as_str(),
        d.hex()
    )
}

pub fn revision(repo: &str, d: &Digest) -> String {
    format!(
        "repositories/{repo}/_manifests/revisions/{}/{}",
        d.algorithm().as_str(),
        d.hex()
    )
}

pub fn tags_dir(repo: &str) -> String {
    format!("repositories/{repo}/_manifests/tags/")
}

pub fn tag(repo: &str, tag: &str) -> String {
    format!("repositories/{repo}/_manifests/tags/{tag}")
}

pub fn referrers_dir(repo: &str, subject: &Digest) -> String {
    format!(
        "repositories/{repo}/_referrers/{}/{}/",
        subject.algorithm().as_str(),
        subject.hex()
    )
}

/// The leaf holds the first 128 bits of the referrer's digest (the full one
/// is inside): keys stay short enough for S3 servers that map a key to one
/// file name.
pub fn referrer(repo: &str, subject: &Digest, referrer: &Digest) -> String {
    format!(
        "{}{}-{}",
        referrers_dir(repo, subject),
        referrer.algorithm().as_str(),
        &referrer.hex()[..32]
    )
}

/// What a key under `repositories/` is.
#[derive(Debug, PartialEq, Eq)]
pub enum RepoKey<'a> {
    Layer { repo: &'a str, digest: Digest },
    Revision { repo: &'a str, digest: Digest },
    Tag { repo: &'a str, tag: &'a str },
    Referrer { repo: &'a str, subject: Digest },
}

fn algorithm(s: &str) -> Option<Algorithm> {
    match s {
        "sha256" => Some(Algorithm::Sha256),
        "sha512" => Some(Algorithm::Sha512),
        _ => None,
    }
}

fn digest(alg: &str, hex: &str) -> Option<Digest> {
    Digest::from_parts(algorithm(alg)?, hex).ok()
}

pub fn parse_repo_key(key: &str) -> Option<RepoKey<'_>> {
    let rest = key.strip_prefix(REPOSITORIES)?;
    for marker in ["/_layers/", "/_manifests/", "/_referrers/"] {
        let Some(i) = rest.find(marker) else { continue };
        let repo = &rest[..i];
        let tail: Vec<&str> = rest[i + marker.len()..].split('/').collect();
        return match (marker, tail.as_slice()) {
            ("/_layers/", [alg, hex]) => Some(RepoKey::Layer {
                repo,
                digest: digest(alg, hex)?,
            }),
            ("/_manifests/", ["revisions", alg, hex]) => Some(RepoKey::Revision {
                repo,
                digest: digest(alg, hex)?,
            }),
            ("/_manifests/", ["tags", tag]) => Some(RepoKey::Tag { repo, tag }),
            ("/_referrers/", [alg, hex, _]) => Some(RepoKey::Referrer {
                repo,
                subject: digest(alg, hex)?,
            }),
            _ => None,
        };
    }
    None
}

pub fn parse_blob_key(key: &str) -> Option<Digest> {
    let parts: Vec<&str> = key.strip_prefix(BLOBS)?.split('/').collect();
    match parts.as_slice() {
        [alg, _, hex] => digest(alg, hex),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let d = Digest::sha256_of(b"a");
        let s = Digest::sha256_of(b"s");
        assert_eq!(parse_blob_key(&blob(&d)), Some(d.clone()));
        assert_eq!(
            parse_repo_key(&layer_link("a/b", &d)),
            Some(RepoKey::Layer {
                repo: "a/b",
                digest: d.clone()
            })
        );
        assert_eq!(
            parse_repo_key(&revision("x", &d)),
            Some(RepoKey::Revision {
                repo: "x",
                digest: d.clone()
            })
        );
        assert_eq!(
            parse_repo_key(&tag("x/y/z", "v1.0")),
            Some(RepoKey::Tag {
                repo: "x/y/z",
                tag: "v1.0"
            })
        );
        assert_eq!(
            parse_repo_key(&referrer("r", &s, &d)),
            Some(RepoKey::Referrer {
                repo: "r",
                subject: s
            })
        );
        assert_eq!(parse_repo_key("repositories/x/other"), None);
    }
}
