//! Resolving a Dockerfile `USER` value against the image's own /etc/passwd and /etc/group,
//! with the rules of runc's `GetExecUser` (which Docker and BuildKit use).

/// Who the command runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// Home directory from the passwd entry, `/` without one.
    pub home: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    UnknownUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    UnknownGroup(String),
    #[error("invalid USER {0:?}")]
    Invalid(String),
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    passwd.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 7 || line.starts_with('#') {
            return None;
        }
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f[5],
        })
    })
}

fn group_entries(group: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    group.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 || line.starts_with('#') {
            return None;
        }
        Some(GroupEntry {
            name: f[0],
            gid: f[2].parse().ok()?,
            members: f[3].split(',').filter(|m| !m.is_empty()).collect(),
        })
    })
}

/// Resolves `user` ("" = root). `passwd`/`group` are the file contents, `None` when the
/// image lacks the file: numeric ids then still work, names do not.
pub fn resolve(
    user: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<Credentials, UserError> {
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    if group_part == Some("") {
        return Err(UserError::Invalid(user.to_owned()));
    }
    let passwd = passwd.unwrap_or("");
    let group = group.unwrap_or("");

    let entry = match user_part.parse::<u32>() {
        Ok(uid) => passwd_entries(passwd).find(|e| e.uid == uid),
        Err(_) => Some(
            passwd_entries(passwd)
                .find(|e| e.name == user_part)
                .ok_or_else(|| UserError::UnknownUser(user_part.to_owned()))?,
        ),
    };
    let uid = match (&entry, user_part.parse::<u32>()) {
        (_, Ok(uid)) => uid,
        (Some(e), Err(_)) => e.uid,
        (None, Err(_)) => return Err(UserError::UnknownUser(user_part.to_owned())),
    };
    let home = entry
        .as_ref()
        .map(|e| e.home)
        .filter(|h| !h.is_empty())
        .unwrap_or("/")
        .to_owned();

    let (gid, groups) = match group_part {
        Some(g) => {
            let gid = match g.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => group_entries(group)
                    .find(|e| e.name == g)
                    .map(|e| e.gid)
                    .ok_or_else(|| UserError::UnknownGroup(g.to_owned()))?,
            };
            // An explicit group replaces the user's group memberships, as in runc.
            (gid, Vec::new())
        }
        None => {
            let gid = entry.as_ref().map(|e| e.gid).unwrap_or(0);
            let mut groups = Vec::new();
            if let Some(e) = &entry {
                for g in group_entries(group) {
                    if g.members.contains(&e.name) && g.gid != gid && !groups.contains(&g.gid) {
                        groups.push(g.gid);
                    }
                }
            }
            (gid, groups)
        }
    };
    Ok(Credentials {
        uid,
        gid,
        groups,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                          # comment\n\
                          app:x:1000:1000:App:/home/app:/bin/sh\n\
                          nohome:x:1001:1001:::/bin/sh\n";
    const GROUP: &str = "root:x:0:\n\
                         wheel:x:10:root,app\n\
                         app:x:1000:\n\
                         staff:x:50:app\n";

    fn r(user: &str) -> Result<Credentials, UserError> {
        resolve(user, Some(PASSWD), Some(GROUP))
    }

    #[test]
    fn empty_and_root_are_uid_zero() {
        for u in ["", "root", "0"] {
            let c = r(u).unwrap();
            assert_eq!((c.uid, c.gid, c.home.as_str()), (0, 0, "/root"), "{u}");
            assert_eq!(c.groups, vec![10]);
        }
    }

    #[test]
    fn named_user_gets_primary_and_supplementary_groups() {
        let c = r("app").unwrap();
        assert_eq!((c.uid, c.gid), (1000, 1000));
        assert_eq!(c.groups, vec![10, 50]);
        assert_eq!(c.home, "/home/app");
    }

    #[test]
    fn explicit_group_by_name_or_number() {
        let c = r("app:staff").unwrap();
        assert_eq!((c.uid, c.gid), (1000, 50));
        assert!(c.groups.is_empty());
        let c = r("1000:1000").unwrap();
        assert_eq!((c.uid, c.gid, c.home.as_str()), (1000, 1000, "/home/app"));
    }

    #[test]
    fn numeric_ids_need_no_entry() {
        let c = r("4242").unwrap();
        assert_eq!((c.uid, c.gid, c.home.as_str()), (4242, 0, "/"));
        let c = resolve("4242:77", None, None).unwrap();
        assert_eq!((c.uid, c.gid), (4242, 77));
    }

    #[test]
    fn unknown_names_are_errors() {
        assert_eq!(r("nobody"), Err(UserError::UnknownUser("nobody".into())));
        assert_eq!(
            r("app:nogroup"),
            Err(UserError::UnknownGroup("nogroup".into()))
        );
        assert_eq!(
            resolve("app", None, None),
            Err(UserError::UnknownUser("app".into()))
        );
        assert!(r("app:").is_err());
        assert_eq!(
            r("nobody").unwrap_err().to_string(),
            "unable to find user nobody: no matching entries in passwd file"
        );
    }

    #[test]
    fn empty_home_falls_back_to_root_dir() {
        assert_eq!(r("nohome").unwrap().home, "/");
    }
}
