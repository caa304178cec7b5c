//! What a tar entry's name means inside the destination: pure rules, so the
//! security boundary is tested exhaustively without touching a disk.

/// A whiteout entry's meaning, from its last path component.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Name<'a> {
    /// An ordinary file name.
    Plain(&'a [u8]),
    /// `.wh.NAME`: NAME is deleted.
    Whiteout(&'a [u8]),
    /// `.wh..wh..opq`: the parent directory is opaque.
    Opaque,
    /// Other `.wh..wh.*` names are AUFS bookkeeping (e.g. `.wh..wh.plnk`);
    /// Docker and containerd skip them.
    AufsMeta,
}

/// The components of an entry name relative to the destination. Leading
/// `/` are stripped and `.`/empty components dropped, as Docker and
/// containerd do (layers written by old tools start names with `/` or
/// `./`); a `..` component is refused outright rather than clamped, since
/// no honest layer has one. An empty result names the destination itself.
pub(crate) fn components(raw: &[u8]) -> Result<Vec<&[u8]>, &'static str> {
    if raw.contains(&0) {
        return Err("path contains a NUL byte");
    }
    let mut out = Vec::new();
    for comp in raw.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err("path has a `..` component"),
            c => out.push(c),
        }
    }
    Ok(out)
}

pub(crate) fn classify(name: &[u8]) -> Result<Name<'_>, &'static str> {
    const WH: &[u8] = b".wh.";
    if name == b".wh..wh..opq" {
        return Ok(Name::Opaque);
    }
    if name.starts_with(b".wh..wh.") {
        return Ok(Name::AufsMeta);
    }
    match name.strip_prefix(WH) {
        Some(b"" | b"." | b"..") => Err("whiteout names no file"),
        Some(target) => Ok(Name::Whiteout(target)),
        None => Ok(Name::Plain(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comps(s: &str) -> Result<Vec<String>, &'static str> {
        components(s.as_bytes()).map(|v| {
            v.iter()
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect()
        })
    }

    #[test]
    fn leading_slash_and_dot_are_stripped() {
        assert_eq!(comps("etc/passwd").unwrap(), ["etc", "passwd"]);
        assert_eq!(comps("/etc/passwd").unwrap(), ["etc", "passwd"]);
        assert_eq!(comps("./etc//./passwd").unwrap(), ["etc", "passwd"]);
        assert_eq!(comps("usr/lib/").unwrap(), ["usr", "lib"]);
        assert!(comps("./").unwrap().is_empty());
        assert!(comps("/").unwrap().is_empty());
    }

    #[test]
    fn dot_dot_anywhere_is_refused() {
        for bad in [
            "..",
            "../x",
            "a/../../x",
            "a/..",
            "/../etc/passwd",
            "a/b/../c",
        ] {
            assert!(comps(bad).is_err(), "{bad}");
        }
        // Names that merely contain dots are fine.
        assert_eq!(comps("a/..b/c..").unwrap(), ["a", "..b", "c.."]);
        assert!(components(b"a\0b").is_err());
    }

    #[test]
    fn whiteout_names() {
        assert_eq!(classify(b"passwd"), Ok(Name::Plain(b"passwd")));
        assert_eq!(classify(b".wh.passwd"), Ok(Name::Whiteout(b"passwd")));
        assert_eq!(classify(b".wh..wh..opq"), Ok(Name::Opaque));
        assert_eq!(classify(b".wh..wh.plnk"), Ok(Name::AufsMeta));
        assert_eq!(classify(b".wh..hidden"), Ok(Name::Whiteout(b".hidden")));
        assert!(classify(b".wh.").is_err());
        assert!(classify(b".wh...").is_err());
    }
}
