//! The rpm databases of a root filesystem, and the packages in them.

mod bdb;
mod header;
mod ndb;
mod pgp;
mod sqlite;

use std::path::{Path, PathBuf};

use base64::Engine as _;

use crate::error::{Error, Result};
use crate::package::{Package, PackageKind, RpmDb, RpmDbFormat};
use crate::root::Root;
use header::{Header, tag};

/// Where rpm keeps its database: Fedora ≥ 36 and RHEL 10 (with
/// `/var/lib/rpm` linking there), every older system, and Debian's rpm,
/// whose `%_dbpath` is `~/.rpmdb` (root's, in an image).
pub const DB_DIRS: [&str; 3] = ["/usr/lib/sysimage/rpm", "/var/lib/rpm", "/root/.rpmdb"];

const NDB_FILE: &str = "Packages.db";
const BDB_FILE: &str = "Packages";

/// A database found, with its records read or ready to be read.
pub(crate) enum Found {
    Sqlite(sqlite::Copy),
    /// Records already read: (record key for messages, header blob).
    Blobs {
        db: RpmDb,
        records: Vec<(String, Vec<u8>)>,
    },
}

/// Finds the databases (blocking I/O). A directory reached twice through
/// symlinks is read once; in one directory the format rpm ≥ 4.16 would
/// pick is read: SQLite, then ndb, then Berkeley DB (a leftover of a
/// migration is not the live database).
pub(crate) fn find(root: &Root) -> Result<Vec<Found>> {
    let mut seen: Vec<PathBuf> = Vec::new();
    let mut found = Vec::new();
    for dir in DB_DIRS {
        let Some(dir) = root.open_dir(Path::new(dir))? else {
            continue;
        };
        if seen.contains(&dir.path) {
            continue;
        }
        seen.push(dir.path.clone());
        if let Some(copy) = sqlite::copy(root, &dir)? {
            found.push(Found::Sqlite(copy));
        } else if let Some((file, path)) = root.open_file_in(&dir, NDB_FILE.as_ref())? {
            let records = ndb::records(&file).map_err(|reason| Error::Ndb {
                path: path.clone(),
                reason,
            })?;
            found.push(Found::Blobs {
                db: RpmDb {
                    path,
                    format: RpmDbFormat::Ndb,
                },
                records: records
                    .into_iter()
                    .map(|(i, blob)| (format!("package index {i}"), blob))
                    .collect(),
            });
        } else if let Some((file, path)) = root.open_file_in(&dir, BDB_FILE.as_ref())? {
            let records = bdb::records(&file).map_err(|reason| Error::BerkeleyDb {
                path: path.clone(),
                reason,
            })?;
            found.push(Found::Blobs {
                db: RpmDb {
                    path,
                    format: RpmDbFormat::BerkeleyDb,
                },
                records: records
                    .into_iter()
                    .map(|r| (format!("instance {}", r.key), r.value))
                    .collect(),
            });
        }
    }
    Ok(found)
}

/// Reads the packages of the databases found.
pub(crate) async fn read(found: Vec<Found>) -> Result<(Vec<Package>, Vec<RpmDb>)> {
    let mut packages = Vec::new();
    let mut dbs = Vec::new();
    for f in found {
        let (db, records) = match f {
            Found::Sqlite(copy) => {
                let records = copy.records().await?;
                let db = RpmDb {
                    path: copy.source.clone(),
                    format: RpmDbFormat::Sqlite,
                };
                let records = records
                    .into_iter()
                    .map(|(hnum, blob)| (format!("hnum {hnum}"), blob))
                    .collect::<Vec<_>>();
                (db, records)
            }
            Found::Blobs { db, records } => (db, records),
        };
        for (record, blob) in records {
            let package = from_header(&blob).map_err(|reason| Error::Header {
                path: db.path.clone(),
                record,
                reason,
            })?;
            packages.extend(package);
        }
        dbs.push(db);
    }
    Ok((packages, dbs))
}

/// The package a header describes; None for `gpg-pubkey` records, the
/// OpenPGP keys rpm < 6 imports into its database as pseudo-packages: they
/// are trust settings, not content, and koji/atomic-reactor leave them out
/// of an image's component list too.
fn from_header(blob: &[u8]) -> Result<Option<Package>, String> {
    let h = Header::parse(blob)?;
    let required = |t: u32, what: &str| -> Result<String, String> {
        h.string(t)?
            .map(str::to_owned)
            .ok_or_else(|| format!("no {what} (tag {t})"))
    };
    let name = required(tag::NAME, "name")?;
    if name == "gpg-pubkey" {
        return Ok(None);
    }
    Ok(Some(Package {
        kind: PackageKind::Rpm,
        epoch: h.int32(tag::EPOCH)?,
        version: required(tag::VERSION, "version")?,
        release: required(tag::RELEASE, "release")?,
        // Every installable package has one; rpm itself prints "(none)"
        // otherwise.
        arch: h.string(tag::ARCH)?.unwrap_or_default().to_owned(),
        source: h.string(tag::SOURCERPM)?.map(str::to_owned),
        license: h.string(tag::LICENSE)?.map(str::to_owned),
        signing_key: signing_key(&h).map_err(|e| format!("{name}: {e}"))?,
        name,
    }))
}

/// The key id of the package's signature. Tags are tried in the order
/// atomic-reactor queries them (all hold the same signer in practice):
/// header+payload signatures, then header-only ones, then rpm 6's list.
fn signing_key(h: &Header<'_>) -> Result<Option<String>, String> {
    for t in [tag::SIGPGP, tag::SIGGPG, tag::DSAHEADER, tag::RSAHEADER] {
        if let Some(sig) = h.binary(t)? {
            return pgp::signature_key_id(sig)
                .map(Some)
                .map_err(|e| format!("signature tag {t}: {e}"));
        }
    }
    if let Some(first) = h.strings(tag::OPENPGP)?.first() {
        let sig = base64::engine::general_purpose::STANDARD
            .decode(first.trim())
            .map_err(|e| format!("signature tag {}: {e}", tag::OPENPGP))?;
        return pgp::signature_key_id(&sig)
            .map(Some)
            .map_err(|e| format!("signature tag {}: {e}", tag::OPENPGP));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::header::{build, s};
    use super::*;

    const BIN: u32 = 7;
    const INT32: u32 = 4;
    const STRING_ARRAY: u32 = 8;

    fn e(t: u32, (kind, bytes): (u32, Vec<u8>)) -> (u32, u32, u32, Vec<u8>) {
        (t, kind, 1, bytes)
    }

    fn base() -> Vec<(u32, u32, u32, Vec<u8>)> {
        vec![
            e(tag::NAME, s("bash")),
            e(tag::VERSION, s("5.2.26")),
            e(tag::RELEASE, s("3.fc40")),
            e(tag::ARCH, s("x86_64")),
            e(tag::SOURCERPM, s("bash-5.2.26-3.fc40.src.rpm")),
            e(tag::LICENSE, s("GPL-3.0-or-later")),
        ]
    }

    /// A v3 signature packet with key id 0102030405060708.
    fn v3_sig() -> Vec<u8> {
        let mut v3 = vec![0x88, 19, 3, 5, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 1, 8];
        v3.extend_from_slice(&[0, 0]);
        v3
    }

    #[test]
    fn a_signed_package() {
        let mut entries = base();
        entries.push(e(tag::EPOCH, (INT32, 2u32.to_be_bytes().to_vec())));
        let sig = v3_sig();
        entries.push((tag::RSAHEADER, BIN, sig.len() as u32, sig));
        let p = from_header(&build(&entries)).unwrap().unwrap();
        assert_eq!(
            p,
            Package {
                kind: PackageKind::Rpm,
                name: "bash".into(),
                epoch: Some(2),
                version: "5.2.26".into(),
                release: "3.fc40".into(),
                arch: "x86_64".into(),
                source: Some("bash-5.2.26-3.fc40.src.rpm".into()),
                license: Some("GPL-3.0-or-later".into()),
                signing_key: Some("0102030405060708".into()),
            }
        );
    }

    #[test]
    fn rpm6_openpgp_tag_and_unsigned() {
        let mut entries = base();
        let b64 = base64::engine::general_purpose::STANDARD.encode(v3_sig());
        entries.push((
            tag::OPENPGP,
            STRING_ARRAY,
            1,
            format!("{b64}\0").into_bytes(),
        ));
        let p = from_header(&build(&entries)).unwrap().unwrap();
        assert_eq!(p.signing_key.as_deref(), Some("0102030405060708"));

        let p = from_header(&build(&base())).unwrap().unwrap();
        assert_eq!((p.signing_key, p.epoch), (None, None));
    }

    #[test]
    fn gpg_pubkey_records_are_skipped_and_bad_records_named() {
        let key = build(&[
            e(tag::NAME, s("gpg-pubkey")),
            e(tag::VERSION, s("a15b79cc")),
            e(tag::RELEASE, s("63d04c2c")),
        ]);
        assert_eq!(from_header(&key).unwrap(), None);

        let no_version = build(&[e(tag::NAME, s("bash"))]);
        assert!(from_header(&no_version).unwrap_err().contains("no version"));
        let mut bad_sig = base();
        bad_sig.push((tag::RSAHEADER, BIN, 3, vec![1, 2, 3]));
        let err = from_header(&build(&bad_sig)).unwrap_err();
        assert!(err.contains("bash: signature tag 268"), "{err}");
    }
}
