//! rpm's own "ndb" format, `Packages.db` (rpm ≥ 4.16 with
//! `%_db_backend ndb`; openSUSE's default). Layout from rpm's
//! `lib/backend/ndb/rpmpkg.c`, as go-rpmdb reads it:
//!
//! - a 32-byte header: magic `RpmP`, version 0, generation, number of
//!   4 KiB slot pages; the header shares the first slot page, in place of
//!   its first two slots;
//! - slots of 16 bytes: magic `Slot`, package index (0: free), block
//!   offset and block count (blocks of 16 bytes);
//! - at each used slot's offset, a blob: magic `BlbS`, package index,
//!   checksum, length, then the header blob.
//!
//! Everything is little-endian. The blob's Adler-32 checksum is not
//! checked: the header parser rejects a damaged header anyway.

use std::fs::File;
use std::os::unix::fs::FileExt;

const HEADER_MAGIC: &[u8; 4] = b"RpmP";
const SLOT_MAGIC: &[u8; 4] = b"Slot";
const BLOB_MAGIC: &[u8; 4] = b"BlbS";
const SLOT_PAGE: usize = 4096;
const SLOT_SIZE: usize = 16;
const BLOCK: u64 = 16;
/// rpm limits the slot area the same way (and it bounds memory here).
const MAX_SLOT_PAGES: u32 = 2048;
const MAX_BLOB: u32 = 256 * 1024 * 1024;

/// Every (package index, header blob) of the database, in slot order.
pub(crate) fn records(file: &File) -> Result<Vec<(u32, Vec<u8>)>, String> {
    let mut head = [0u8; 32];
    file.read_exact_at(&mut head, 0)
        .map_err(|e| format!("cannot read the header: {e}"))?;
    if &head[0..4] != HEADER_MAGIC {
        return Err("not an ndb Packages.db (bad magic)".into());
    }
    let version = le32(&head, 4);
    if version != 0 {
        return Err(format!("ndb version {version} not supported"));
    }
    let pages = le32(&head, 12);
    if pages == 0 || pages > MAX_SLOT_PAGES {
        return Err(format!("{pages} slot pages"));
    }
    let mut slots = vec![0u8; pages as usize * SLOT_PAGE];
    file.read_exact_at(&mut slots, 0)
        .map_err(|e| format!("cannot read the slot pages: {e}"))?;

    let mut out = Vec::new();
    // The first two slots' worth of bytes are the header.
    for slot in slots.chunks_exact(SLOT_SIZE).skip(2) {
        if &slot[0..4] != SLOT_MAGIC {
            return Err("bad slot magic".into());
        }
        let index = le32(slot, 4);
        if index == 0 {
            continue;
        }
        let offset = u64::from(le32(slot, 8)) * BLOCK;
        let mut blob_head = [0u8; 16];
        file.read_exact_at(&mut blob_head, offset)
            .map_err(|e| format!("package {index}: cannot read its blob header: {e}"))?;
        if &blob_head[0..4] != BLOB_MAGIC {
            return Err(format!("package {index}: bad blob magic"));
        }
        if le32(&blob_head, 4) != index {
            return Err(format!(
                "package {index}: its blob belongs to package {}",
                le32(&blob_head, 4)
            ));
        }
        let len = le32(&blob_head, 12);
        if len > MAX_BLOB {
            return Err(format!("package {index}: blob of {len} bytes"));
        }
        let mut blob = vec![0u8; len as usize];
        file.read_exact_at(&mut blob, offset + 16)
            .map_err(|e| format!("package {index}: cannot read its {len}-byte blob: {e}"))?;
        out.push((index, blob));
    }
    Ok(out)
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Lays out a database the way rpmpkg.c does: one slot page, blobs in
    /// 16-byte blocks after it.
    fn ndb(blobs: &[(u32, &[u8])]) -> Vec<u8> {
        let mut f = vec![0u8; SLOT_PAGE];
        f[0..4].copy_from_slice(HEADER_MAGIC);
        f[8..12].copy_from_slice(&7u32.to_le_bytes());
        f[12..16].copy_from_slice(&1u32.to_le_bytes());
        for slot in f[32..].chunks_exact_mut(SLOT_SIZE) {
            slot[0..4].copy_from_slice(SLOT_MAGIC);
        }
        for (n, (index, blob)) in blobs.iter().enumerate() {
            let block = f.len() as u64 / BLOCK;
            let slot = &mut f[32 + n * SLOT_SIZE..32 + (n + 1) * SLOT_SIZE];
            slot[4..8].copy_from_slice(&index.to_le_bytes());
            slot[8..12].copy_from_slice(&(block as u32).to_le_bytes());
            f.extend_from_slice(BLOB_MAGIC);
            f.extend_from_slice(&index.to_le_bytes());
            f.extend_from_slice(&0u32.to_le_bytes());
            f.extend_from_slice(&(blob.len() as u32).to_le_bytes());
            f.extend_from_slice(blob);
            f.extend_from_slice(&[0u8; 16]);
            while !f.len().is_multiple_of(BLOCK as usize) {
                f.push(0);
            }
        }
        f
    }

    fn file(bytes: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    #[test]
    fn reads_used_slots() {
        let db = ndb(&[(3, b"first"), (9, b"second blob")]);
        let got = records(&file(&db)).unwrap();
        assert_eq!(got, [(3, b"first".to_vec()), (9, b"second blob".to_vec())]);
    }

    #[test]
    fn rejects_damage() {
        let good = ndb(&[(3, b"first")]);
        let mut bad = good.clone();
        bad[0] = b'X';
        assert!(records(&file(&bad)).is_err());
        let mut bad = good.clone();
        bad[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(records(&file(&bad)).is_err());
        // The slot points at a blob of another package.
        let mut bad = good.clone();
        bad[32 + 4..32 + 8].copy_from_slice(&4u32.to_le_bytes());
        assert!(records(&file(&bad)).is_err());
        // A blob claiming to run past the end of the file.
        let mut bad = good.clone();
        bad[SLOT_PAGE + 12..SLOT_PAGE + 16].copy_from_slice(&1000u32.to_le_bytes());
        assert!(records(&file(&bad)).is_err());
        assert!(records(&file(&good[..100])).is_err());
    }
}
