//! The tar writer: change list in, layer tar bytes out, streaming file
//! contents straight from disk.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::change::Change;
use crate::convert::{Converter, TarEntry, TarOptions};
use crate::error::{LayerError, Result, io_err};
use crate::header::{BLOCK, encode};
use crate::treediff::tree_changes;
use crate::walk::layer_changes;

/// What a written tar holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TarStats {
    /// Tar entries written (PAX extended headers not counted).
    pub entries: u64,
    /// Bytes of the tar stream, end-of-archive blocks included.
    pub bytes: u64,
}

/// Writes the layer directory `dir` (overlay upper/lower format) as an OCI
/// layer tar to `out`.
pub fn write_layer(dir: &Path, opts: &TarOptions, out: impl Write) -> Result<TarStats> {
    write_changes(&layer_changes(dir)?, opts, out)
}

/// Writes the changes from the tree `old` to the tree `new` as an OCI layer
/// tar (the copying fallback; see [`crate::tree_changes`] for the rule).
pub fn write_tree_diff(
    old: &Path,
    new: &Path,
    opts: &TarOptions,
    out: impl Write,
) -> Result<TarStats> {
    write_changes(&tree_changes(old, new)?, opts, out)
}

/// Writes `changes` (in tar order) as a tar to `out`, then the two zero
/// blocks that end an archive. `out` is not flushed beyond that.
pub fn write_changes(
    changes: &[Change],
    opts: &TarOptions,
    mut out: impl Write,
) -> Result<TarStats> {
    let mut conv = Converter::new(opts.clone());
    let mut stats = TarStats::default();
    let mut buf = vec![0u8; 256 * 1024];
    for change in changes {
        for entry in conv.convert(change) {
            let header = encode(&entry)?;
            out.write_all(&header).map_err(LayerError::Write)?;
            stats.bytes += header.len() as u64;
            stats.entries += 1;
            if let Some(source) = &entry.content {
                copy_content(&entry, source, &mut buf, &mut out)?;
                let padded = entry.size.next_multiple_of(BLOCK as u64);
                let pad = (padded - entry.size) as usize;
                out.write_all(&[0u8; BLOCK][..pad])
                    .map_err(LayerError::Write)?;
                stats.bytes += padded;
            }
        }
    }
    out.write_all(&[0u8; 2 * BLOCK])
        .map_err(LayerError::Write)?;
    stats.bytes += 2 * BLOCK as u64;
    Ok(stats)
}

/// Copies exactly `entry.size` bytes; a file that shrank or grew since it
/// was scanned would make the header lie, so that is an error.
fn copy_content(
    entry: &TarEntry,
    source: &Path,
    buf: &mut [u8],
    out: &mut impl Write,
) -> Result<()> {
    let mut file = File::options()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(source)
        .map_err(io_err("open", source))?;
    let changed = || LayerError::FileChanged {
        path: source.to_path_buf(),
        expected: entry.size,
    };
    let mut left = entry.size;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = file
            .read(&mut buf[..want])
            .map_err(io_err("read", source))?;
        if n == 0 {
            return Err(changed());
        }
        out.write_all(&buf[..n]).map_err(LayerError::Write)?;
        left -= n as u64;
    }
    if file.read(&mut buf[..1]).map_err(io_err("read", source))? != 0 {
        return Err(changed());
    }
    Ok(())
}
