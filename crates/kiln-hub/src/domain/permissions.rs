//! Who may do what. Admins may do everything; component owners may build
//! and tag their components; scratch builds may be opened to every
//! authenticated user by configuration; a build's submitter may cancel it.

use crate::model::{Component, User};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccessPolicy {
    /// Anyone may submit scratch builds of any component.
    pub scratch_open_to_all: bool,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{user} may not {action}: {reason}")]
pub struct Denied {
    pub user: String,
    pub action: String,
    pub reason: String,
}

fn owns(user: &User, component: &Component) -> bool {
    component.owners.iter().any(|o| o == &user.name)
}

fn owners_text(component: &Component) -> String {
    if component.owners.is_empty() {
        "it has no owners; ask an admin".to_string()
    } else {
        format!("owners are {}", component.owners.join(", "))
    }
}

pub fn may_build(
    user: &User,
    component: &Component,
    scratch: bool,
    policy: &AccessPolicy,
) -> Result<(), Denied> {
    if user.admin || owns(user, component) || (scratch && policy.scratch_open_to_all) {
        return Ok(());
    }
    Err(Denied {
        user: user.name.clone(),
        action: format!(
            "build component {}{}",
            component.name,
            if scratch { " (scratch)" } else { "" }
        ),
        reason: format!("not an owner ({})", owners_text(component)),
    })
}

/// Tagging or untagging a build of `component` into a tag.
pub fn may_tag(user: &User, component: &Component, tag: &str) -> Result<(), Denied> {
    if user.admin || owns(user, component) {
        return Ok(());
    }
    Err(Denied {
        user: user.name.clone(),
        action: format!("change tag {tag} for component {}", component.name),
        reason: format!("not an owner ({})", owners_text(component)),
    })
}

pub fn may_cancel(user: &User, build_id: i64, build_owner: &str) -> Result<(), Denied> {
    if user.admin || user.name == build_owner {
        return Ok(());
    }
    Err(Denied {
        user: user.name.clone(),
        action: format!("cancel build {build_id}"),
        reason: format!("it was submitted by {build_owner}"),
    })
}

/// Targets, components, users: admins only.
pub fn may_administer(user: &User, what: &str) -> Result<(), Denied> {
    if user.admin {
        return Ok(());
    }
    Err(Denied {
        user: user.name.clone(),
        action: format!("change {what}"),
        reason: "admins only".to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, admin: bool) -> User {
        User {
            name: name.into(),
            admin,
        }
    }

    fn httpd() -> Component {
        Component {
            name: "httpd".into(),
            git_url: "file:///srv/git/httpd".into(),
            owners: vec!["alice".into()],
        }
    }

    #[test]
    fn building() {
        let closed = AccessPolicy::default();
        let open = AccessPolicy {
            scratch_open_to_all: true,
        };
        let c = httpd();
        assert!(may_build(&user("alice", false), &c, false, &closed).is_ok());
        assert!(may_build(&user("root", true), &c, false, &closed).is_ok());
        let err = may_build(&user("bob", false), &c, false, &closed).unwrap_err();
        assert_eq!(
            err.to_string(),
            "bob may not build component httpd: not an owner (owners are alice)"
        );
        assert!(may_build(&user("bob", false), &c, true, &closed).is_err());
        assert!(may_build(&user("bob", false), &c, true, &open).is_ok());
        // opening scratch builds does not open real ones
        assert!(may_build(&user("bob", false), &c, false, &open).is_err());
        let orphan = Component {
            owners: vec![],
            ..c
        };
        let err = may_build(&user("bob", false), &orphan, false, &closed).unwrap_err();
        assert!(err.reason.contains("no owners"));
    }

    #[test]
    fn tagging_cancelling_administering() {
        let c = httpd();
        assert!(may_tag(&user("alice", false), &c, "f40").is_ok());
        assert!(may_tag(&user("root", true), &c, "f40").is_ok());
        assert!(may_tag(&user("bob", false), &c, "f40").is_err());
        assert!(may_cancel(&user("bob", false), 7, "bob").is_ok());
        assert!(may_cancel(&user("root", true), 7, "bob").is_ok());
        let err = may_cancel(&user("alice", false), 7, "bob").unwrap_err();
        assert!(err.to_string().contains("cancel build 7"));
        assert!(may_administer(&user("root", true), "targets").is_ok());
        assert!(may_administer(&user("alice", false), "targets").is_err());
    }
}
