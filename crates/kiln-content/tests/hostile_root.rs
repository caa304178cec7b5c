//! An image is untrusted: its symlinks and special files must not make
//! kiln-content read anything outside its root.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::symlink;
use std::path::Path;

use common::*;
use kiln_content::packages;

#[tokio::test]
async fn links_out_of_the_root_read_nothing_of_the_host() {
    // A "host" with real package databases where the links point.
    let host = tempfile::tempdir().unwrap();
    let h = host.path();
    rpm_install(h, "/var/lib/rpm", &fixture_rpms());
    std::fs::create_dir_all(h.join("var/lib/dpkg")).unwrap();
    std::fs::write(
        h.join("var/lib/dpkg/status"),
        "Package: host-only\nStatus: install ok installed\nVersion: 1\nArchitecture: all\n",
    )
    .unwrap();
    // The same through the unhostile path, to show the host data is readable.
    assert_eq!(packages(h).await.unwrap().packages.len(), 3);

    let image = tempfile::tempdir().unwrap();
    let r = image.path();
    std::fs::create_dir_all(r.join("var/lib")).unwrap();
    std::fs::create_dir_all(r.join("usr/lib/sysimage")).unwrap();
    std::fs::create_dir_all(r.join("root")).unwrap();
    // Absolute: means <root>/<host path> inside the image.
    symlink(h.join("var/lib/rpm"), r.join("var/lib/rpm")).unwrap();
    symlink(h.join("var/lib/dpkg"), r.join("var/lib/dpkg")).unwrap();
    // Relative, climbing far past the root towards the host's database.
    let up = "../".repeat(20);
    let rel = format!(
        "{up}{}",
        h.join("var/lib/rpm").strip_prefix("/").unwrap().display()
    );
    symlink(&rel, r.join("usr/lib/sysimage/rpm")).unwrap();
    symlink("../../..", r.join("root/.rpmdb")).unwrap();

    let inv = packages(r).await.unwrap();
    assert!(inv.packages.is_empty(), "{:#?}", inv.packages);
    assert!(inv.rpmdbs.is_empty());
    assert!(!inv.dpkg);
}

#[tokio::test]
async fn device_nodes_and_fifos_are_not_databases() {
    let image = tempfile::tempdir().unwrap();
    let r = image.path();
    std::fs::create_dir_all(r.join("root/.rpmdb")).unwrap();
    std::fs::create_dir_all(r.join("var/lib/rpm")).unwrap();
    std::fs::create_dir_all(r.join("var/lib/dpkg")).unwrap();
    let mknod = |p: &Path, kind: &str, extra: &[&str]| {
        run(std::process::Command::new("mknod")
            .arg(p)
            .arg(kind)
            .args(extra));
    };
    // /dev/zero's numbers: reading it would never end.
    mknod(&r.join("root/.rpmdb/rpmdb.sqlite"), "c", &["1", "5"]);
    mknod(&r.join("var/lib/rpm/Packages"), "c", &["1", "5"]);
    // Opening a FIFO for reading blocks until a writer comes.
    mknod(&r.join("var/lib/dpkg/status"), "p", &[]);

    let inv = tokio::time::timeout(std::time::Duration::from_secs(20), packages(r))
        .await
        .expect("reading a special file hung")
        .unwrap();
    assert!(inv.packages.is_empty());
    assert!(inv.rpmdbs.is_empty());
    assert!(!inv.dpkg);
}
