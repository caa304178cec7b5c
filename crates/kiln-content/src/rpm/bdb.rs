//! Read-only reader for rpm's Berkeley DB `Packages` file (rpm before 4.16,
//! RHEL/CentOS ≤ 8, Fedora ≤ 32).
//!
//! The file is a Berkeley DB hash database: page 0 is the hash metadata
//! page, then hash pages holding (key, value) item pairs, where the key is
//! the header instance number and the value the header blob, stored on a
//! chain of overflow pages when it does not fit the page (headers nearly
//! never do). Like go-rpmdb and syft, every hash page is visited in file
//! order instead of following the bucket structure: the records are the
//! same, and a damaged bucket chain cannot hide or loop over them.
//!
//! Layouts from Berkeley DB's `dbinc/db_page.h`. Pages are read one at a
//! time with positioned reads; a hostile file can claim anything, so every
//! page number, offset and length is checked against the file.

use std::fs::File;
use std::os::unix::fs::FileExt;

const HASH_MAGIC: u32 = 0x0006_1561;
const PAGE_HEADER: usize = 26;

const P_HASH_UNSORTED: u8 = 2;
const P_OVERFLOW: u8 = 7;
const P_HASHMETA: u8 = 8;
const P_HASH: u8 = 13;

const H_KEYDATA: u8 = 1;
const H_OFFPAGE: u8 = 3;

/// rpm refuses headers larger than this (`hdrchkData`).
const MAX_VALUE: usize = 256 * 1024 * 1024;

/// One record: the key bytes (the instance number) and the header blob.
pub(crate) struct Record {
    pub key: u32,
    pub value: Vec<u8>,
}

struct Meta {
    swapped: bool,
    page_size: usize,
    last_pgno: u32,
}

/// Every (instance, header blob) record of the database, in page order.
pub(crate) fn records(file: &File) -> Result<Vec<Record>, String> {
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let meta = read_meta(file, len)?;
    let mut out = Vec::new();
    let mut page = vec![0u8; meta.page_size];
    for pgno in 1..=meta.last_pgno {
        read_page(file, &meta, pgno, &mut page)?;
        if page[25] != P_HASH && page[25] != P_HASH_UNSORTED {
            continue;
        }
        let entries = u16_at(&page, 20, meta.swapped) as usize;
        if !entries.is_multiple_of(2) {
            return Err(format!("hash page {pgno}: odd number of items ({entries})"));
        }
        for pair in 0..entries / 2 {
            let key = item(&page, 2 * pair, &meta, pgno)?;
            let value = item(&page, 2 * pair + 1, &meta, pgno)?;
            let key = match key {
                Item::Inline(k) if k.len() == 4 => {
                    // Instance numbers are in the writer's byte order, the
                    // same as the database's own.
                    let k = u32::from_ne_bytes([k[0], k[1], k[2], k[3]]);
                    if meta.swapped { k.swap_bytes() } else { k }
                }
                _ => {
                    return Err(format!(
                        "hash page {pgno}: item {} is not a 4-byte key",
                        2 * pair
                    ));
                }
            };
            // Record 0 holds rpm's next-instance counter, not a header.
            if key == 0 {
                continue;
            }
            let value = match value {
                Item::Inline(v) => v.to_vec(),
                Item::OffPage { pgno: first, len } => overflow(file, &meta, first, len)?,
            };
            out.push(Record { key, value });
        }
    }
    Ok(out)
}

fn read_meta(file: &File, file_len: u64) -> Result<Meta, String> {
    let mut head = [0u8; 512];
    file.read_exact_at(&mut head, 0)
        .map_err(|e| format!("cannot read the metadata page: {e}"))?;
    let magic_le = u32::from_le_bytes([head[12], head[13], head[14], head[15]]);
    let magic_be = u32::from_be_bytes([head[12], head[13], head[14], head[15]]);
    let swapped = if magic_le == HASH_MAGIC {
        cfg!(target_endian = "big")
    } else if magic_be == HASH_MAGIC {
        cfg!(target_endian = "little")
    } else {
        return Err(format!(
            "not a Berkeley DB hash database (magic {magic_le:#010x})"
        ));
    };
    if head[25] != P_HASHMETA {
        return Err(format!("page 0 has type {}, not hash metadata", head[25]));
    }
    if head[24] != 0 {
        return Err("encrypted databases are not supported".into());
    }
    let page_size = u32_at(&head, 20, swapped) as usize;
    if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(format!("page size {page_size}"));
    }
    let last_pgno = u32_at(&head, 32, swapped);
    let pages_in_file = file_len / page_size as u64;
    if u64::from(last_pgno) >= pages_in_file {
        return Err(format!(
            "last page {last_pgno} past the end of the file ({pages_in_file} pages)"
        ));
    }
    Ok(Meta {
        swapped,
        page_size,
        last_pgno,
    })
}

fn read_page(file: &File, meta: &Meta, pgno: u32, buf: &mut [u8]) -> Result<(), String> {
    if pgno > meta.last_pgno {
        return Err(format!("page {pgno} past the last page {}", meta.last_pgno));
    }
    file.read_exact_at(buf, u64::from(pgno) * meta.page_size as u64)
        .map_err(|e| format!("cannot read page {pgno}: {e}"))
}

enum Item<'a> {
    Inline(&'a [u8]),
    OffPage { pgno: u32, len: usize },
}

/// Item `i` of a hash page. Items are packed from the end of the page
/// towards the index; an item runs to the start of the previous one.
fn item<'a>(page: &'a [u8], i: usize, meta: &Meta, pgno: u32) -> Result<Item<'a>, String> {
    let bad = |what: &str| format!("hash page {pgno}, item {i}: {what}");
    let index_at = PAGE_HEADER + 2 * i;
    if index_at + 2 > page.len() {
        return Err(bad("index past the page"));
    }
    let start = u16_at(page, index_at, meta.swapped) as usize;
    let end = if i == 0 {
        page.len()
    } else {
        u16_at(page, index_at - 2, meta.swapped) as usize
    };
    if start < PAGE_HEADER || start >= end || end > page.len() {
        return Err(bad("offset outside the page"));
    }
    let bytes = &page[start..end];
    match bytes[0] {
        H_KEYDATA => Ok(Item::Inline(&bytes[1..])),
        H_OFFPAGE if bytes.len() >= 12 => Ok(Item::OffPage {
            pgno: u32_at(bytes, 4, meta.swapped),
            len: u32_at(bytes, 8, meta.swapped) as usize,
        }),
        kind => Err(bad(&format!("item type {kind} not supported"))),
    }
}

/// Follows an overflow chain of `len` bytes starting at page `first`.
fn overflow(file: &File, meta: &Meta, first: u32, len: usize) -> Result<Vec<u8>, String> {
    if len > MAX_VALUE {
        return Err(format!("overflow record of {len} bytes"));
    }
    let mut out = Vec::with_capacity(len);
    let mut page = vec![0u8; meta.page_size];
    let mut pgno = first;
    // A chain visits each page at most once; more steps means a loop.
    for _ in 0..=meta.last_pgno {
        if out.len() >= len {
            break;
        }
        if pgno == 0 {
            return Err(format!(
                "overflow chain from page {first} ends after {} of {len} bytes",
                out.len()
            ));
        }
        read_page(file, meta, pgno, &mut page)?;
        if page[25] != P_OVERFLOW {
            return Err(format!(
                "page {pgno} in an overflow chain has type {}",
                page[25]
            ));
        }
        // On overflow pages the "high free offset" field holds the number
        // of bytes used.
        let used = u16_at(&page, 22, meta.swapped) as usize;
        let data = page
            .get(PAGE_HEADER..PAGE_HEADER + used)
            .ok_or_else(|| format!("overflow page {pgno} claims {used} bytes"))?;
        let take = data.len().min(len - out.len());
        out.extend_from_slice(&data[..take]);
        pgno = u32_at(&page, 16, meta.swapped);
    }
    if out.len() < len {
        return Err(format!("overflow chain from page {first} loops"));
    }
    Ok(out)
}

fn u16_at(b: &[u8], at: usize, swapped: bool) -> u16 {
    let v = [b[at], b[at + 1]];
    if swapped {
        u16::from_ne_bytes(v).swap_bytes()
    } else {
        u16::from_ne_bytes(v)
    }
}

fn u32_at(b: &[u8], at: usize, swapped: bool) -> u32 {
    let v = [b[at], b[at + 1], b[at + 2], b[at + 3]];
    if swapped {
        u32::from_ne_bytes(v).swap_bytes()
    } else {
        u32::from_ne_bytes(v)
    }
}
