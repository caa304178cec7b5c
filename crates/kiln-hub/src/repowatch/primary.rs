//! `primary.xml`: every package of a repository. Read as a stream of XML
//! events (Fedora's lists some 60 000 packages, hundreds of megabytes of
//! XML), keeping only name, arch, EVR and source RPM of each package.

use std::io::{self, BufRead, BufReader, Read};

use quick_xml::events::BytesStart;
use quick_xml::name::ResolveResult;

use super::xml::{DriveError, Handler, attribute, display_name, drive, in_namespace};

/// The namespace of primary.xml's own elements.
pub const COMMON_NAMESPACE: &str = "http://linux.duke.edu/metadata/common";
/// The namespace of the `rpm:` elements inside `<format>`.
pub const RPM_NAMESPACE: &str = "http://linux.duke.edu/metadata/rpm";

/// Read buffer for decompressed XML: large enough that quick-xml's small
/// reads do not each reach into the decompressor.
const READ_BUFFER: usize = 256 * 1024;

/// One `<package>` of primary.xml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoPackage {
    pub name: String,
    /// `<version epoch>` as written: createrepo_c always writes one, so
    /// mostly `Some(0)`; `None` only when the attribute is absent.
    pub epoch: Option<u32>,
    pub version: String,
    pub release: String,
    pub arch: String,
    /// `<rpm:sourcerpm>` (`foo-1.0-1.src.rpm`); `None` when absent or empty,
    /// as for source packages themselves.
    pub source_rpm: Option<String>,
}

/// How the primary file is stored, from its name as dnf decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// `….xml` → none, `….gz` → gzip, `….zst` → zstd; xz, bzip2, zchunk and
    /// anything else are refused.
    pub fn from_location(location: &str) -> Result<Compression, PrimaryError> {
        let file_name = location.rsplit('/').next().unwrap_or(location);
        let extension = file_name
            .rsplit_once('.')
            .map(|(_, ext)| ext.to_ascii_lowercase())
            .unwrap_or_default();
        let unsupported = |format: &str| PrimaryError::UnsupportedCompression {
            location: location.to_string(),
            format: format.to_string(),
        };
        match extension.as_str() {
            "xml" => Ok(Compression::None),
            "gz" => Ok(Compression::Gzip),
            "zst" | "zstd" => Ok(Compression::Zstd),
            "xz" => Err(unsupported("xz")),
            "bz2" => Err(unsupported("bzip2")),
            "zck" => Err(unsupported("zchunk")),
            "" => Err(unsupported("unknown (no file extension)")),
            other => Err(unsupported(&format!("unknown (.{other})"))),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PrimaryError {
    #[error(
        "{format} compression is not supported (gzip, zstd or plain XML are; \
         run createrepo_c with --general-compress-type=gz or zstd)"
    )]
    UnsupportedCompression {
        /// The file's location (the caller names it in its own message).
        location: String,
        format: String,
    },
    /// Reading or decompressing failed (a corrupt or truncated file).
    #[error("reading primary.xml failed after {position} bytes of XML: {source}")]
    Read {
        position: u64,
        #[source]
        source: io::Error,
    },
    #[error("primary.xml is larger than the limit of {limit} bytes (uncompressed)")]
    TooLarge { limit: u64 },
    #[error("primary.xml is not well-formed XML (at byte {position}): {message}")]
    Xml { position: u64, message: String },
    #[error("primary.xml has no root element (empty or not XML)")]
    NoRoot,
    #[error("not a primary.xml: the root element is <{found}>, not <metadata>")]
    NotPrimary { found: String },
    #[error("primary.xml: <metadata packages={value:?}> is not a number")]
    BadCount { value: String },
    #[error("primary.xml: package at byte {position}{}: {what}", name_suffix(name))]
    Package {
        position: u64,
        name: Option<String>,
        what: String,
    },
    #[error("primary.xml announces {declared} packages but lists {found}")]
    CountMismatch { declared: u64, found: u64 },
}

fn name_suffix(name: &Option<String>) -> String {
    name.as_ref().map(|n| format!(" ({n})")).unwrap_or_default()
}

/// Marks the I/O error [`LimitedReader`] raises, to tell it apart from a
/// decompressor's.
#[derive(Debug)]
struct LimitReached;

impl std::fmt::Display for LimitReached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("size limit reached")
    }
}

impl std::error::Error for LimitReached {}

/// Fails the read once more than `limit` bytes came through: a small
/// compressed file may expand without end.
struct LimitedReader<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for LimitedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // One byte beyond the limit tells "exactly the limit" from "more".
        let want = buf
            .len()
            .min(usize::try_from(self.left.saturating_add(1)).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        let n64 = n as u64;
        if n64 > self.left {
            return Err(io::Error::other(LimitReached));
        }
        self.left -= n64;
        Ok(n)
    }
}

/// Decompresses and parses a stored primary file, failing once the XML
/// exceeds `max_xml_bytes`.
pub fn read_primary<R: Read>(
    file: R,
    compression: Compression,
    max_xml_bytes: u64,
) -> Result<Vec<RepoPackage>, PrimaryError> {
    let result = match compression {
        Compression::None => parse_primary(limited_reader(file, max_xml_bytes)),
        Compression::Gzip => {
            // Multi-member: `cat a.gz b.gz` is valid gzip, and zlib reads it.
            parse_primary(limited_reader(
                flate2::read::MultiGzDecoder::new(file),
                max_xml_bytes,
            ))
        }
        Compression::Zstd => {
            let decoder =
                zstd::stream::read::Decoder::new(file).map_err(|source| PrimaryError::Read {
                    position: 0,
                    source,
                })?;
            parse_primary(limited_reader(decoder, max_xml_bytes))
        }
    };
    match result {
        Err(PrimaryError::Read { source, .. })
            if source
                .get_ref()
                .is_some_and(|e| e.downcast_ref::<LimitReached>().is_some()) =>
        {
            Err(PrimaryError::TooLarge {
                limit: max_xml_bytes,
            })
        }
        other => other,
    }
}

fn limited_reader<R: Read>(inner: R, limit: u64) -> BufReader<LimitedReader<R>> {
    BufReader::with_capacity(READ_BUFFER, LimitedReader { inner, left: limit })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Elem {
    Metadata,
    Package,
    Name,
    Arch,
    Version,
    Format,
    SourceRpm,
    Other,
}

#[derive(Default)]
struct PackageFields {
    position: u64,
    name: Option<String>,
    arch: Option<String>,
    /// epoch, ver, rel attributes as written.
    version: Option<(Option<String>, Option<String>, Option<String>)>,
    source_rpm: Option<String>,
}

struct Parser {
    declared: Option<u64>,
    current: Option<PackageFields>,
    packages: Vec<RepoPackage>,
}

/// Parses uncompressed primary.xml (UTF-8, namespaced as createrepo_c
/// writes it; also accepted without the `xmlns`). Positions in errors are
/// byte offsets into the XML.
pub fn parse_primary<R: BufRead>(xml: R) -> Result<Vec<RepoPackage>, PrimaryError> {
    let mut parser = Parser {
        declared: None,
        current: None,
        packages: Vec::new(),
    };
    drive(xml, &mut parser).map_err(|e| match e {
        DriveError::Handler(e) => e,
        DriveError::Read { position, source } => PrimaryError::Read { position, source },
        DriveError::Xml { position, message } => PrimaryError::Xml { position, message },
        DriveError::Unclosed { position } => PrimaryError::Xml {
            position,
            message: "the document ends inside an element (truncated?)".to_string(),
        },
        DriveError::NoRoot => PrimaryError::NoRoot,
    })?;
    let found = parser.packages.len() as u64;
    if let Some(declared) = parser.declared
        && declared != found
    {
        return Err(PrimaryError::CountMismatch { declared, found });
    }
    Ok(parser.packages)
}

impl Handler for Parser {
    type Elem = Elem;
    type Error = PrimaryError;

    fn wants_text(elem: Elem) -> bool {
        matches!(elem, Elem::Name | Elem::Arch | Elem::SourceRpm)
    }

    fn open(
        &mut self,
        parent: Option<Elem>,
        resolved: &ResolveResult<'_>,
        element: &BytesStart<'_>,
        position: u64,
    ) -> Result<Elem, PrimaryError> {
        let Some(parent) = parent else {
            return self.open_root(resolved, element, position);
        };
        // Most elements (file lists, provides, requires) sit below ones
        // that do not matter; decide those without looking at the name.
        if !matches!(parent, Elem::Metadata | Elem::Package | Elem::Format) {
            return Ok(Elem::Other);
        }
        let local = element.local_name();
        let local = local.as_ref();
        if parent == Elem::Format {
            if local == b"sourcerpm" && in_namespace(resolved, RPM_NAMESPACE.as_bytes()) {
                return Ok(Elem::SourceRpm);
            }
            return Ok(Elem::Other);
        }
        if !in_namespace(resolved, COMMON_NAMESPACE.as_bytes()) {
            return Ok(Elem::Other);
        }
        let elem = match (parent, local) {
            (Elem::Metadata, b"package") => {
                self.current = Some(PackageFields {
                    position,
                    ..PackageFields::default()
                });
                Elem::Package
            }
            (Elem::Package, b"name") => Elem::Name,
            (Elem::Package, b"arch") => Elem::Arch,
            (Elem::Package, b"version") => {
                let attr = |name: &[u8]| {
                    attribute(element, name).map_err(|e| PrimaryError::Xml {
                        position,
                        message: e,
                    })
                };
                let version = (attr(b"epoch")?, attr(b"ver")?, attr(b"rel")?);
                if let Some(current) = &mut self.current {
                    current.version = Some(version);
                }
                Elem::Version
            }
            (Elem::Package, b"format") => Elem::Format,
            _ => Elem::Other,
        };
        Ok(elem)
    }

    fn close(&mut self, elem: Elem, text: &str, _position: u64) -> Result<(), PrimaryError> {
        let Some(current) = &mut self.current else {
            return Ok(());
        };
        match elem {
            Elem::Name => current.name = Some(text.trim().to_string()),
            Elem::Arch => current.arch = Some(text.trim().to_string()),
            Elem::SourceRpm => {
                let source = text.trim();
                current.source_rpm = (!source.is_empty()).then(|| source.to_string());
            }
            Elem::Package => {
                if let Some(fields) = self.current.take() {
                    self.packages.push(finish_package(fields)?);
                }
            }
            Elem::Metadata | Elem::Version | Elem::Format | Elem::Other => {}
        }
        Ok(())
    }
}

impl Parser {
    fn open_root(
        &mut self,
        resolved: &ResolveResult<'_>,
        element: &BytesStart<'_>,
        position: u64,
    ) -> Result<Elem, PrimaryError> {
        if element.local_name().as_ref() != b"metadata"
            || !in_namespace(resolved, COMMON_NAMESPACE.as_bytes())
        {
            return Err(PrimaryError::NotPrimary {
                found: display_name(element.name().as_ref()),
            });
        }
        let count = attribute(element, b"packages")
            .map_err(|message| PrimaryError::Xml { position, message })?;
        if let Some(value) = count {
            let declared = value
                .trim()
                .parse::<u64>()
                .map_err(|_| PrimaryError::BadCount { value })?;
            self.declared = Some(declared);
            // The count is only a hint for the allocation: a lying one must
            // not reserve gigabytes.
            self.packages
                .reserve(usize::try_from(declared.min(200_000)).unwrap_or(0));
        }
        Ok(Elem::Metadata)
    }
}

/// Checks a package's fields: what is accepted here displays and parses back
/// as a NEVRA (`Nevra::parse`), so snapshots and update events stay readable.
fn finish_package(fields: PackageFields) -> Result<RepoPackage, PrimaryError> {
    let fail = |what: String| PrimaryError::Package {
        position: fields.position,
        name: fields.name.clone(),
        what,
    };
    let name = fields
        .name
        .clone()
        .ok_or_else(|| fail("no <name>".to_string()))?;
    if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(fail(format!("name {name:?} is empty or has whitespace")));
    }
    let arch = fields
        .arch
        .clone()
        .ok_or_else(|| fail("no <arch>".to_string()))?;
    if arch.is_empty() || !arch.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
        return Err(fail(format!(
            "arch {arch:?} is not a word of letters, digits and _"
        )));
    }
    let (epoch, ver, rel) = fields
        .version
        .clone()
        .ok_or_else(|| fail("no <version>".to_string()))?;
    let epoch = match epoch {
        None => None,
        Some(e) if !e.is_empty() && e.bytes().all(|c| c.is_ascii_digit()) => Some(
            e.parse::<u32>()
                .map_err(|_| fail(format!("epoch {e:?} is too large")))?,
        ),
        Some(e) => return Err(fail(format!("epoch {e:?} is not a number"))),
    };
    let version = ver.ok_or_else(|| fail("<version> has no ver attribute".to_string()))?;
    let release = rel.ok_or_else(|| fail("<version> has no rel attribute".to_string()))?;
    for (what, value) in [("version", &version), ("release", &release)] {
        if value.is_empty()
            || value.contains(|c: char| c.is_whitespace() || c.is_control() || c == ':' || c == '-')
        {
            return Err(fail(format!(
                "{what} {value:?} is empty or has whitespace, ':' or '-'"
            )));
        }
    }
    Ok(RepoPackage {
        name,
        epoch,
        version,
        release,
        arch,
        source_rpm: fields.source_rpm,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::Write as _;

    use super::*;

    /// Two packages as createrepo_c 0.17 writes them (a binary with
    /// provides, requires and files; a subpackage).
    const CREATEREPO_C: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<metadata xmlns="http://linux.duke.edu/metadata/common" xmlns:rpm="http://linux.duke.edu/metadata/rpm" packages="2">
<package type="rpm">
  <name>kiln-foo</name>
  <arch>noarch</arch>
  <version epoch="0" ver="1.0" rel="1"/>
  <checksum type="sha256" pkgid="YES">e0289341879622e00680af8ed1eb5ee052801b53b25ce46ff4d546457b248237</checksum>
  <summary>Foo &amp; friends</summary>
  <description>A <![CDATA[<name>not this</name>]]> test.</description>
  <packager></packager>
  <url></url>
  <time file="1795444119" build="0"/>
  <size package="6165" installed="14" archive="284"/>
  <location href="kiln-foo-1.0-1.noarch.rpm"/>
  <format>
    <rpm:license>MIT</rpm:license>
    <rpm:vendor></rpm:vendor>
    <rpm:group>Unspecified</rpm:group>
    <rpm:buildhost>kiln-fixtures</rpm:buildhost>
    <rpm:sourcerpm>kiln-foo-1.0-1.src.rpm</rpm:sourcerpm>
    <rpm:header-range start="4504" end="6045"/>
    <rpm:provides>
      <rpm:entry name="kiln-foo" flags="EQ" epoch="0" ver="1.0" rel="1"/>
    </rpm:provides>
    <rpm:requires>
      <rpm:entry name="kiln-foo-libs" flags="EQ" epoch="0" ver="1.0" rel="1"/>
    </rpm:requires>
    <file>/usr/bin/kiln-foo</file>
  </format>
</package>
<package type="rpm">
  <name>kiln-foo-libs</name>
  <arch>x86_64</arch>
  <version epoch="2" ver="1.0~rc1^git3" rel="0.1.fc40"/>
  <format>
    <rpm:sourcerpm>kiln-foo-1.0-1.src.rpm</rpm:sourcerpm>
  </format>
</package>
</metadata>
"#;

    fn parse(xml: &str) -> Result<Vec<RepoPackage>, PrimaryError> {
        parse_primary(xml.as_bytes())
    }

    fn pkg(name: &str, epoch: Option<u32>, ver: &str, rel: &str, arch: &str) -> RepoPackage {
        RepoPackage {
            name: name.to_string(),
            epoch,
            version: ver.to_string(),
            release: rel.to_string(),
            arch: arch.to_string(),
            source_rpm: None,
        }
    }

    fn expected() -> Vec<RepoPackage> {
        vec![
            RepoPackage {
                source_rpm: Some("kiln-foo-1.0-1.src.rpm".to_string()),
                ..pkg("kiln-foo", Some(0), "1.0", "1", "noarch")
            },
            RepoPackage {
                source_rpm: Some("kiln-foo-1.0-1.src.rpm".to_string()),
                ..pkg(
                    "kiln-foo-libs",
                    Some(2),
                    "1.0~rc1^git3",
                    "0.1.fc40",
                    "x86_64",
                )
            },
        ]
    }

    #[test]
    fn reads_createrepo_c_output() {
        assert_eq!(parse(CREATEREPO_C).unwrap(), expected());
    }

    /// A package list with `<package>` bodies, no count.
    fn metadata(body: &str) -> String {
        format!(
            r#"<metadata xmlns="http://linux.duke.edu/metadata/common" xmlns:rpm="http://linux.duke.edu/metadata/rpm">{body}</metadata>"#
        )
    }

    #[test]
    fn namespaces_decide_which_elements_count() {
        // Prefixed common namespace, another prefix for rpm, unbound default.
        let xml = r#"<c:metadata xmlns:c="http://linux.duke.edu/metadata/common" xmlns:r="http://linux.duke.edu/metadata/rpm" packages="1">
          <c:package><c:name>a</c:name><c:arch>noarch</c:arch><c:version ver="1" rel="2"/>
          <c:format><r:sourcerpm>a-1-2.src.rpm</r:sourcerpm></c:format></c:package></c:metadata>"#;
        let got = parse(xml).unwrap();
        assert_eq!(
            got,
            vec![RepoPackage {
                source_rpm: Some("a-1-2.src.rpm".to_string()),
                ..pkg("a", None, "1", "2", "noarch")
            }]
        );
        let bare = "<metadata><package><name>a</name><arch>src</arch><version epoch=\"1\" ver=\"1\" rel=\"2\"/><format><sourcerpm/></format></package></metadata>";
        assert_eq!(
            parse(bare).unwrap(),
            vec![pkg("a", Some(1), "1", "2", "src")]
        );

        // Elements of another namespace are someone's extension: a foreign
        // <x:name> does not rename the package, a foreign sourcerpm is not it.
        let xml = metadata(
            r#"<package xmlns:x="urn:x"><name>a</name><x:name>evil</x:name><arch>noarch</arch>
            <version ver="1" rel="1"/><format><x:sourcerpm>evil.src.rpm</x:sourcerpm></format></package>"#,
        );
        assert_eq!(
            parse(&xml).unwrap(),
            vec![pkg("a", None, "1", "1", "noarch")]
        );
        // <rpm:entry ver=…> and nested <version> elsewhere are not the package's.
        let xml = metadata(
            r#"<package><name>a</name><arch>noarch</arch><version ver="1" rel="1"/>
            <format><rpm:provides><rpm:entry name="a" ver="9" rel="9"/></rpm:provides>
            <rpm:sourcerpm>a-1-1.src.rpm</rpm:sourcerpm></format>
            <changelog><version ver="7" rel="7"/><name>old</name></changelog></package>"#,
        );
        let got = parse(&xml).unwrap();
        assert_eq!((got[0].version.as_str(), got[0].name.as_str()), ("1", "a"));

        let err = parse(r#"<metadata xmlns="urn:other"/>"#).unwrap_err();
        assert!(matches!(err, PrimaryError::NotPrimary { .. }), "{err:?}");
        let err = parse("<repomd/>").unwrap_err();
        assert_eq!(
            err.to_string(),
            "not a primary.xml: the root element is <repomd>, not <metadata>"
        );
    }

    #[test]
    fn text_is_unescaped_and_trimmed() {
        let xml = metadata(
            "<package><name>\n  a&#43;&#x2b;&amp;<![CDATA[b]]>\n</name><arch> noarch </arch><version ver=\"1&#46;0\" rel=\"1\"/>\
             <format><rpm:sourcerpm> </rpm:sourcerpm></format></package>",
        );
        assert_eq!(
            parse(&xml).unwrap(),
            vec![pkg("a++&b", None, "1.0", "1", "noarch")]
        );
    }

    #[test]
    fn checks_the_declared_count() {
        let xml = CREATEREPO_C.replace("packages=\"2\"", "packages=\"3\"");
        let err = parse(&xml).unwrap_err();
        assert!(
            matches!(
                err,
                PrimaryError::CountMismatch {
                    declared: 3,
                    found: 2
                }
            ),
            "{err:?}"
        );
        let xml = CREATEREPO_C.replace("packages=\"2\"", "packages=\"two\"");
        assert!(matches!(parse(&xml), Err(PrimaryError::BadCount { .. })));
        assert_eq!(
            parse("<metadata packages=\"0\"></metadata>").unwrap(),
            vec![]
        );
        assert_eq!(parse("<metadata/>").unwrap(), vec![]);
    }

    #[test]
    fn refuses_incomplete_or_odd_packages() {
        let cases: &[(&str, &str)] = &[
            ("<arch>noarch</arch><version ver='1' rel='1'/>", "no <name>"),
            ("<name>a</name><version ver='1' rel='1'/>", "(a): no <arch>"),
            ("<name>a</name><arch>noarch</arch>", "no <version>"),
            (
                "<name>a</name><arch>noarch</arch><version rel='1'/>",
                "no ver attribute",
            ),
            (
                "<name>a</name><arch>noarch</arch><version ver='1'/>",
                "no rel attribute",
            ),
            (
                "<name>a</name><arch>noarch</arch><version epoch='x' ver='1' rel='1'/>",
                "epoch \"x\" is not a number",
            ),
            (
                "<name>a</name><arch>noarch</arch><version epoch='' ver='1' rel='1'/>",
                "epoch \"\"",
            ),
            (
                "<name>a</name><arch>noarch</arch><version epoch='99999999999' ver='1' rel='1'/>",
                "too large",
            ),
            (
                "<name>a</name><arch>noarch</arch><version ver='1-2' rel='1'/>",
                "version \"1-2\"",
            ),
            (
                "<name>a</name><arch>noarch</arch><version ver='1:2' rel='1'/>",
                "version \"1:2\"",
            ),
            (
                "<name>a</name><arch>noarch</arch><version ver='1' rel=''/>",
                "release \"\"",
            ),
            (
                "<name>a b</name><arch>noarch</arch><version ver='1' rel='1'/>",
                "whitespace",
            ),
            (
                "<name/><arch>noarch</arch><version ver='1' rel='1'/>",
                "name \"\"",
            ),
            (
                "<name>a</name><arch>x86.64</arch><version ver='1' rel='1'/>",
                "arch \"x86.64\"",
            ),
        ];
        for (body, message) in cases {
            let xml = metadata(&format!("<package>{body}</package>"));
            let err = parse(&xml).unwrap_err();
            assert!(
                matches!(err, PrimaryError::Package { .. }),
                "{body}: {err:?}"
            );
            let text = err.to_string();
            assert!(text.contains(message), "{body}: {text}");
            assert!(text.contains("at byte "), "{body}: {text}");
        }
    }

    #[test]
    fn bad_xml_is_reported_with_its_position() {
        let xml = CREATEREPO_C.replace(
            "</arch>\n  <version epoch=\"2\"",
            "</arc>\n  <version epoch=\"2\"",
        );
        let err = parse(&xml).unwrap_err();
        let PrimaryError::Xml { position, message } = &err else {
            panic!("{err:?}")
        };
        let at = CREATEREPO_C.find("x86_64</arch>").unwrap() as u64;
        assert!((at..at + 20).contains(position), "{err}");
        assert!(message.contains("arc"), "{err}");

        // Cut between two packages: well-formed so far, but unfinished.
        let cut = CREATEREPO_C.find("</package>").unwrap() + "</package>".len();
        let err = parse(&CREATEREPO_C[..cut]).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        // Cut inside a tag.
        let err = parse(&CREATEREPO_C[..CREATEREPO_C.len() / 2]).unwrap_err();
        assert!(matches!(err, PrimaryError::Xml { .. }), "{err:?}");

        assert!(matches!(parse(""), Err(PrimaryError::NoRoot)));
        assert!(matches!(parse("\u{feff}  "), Err(PrimaryError::NoRoot)));
        let err = parse("<metadata/><metadata/>").unwrap_err();
        assert!(err.to_string().contains("second root"), "{err}");
        let err = parse(&metadata("<package><name>&nbsp;</name></package>")).unwrap_err();
        assert!(err.to_string().contains("&nbsp;"), "{err}");
        let err = parse("<metadata packages=\"1\"><package").unwrap_err();
        assert!(matches!(err, PrimaryError::Xml { .. }), "{err:?}");
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn reads_gzip_zstd_and_plain_files() {
        let xml = CREATEREPO_C.as_bytes();
        let zst = zstd::stream::encode_all(xml, 3).unwrap();
        for (data, compression) in [
            (xml.to_vec(), Compression::None),
            (gzip(xml), Compression::Gzip),
            (zst, Compression::Zstd),
        ] {
            let got = read_primary(&data[..], compression, 1 << 20).unwrap();
            assert_eq!(got, expected(), "{compression:?}");
        }
        // Two gzip members, as `cat a.gz b.gz` makes.
        let (head, tail) = xml.split_at(300);
        let mut two = gzip(head);
        two.extend(gzip(tail));
        assert_eq!(
            read_primary(&two[..], Compression::Gzip, 1 << 20).unwrap(),
            expected()
        );
    }

    #[test]
    fn corrupt_compressed_data_is_a_read_error() {
        let mut data = gzip(CREATEREPO_C.as_bytes());
        let middle = data.len() / 2;
        data.truncate(middle);
        let err = read_primary(&data[..], Compression::Gzip, 1 << 20).unwrap_err();
        assert!(matches!(err, PrimaryError::Read { .. }), "{err:?}");
        let err = read_primary(CREATEREPO_C.as_bytes(), Compression::Gzip, 1 << 20).unwrap_err();
        assert!(matches!(err, PrimaryError::Read { .. }), "{err:?}");
        let err = read_primary(CREATEREPO_C.as_bytes(), Compression::Zstd, 1 << 20).unwrap_err();
        assert!(matches!(err, PrimaryError::Read { .. }), "{err:?}");
    }

    #[test]
    fn decompressed_size_is_limited() {
        let xml = CREATEREPO_C.as_bytes();
        let exact = xml.len() as u64;
        read_primary(&gzip(xml)[..], Compression::Gzip, exact).unwrap();
        let err = read_primary(&gzip(xml)[..], Compression::Gzip, exact - 1).unwrap_err();
        assert!(
            matches!(err, PrimaryError::TooLarge { limit } if limit == exact - 1),
            "{err:?}"
        );
        let err = read_primary(xml, Compression::None, 100).unwrap_err();
        assert!(
            matches!(err, PrimaryError::TooLarge { limit: 100 }),
            "{err:?}"
        );
    }

    #[test]
    fn compression_comes_from_the_file_name() {
        let cases: &[(&str, Option<Compression>)] = &[
            ("repodata/abc-primary.xml.gz", Some(Compression::Gzip)),
            ("repodata/abc-primary.xml.zst", Some(Compression::Zstd)),
            ("repodata/abc-primary.xml.GZ", Some(Compression::Gzip)),
            ("repodata/primary.xml", Some(Compression::None)),
            ("repodata/abc-primary.xml.xz", None),
            ("repodata/abc-primary.xml.bz2", None),
            ("repodata/abc-primary.xml.zck", None),
            ("repodata/primary", None),
            ("repo.d/primary", None),
        ];
        for (location, want) in cases {
            let got = Compression::from_location(location);
            match want {
                Some(want) => assert_eq!(got.unwrap(), *want, "{location}"),
                None => assert!(
                    matches!(got, Err(PrimaryError::UnsupportedCompression { .. })),
                    "{location}: {got:?}"
                ),
            }
        }
        let err = Compression::from_location("repodata/p.xml.lz4").unwrap_err();
        assert!(
            err.to_string().starts_with("unknown (.lz4) compression"),
            "{err}"
        );
        let err = Compression::from_location("repodata/p.xml.xz").unwrap_err();
        assert!(
            err.to_string().contains("xz compression is not supported"),
            "{err}"
        );
    }

    /// A Fedora-sized list must parse in well under the poll interval; this
    /// also shows that nothing in the parser is quadratic.
    #[test]
    fn parses_a_large_list_quickly() {
        let mut xml = String::from(
            r#"<metadata xmlns="http://linux.duke.edu/metadata/common" xmlns:rpm="http://linux.duke.edu/metadata/rpm" packages="60000">"#,
        );
        for i in 0..60_000 {
            xml.push_str(&format!(
                r#"<package type="rpm"><name>pkg{i}</name><arch>x86_64</arch><version epoch="0" ver="1.{i}" rel="1.fc40"/>
<summary>Package {i}</summary><description>Some text about package {i}.</description>
<format><rpm:license>MIT</rpm:license><rpm:sourcerpm>src{i}-1.{i}-1.fc40.src.rpm</rpm:sourcerpm>
<rpm:provides><rpm:entry name="pkg{i}" flags="EQ" epoch="0" ver="1.{i}" rel="1.fc40"/><rpm:entry name="lib{i}.so()(64bit)"/></rpm:provides>
<rpm:requires><rpm:entry name="libc.so.6()(64bit)"/><rpm:entry name="glibc" flags="GE" epoch="0" ver="2.39"/></rpm:requires>
<file>/usr/bin/pkg{i}</file></format></package>
"#
            ));
        }
        xml.push_str("</metadata>");
        let data = zstd::stream::encode_all(xml.as_bytes(), 3).unwrap();
        let started = std::time::Instant::now();
        let got = read_primary(&data[..], Compression::Zstd, u64::MAX).unwrap();
        let took = started.elapsed();
        assert_eq!(got.len(), 60_000);
        assert_eq!(got[59_999].version, "1.59999");
        // Generous for an unoptimised build on a busy machine.
        assert!(took.as_secs() < 20, "{took:?} for {} bytes", xml.len());
    }
}
