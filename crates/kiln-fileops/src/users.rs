//! `/etc/passwd` and `/etc/group` of a destination root, and `--chown` specs.
//!
//! Rules (BuildKit's `readUser` and dockerfile2llb `parseUser`):
//! - `1000` → uid 1000, gid 1000 (a numeric user without group reuses the uid);
//! - `app` → the uid and the *primary* gid of `app` from the root's passwd;
//! - `app:staff`, `1000:staff`, `app:50` → each half looked up separately;
//! - `:staff` → uid 0 with the group; `root` is 0 even without a passwd file.

use rustix::fs::OFlags;

use crate::error::{Error, IoContext, Result};
use crate::root::{Lookup, Root, open_resolved, resolve};

/// One line of `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

/// One line of `/etc/group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// Parses passwd text; comments, blank and malformed lines are skipped, as
/// libc and runc's user package do.
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                return None;
            }
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].trim().parse().ok()?,
                gid: f[3].trim().parse().ok()?,
                home: f.get(5).unwrap_or(&"").to_string(),
                shell: f.get(6).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

/// Parses group text; comments, blank and malformed lines are skipped.
pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                return None;
            }
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 3 {
                return None;
            }
            Some(GroupEntry {
                name: f[0].to_string(),
                gid: f[2].trim().parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Reads a file inside a root (symlinks resolved inside it); `None` if missing.
pub(crate) fn read_in_root(root: &Root, path: &str) -> Result<Option<String>> {
    let r = resolve(root, path, Lookup::Follow);
    let r = match r {
        Ok(r) => r,
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(None);
        }
        Err(Error::NotADirectory(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    if r.stat(root)?.is_none() {
        return Ok(None);
    }
    let fd = open_resolved(root, &r, OFlags::RDONLY)?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::fs::File::from(fd), &mut text)
        .ctx("read", &r.display())?;
    Ok(Some(text))
}

fn numeric(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Resolves a `--chown`/`USER`-style spec against already parsed databases.
pub fn resolve_user_in(
    spec: &str,
    passwd: &[PasswdEntry],
    groups: &[GroupEntry],
) -> Result<(u32, u32)> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.contains(':')
        || group.is_some_and(|g| g.is_empty() || g.contains(':'))
        || (user.is_empty() && group.is_none())
    {
        return Err(Error::BadChown(spec.to_string()));
    }
    let (uid, primary_gid) = if user.is_empty() {
        (0, 0)
    } else if let Some(uid) = numeric(user) {
        (uid, uid)
    } else if let Some(e) = passwd.iter().find(|e| e.name == user) {
        (e.uid, e.gid)
    } else if user == "root" {
        (0, 0)
    } else {
        return Err(Error::UnknownUser(user.to_string()));
    };
    let gid = match group {
        None => primary_gid,
        Some(g) => match numeric(g) {
            Some(gid) => gid,
            None => match groups.iter().find(|e| e.name == g) {
                Some(e) => e.gid,
                None if g == "root" => 0,
                None => return Err(Error::UnknownGroup(g.to_string())),
            },
        },
    };
    Ok((uid, gid))
}

/// Resolves a `--chown` spec against the destination root's `/etc/passwd`
/// and `/etc/group`; those files are read only when a name needs them.
pub fn resolve_user(root: &Root, spec: &str) -> Result<(u32, u32)> {
    let needs_files = spec
        .split(':')
        .any(|part| !part.is_empty() && numeric(part).is_none());
    let (passwd, groups) = if needs_files {
        (
            parse_passwd(&read_in_root(root, "/etc/passwd")?.unwrap_or_default()),
            parse_group(&read_in_root(root, "/etc/group")?.unwrap_or_default()),
        )
    } else {
        (Vec::new(), Vec::new())
    };
    resolve_user_in(spec, &passwd, &groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n# comment\n\napp:x:1000:1001::/home/app:/bin/sh\nbroken line\nbad:x:notanumber:1:::\n";
    const GROUP: &str = "root:x:0:\nstaff:x:50:app,other\napp:x:1001:\n";

    fn r(spec: &str) -> Result<(u32, u32)> {
        resolve_user_in(spec, &parse_passwd(PASSWD), &parse_group(GROUP))
    }

    #[test]
    fn passwd_parser_skips_junk() {
        let p = parse_passwd(PASSWD);
        assert_eq!(p.len(), 2);
        assert_eq!(
            p[1],
            PasswdEntry {
                name: "app".into(),
                uid: 1000,
                gid: 1001,
                home: "/home/app".into(),
                shell: "/bin/sh".into()
            }
        );
        let g = parse_group(GROUP);
        assert_eq!(g[1].members, vec!["app".to_string(), "other".to_string()]);
    }

    #[test]
    fn name_without_group_uses_primary_gid() {
        assert_eq!(r("app").ok(), Some((1000, 1001)));
    }

    #[test]
    fn numeric_user_without_group_reuses_uid() {
        assert_eq!(r("1234").ok(), Some((1234, 1234)));
    }

    #[test]
    fn user_and_group_combinations() {
        assert_eq!(r("app:staff").ok(), Some((1000, 50)));
        assert_eq!(r("1000:1000").ok(), Some((1000, 1000)));
        assert_eq!(r("app:7").ok(), Some((1000, 7)));
        assert_eq!(r(":staff").ok(), Some((0, 50)));
        assert_eq!(r("root").ok(), Some((0, 0)));
    }

    #[test]
    fn unknown_names_use_docker_wording() {
        assert_eq!(
            r("nobody2").err().map(|e| e.to_string()).as_deref(),
            Some("unable to find user nobody2: no matching entries in passwd file")
        );
        assert_eq!(
            r("app:nogroup").err().map(|e| e.to_string()).as_deref(),
            Some("unable to find group nogroup: no matching entries in group file")
        );
        assert!(matches!(r("a:b:c"), Err(Error::BadChown(_))));
        assert!(matches!(r(""), Err(Error::BadChown(_))));
    }
}
