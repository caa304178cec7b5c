//! Debian packages: dpkg's status database, `/var/lib/dpkg/status`, and
//! the one-file-per-package `/var/lib/dpkg/status.d/` of distroless images.
//!
//! The status file is a sequence of RFC 822-like stanzas separated by blank
//! lines; continuation lines start with a space or tab. A package counts as
//! installed when its `Status` (want, error flag, state) has the state
//! `installed` or one of the trigger states, whose files are all in place
//! (`Status: install ok installed`, `hold ok installed`,
//! `install ok triggers-pending`). `status.d` stanzas carry no `Status`:
//! whatever is described there was installed by the image builder.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::package::{Package, PackageKind};
use crate::root::{self, Root};

pub const STATUS: &str = "/var/lib/dpkg/status";
pub const STATUS_D: &str = "/var/lib/dpkg/status.d";

/// Reads the dpkg databases of the root (blocking I/O); None when there
/// are none.
pub(crate) fn read(root: &Root) -> Result<Option<Vec<Package>>> {
    let mut found = false;
    let mut packages = Vec::new();
    if let Some((file, path)) = root.open_file(Path::new(STATUS))? {
        found = true;
        packages.extend(parse(&read_text(file, &path)?, &path, false)?);
    }
    if let Some(dir) = root.open_dir(Path::new(STATUS_D))? {
        let names: Vec<OsString> = root::list(&dir)?;
        for name in names {
            // distroless keeps each package's file checksums beside it.
            if name.as_encoded_bytes().ends_with(b".md5sums") {
                continue;
            }
            if let Some((file, path)) = root.open_file_in(&dir, &name)? {
                found = true;
                packages.extend(parse(&read_text(file, &path)?, &path, true)?);
            }
        }
    }
    Ok(found.then_some(packages))
}

fn read_text(mut file: std::fs::File, path: &Path) -> Result<String> {
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    // Ancient descriptions can be Latin-1; the fields read here are ASCII.
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The installed packages of a status file. `path` names it in errors;
/// `no_status_means_installed` is for `status.d` files.
pub(crate) fn parse(
    text: &str,
    path: &Path,
    no_status_means_installed: bool,
) -> Result<Vec<Package>> {
    let mut out = Vec::new();
    for stanza in stanzas(text) {
        let field = |name: &str| {
            stanza
                .fields
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let installed = match field("Status") {
            Some(status) => {
                let state = status.split_whitespace().nth(2);
                matches!(
                    state,
                    Some("installed" | "triggers-awaiting" | "triggers-pending")
                )
            }
            None => no_status_means_installed,
        };
        if !installed {
            continue;
        }
        let bad = |reason: String| Error::Dpkg {
            path: PathBuf::from(path),
            line: stanza.line,
            reason,
        };
        let name = field("Package")
            .filter(|v| !v.is_empty())
            .ok_or_else(|| bad("an installed package without a Package field".into()))?;
        let version = field("Version")
            .filter(|v| !v.is_empty())
            .ok_or_else(|| bad(format!("package {name} has no Version")))?;
        // `Source: glibc (2.36-9+deb12u4)` when the source version differs.
        let source = field("Source")
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or(name);
        out.push(Package {
            kind: PackageKind::Deb,
            name: name.to_owned(),
            epoch: None,
            version: version.to_owned(),
            release: String::new(),
            arch: field("Architecture").unwrap_or_default().to_owned(),
            source: Some(source.to_owned()),
            license: None,
            signing_key: None,
        });
    }
    Ok(out)
}

struct Stanza {
    /// 1-based line of its first field.
    line: usize,
    fields: Vec<(String, String)>,
}

fn stanzas(text: &str) -> Vec<Stanza> {
    let mut out = Vec::new();
    let mut current: Option<Stanza> = None;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            out.extend(current.take());
            continue;
        }
        let stanza = current.get_or_insert_with(|| Stanza {
            line: i + 1,
            fields: Vec::new(),
        });
        if line.starts_with([' ', '\t']) {
            // A continuation (Description, Conffiles): not a field we read
            // beyond its first line.
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            stanza
                .fields
                .push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    out.extend(current);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS_FILE: &str = "\
Package: libc6
Status: install ok installed
Priority: optional
Architecture: amd64
Multi-Arch: same
Source: glibc (2.36-9+deb12u4)
Version: 2.36-9+deb12u4
Description: GNU C Library: Shared libraries
 Contains the standard libraries.
 .
 More text: with a colon.

Package: old-thing
Status: deinstall ok config-files
Architecture: all
Version: 1.0

Package: gone
Status: purge ok not-installed
Architecture: amd64

Package: held
Status: hold ok installed
Architecture: all
Version: 1:2.0-1

Package: waiting
Status: install ok triggers-pending
Architecture: amd64
Source: waiter
Version: 3

Package: half
Status: install reinstreq half-installed
Architecture: amd64
Version: 4
";

    #[test]
    fn installed_packages_only() {
        let got = parse(STATUS_FILE, Path::new("/var/lib/dpkg/status"), false).unwrap();
        let summary: Vec<_> = got
            .iter()
            .map(|p| {
                (
                    p.name.as_str(),
                    p.version.as_str(),
                    p.arch.as_str(),
                    p.source.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("libc6", "2.36-9+deb12u4", "amd64", Some("glibc")),
                ("held", "1:2.0-1", "all", Some("held")),
                ("waiting", "3", "amd64", Some("waiter")),
            ]
        );
        assert!(
            got.iter()
                .all(|p| p.kind == PackageKind::Deb && p.epoch.is_none())
        );
    }

    #[test]
    fn status_d_stanzas_have_no_status() {
        let text = "Package: base-files\nVersion: 12.4+deb12u5\nArchitecture: amd64\n";
        let got = parse(text, Path::new("/var/lib/dpkg/status.d/base-files"), true).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].name, "base-files");
        assert!(parse(text, Path::new("/x"), false).unwrap().is_empty());
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let text = "Package: a\nStatus: install ok installed\nVersion: 1\n\n\nPackage: b\nStatus: install ok installed\n";
        let err = parse(text, Path::new("/var/lib/dpkg/status"), false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/var/lib/dpkg/status in the image, line 6: package b has no Version"
        );
    }
}
