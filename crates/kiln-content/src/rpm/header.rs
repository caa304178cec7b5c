//! RPM header blobs as the rpm database stores them.
//!
//! A database record is the header without the 8-byte magic a package file
//! has: `il` (index entries) and `dl` (data bytes), both big-endian u32, then
//! `il` entries of (tag, type, offset, count), then the data store. Only
//! what the package list needs is decoded; the `rpm` crate parses whole
//! package files but not a bare database header, and its signature support
//! would pull in a full OpenPGP implementation for one key id.

/// Tag numbers from rpm's `include/rpm/rpmtag.h`.
pub(crate) mod tag {
    pub const SIGPGP: u32 = 259;
    pub const SIGGPG: u32 = 262;
    pub const DSAHEADER: u32 = 267;
    pub const RSAHEADER: u32 = 268;
    /// rpm 6: every OpenPGP signature, base64, one per string.
    pub const OPENPGP: u32 = 278;
    pub const NAME: u32 = 1000;
    pub const VERSION: u32 = 1001;
    pub const RELEASE: u32 = 1002;
    pub const EPOCH: u32 = 1003;
    pub const LICENSE: u32 = 1014;
    pub const ARCH: u32 = 1022;
    pub const SOURCERPM: u32 = 1044;
}

const TYPE_INT32: u32 = 4;
const TYPE_STRING: u32 = 6;
const TYPE_BIN: u32 = 7;
const TYPE_STRING_ARRAY: u32 = 8;
const TYPE_I18NSTRING: u32 = 9;

/// The magic a header in a package file starts with (a database record
/// does not carry it, but accepting it costs nothing).
const MAGIC: [u8; 8] = [0x8e, 0xad, 0xe8, 0x01, 0, 0, 0, 0];

/// rpm's own sanity limits (`hdrchkTags`, `hdrchkData`).
const MAX_ENTRIES: u32 = 0x00ff_ffff;
const MAX_DATA: u32 = 256 * 1024 * 1024;

#[derive(Debug)]
pub(crate) struct Header<'a> {
    index: &'a [u8],
    data: &'a [u8],
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    tag: u32,
    kind: u32,
    offset: usize,
    count: u32,
}

impl<'a> Header<'a> {
    pub fn parse(blob: &'a [u8]) -> Result<Self, String> {
        let blob = blob.strip_prefix(&MAGIC[..]).unwrap_or(blob);
        let (Some(il), Some(dl)) = (be32(blob, 0), be32(blob, 4)) else {
            return Err(format!("{} bytes, too short for a header", blob.len()));
        };
        if il == 0 || il > MAX_ENTRIES {
            return Err(format!("{il} index entries"));
        }
        if dl > MAX_DATA {
            return Err(format!("{dl} bytes of data"));
        }
        let index_len = il as usize * 16;
        let need = 8 + index_len + dl as usize;
        if blob.len() < need {
            return Err(format!(
                "{} bytes, but its index ({il} entries) and data ({dl} bytes) need {need}",
                blob.len()
            ));
        }
        Ok(Self {
            index: &blob[8..8 + index_len],
            data: &blob[8 + index_len..need],
        })
    }

    /// The entry for `tag`. When a tag repeats, rpm lets the entries added
    /// after installation (after the immutable region) win: the last one.
    fn entry(&self, tag: u32) -> Option<Entry> {
        self.index
            .chunks_exact(16)
            .filter_map(|e| {
                Some(Entry {
                    tag: be32(e, 0)?,
                    kind: be32(e, 4)?,
                    offset: be32(e, 8)? as usize,
                    count: be32(e, 12)?,
                })
            })
            .rev()
            .find(|e| e.tag == tag)
    }

    /// A string tag (STRING, or the first of an I18NSTRING / STRING_ARRAY).
    pub fn string(&self, tag: u32) -> Result<Option<&'a str>, String> {
        let Some(e) = self.entry(tag) else {
            return Ok(None);
        };
        match e.kind {
            TYPE_STRING | TYPE_I18NSTRING | TYPE_STRING_ARRAY if e.count >= 1 => {
                self.str_at(e.offset, tag).map(Some)
            }
            kind => Err(format!(
                "tag {tag} has type {kind}, count {}: not a string",
                e.count
            )),
        }
    }

    /// Every string of a STRING_ARRAY tag.
    pub fn strings(&self, tag: u32) -> Result<Vec<&'a str>, String> {
        let Some(e) = self.entry(tag) else {
            return Ok(Vec::new());
        };
        if e.kind != TYPE_STRING_ARRAY && e.kind != TYPE_STRING {
            return Err(format!("tag {tag} has type {}: not a string array", e.kind));
        }
        let mut out = Vec::new();
        let mut at = e.offset;
        for _ in 0..e.count {
            let s = self.str_at(at, tag)?;
            at += s.len() + 1;
            out.push(s);
        }
        Ok(out)
    }

    pub fn int32(&self, tag: u32) -> Result<Option<u32>, String> {
        let Some(e) = self.entry(tag) else {
            return Ok(None);
        };
        if e.kind != TYPE_INT32 || e.count < 1 {
            return Err(format!(
                "tag {tag} has type {}, count {}: not an int32",
                e.kind, e.count
            ));
        }
        be32(self.data, e.offset)
            .map(Some)
            .ok_or_else(|| format!("tag {tag}: offset {} past the data", e.offset))
    }

    pub fn binary(&self, tag: u32) -> Result<Option<&'a [u8]>, String> {
        let Some(e) = self.entry(tag) else {
            return Ok(None);
        };
        if e.kind != TYPE_BIN {
            return Err(format!("tag {tag} has type {}: not binary", e.kind));
        }
        self.data
            .get(e.offset..)
            .and_then(|d| d.get(..e.count as usize))
            .map(Some)
            .ok_or_else(|| format!("tag {tag}: {} bytes at {} past the data", e.count, e.offset))
    }

    fn str_at(&self, offset: usize, tag: u32) -> Result<&'a str, String> {
        let rest = self
            .data
            .get(offset..)
            .ok_or_else(|| format!("tag {tag}: offset {offset} past the data"))?;
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| format!("tag {tag}: unterminated string"))?;
        std::str::from_utf8(&rest[..end]).map_err(|_| format!("tag {tag}: not UTF-8"))
    }
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let bytes = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// Builds header blobs for tests: (tag, type, count, data) entries.
#[cfg(test)]
pub(crate) fn build(entries: &[(u32, u32, u32, Vec<u8>)]) -> Vec<u8> {
    let mut index = Vec::new();
    let mut data: Vec<u8> = Vec::new();
    for (tag, kind, count, bytes) in entries {
        if *kind == TYPE_INT32 {
            while !data.len().is_multiple_of(4) {
                data.push(0);
            }
        }
        index.extend_from_slice(&tag.to_be_bytes());
        index.extend_from_slice(&kind.to_be_bytes());
        index.extend_from_slice(&(data.len() as u32).to_be_bytes());
        index.extend_from_slice(&count.to_be_bytes());
        data.extend_from_slice(bytes);
    }
    let mut blob = Vec::new();
    blob.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    blob.extend_from_slice(&(data.len() as u32).to_be_bytes());
    blob.extend_from_slice(&index);
    blob.extend_from_slice(&data);
    blob
}

#[cfg(test)]
pub(crate) fn s(v: &str) -> (u32, Vec<u8>) {
    let mut b = v.as_bytes().to_vec();
    b.push(0);
    (TYPE_STRING, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(tag: u32, (kind, bytes): (u32, Vec<u8>)) -> (u32, u32, u32, Vec<u8>) {
        (tag, kind, 1, bytes)
    }

    #[test]
    fn reads_strings_ints_and_binary() {
        let blob = build(&[
            entry(tag::NAME, s("bash")),
            entry(tag::EPOCH, (TYPE_INT32, 7u32.to_be_bytes().to_vec())),
            (tag::RSAHEADER, TYPE_BIN, 3, vec![1, 2, 3]),
            (tag::OPENPGP, TYPE_STRING_ARRAY, 2, b"YQ==\0Yg==\0".to_vec()),
            entry(tag::LICENSE, (TYPE_I18NSTRING, b"GPLv3+\0".to_vec())),
        ]);
        let h = Header::parse(&blob).unwrap();
        assert_eq!(h.string(tag::NAME).unwrap(), Some("bash"));
        assert_eq!(h.string(tag::LICENSE).unwrap(), Some("GPLv3+"));
        assert_eq!(h.string(tag::ARCH).unwrap(), None);
        assert_eq!(h.int32(tag::EPOCH).unwrap(), Some(7));
        assert_eq!(h.binary(tag::RSAHEADER).unwrap(), Some(&[1u8, 2, 3][..]));
        assert_eq!(h.strings(tag::OPENPGP).unwrap(), ["YQ==", "Yg=="]);
        assert!(h.int32(tag::NAME).is_err());
        assert!(h.string(tag::EPOCH).is_err());

        // A package file's header, with its magic, reads the same.
        let mut with_magic = MAGIC.to_vec();
        with_magic.extend_from_slice(&blob);
        let h = Header::parse(&with_magic).unwrap();
        assert_eq!(h.string(tag::NAME).unwrap(), Some("bash"));
    }

    #[test]
    fn later_entries_win() {
        let blob = build(&[entry(tag::ARCH, s("i686")), entry(tag::ARCH, s("x86_64"))]);
        let h = Header::parse(&blob).unwrap();
        assert_eq!(h.string(tag::ARCH).unwrap(), Some("x86_64"));
    }

    #[test]
    fn rejects_truncated_and_hostile_blobs() {
        assert!(Header::parse(&[0, 0, 0]).is_err());
        assert!(Header::parse(&[0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        // Claims more data than it has.
        let mut blob = build(&[entry(tag::NAME, s("x"))]);
        blob.truncate(blob.len() - 1);
        assert!(Header::parse(&blob).is_err());
        // Huge counts.
        let blob = [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];
        assert!(Header::parse(&blob).is_err());

        // Offsets past the data, unterminated strings, bad UTF-8.
        let mut blob = build(&[(tag::NAME, TYPE_STRING, 1, b"ab".to_vec())]);
        let h = Header::parse(&blob).unwrap();
        assert!(h.string(tag::NAME).is_err());
        blob[8 + 8..8 + 12].copy_from_slice(&100u32.to_be_bytes());
        let h = Header::parse(&blob).unwrap();
        assert!(h.string(tag::NAME).is_err());
        let blob = build(&[(tag::NAME, TYPE_STRING, 1, vec![0xff, 0])]);
        assert!(Header::parse(&blob).unwrap().string(tag::NAME).is_err());
        let blob = build(&[(tag::RSAHEADER, TYPE_BIN, 9, vec![1])]);
        assert!(
            Header::parse(&blob)
                .unwrap()
                .binary(tag::RSAHEADER)
                .is_err()
        );
        let blob = build(&[(tag::EPOCH, TYPE_INT32, 1, vec![1])]);
        assert!(Header::parse(&blob).unwrap().int32(tag::EPOCH).is_err());
        let blob = build(&[(tag::OPENPGP, TYPE_STRING_ARRAY, 3, b"a\0b\0".to_vec())]);
        assert!(Header::parse(&blob).unwrap().strings(tag::OPENPGP).is_err());
    }
}
