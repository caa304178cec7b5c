//! Pure, lexical path handling: cleaning, joining with WORKDIR, and the
//! "does this climb out" check. No file system access here.

use crate::error::{Error, Result};

/// A path cleaned lexically against "/": its components, and whether a `..`
/// tried to climb above the top (and was clamped there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cleaned {
    pub components: Vec<String>,
    pub escaped: bool,
}

impl Cleaned {
    /// The absolute form, "/" for the top.
    pub fn absolute(&self) -> String {
        format!("/{}", self.components.join("/"))
    }

    /// The relative form used by .dockerignore and the digest cache ("" for the top).
    pub fn relative(&self) -> String {
        self.components.join("/")
    }
}

/// Cleans `path` as if it were joined to "/": empty and `.` components
/// vanish, `..` removes the previous one and is clamped at the top.
pub(crate) fn clean(path: &str) -> Cleaned {
    let mut components: Vec<String> = Vec::new();
    let mut escaped = false;
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if components.pop().is_none() {
                    escaped = true;
                }
            }
            other => components.push(other.to_string()),
        }
    }
    Cleaned {
        components,
        escaped,
    }
}

/// Cleans a source path of the build context; `..` above the context root is
/// refused as Docker's classic builder did (BuildKit silently clamps it, which
/// hides mistakes).
pub(crate) fn context_source(path: &str) -> Result<Cleaned> {
    let cleaned = clean(path);
    if cleaned.escaped {
        return Err(Error::OutsideContext(path.to_string()));
    }
    Ok(cleaned)
}

/// Where a COPY/ADD destination lands: a relative `dest` is taken relative to
/// `workdir`. Also tells whether the author marked it as a directory (a
/// trailing `/` or `/.`, or `.` itself).
pub(crate) fn destination(dest: &str, workdir: &str) -> (Cleaned, bool) {
    let dir_hint = dest.ends_with('/') || dest.ends_with("/.") || dest == "." || dest.is_empty();
    let joined = if dest.starts_with('/') {
        dest.to_string()
    } else {
        format!("{workdir}/{dest}")
    };
    (clean(&joined), dir_hint)
}

/// Splits a link target or archive name into components, keeping `..` so the
/// resolver can apply it against the real parent.
pub(crate) fn raw_components(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|c| !c.is_empty() && *c != ".")
}

/// The last component of a URL's path, as Docker names a downloaded file.
pub fn url_file_name(url: &str) -> Result<String> {
    let without_fragment = url.split('#').next().unwrap_or(url);
    let without_query = without_fragment
        .split('?')
        .next()
        .unwrap_or(without_fragment);
    let path = match without_query.find("://") {
        Some(i) => {
            let rest = &without_query[i + 3..];
            rest.find('/').map(|j| &rest[j..]).unwrap_or("")
        }
        None => without_query,
    };
    let name = path.rsplit('/').next().unwrap_or("");
    if name.is_empty() || name == "." || name == ".." {
        return Err(Error::UrlFileName(url.to_string()));
    }
    Ok(name.to_string())
}

/// File mode Docker gives files downloaded by `ADD <url>` (BuildKit's HTTP
/// source does the same); the builder creates the downloaded file with it
/// before calling [`crate::copy`], which keeps source modes.
pub const REMOTE_FILE_MODE: u32 = 0o600;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_removes_dots_and_clamps() {
        assert_eq!(clean("/a/./b/../c/").absolute(), "/a/c");
        assert_eq!(clean("").absolute(), "/");
        let c = clean("../../x");
        assert_eq!(c.absolute(), "/x");
        assert!(c.escaped);
        assert!(!clean("a/../b").escaped);
    }

    #[test]
    fn context_source_refuses_escape() {
        assert!(matches!(context_source("../x"), Err(Error::OutsideContext(p)) if p == "../x"));
        assert!(matches!(
            context_source("/../x"),
            Err(Error::OutsideContext(_))
        ));
        assert_eq!(
            context_source("a/../b").map(|c| c.relative()).ok(),
            Some("b".to_string())
        );
        let msg = context_source("../x").err().map(|e| e.to_string());
        assert_eq!(
            msg.as_deref(),
            Some("forbidden path outside the build context: ../x")
        );
    }

    #[test]
    fn destination_is_relative_to_workdir() {
        let (c, dir) = destination("app", "/srv");
        assert_eq!(c.absolute(), "/srv/app");
        assert!(!dir);
        let (c, dir) = destination("/opt/", "/srv");
        assert_eq!(c.absolute(), "/opt");
        assert!(dir);
        let (c, dir) = destination(".", "/srv");
        assert_eq!(c.absolute(), "/srv");
        assert!(dir);
    }

    #[test]
    fn url_file_names() {
        assert_eq!(
            url_file_name("https://example.com/a/b/file.tar.gz?x=1#f")
                .ok()
                .as_deref(),
            Some("file.tar.gz")
        );
        assert!(url_file_name("https://example.com/").is_err());
        assert!(url_file_name("https://example.com").is_err());
    }
}
