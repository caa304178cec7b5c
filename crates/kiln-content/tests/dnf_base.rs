//! The dnf-base fixture: a Debian bookworm root with dnf and rpm, i.e. a
//! dpkg database of a few hundred packages, and, once rpm has installed
//! something, Debian rpm's database in /root/.rpmdb.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::*;
use kiln_content::{PackageKind, RpmDbFormat, packages};

#[tokio::test]
async fn debian_root_with_rpm_packages() {
    need("umoci", "umoci");
    need("dpkg-query", "dpkg");
    let oci = fixture("dnf-base-image").join("oci");
    let work = tempfile::tempdir().unwrap();
    let bundle = work.path().join("rootfs");
    run(Command::new("umoci")
        .args(["raw", "unpack", "--image"])
        .arg(format!("{}:latest", oci.display()))
        .arg(&bundle));

    // As the image comes: dpkg only (its rpm database does not exist yet).
    let inv = packages(&bundle).await.unwrap();
    assert!(inv.dpkg);
    assert!(inv.rpmdbs.is_empty());
    let got: Vec<String> = inv
        .packages
        .iter()
        .map(|p| {
            assert_eq!(p.kind, PackageKind::Deb);
            format!(
                "{} {} {} {}",
                p.name,
                p.version,
                p.arch,
                p.source.as_deref().unwrap()
            )
        })
        .collect();
    let mut expected: Vec<String> = run(Command::new("dpkg-query")
        .arg("--admindir")
        .arg(bundle.join("var/lib/dpkg"))
        .args([
            "-W",
            "-f",
            "${db:Status-Status} ${Package} ${Version} ${Architecture} ${source:Package}\n",
        ]))
    .lines()
    .filter_map(|l| l.strip_prefix("installed "))
    .map(str::to_owned)
    .collect();
    expected.sort();
    let mut got_sorted = got.clone();
    got_sorted.sort();
    assert!(expected.len() > 100, "{}", expected.len());
    assert_eq!(got_sorted, expected);
    // An epoch as dpkg writes it survives.
    assert!(
        got.iter()
            .any(|l| l.split(' ').nth(1).unwrap().contains(':'))
    );

    // rpm as dnf in the image would run it: Debian's %_dbpath, ~/.rpmdb.
    run(Command::new("rpm")
        .arg("--root")
        .arg(&bundle)
        .args(["-i", "--nodeps"])
        .args(fixture_rpms()));
    assert!(bundle.join("root/.rpmdb/rpmdb.sqlite").is_file());
    assert!(bundle.join("usr/bin/kiln-hello").is_file());
    let inv = packages(&bundle).await.unwrap();
    assert_eq!(inv.rpmdbs.len(), 1);
    assert_eq!(inv.rpmdbs[0].format, RpmDbFormat::Sqlite);
    assert_eq!(
        inv.rpmdbs[0].path,
        std::path::Path::new("/root/.rpmdb/rpmdb.sqlite")
    );
    let rpms: Vec<String> = inv
        .packages
        .iter()
        .filter(|p| p.kind == PackageKind::Rpm)
        .map(line)
        .collect();
    assert_eq!(rpms, rpm_qa(&bundle, "/root/.rpmdb", &[]));
    // RPMs sort before Debian packages; the Debian part is unchanged.
    assert_eq!(inv.packages.len(), 2 + expected.len());
    assert_eq!(inv.packages[0].kind, PackageKind::Rpm);
}
