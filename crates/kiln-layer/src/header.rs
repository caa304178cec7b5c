//! Tar header encoding: POSIX ustar blocks, with a PAX extended header in
//! front when a value does not fit (long or non-ASCII names, big numbers)
//! or xattrs are carried. The layout follows Go's `archive/tar` in PAX
//! format, which BuildKit, containerd and buildah all use: octal numeric
//! fields, empty user/group names, no atime/ctime, records sorted by key.

use crate::convert::{EntryKind, TarEntry};
use crate::error::{LayerError, Result};

pub const BLOCK: usize = 512;

const NAME_LEN: usize = 100;
/// Largest value of a 7-digit octal field (mode, uid, gid, devmajor, devminor).
const MAX_OCTAL_8: u64 = 0o7777777;
/// Largest value of an 11-digit octal field (size, mtime).
const MAX_OCTAL_12: u64 = 0o77777777777;

/// The header block(s) of `entry`: a PAX header (with its data) when
/// needed, then the ustar header. Content and padding are the caller's.
pub fn encode(entry: &TarEntry) -> Result<Vec<u8>> {
    let path_str = String::from_utf8_lossy(&entry.path);
    for (field, value) in [("devmajor", entry.dev_major), ("devminor", entry.dev_minor)] {
        if u64::from(value) > MAX_OCTAL_8 {
            return Err(LayerError::FieldTooLarge {
                path: path_str.into_owned(),
                field,
                value: value.into(),
            });
        }
    }
    let mtime = u64::try_from(entry.mtime).unwrap_or(0);

    let mut records: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    if !fits_name(&entry.path) {
        records.push((b"path".to_vec(), entry.path.clone()));
    }
    if !fits_name(&entry.link) {
        records.push((b"linkpath".to_vec(), entry.link.clone()));
    }
    for (key, value) in [("uid", entry.uid), ("gid", entry.gid)] {
        if value > MAX_OCTAL_8 {
            records.push((key.as_bytes().to_vec(), value.to_string().into_bytes()));
        }
    }
    if entry.size > MAX_OCTAL_12 {
        records.push((b"size".to_vec(), entry.size.to_string().into_bytes()));
    }
    if mtime > MAX_OCTAL_12 {
        records.push((b"mtime".to_vec(), mtime.to_string().into_bytes()));
    }
    for (name, value) in &entry.xattrs {
        records.push(([b"SCHILY.xattr.".as_slice(), name].concat(), value.clone()));
    }
    records.sort();

    let mut out = Vec::with_capacity(BLOCK * 3);
    if !records.is_empty() {
        let data = pax_data(&records);
        let pax = ustar_block(&UstarFields {
            name: &pax_header_name(&entry.path),
            mode: 0,
            uid: 0,
            gid: 0,
            size: data.len() as u64,
            mtime: 0,
            typeflag: b'x',
            link: b"",
            dev_major: 0,
            dev_minor: 0,
        });
        out.extend_from_slice(&pax);
        out.extend_from_slice(&data);
        out.resize(out.len().next_multiple_of(BLOCK), 0);
    }
    out.extend_from_slice(&ustar_block(&UstarFields {
        name: &entry.path,
        mode: entry.mode & 0o7777,
        uid: entry.uid.min(MAX_OCTAL_8),
        gid: entry.gid.min(MAX_OCTAL_8),
        size: if entry.kind == EntryKind::Regular {
            entry.size.min(MAX_OCTAL_12)
        } else {
            0
        },
        mtime: mtime.min(MAX_OCTAL_12),
        typeflag: entry.kind.typeflag(),
        link: &entry.link,
        dev_major: entry.dev_major,
        dev_minor: entry.dev_minor,
    }));
    Ok(out)
}

/// A name fits the ustar name field as is: short and ASCII (Go writes a
/// PAX record for anything else rather than splitting into prefix/name).
fn fits_name(name: &[u8]) -> bool {
    name.len() <= NAME_LEN && name.is_ascii()
}

/// Go's name for the extended header: `dir/PaxHeaders.0/base`, ASCII only,
/// cut to the field.
fn pax_header_name(path: &[u8]) -> Vec<u8> {
    let trimmed = path.strip_suffix(b"/").unwrap_or(path);
    let (dir, base) = match trimmed.iter().rposition(|&b| b == b'/') {
        Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
        None => (&b"."[..], trimmed),
    };
    let mut name = Vec::new();
    if dir != b"." {
        name.extend_from_slice(dir);
        name.push(b'/');
    }
    name.extend_from_slice(b"PaxHeaders.0/");
    name.extend_from_slice(base);
    name.retain(|b| b.is_ascii() && *b != 0);
    name.truncate(NAME_LEN);
    name
}

/// PAX records `"<len> <key>=<value>\n"`, where `<len>` counts the whole
/// record including its own digits.
fn pax_data(records: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in records {
        let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
        let mut len = rest + 1;
        while len != rest + len.to_string().len() {
            len = rest + len.to_string().len();
        }
        out.extend_from_slice(len.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(key);
        out.push(b'=');
        out.extend_from_slice(value);
        out.push(b'\n');
    }
    out
}

struct UstarFields<'a> {
    name: &'a [u8],
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: u64,
    typeflag: u8,
    link: &'a [u8],
    dev_major: u32,
    dev_minor: u32,
}

fn ustar_block(f: &UstarFields<'_>) -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    put_str(&mut b[0..100], f.name);
    put_octal(&mut b[100..108], f.mode.into());
    put_octal(&mut b[108..116], f.uid);
    put_octal(&mut b[116..124], f.gid);
    put_octal(&mut b[124..136], f.size);
    put_octal(&mut b[136..148], f.mtime);
    b[156] = f.typeflag;
    put_str(&mut b[157..257], f.link);
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    // uname, gname (265..329) stay empty: numeric ids only.
    put_octal(&mut b[329..337], f.dev_major.into());
    put_octal(&mut b[337..345], f.dev_minor.into());
    // The checksum is computed with its own field as spaces.
    b[148..156].fill(b' ');
    let sum: u64 = b.iter().map(|&x| u64::from(x)).sum();
    put_octal(&mut b[148..155], sum);
    b[155] = b' ';
    b
}

/// Copies at most the field's length; longer values have a PAX record.
fn put_str(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

/// Zero-padded octal digits filling the field but its last byte, then NUL.
fn put_octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let s = format!("{value:0digits$o}");
    let s = s.as_bytes();
    field[..digits].copy_from_slice(&s[s.len() - digits..]);
    field[digits] = 0;
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io::Read;

    use super::*;

    fn entry(path: &str, kind: EntryKind) -> TarEntry {
        TarEntry {
            path: path.as_bytes().to_vec(),
            kind,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 1_700_000_000,
            size: 0,
            link: Vec::new(),
            dev_major: 0,
            dev_minor: 0,
            xattrs: BTreeMap::new(),
            content: None,
        }
    }

    /// Parses `bytes` (headers of size-0 entries) with the `tar` crate and
    /// returns (path, link, pax records) per entry.
    type Parsed = (Vec<u8>, Option<Vec<u8>>, Vec<(String, Vec<u8>)>);

    fn parse(bytes: &[u8]) -> Vec<Parsed> {
        let mut data = bytes.to_vec();
        data.extend_from_slice(&[0u8; 1024]);
        let mut ar = tar::Archive::new(data.as_slice());
        let mut out = Vec::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let pax = match e.pax_extensions().unwrap() {
                Some(exts) => exts
                    .map(|x| {
                        let x = x.unwrap();
                        (x.key().unwrap().to_string(), x.value_bytes().to_vec())
                    })
                    .collect(),
                None => Vec::new(),
            };
            let path = e.path_bytes().into_owned();
            let link = e.link_name_bytes().map(|l| l.into_owned());
            let mut rest = Vec::new();
            e.read_to_end(&mut rest).unwrap();
            out.push((path, link, pax));
        }
        out
    }

    #[test]
    fn short_ascii_entry_is_one_ustar_block_like_go_writes_it() {
        let h = encode(&entry("etc/", EntryKind::Dir)).unwrap();
        assert_eq!(h.len(), BLOCK);
        assert_eq!(&h[0..5], b"etc/\0");
        assert_eq!(&h[100..108], b"0000755\0");
        assert_eq!(&h[108..116], b"0000000\0");
        assert_eq!(&h[136..148], b"14524770400\0");
        assert_eq!(h[156], b'5');
        assert_eq!(&h[257..265], b"ustar\x0000");
        assert_eq!(&h[265..329], &[0u8; 64][..]);
        let mut spaced = h.clone();
        spaced[148..156].fill(b' ');
        let sum: u32 = spaced.iter().map(|&b| u32::from(b)).sum();
        assert_eq!(tar::Header::from_byte_slice(&h).cksum().unwrap(), sum);
        assert_eq!(&h[154..156], b"\0 ");
        let parsed = tar::Header::from_byte_slice(&h);
        assert_eq!(parsed.path_bytes().as_ref(), b"etc/");
        assert_eq!(parsed.mode().unwrap(), 0o755);
        assert_eq!(parsed.mtime().unwrap(), 1_700_000_000);
    }

    #[test]
    fn long_and_non_ascii_names_go_to_pax_records() {
        let long = format!("{}/file", "d".repeat(150));
        let h = encode(&entry(&long, EntryKind::Regular)).unwrap();
        let parsed = parse(&h);
        assert_eq!(parsed[0].0, long.as_bytes());
        assert_eq!(
            parsed[0].2,
            vec![("path".to_string(), long.clone().into_bytes())]
        );

        let mut link = entry("usr/bin/x", EntryKind::Symlink);
        link.link = "tå/rget".as_bytes().to_vec();
        let parsed = parse(&encode(&link).unwrap());
        assert_eq!(parsed[0].1.as_deref(), Some("tå/rget".as_bytes()));
        assert_eq!(parsed[0].2[0].0, "linkpath");
    }

    #[test]
    fn xattrs_become_sorted_schily_records() {
        let mut e = entry("bin/ping", EntryKind::Regular);
        e.xattrs.insert(b"user.z".to_vec(), b"last".to_vec());
        e.xattrs.insert(
            b"security.capability".to_vec(),
            vec![1, 0, 0, 2, 0, 0x20, 0, 0],
        );
        let parsed = parse(&encode(&e).unwrap());
        let keys: Vec<_> = parsed[0].2.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            ["SCHILY.xattr.security.capability", "SCHILY.xattr.user.z"]
        );
        assert_eq!(parsed[0].2[0].1, vec![1, 0, 0, 2, 0, 0x20, 0, 0]);
        assert_eq!(parsed[0].0, b"bin/ping");
    }

    #[test]
    fn pax_record_length_counts_its_own_digits() {
        // 9 + digits: "NN path=<x>\n" crosses from 1 to 2 and 2 to 3 digits.
        for n in [1, 5, 90, 95, 96, 97, 1000] {
            let recs = vec![(b"path".to_vec(), vec![b'a'; n])];
            let data = pax_data(&recs);
            let (len, _) = data.split_at(data.iter().position(|&b| b == b' ').unwrap());
            let len: usize = std::str::from_utf8(len).unwrap().parse().unwrap();
            assert_eq!(len, data.len(), "value length {n}");
        }
    }

    #[test]
    fn big_ids_use_pax_and_huge_device_numbers_are_refused() {
        let mut e = entry("f", EntryKind::Regular);
        e.uid = 100_000_000;
        let parsed = parse(&encode(&e).unwrap());
        assert_eq!(
            parsed[0].2,
            vec![("uid".to_string(), b"100000000".to_vec())]
        );
        let mut d = entry("dev/x", EntryKind::CharDevice);
        d.dev_major = u32::MAX;
        assert!(matches!(
            encode(&d),
            Err(LayerError::FieldTooLarge {
                field: "devmajor",
                ..
            })
        ));
    }

    #[test]
    fn pax_header_names_follow_go() {
        assert_eq!(pax_header_name(b"a/b/c"), b"a/b/PaxHeaders.0/c");
        assert_eq!(pax_header_name(b"dir/"), b"PaxHeaders.0/dir");
    }
}
