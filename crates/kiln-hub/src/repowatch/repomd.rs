//! `repodata/repomd.xml`: the index of a repository's metadata files. Only
//! the `primary` entry matters here: its checksum says whether anything
//! changed, its location where the package list is.

use quick_xml::events::BytesStart;
use quick_xml::name::ResolveResult;

use super::xml::{DriveError, Handler, attribute, display_name, drive, in_namespace};

/// The namespace createrepo_c puts repomd.xml's elements in.
pub const REPO_NAMESPACE: &str = "http://linux.duke.edu/metadata/repo";

/// Checksum types repomd.xml may name (as createrepo_c spells them), with
/// the length of their hex digest. `sha` is yum's old name for `sha1`.
const CHECKSUM_TYPES: &[(&str, usize)] = &[
    ("md5", 32),
    ("sha1", 40),
    ("sha224", 56),
    ("sha256", 64),
    ("sha384", 96),
    ("sha512", 128),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoMd {
    /// `<revision>`: createrepo_c writes the generation time unless told
    /// otherwise; free text.
    pub revision: Option<String>,
    pub primary: DataFile,
}

/// One `<data>` entry of repomd.xml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFile {
    /// `<location href>`, relative to the repository's base URL; checked to
    /// stay inside it (see [`RepoMdError::BadHref`]).
    pub location: String,
    /// The digest of the file as stored (compressed), lowercase hex.
    pub checksum: String,
    /// `md5`, `sha1`, `sha224`, `sha256`, `sha384` or `sha512` (lowercase;
    /// `sha` is given as `sha1`).
    pub checksum_type: String,
    /// `<size>`: the stored file's size in bytes, when given.
    pub size: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepoMdError {
    #[error("repomd.xml is not well-formed XML (at byte {position}): {message}")]
    Xml { position: u64, message: String },
    #[error("repomd.xml has no root element (empty or not XML)")]
    NoRoot,
    #[error("not a repomd.xml: the root element is <{found}>, not <repomd>")]
    NotRepoMd { found: String },
    #[error("repomd.xml has no <data type=\"primary\"> entry")]
    NoPrimary,
    #[error("repomd.xml has more than one <data type=\"primary\"> entry (at byte {position})")]
    DuplicatePrimary { position: u64 },
    #[error("repomd.xml, primary entry at byte {position}: {what}")]
    Invalid { position: u64, what: String },
    #[error("repomd.xml: primary location {href:?} refused: {reason}")]
    BadHref { href: String, reason: &'static str },
    #[error(
        "repomd.xml: unknown checksum type {0:?} (known: md5, sha1, sha224, sha256, sha384, sha512)"
    )]
    UnknownChecksumType(String),
    #[error("repomd.xml: {checksum_type} checksum {value:?} is not {digits} hex digits")]
    BadChecksum {
        checksum_type: String,
        value: String,
        digits: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Elem {
    RepoMd,
    Revision,
    /// `<data>`; `true` for the primary entry.
    Data(bool),
    Checksum,
    Location,
    Size,
    Other,
}

/// The primary entry while its children are read.
#[derive(Default)]
struct PrimaryFields {
    position: u64,
    location: Option<String>,
    checksum: Option<String>,
    checksum_type: Option<String>,
    size: Option<u64>,
}

struct Parser {
    revision: Option<String>,
    current: Option<PrimaryFields>,
    primary: Option<DataFile>,
}

/// Parses repomd.xml (UTF-8, namespaced as createrepo_c writes it; also
/// accepted without the `xmlns`).
pub fn parse_repomd(xml: &[u8]) -> Result<RepoMd, RepoMdError> {
    let mut parser = Parser {
        revision: None,
        current: None,
        primary: None,
    };
    drive(xml, &mut parser).map_err(|e| match e {
        DriveError::Handler(e) => e,
        // Unreachable: reading a byte slice cannot fail.
        DriveError::Read { position, source } => RepoMdError::Xml {
            position,
            message: source.to_string(),
        },
        DriveError::Xml { position, message } => RepoMdError::Xml { position, message },
        DriveError::Unclosed { position } => RepoMdError::Xml {
            position,
            message: "the document ends inside an element".to_string(),
        },
        DriveError::NoRoot => RepoMdError::NoRoot,
    })?;
    let primary = parser.primary.ok_or(RepoMdError::NoPrimary)?;
    Ok(RepoMd {
        revision: parser.revision,
        primary,
    })
}

impl Handler for Parser {
    type Elem = Elem;
    type Error = RepoMdError;

    fn wants_text(elem: Elem) -> bool {
        matches!(elem, Elem::Revision | Elem::Checksum | Elem::Size)
    }

    fn open(
        &mut self,
        parent: Option<Elem>,
        resolved: &ResolveResult<'_>,
        element: &BytesStart<'_>,
        position: u64,
    ) -> Result<Elem, RepoMdError> {
        let local = element.local_name();
        let ours = in_namespace(resolved, REPO_NAMESPACE.as_bytes());
        let invalid = |what: String| RepoMdError::Invalid { position, what };
        let Some(parent) = parent else {
            if ours && local.as_ref() == b"repomd" {
                return Ok(Elem::RepoMd);
            }
            return Err(RepoMdError::NotRepoMd {
                found: display_name(element.name().as_ref()),
            });
        };
        if !ours {
            return Ok(Elem::Other);
        }
        let elem = match (parent, local.as_ref()) {
            (Elem::RepoMd, b"revision") => Elem::Revision,
            (Elem::RepoMd, b"data") => {
                let kind = attribute(element, b"type").map_err(invalid)?;
                if kind.as_deref() != Some("primary") {
                    return Ok(Elem::Data(false));
                }
                if self.primary.is_some() || self.current.is_some() {
                    return Err(RepoMdError::DuplicatePrimary { position });
                }
                self.current = Some(PrimaryFields {
                    position,
                    ..PrimaryFields::default()
                });
                Elem::Data(true)
            }
            (Elem::Data(true), b"checksum") => {
                let kind = attribute(element, b"type")
                    .map_err(invalid)?
                    .ok_or_else(|| invalid("<checksum> has no type attribute".to_string()))?;
                if let Some(current) = &mut self.current {
                    current.checksum_type = Some(kind);
                }
                Elem::Checksum
            }
            (Elem::Data(true), b"location") => {
                let href = attribute(element, b"href")
                    .map_err(invalid)?
                    .ok_or_else(|| invalid("<location> has no href attribute".to_string()))?;
                // xml:base would move the file to another server; the
                // watcher reads the repository it was given, nothing else.
                if attribute(element, b"xml:base").map_err(invalid)?.is_some() {
                    return Err(RepoMdError::BadHref {
                        href,
                        reason: "locations with xml:base are not supported",
                    });
                }
                if let Some(current) = &mut self.current {
                    current.location = Some(href);
                }
                Elem::Location
            }
            (Elem::Data(true), b"size") => Elem::Size,
            _ => Elem::Other,
        };
        Ok(elem)
    }

    fn close(&mut self, elem: Elem, text: &str, position: u64) -> Result<(), RepoMdError> {
        match elem {
            Elem::Revision => {
                let revision = text.trim();
                self.revision = (!revision.is_empty()).then(|| revision.to_string());
            }
            Elem::Checksum => {
                if let Some(current) = &mut self.current {
                    current.checksum = Some(text.trim().to_string());
                }
            }
            Elem::Size => {
                let size = text.trim();
                let size = size.parse::<u64>().map_err(|_| RepoMdError::Invalid {
                    position,
                    what: format!("<size> {size:?} is not a number of bytes"),
                })?;
                if let Some(current) = &mut self.current {
                    current.size = Some(size);
                }
            }
            Elem::Data(true) => {
                if let Some(current) = self.current.take() {
                    self.primary = Some(finish_primary(current)?);
                }
            }
            Elem::RepoMd | Elem::Data(false) | Elem::Location | Elem::Other => {}
        }
        Ok(())
    }
}

fn finish_primary(fields: PrimaryFields) -> Result<DataFile, RepoMdError> {
    let invalid = |what: &str| RepoMdError::Invalid {
        position: fields.position,
        what: what.to_string(),
    };
    let location = fields.location.ok_or_else(|| invalid("no <location>"))?;
    check_href(&location)?;
    let checksum = fields.checksum.ok_or_else(|| invalid("no <checksum>"))?;
    let checksum_type = fields
        .checksum_type
        .ok_or_else(|| invalid("no <checksum>"))?;
    let (checksum_type, checksum) = check_checksum(&checksum_type, &checksum)?;
    Ok(DataFile {
        location,
        checksum,
        checksum_type,
        size: fields.size,
    })
}

/// Normalises a checksum type and value: known type, hex of the right
/// length, lowercase.
fn check_checksum(kind: &str, value: &str) -> Result<(String, String), RepoMdError> {
    let lower = kind.to_ascii_lowercase();
    let name = if lower == "sha" {
        "sha1"
    } else {
        lower.as_str()
    };
    let &(name, digits) = CHECKSUM_TYPES
        .iter()
        .find(|(known, _)| *known == name)
        .ok_or_else(|| RepoMdError::UnknownChecksumType(kind.to_string()))?;
    if value.len() != digits || !value.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(RepoMdError::BadChecksum {
            checksum_type: name.to_string(),
            value: value.to_string(),
            digits,
        });
    }
    Ok((name.to_string(), value.to_ascii_lowercase()))
}

/// A location must name a file under the repository: relative, no `..`,
/// nothing a URL parser would reinterpret (`%2e%2e` is `..` to one).
fn check_href(href: &str) -> Result<(), RepoMdError> {
    let refuse = |reason| {
        Err(RepoMdError::BadHref {
            href: href.to_string(),
            reason,
        })
    };
    if href.is_empty() {
        return refuse("it is empty");
    }
    if href.starts_with('/') {
        return refuse("it is an absolute path");
    }
    if has_scheme(href) {
        return refuse("it names its own scheme (only paths inside the repository are followed)");
    }
    if href.contains(['\\', '%', '?', '#']) {
        return refuse("backslashes, percent-escapes, queries and fragments are not accepted");
    }
    if href.chars().any(char::is_control) {
        return refuse("it contains control characters");
    }
    if href.split('/').any(|segment| segment == "..") {
        return refuse("it has a \"..\" segment");
    }
    if href.ends_with('/') {
        return refuse("it names a directory");
    }
    Ok(())
}

/// `scheme:` as RFC 3986 spells it: a letter, then letters, digits, `+-.`.
fn has_scheme(href: &str) -> bool {
    let Some((scheme, _)) = href.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const SHA256: &str = "98b88c2e776950566e2750a6c68fbea0ac69d9111dfce0f99122c9b0800cf425";

    /// As createrepo_c 0.17 writes it (cut down to primary, filelists and a
    /// sqlite entry).
    fn createrepo_c_repomd() -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<repomd xmlns="http://linux.duke.edu/metadata/repo" xmlns:rpm="http://linux.duke.edu/metadata/rpm">
  <revision>1795444120</revision>
  <tags>
    <distro cpeid="cpe:/o:fedoraproject:fedora:40">Fedora 40</distro>
  </tags>
  <data type="filelists">
    <checksum type="sha256">312491efc60e8e6194d93ebbcb04ed25c7d4773614093850dda119f27f40c916</checksum>
    <location href="repodata/312491ef-filelists.xml.gz"/>
    <size>327</size>
  </data>
  <data type="primary">
    <checksum type="sha256">{SHA256}</checksum>
    <open-checksum type="sha256">bc33dda06b62a5e41efff0af95019fd2403f39a42a3803c08d1e6393ce0ca43e</open-checksum>
    <location href="repodata/{SHA256}-primary.xml.gz"/>
    <timestamp>1795444119</timestamp>
    <size>750</size>
    <open-size>2182</open-size>
  </data>
  <data type="primary_db">
    <checksum type="sha256">ef49f80bcb3d4382cfce8340f1e3f18f4230b6113f3283b22c9b98f55e5165f0</checksum>
    <location href="repodata/ef49f80b-primary.sqlite.bz2"/>
    <size>1985</size>
    <database_version>10</database_version>
  </data>
</repomd>
"#
        )
    }

    /// repomd.xml around one primary `<data>` body.
    fn with_primary(data: &str) -> String {
        format!(
            r#"<repomd xmlns="http://linux.duke.edu/metadata/repo"><data type="primary">{data}</data></repomd>"#
        )
    }

    fn parse(xml: &str) -> Result<RepoMd, RepoMdError> {
        parse_repomd(xml.as_bytes())
    }

    #[test]
    fn reads_createrepo_c_output() {
        let md = parse(&createrepo_c_repomd()).unwrap();
        assert_eq!(md.revision.as_deref(), Some("1795444120"));
        assert_eq!(
            md.primary,
            DataFile {
                location: format!("repodata/{SHA256}-primary.xml.gz"),
                checksum: SHA256.to_string(),
                checksum_type: "sha256".to_string(),
                size: Some(750),
            }
        );
    }

    #[test]
    fn accepts_prefixed_and_unnamespaced_elements() {
        let prefixed = format!(
            r#"<r:repomd xmlns:r="http://linux.duke.edu/metadata/repo"><r:data type="primary">
            <r:checksum type="SHA256">{}</r:checksum><r:location href="p.xml"/></r:data></r:repomd>"#,
            SHA256.to_uppercase()
        );
        let md = parse(&prefixed).unwrap();
        assert_eq!(md.primary.checksum, SHA256, "lowercased");
        assert_eq!(md.primary.checksum_type, "sha256");
        assert_eq!(md.primary.size, None);
        assert_eq!(md.revision, None);

        let bare = format!(
            r#"<repomd><revision> r &amp; 1 </revision><data type="primary"><checksum type="sha">{}</checksum><location href="repodata/p.xml.zst"/></data></repomd>"#,
            "a".repeat(40)
        );
        let md = parse(&bare).unwrap();
        assert_eq!(md.revision.as_deref(), Some("r & 1"));
        assert_eq!(md.primary.checksum_type, "sha1");
        assert_eq!(md.primary.location, "repodata/p.xml.zst");
    }

    #[test]
    fn elements_of_other_namespaces_are_not_ours() {
        // A <data type="primary"> in a foreign namespace is someone's
        // extension, not the primary entry.
        let xml = format!(
            r#"<repomd xmlns="http://linux.duke.edu/metadata/repo" xmlns:x="urn:x">
            <x:data type="primary"><x:location href="evil.xml"/></x:data>
            <data type="primary"><checksum type="sha256">{SHA256}</checksum><location href="good.xml"/></data></repomd>"#
        );
        assert_eq!(parse(&xml).unwrap().primary.location, "good.xml");
        let xml = r#"<repomd xmlns="urn:not-repo"><data type="primary"/></repomd>"#;
        assert!(matches!(parse(xml), Err(RepoMdError::NotRepoMd { .. })));
    }

    #[test]
    fn refuses_what_is_not_repomd_xml() {
        assert!(matches!(parse(""), Err(RepoMdError::NoRoot)));
        assert!(matches!(parse("just some text"), Err(RepoMdError::NoRoot)));
        let err = parse("<html><body>404</body></html>").unwrap_err();
        assert_eq!(
            err,
            RepoMdError::NotRepoMd {
                found: "html".to_string()
            }
        );
        let err = parse("<repomd><data type=\"primary\"></dat></repomd>").unwrap_err();
        let RepoMdError::Xml { position, message } = &err else {
            panic!("{err:?}")
        };
        assert!(*position > 0, "{err}");
        assert!(message.contains("dat"), "{err}");
        let err = parse("<repomd><revision>1</revision>").unwrap_err();
        assert!(matches!(err, RepoMdError::Xml { .. }), "{err:?}");
        assert!(err.to_string().contains("ends inside an element"), "{err}");
    }

    #[test]
    fn needs_exactly_one_complete_primary_entry() {
        let no_primary = r#"<repomd xmlns="http://linux.duke.edu/metadata/repo">
            <data type="filelists"><location href="f.xml"/></data></repomd>"#;
        assert_eq!(parse(no_primary).unwrap_err(), RepoMdError::NoPrimary);

        let entry =
            format!(r#"<checksum type="sha256">{SHA256}</checksum><location href="p.xml"/>"#);
        let twice = format!(
            r#"<repomd><data type="primary">{entry}</data><data type="primary">{entry}</data></repomd>"#
        );
        assert!(matches!(
            parse(&twice),
            Err(RepoMdError::DuplicatePrimary { .. })
        ));

        let cases: &[(&str, &str)] = &[
            (r#"<location href="p.xml"/>"#, "no <checksum>"),
            (
                &format!(r#"<checksum type="sha256">{SHA256}</checksum>"#),
                "no <location>",
            ),
            (
                &format!(r#"<checksum type="sha256">{SHA256}</checksum><location/>"#),
                "no href attribute",
            ),
            (
                &format!(r#"<checksum>{SHA256}</checksum><location href="p.xml"/>"#),
                "no type attribute",
            ),
            (
                &format!(r#"{entry}<size>12k</size>"#),
                "\"12k\" is not a number",
            ),
        ];
        for (data, message) in cases {
            let err = parse(&with_primary(data)).unwrap_err();
            assert!(
                matches!(err, RepoMdError::Invalid { .. }),
                "{data}: {err:?}"
            );
            assert!(err.to_string().contains(message), "{data}: {err}");
        }
    }

    #[test]
    fn checks_checksum_types_and_values() {
        let entry = |kind: &str, value: &str| {
            with_primary(&format!(
                r#"<checksum type="{kind}">{value}</checksum><location href="p.xml"/>"#
            ))
        };
        for (kind, digits) in CHECKSUM_TYPES {
            let md = parse(&entry(kind, &"0".repeat(*digits))).unwrap();
            assert_eq!(md.primary.checksum_type, *kind);
        }
        assert_eq!(
            parse(&entry("crc32", "abcd")).unwrap_err(),
            RepoMdError::UnknownChecksumType("crc32".to_string())
        );
        let err = parse(&entry("sha256", "abc")).unwrap_err();
        assert!(
            matches!(err, RepoMdError::BadChecksum { digits: 64, .. }),
            "{err:?}"
        );
        let err = parse(&entry("sha1", &"g".repeat(40))).unwrap_err();
        assert!(matches!(err, RepoMdError::BadChecksum { .. }), "{err:?}");
    }

    #[test]
    fn refuses_locations_outside_the_repository() {
        let good = [
            "repodata/primary.xml.gz",
            "primary.xml",
            "repodata/./p.xml",
            "a..b/p.xml",
        ];
        for href in good {
            check_href(href).unwrap();
        }
        let bad: &[(&str, &str)] = &[
            ("", "empty"),
            ("/etc/passwd", "absolute"),
            ("../other/repodata/p.xml", "\"..\""),
            ("repodata/../../p.xml", "\"..\""),
            ("http://elsewhere.example/p.xml", "scheme"),
            ("file:///etc/passwd", "scheme"),
            ("HTTPS://x/p.xml", "scheme"),
            ("repodata/%2e%2e/p.xml", "percent"),
            ("repodata\\..\\p.xml", "backslash"),
            ("p.xml?x=1", "queries"),
            ("repodata/", "directory"),
            ("p\n.xml", "control"),
        ];
        for (href, reason) in bad {
            let err = check_href(href).unwrap_err();
            assert!(err.to_string().contains(reason), "{href:?}: {err}");
        }
        // A colon later in a path is not a scheme.
        check_href("repodata/a:b.xml").unwrap();
        assert!(!has_scheme("repodata/a:b.xml"));
        assert!(has_scheme("a:b.xml"));

        let xml = with_primary(&format!(
            r#"<checksum type="sha256">{SHA256}</checksum><location href="../p.xml"/>"#
        ));
        assert!(matches!(parse(&xml), Err(RepoMdError::BadHref { .. })));
        let xml = with_primary(&format!(
            r#"<checksum type="sha256">{SHA256}</checksum><location xml:base="http://x/" href="p.xml"/>"#
        ));
        let err = parse(&xml).unwrap_err();
        assert!(err.to_string().contains("xml:base"), "{err}");
    }
}
