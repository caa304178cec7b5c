//! The package list's types: what one installed package is, and what was
//! found in a root filesystem.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A package installed in an image. The same shape as the hub's
/// `kiln_hub::model::Package`, which the worker maps this to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Package {
    pub kind: PackageKind,
    pub name: String,
    /// RPM epoch (None when unset); Debian epochs are part of `version`.
    pub epoch: Option<u32>,
    /// Debian: the whole version as dpkg writes it (`1:2.36-9+deb12u4`).
    pub version: String,
    /// RPM release; empty for Debian packages.
    pub release: String,
    pub arch: String,
    /// RPM: the source RPM file name (`bash-5.2.26-3.fc40.src.rpm`).
    /// Debian: the source package name (the binary package's own name when
    /// the status file names none, as `dpkg-query -f '${source:Package}'`).
    pub source: Option<String>,
    /// RPM only: the `License` tag as written (often an SPDX expression).
    pub license: Option<String>,
    /// RPM only: the key id of the package's OpenPGP signature, 16 lower-case
    /// hex digits as `rpm -q --qf '%{RSAHEADER:pgpsig}'` shows it.
    pub signing_key: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PackageKind {
    Rpm,
    Deb,
}

/// What [`crate::packages`] found in a root filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// Sorted by (kind, name, arch, version), without duplicates.
    pub packages: Vec<Package>,
    /// Every rpm database read. Usually one; an image can hold several
    /// (Debian's rpm in `/root/.rpmdb` beside a distribution's
    /// `/var/lib/rpm`), and their packages are merged.
    pub rpmdbs: Vec<RpmDb>,
    /// Whether a dpkg status database was read.
    pub dpkg: bool,
}

/// An rpm database found in the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpmDb {
    /// The database file, by its path inside the image with symlinks
    /// resolved (`/usr/lib/sysimage/rpm/rpmdb.sqlite` when `/var/lib/rpm`
    /// links there).
    pub path: PathBuf,
    pub format: RpmDbFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RpmDbFormat {
    /// `rpmdb.sqlite` (rpm ≥ 4.16).
    Sqlite,
    /// `Packages.db` (rpm's own "ndb" format, openSUSE).
    Ndb,
    /// `Packages`, a Berkeley DB hash database (rpm < 4.16).
    BerkeleyDb,
}

/// Sorts by (kind, name, arch, version) and drops exact duplicates (the
/// same package seen through two databases).
pub(crate) fn sort_and_dedup(packages: &mut Vec<Package>) {
    packages.sort_by(|a, b| {
        (a.kind, &a.name, &a.arch, &a.version, a.epoch, &a.release)
            .cmp(&(b.kind, &b.name, &b.arch, &b.version, b.epoch, &b.release))
            .then_with(|| {
                (&a.source, &a.license, &a.signing_key).cmp(&(
                    &b.source,
                    &b.license,
                    &b.signing_key,
                ))
            })
    });
    packages.dedup();
}
