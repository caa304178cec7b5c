//! What the watcher remembers of a repository between two looks, and what
//! changed since the last one.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::primary::RepoPackage;
use crate::domain::rpmver::{Evr, Nevra};

/// A repository as last seen: stored by the hub between polls.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct RepoSnapshot {
    /// repomd.xml's `<revision>`, for people reading the database.
    pub revision: Option<String>,
    /// `TYPE:HEX` of the primary file as repomd.xml gives it
    /// (`sha256:98b8…`): the same value means nothing changed.
    pub primary_checksum: String,
    /// `name.arch` → the highest `[E:]V-R` the repository holds (as
    /// [`Evr`] displays it; epoch 0 is not written, as rpm and dnf print it).
    pub latest: BTreeMap<String, String>,
}

/// The highest version of one name.arch.
struct Latest<'a> {
    name: &'a str,
    arch: &'a str,
    evr: Evr,
}

/// Compares the repository's packages with the previous snapshot.
///
/// Returns the new snapshot and the updates: each name.arch whose highest
/// version is newer ([`Evr::cmp_full`]) than the previous highest, or that
/// was not there before, as a [`Nevra`] of that highest version, sorted.
///
/// Only the highest version of a name.arch counts (repositories often keep
/// several). The snapshot mirrors the repository: a removed package is
/// dropped (should it come back, it is an update again), a downgraded one is
/// remembered at its lower version (not an update; going up again is one).
/// A previous version that does not parse counts as not seen: better a
/// needless rebuild event than a missed one.
///
/// The new snapshot's `revision` and `primary_checksum` are left empty: they
/// come from repomd.xml, which the caller has.
pub fn diff(previous: &RepoSnapshot, packages: &[RepoPackage]) -> (RepoSnapshot, Vec<Nevra>) {
    let mut latest: BTreeMap<String, Latest<'_>> = BTreeMap::new();
    for package in packages {
        let evr = Evr::new(
            // rpm orders a missing epoch as 0; writing it as missing keeps
            // names as people know them (`foo-1.1-1.noarch`).
            package.epoch.filter(|&e| e != 0),
            &package.version,
            Some(&package.release),
        );
        let key = format!("{}.{}", package.name, package.arch);
        match latest.get_mut(&key) {
            Some(current) if higher(&evr, &current.evr) => current.evr = evr,
            Some(_) => {}
            None => {
                latest.insert(
                    key,
                    Latest {
                        name: &package.name,
                        arch: &package.arch,
                        evr,
                    },
                );
            }
        }
    }

    let mut updates = Vec::new();
    for (key, current) in &latest {
        let newer = match previous.latest.get(key).map(|s| Evr::parse(s)) {
            Some(Ok(before)) => current.evr.cmp_full(&before) == Ordering::Greater,
            Some(Err(_)) | None => true,
        };
        if newer {
            updates.push(Nevra {
                name: current.name.to_string(),
                evr: current.evr.clone(),
                arch: current.arch.to_string(),
            });
        }
    }
    updates.sort();

    let snapshot = RepoSnapshot {
        revision: None,
        primary_checksum: String::new(),
        latest: latest
            .into_iter()
            .map(|(key, l)| (key, l.evr.to_string()))
            .collect(),
    };
    (snapshot, updates)
}

/// rpm's order, with ties that rpm cannot tell apart (`1.0` and `1.00`)
/// broken by the text, so the result does not depend on the package order.
fn higher(candidate: &Evr, current: &Evr) -> bool {
    candidate
        .cmp_full(current)
        .then_with(|| candidate.cmp(current))
        == Ordering::Greater
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// `name-[E:]V-R.arch` → a package as primary.xml gives it (epoch 0
    /// written out, as createrepo_c does).
    fn pkg(nevra: &str) -> RepoPackage {
        let n = Nevra::parse(nevra).unwrap();
        RepoPackage {
            name: n.name,
            epoch: Some(n.evr.epoch.unwrap_or(0)),
            version: n.evr.version,
            release: n.evr.release.unwrap(),
            arch: n.arch,
            source_rpm: None,
        }
    }

    fn pkgs(list: &[&str]) -> Vec<RepoPackage> {
        list.iter().map(|s| pkg(s)).collect()
    }

    fn snapshot(entries: &[(&str, &str)]) -> RepoSnapshot {
        RepoSnapshot {
            revision: Some("1".to_string()),
            primary_checksum: "sha256:00".to_string(),
            latest: entries
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn updates(previous: &RepoSnapshot, list: &[&str]) -> Vec<String> {
        diff(previous, &pkgs(list))
            .1
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn snapshot_holds_the_highest_version_per_name_and_arch() {
        let (snap, _) = diff(
            &RepoSnapshot::default(),
            &pkgs(&[
                "foo-1.1-1.noarch",
                "foo-1.10-1.noarch",
                "foo-1.9-3.noarch",
                "foo-2.0-1.x86_64",
                "foo-1:0.1-1.i686",
                "bar-0:3-1.noarch",
            ]),
        );
        let want = snapshot(&[
            ("bar.noarch", "3-1"),
            ("foo.i686", "1:0.1-1"),
            ("foo.noarch", "1.10-1"),
            ("foo.x86_64", "2.0-1"),
        ]);
        assert_eq!(snap.latest, want.latest);
        assert_eq!(snap.revision, None);
        assert_eq!(snap.primary_checksum, "");
    }

    #[test]
    fn newer_version_is_an_update() {
        let prev = snapshot(&[("foo.noarch", "1.0-1"), ("bar.noarch", "1.0-1")]);
        assert_eq!(
            updates(&prev, &["foo-1.1-1.noarch", "bar-1.0-1.noarch"]),
            ["foo-1.1-1.noarch"]
        );
        assert_eq!(
            updates(&prev, &["foo-1.0-2.noarch", "bar-1.0-1.noarch"]),
            ["foo-1.0-2.noarch"]
        );
        let (snap, _) = diff(&prev, &pkgs(&["foo-1.1-1.noarch", "bar-1.0-1.noarch"]));
        assert_eq!(snap.latest["foo.noarch"], "1.1-1");
    }

    #[test]
    fn same_version_is_no_update() {
        let prev = snapshot(&[("foo.noarch", "1.0-1")]);
        assert!(updates(&prev, &["foo-1.0-1.noarch"]).is_empty());
        // Epoch 0 written or not is the same version.
        let prev = snapshot(&[("foo.noarch", "0:1.0-1")]);
        assert!(updates(&prev, &["foo-1.0-1.noarch"]).is_empty());
        let (snap, _) = diff(&prev, &pkgs(&["foo-1.0-1.noarch"]));
        assert_eq!(snap.latest["foo.noarch"], "1.0-1");
    }

    #[test]
    fn downgrade_is_no_update_and_is_remembered() {
        let prev = snapshot(&[("foo.noarch", "1.1-1")]);
        assert!(updates(&prev, &["foo-1.0-1.noarch"]).is_empty());
        let (snap, _) = diff(&prev, &pkgs(&["foo-1.0-1.noarch"]));
        assert_eq!(snap.latest["foo.noarch"], "1.0-1");
        // Back up again: an update.
        assert_eq!(updates(&snap, &["foo-1.1-1.noarch"]), ["foo-1.1-1.noarch"]);
    }

    #[test]
    fn new_package_is_an_update() {
        let prev = snapshot(&[("foo.noarch", "1.0-1")]);
        assert_eq!(
            updates(&prev, &["foo-1.0-1.noarch", "baz-0.1-1.noarch"]),
            ["baz-0.1-1.noarch"]
        );
        // A known name on a new arch is new too.
        assert_eq!(
            updates(&prev, &["foo-1.0-1.noarch", "foo-1.0-1.x86_64"]),
            ["foo-1.0-1.x86_64"]
        );
    }

    #[test]
    fn epoch_bump_outranks_the_version() {
        let prev = snapshot(&[("foo.noarch", "2.0-1")]);
        assert_eq!(
            updates(&prev, &["foo-1:1.0-1.noarch"]),
            ["foo-1:1.0-1.noarch"]
        );
        let prev = snapshot(&[("foo.noarch", "1:1.0-1")]);
        assert!(updates(&prev, &["foo-9.0-1.noarch"]).is_empty());
        assert_eq!(
            updates(&prev, &["foo-2:0.1-1.noarch"]),
            ["foo-2:0.1-1.noarch"]
        );
    }

    #[test]
    fn tilde_and_caret_versions() {
        // A pre-release is older than the release; a snapshot newer.
        let prev = snapshot(&[("foo.noarch", "1.0~rc1-1")]);
        assert_eq!(updates(&prev, &["foo-1.0-1.noarch"]), ["foo-1.0-1.noarch"]);
        let prev = snapshot(&[("foo.noarch", "1.0-1")]);
        assert!(updates(&prev, &["foo-1.0~rc2-1.noarch"]).is_empty());
        assert_eq!(
            updates(&prev, &["foo-1.0^git20240101-1.noarch"]),
            ["foo-1.0^git20240101-1.noarch"]
        );
        let prev = snapshot(&[("foo.noarch", "1.0^git20240101-1")]);
        assert!(updates(&prev, &["foo-1.0-5.noarch"]).is_empty());
        assert_eq!(
            updates(&prev, &["foo-1.0.1-1.noarch"]),
            ["foo-1.0.1-1.noarch"]
        );
    }

    #[test]
    fn only_the_highest_of_several_versions_counts() {
        let prev = snapshot(&[("foo.noarch", "1.5-1")]);
        // Older and newer side by side: one update, at the highest.
        assert_eq!(
            updates(
                &prev,
                &[
                    "foo-1.0-1.noarch",
                    "foo-1.6-1.noarch",
                    "foo-1.7-1.noarch",
                    "foo-1.5-1.noarch"
                ]
            ),
            ["foo-1.7-1.noarch"]
        );
        // Only older ones added beside the known one: nothing.
        assert!(updates(&prev, &["foo-1.4-1.noarch", "foo-1.5-1.noarch"]).is_empty());
        // The order in the file does not matter.
        let a = diff(&prev, &pkgs(&["foo-1.7-1.noarch", "foo-1.6-1.noarch"]));
        let b = diff(&prev, &pkgs(&["foo-1.6-1.noarch", "foo-1.7-1.noarch"]));
        assert_eq!(a, b);
    }

    #[test]
    fn removed_package_is_dropped_without_an_update() {
        let prev = snapshot(&[("foo.noarch", "1.0-1"), ("bar.noarch", "1.0-1")]);
        let (snap, ups) = diff(&prev, &pkgs(&["foo-1.0-1.noarch"]));
        assert!(ups.is_empty());
        assert_eq!(snap.latest.keys().collect::<Vec<_>>(), ["foo.noarch"]);
        // Back again: seen as new.
        assert_eq!(
            updates(&snap, &["foo-1.0-1.noarch", "bar-1.0-1.noarch"]),
            ["bar-1.0-1.noarch"]
        );
        // An empty repository empties the snapshot.
        let (snap, ups) = diff(&prev, &[]);
        assert!(ups.is_empty() && snap.latest.is_empty());
    }

    #[test]
    fn updates_are_sorted_and_carry_name_and_arch() {
        let got = diff(
            &RepoSnapshot::default(),
            &pkgs(&[
                "zlib-1.3-1.x86_64",
                "kiln-foo-libs-1.1-1.noarch",
                "kiln-foo-1.1-1.noarch",
                "zlib-1.3-1.i686",
            ]),
        )
        .1;
        let names: Vec<String> = got.iter().map(ToString::to_string).collect();
        assert_eq!(
            names,
            [
                "kiln-foo-1.1-1.noarch",
                "kiln-foo-libs-1.1-1.noarch",
                "zlib-1.3-1.i686",
                "zlib-1.3-1.x86_64"
            ]
        );
        assert_eq!(got[1].name, "kiln-foo-libs");
        assert_eq!(got[1].arch, "noarch");
        assert_eq!(got[1].evr, Evr::new(None, "1.1", Some("1")));
        // Every update reads back as the NEVRA it displays.
        for n in &got {
            assert_eq!(&Nevra::parse(&n.to_string()).unwrap(), n);
        }
    }

    #[test]
    fn unreadable_previous_version_counts_as_unseen() {
        let prev = snapshot(&[("foo.noarch", "not a version")]);
        assert_eq!(updates(&prev, &["foo-1.0-1.noarch"]), ["foo-1.0-1.noarch"]);
    }

    #[test]
    fn snapshot_round_trips_through_json() {
        let (mut snap, _) = diff(&RepoSnapshot::default(), &pkgs(&["foo-1:1.0~rc1-1.noarch"]));
        snap.revision = Some("1795444120".to_string());
        snap.primary_checksum = "sha256:ab".to_string();
        let json = serde_json::to_string(&snap).unwrap();
        assert_eq!(
            json,
            r#"{"revision":"1795444120","primary_checksum":"sha256:ab","latest":{"foo.noarch":"1:1.0~rc1-1"}}"#
        );
        assert_eq!(serde_json::from_str::<RepoSnapshot>(&json).unwrap(), snap);
    }
}
