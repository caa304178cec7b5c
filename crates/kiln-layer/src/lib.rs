//! Image layers: an overlay upper directory (or the difference between two
//! trees) → a deterministic OCI layer tar → a compressed blob with its
//! digest and diff_id, and back: a layer blob → a directory, safely.
//!
//! # Writing a layer
//!
//! A *layer directory* is in overlay's upper/lower on-disk format: a deleted
//! path is a 0/0 character device, an opaque directory carries
//! `trusted.overlay.opaque=y` (`user.overlay.*` and the xattr whiteout form
//! are recognised too). [`write_layer`] walks one and writes the tar;
//! [`write_tree_diff`] does the same for two full trees (the copying
//! fallback). Both build a [`Change`] list ([`layer_changes`],
//! [`tree_changes`]) and hand it to [`write_changes`].
//!
//! The tar matches what BuildKit/containerd and buildah write (Go's
//! `archive/tar`, PAX format): entries depth-first with siblings in byte
//! order and a directory before its contents; names relative with no
//! leading `./` or `/`, directories ending in `/`; numeric uid/gid with
//! empty user/group names; mode = permission + setuid/setgid/sticky bits;
//! whole-second mtimes, clamped to [`TarOptions::source_date_epoch`] when
//! set; no atime/ctime; whiteouts as empty `.wh.NAME` files; an opaque
//! directory followed by its `.wh..wh..opq` marker; xattrs (but overlay's)
//! as PAX `SCHILY.xattr.*`; later paths of a multiply-linked inode as
//! hardlinks to the first; sockets left out; long or non-ASCII names in PAX.
//!
//! ```no_run
//! # fn main() -> Result<(), kiln_layer::LayerError> {
//! use kiln_layer::{Compression, ImageFormat, TarOptions, compress_to_file, write_layer};
//! let opts = TarOptions { source_date_epoch: None };
//! let (blob, _stats) = compress_to_file(
//!     "/store/blobs/staging".as_ref(),
//!     Compression::Gzip,
//!     ImageFormat::Oci,
//!     |w| write_layer("/store/layers/upper-7".as_ref(), &opts, w),
//! )?;
//! println!("{} {} {}", blob.digest, blob.diff_id, blob.size);
//! # Ok(()) }
//! ```
//!
//! # Compression
//!
//! [`LayerBlobWriter`] hashes the tar (diff_id), compresses it — gzip on all
//! cores as one pigz-style member ([`ParallelGzEncoder`]), multithreaded
//! zstd, or nothing — and hashes and counts the output (digest, size), in
//! one streaming pass with bounded memory. [`compress_to_file`] adds the
//! temp file + fsync + rename.
//!
//! # Unpacking
//!
//! [`unpack_layer`] detects the compression, verifies digest and diff_id
//! while reading, and extracts into an empty directory in overlay lower
//! format ([`UnpackMode::Layer`]) or onto a rootfs ([`UnpackMode::Apply`]).
//! It is a security boundary; see the [`unpack`] module for the rules.
//!
//! [`chain_id`]/[`chain_ids`] name stacks of layers.

mod blob;
mod chain;
mod change;
mod convert;
mod error;
mod header;
mod pgzip;
mod scan;
mod tarwrite;
mod treediff;
pub mod unpack;
mod walk;
mod xattr;

pub use blob::{
    Compression, DOCKER_LAYER_TAR, ImageFormat, LayerBlob, LayerBlobWriter, compress_to_file,
    layer_media_type,
};
pub use chain::{chain_id, chain_ids};
pub use change::{Change, NodeKind, NodeMeta};
pub use convert::{Converter, EntryKind, OPAQUE_MARKER, TarEntry, TarOptions, WHITEOUT_PREFIX};
pub use error::{LayerError, Result};
pub use header::encode as encode_header;
pub use pgzip::{
    BLOCK_SIZE as GZIP_BLOCK_SIZE, DEFAULT_LEVEL as GZIP_DEFAULT_LEVEL, ParallelGzEncoder,
};
pub use tarwrite::{TarStats, write_changes, write_layer, write_tree_diff};
pub use treediff::tree_changes;
pub use unpack::{Expected, UnpackMode, UnpackStats, unpack_layer};
pub use walk::layer_changes;
