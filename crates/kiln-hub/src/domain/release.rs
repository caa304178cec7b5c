//! Which release a build gets.
//!
//! Rule (koji's `getNextRelease`, kept simple): a release is a leading
//! integer with an optional suffix (`3`, `3.fc40`). Without a `release`
//! label the next release is one more than the largest leading integer among
//! the releases already used for that name-version, keeping the suffix of the
//! release that held it (`3.fc40` → `4.fc40`); with none used it is `1`.
//! Releases with no leading integer (`beta`) never block the bump. Because the
//! new leading integer exceeds every used one, the result is always free.
//!
//! `--isolated --release R` uses R, which must be free; a `release` label is
//! used as written and must be free too. Scratch builds are never unique.

use crate::domain::nvr::validate_version_or_release;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseSource {
    /// The Dockerfile's `release` label.
    Label,
    /// `--isolated --release R`.
    Override,
    /// Picked by the hub: the next free one.
    Bumped,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedRelease {
    pub release: String,
    pub source: ReleaseSource,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ReleaseError {
    #[error(
        "release {release:?} of this name-version already exists; bump the release label or leave it out"
    )]
    Taken { release: String },
    #[error("release {release:?}: {reason}")]
    Invalid { release: String, reason: String },
    #[error("release counter overflow after {release:?}")]
    Exhausted { release: String },
}

/// The flags of a build request that must agree with each other.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum FlagError {
    #[error("a build cannot be both scratch and isolated")]
    ScratchAndIsolated,
    #[error("an isolated build needs --release")]
    IsolatedWithoutRelease,
    #[error("--release is only accepted with --isolated")]
    ReleaseWithoutIsolated,
    #[error("release {release:?}: {reason}")]
    InvalidRelease { release: String, reason: String },
}

/// OSBS's rules for `--scratch`, `--isolated` and `--release`.
pub fn check_flags(scratch: bool, isolated: bool, release: Option<&str>) -> Result<(), FlagError> {
    if scratch && isolated {
        return Err(FlagError::ScratchAndIsolated);
    }
    match (isolated, release) {
        (true, None) => Err(FlagError::IsolatedWithoutRelease),
        (false, Some(_)) => Err(FlagError::ReleaseWithoutIsolated),
        (true, Some(r)) => {
            validate_version_or_release(r).map_err(|reason| FlagError::InvalidRelease {
                release: r.to_string(),
                reason,
            })
        }
        (false, None) => Ok(()),
    }
}

/// Splits `12.fc40` into (12, ".fc40"); `None` without a leading integer.
fn leading_integer(release: &str) -> Option<(u64, &str)> {
    let end = release
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(release.len());
    let n = release[..end].parse().ok()?;
    Some((n, &release[end..]))
}

/// The next release after `used` (see the module doc for the rule).
pub fn next_release<'a>(used: impl IntoIterator<Item = &'a str>) -> Result<String, ReleaseError> {
    // Ties on the integer keep the greatest suffix, so the answer does not
    // depend on the order the releases come in.
    let top = used.into_iter().filter_map(leading_integer).max();
    match top {
        None => Ok("1".to_string()),
        Some((n, suffix)) => {
            let next = n.checked_add(1).ok_or_else(|| ReleaseError::Exhausted {
                release: format!("{n}{suffix}"),
            })?;
            Ok(format!("{next}{suffix}"))
        }
    }
}

/// Picks the release of a build: the override, else the label, else the next
/// free one. `used` are the releases already taken for this name-version.
pub fn resolve_release(
    label: Option<&str>,
    isolated_release: Option<&str>,
    scratch: bool,
    used: &[String],
) -> Result<ResolvedRelease, ReleaseError> {
    let given = isolated_release
        .map(|r| (r, ReleaseSource::Override))
        .or(label.map(|r| (r, ReleaseSource::Label)));
    let Some((release, source)) = given else {
        return Ok(ResolvedRelease {
            release: next_release(used.iter().map(String::as_str))?,
            source: ReleaseSource::Bumped,
        });
    };
    validate_version_or_release(release).map_err(|reason| ReleaseError::Invalid {
        release: release.to_string(),
        reason,
    })?;
    if !scratch && used.iter().any(|u| u == release) {
        return Err(ReleaseError::Taken {
            release: release.to_string(),
        });
    }
    Ok(ResolvedRelease {
        release: release.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn first_release_is_one() {
        assert_eq!(next_release([]).unwrap(), "1");
        assert_eq!(next_release(["beta", "rc"]).unwrap(), "1");
    }

    #[test]
    fn bumps_the_largest_leading_integer() {
        assert_eq!(next_release(["1", "2"]).unwrap(), "3");
        // numeric, not lexical: 10 > 9
        assert_eq!(next_release(["9", "10", "2"]).unwrap(), "11");
        assert_eq!(next_release(["3.fc40", "1"]).unwrap(), "4.fc40");
        assert_eq!(next_release(["3", "3.fc40"]).unwrap(), "4.fc40");
        assert_eq!(next_release(["3.fc40", "3"]).unwrap(), "4.fc40");
        assert_eq!(next_release(["007"]).unwrap(), "8");
    }

    #[test]
    fn overflow_is_an_error() {
        let max = u64::MAX.to_string();
        assert!(matches!(
            next_release([max.as_str()]),
            Err(ReleaseError::Exhausted { .. })
        ));
    }

    #[test]
    fn override_beats_label_beats_bump() {
        let used = v(&["1", "2"]);
        let r = resolve_release(Some("7"), Some("9"), false, &used).unwrap();
        assert_eq!(
            (r.release.as_str(), r.source),
            ("9", ReleaseSource::Override)
        );
        let r = resolve_release(Some("7"), None, false, &used).unwrap();
        assert_eq!((r.release.as_str(), r.source), ("7", ReleaseSource::Label));
        let r = resolve_release(None, None, false, &used).unwrap();
        assert_eq!((r.release.as_str(), r.source), ("3", ReleaseSource::Bumped));
    }

    #[test]
    fn a_given_release_must_be_free_unless_scratch() {
        let used = v(&["1"]);
        assert_eq!(
            resolve_release(Some("1"), None, false, &used),
            Err(ReleaseError::Taken {
                release: "1".into()
            })
        );
        assert_eq!(
            resolve_release(None, Some("1"), false, &used),
            Err(ReleaseError::Taken {
                release: "1".into()
            })
        );
        assert!(resolve_release(Some("1"), None, true, &used).is_ok());
        assert!(matches!(
            resolve_release(None, Some("1-1"), false, &used),
            Err(ReleaseError::Invalid { .. })
        ));
    }

    #[test]
    fn flags() {
        assert_eq!(
            check_flags(true, true, Some("1")),
            Err(FlagError::ScratchAndIsolated)
        );
        assert_eq!(
            check_flags(false, true, None),
            Err(FlagError::IsolatedWithoutRelease)
        );
        assert_eq!(
            check_flags(false, false, Some("1")),
            Err(FlagError::ReleaseWithoutIsolated)
        );
        assert!(matches!(
            check_flags(false, true, Some("a-b")),
            Err(FlagError::InvalidRelease { .. })
        ));
        assert!(check_flags(false, true, Some("5")).is_ok());
        assert!(check_flags(true, false, None).is_ok());
        assert!(check_flags(false, false, None).is_ok());
    }
}
