//! What an image holds: the RPM and Debian packages of a root filesystem.
//!
//! [`packages`] reads every rpm database an image can hold (SQLite,
//! Berkeley DB or ndb, in `/usr/lib/sysimage/rpm`, `/var/lib/rpm` or
//! Debian's `/root/.rpmdb`) and dpkg's status database, without running
//! `rpm` or `dpkg` and without trusting the image: every path is resolved
//! inside the root as if chrooted (`src/root.rs`), and nothing in the image
//! is written.

mod dpkg;
mod error;
mod package;
mod root;
mod rpm;

use std::path::Path;

pub use error::{Error, Result};
pub use package::{Inventory, Package, PackageKind, RpmDb, RpmDbFormat};
pub use rpm::DB_DIRS as RPMDB_DIRS;

/// The packages installed in the unpacked root filesystem at `root` (for a
/// built image, the merged root of its layers).
///
/// Finding no package database is not an error: the inventory is empty.
/// A database that exists but cannot be read is, and the error names it.
pub async fn packages(root: &Path) -> Result<Inventory> {
    let root = root.to_owned();
    let (found, debs) = tokio::task::spawn_blocking(move || {
        let root = root::Root::open(&root)?;
        let found = rpm::find(&root)?;
        let debs = dpkg::read(&root)?;
        Ok::<_, Error>((found, debs))
    })
    .await??;
    let (mut packages, rpmdbs) = rpm::read(found).await?;
    let dpkg = debs.is_some();
    packages.extend(debs.into_iter().flatten());
    package::sort_and_dedup(&mut packages);
    Ok(Inventory {
        packages,
        rpmdbs,
        dpkg,
    })
}
