//! kiln-content against rpm databases written by the host's rpm (SQLite)
//! and by Berkeley DB (the `Packages` format of rpm < 4.16), compared field
//! by field with what `rpm -qa` says about the same database.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use kiln_content::{Error, PackageKind, RpmDb, RpmDbFormat, packages};

/// (path, size, mtime) of every file under `dir`: to show nothing was
/// written into the image.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u64, i64)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = e.path().symlink_metadata().unwrap();
            if m.is_dir() {
                todo.push(e.path());
            }
            use std::os::unix::fs::MetadataExt;
            out.insert(
                e.path(),
                (m.len(), m.mtime_nsec() + m.mtime() * 1_000_000_000),
            );
        }
    }
    out
}

fn lines(inv: &kiln_content::Inventory) -> Vec<String> {
    let mut l: Vec<String> = inv
        .packages
        .iter()
        .filter(|p| p.kind == PackageKind::Rpm)
        .map(line)
        .collect();
    l.sort();
    l
}

#[tokio::test]
async fn sqlite_databases_match_rpm_qa() {
    let work = tempfile::tempdir().unwrap();
    let gpg = Gpg::new();
    let signed = signed_rpm_with_epoch(work.path(), &gpg);
    let root = work.path().join("root");
    std::fs::create_dir(&root).unwrap();

    // Debian's rpm database, with an imported key (a gpg-pubkey record)...
    let mut all = fixture_rpms();
    all.push(signed.clone());
    rpm_install(&root, "/root/.rpmdb", &all);
    rpm_import(&root, "/root/.rpmdb", &gpg.public_key);
    // ...and a second, overlapping one where older systems keep it.
    rpm_install(&root, "/var/lib/rpm", &[fixture_rpms()[0].clone(), signed]);

    let before = snapshot(&root);
    let inv = packages(&root).await.unwrap();
    assert_eq!(snapshot(&root), before, "the image was written to");

    let mut expected = rpm_qa(&root, "/root/.rpmdb", &[]);
    expected.extend(rpm_qa(&root, "/var/lib/rpm", &[]));
    expected.sort();
    expected.dedup();
    assert_eq!(expected.len(), 3, "{expected:#?}");
    assert_eq!(lines(&inv), expected);

    let epoch = inv
        .packages
        .iter()
        .find(|p| p.name == "kiln-epoch")
        .unwrap();
    assert_eq!(epoch.epoch, Some(3));
    assert_eq!(epoch.license.as_deref(), Some("GPL-2.0-or-later AND MIT"));
    let key = epoch.signing_key.as_deref().unwrap();
    let listed = run(Command::new("gpg").env("GNUPGHOME", gpg.home.path()).args([
        "--with-colons",
        "--list-keys",
        "kiln test",
    ]));
    let key_id = listed
        .lines()
        .find(|l| l.starts_with("pub:"))
        .and_then(|l| l.split(':').nth(4))
        .unwrap()
        .to_lowercase();
    assert_eq!(key, key_id);
    assert!(inv.packages.iter().all(|p| p.name != "gpg-pubkey"));

    assert_eq!(
        inv.rpmdbs,
        [
            RpmDb {
                path: "/var/lib/rpm/rpmdb.sqlite".into(),
                format: RpmDbFormat::Sqlite
            },
            RpmDb {
                path: "/root/.rpmdb/rpmdb.sqlite".into(),
                format: RpmDbFormat::Sqlite
            },
        ]
    );
    assert!(!inv.dpkg);
}

#[tokio::test]
async fn fedora_layout_is_found_once_through_its_symlink() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path();
    rpm_install(root, "/usr/lib/sysimage/rpm", &fixture_rpms());
    std::fs::create_dir_all(root.join("var/lib")).unwrap();
    std::os::unix::fs::symlink("../../usr/lib/sysimage/rpm", root.join("var/lib/rpm")).unwrap();

    let inv = packages(root).await.unwrap();
    assert_eq!(lines(&inv), rpm_qa(root, "/var/lib/rpm", &[]));
    assert_eq!(inv.packages.len(), 2);
    assert_eq!(
        inv.rpmdbs,
        [RpmDb {
            path: "/usr/lib/sysimage/rpm/rpmdb.sqlite".into(),
            format: RpmDbFormat::Sqlite
        }]
    );
}

#[tokio::test]
async fn berkeley_db_matches_rpm_qa() {
    let work = tempfile::tempdir().unwrap();
    let gpg = Gpg::new();
    let mut rpms = fixture_rpms();
    rpms.push(signed_rpm_with_epoch(work.path(), &gpg));
    let source = work.path().join("source");
    rpm_install(&source, "/var/lib/rpm", &rpms);
    let from_sqlite = lines(&packages(&source).await.unwrap());

    // 512-byte pages put every header on an overflow chain of several
    // pages; 4096 is what rpm used.
    for page_size in [512, 4096] {
        let root = work.path().join(format!("bdb-{page_size}"));
        std::fs::create_dir_all(root.join("var/lib/rpm")).unwrap();
        bdb_from_sqlite(
            &source.join("var/lib/rpm/rpmdb.sqlite"),
            &root.join("var/lib/rpm/Packages"),
            page_size,
        );
        let inv = packages(&root).await.unwrap();
        assert_eq!(
            lines(&inv),
            rpm_qa(&root, "/var/lib/rpm", &["_db_backend bdb_ro"]),
            "page size {page_size}"
        );
        assert_eq!(lines(&inv), from_sqlite);
        assert_eq!(inv.rpmdbs[0].format, RpmDbFormat::BerkeleyDb);
        assert_eq!(inv.rpmdbs[0].path, Path::new("/var/lib/rpm/Packages"));
    }
}

#[tokio::test]
async fn a_damaged_header_is_named() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path();
    rpm_install(root, "/root/.rpmdb", &fixture_rpms());
    need("sqlite3", "sqlite3");
    run(Command::new("sqlite3")
        .arg(root.join("root/.rpmdb/rpmdb.sqlite"))
        .arg("UPDATE Packages SET blob = substr(blob, 1, 40) WHERE hnum = 2"));
    let err = packages(root).await.unwrap_err();
    assert!(matches!(err, Error::Header { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("rpm database /root/.rpmdb/rpmdb.sqlite: package header hnum 2:"),
        "{msg}"
    );
}

#[tokio::test]
async fn transactions_still_in_the_wal_count() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path();
    rpm_install(root, "/root/.rpmdb", &fixture_rpms());
    need("sqlite3", "sqlite3");
    // An image snapshotted before SQLite checkpointed: the removal of one
    // package is only in rpmdb.sqlite-wal.
    let mut sqlite = Command::new("sqlite3");
    sqlite
        .arg(root.join("root/.rpmdb/rpmdb.sqlite"))
        .stdin(std::process::Stdio::piped());
    let mut child = sqlite.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b".dbconfig no_ckpt_on_close on\nDELETE FROM Packages WHERE hnum = 1;\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    let wal = root.join("root/.rpmdb/rpmdb.sqlite-wal");
    assert!(std::fs::metadata(&wal).unwrap().len() > 0);

    let inv = packages(root).await.unwrap();
    let expected = rpm_qa(root, "/root/.rpmdb", &[]);
    assert_eq!(expected.len(), 1);
    assert_eq!(lines(&inv), expected);
}
