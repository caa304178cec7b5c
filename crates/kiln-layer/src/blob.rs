//! Tar stream → compressed layer blob with both digests, in one pass:
//! sha256 of the tar (diff_id) → compressor → sha256 and length of the
//! compressed bytes (digest, size) → the sink.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use kiln_oci::{Algorithm, Digest, Hasher, media};

use crate::error::{LayerError, Result, io_err};
use crate::pgzip::{DEFAULT_LEVEL, ParallelGzEncoder};

/// zstd's default level, which BuildKit and containers/image use too.
const ZSTD_LEVEL: i32 = 3;
/// The uncompressed Docker layer type (containers/image spells it so);
/// `kiln_oci::media` does not list it.
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    Gzip,
    Zstd,
    None,
}

impl std::str::FromStr for Compression {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            "none" | "uncompressed" => Ok(Compression::None),
            other => Err(format!(
                "unknown compression {other:?}: use gzip, zstd or none"
            )),
        }
    }
}

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::None => "uncompressed",
        }
    }
}

/// Which manifest family the layer is for (`--format oci|docker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImageFormat {
    #[default]
    Oci,
    Docker,
}

/// The layer media type for a compression in a manifest format. Docker
/// schema 2 has no zstd layer type.
pub fn layer_media_type(compression: Compression, format: ImageFormat) -> Result<&'static str> {
    Ok(match (format, compression) {
        (ImageFormat::Oci, Compression::Gzip) => media::OCI_LAYER_GZIP,
        (ImageFormat::Oci, Compression::Zstd) => media::OCI_LAYER_ZSTD,
        (ImageFormat::Oci, Compression::None) => media::OCI_LAYER_TAR,
        (ImageFormat::Docker, Compression::Gzip) => media::DOCKER_LAYER_GZIP,
        (ImageFormat::Docker, Compression::None) => DOCKER_LAYER_TAR,
        (ImageFormat::Docker, Compression::Zstd) => {
            return Err(LayerError::UnsupportedMediaType {
                format: "docker",
                compression: "zstd",
            });
        }
    })
}

/// A finished layer blob: what a manifest descriptor and an image config's
/// `rootfs.diff_ids` need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerBlob {
    /// sha256 of the blob as stored (compressed).
    pub digest: Digest,
    /// sha256 of the uncompressed tar.
    pub diff_id: Digest,
    /// Bytes of the blob as stored.
    pub size: u64,
    /// Bytes of the uncompressed tar.
    pub uncompressed_size: u64,
    pub media_type: &'static str,
}

/// Hashes and counts what passes through to `inner`.
struct HashCount<W> {
    inner: W,
    hasher: Hasher,
    count: u64,
}

impl<W: Write> Write for HashCount<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

enum Encoder<W: Write> {
    Gzip(ParallelGzEncoder<HashCount<W>>),
    Zstd(zstd::stream::write::Encoder<'static, HashCount<W>>),
    None(HashCount<W>),
}

/// A `Write` for the layer tar: compresses into `W` while computing the
/// diff_id and digest; [`finish`](Self::finish) returns the [`LayerBlob`].
pub struct LayerBlobWriter<W: Write> {
    diff: Hasher,
    uncompressed: u64,
    enc: Encoder<W>,
    media_type: &'static str,
}

/// Worker threads for compression: the machine's cores (2 here).
fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

impl<W: Write> LayerBlobWriter<W> {
    pub fn new(
        out: W,
        compression: Compression,
        format: ImageFormat,
    ) -> Result<LayerBlobWriter<W>> {
        let media_type = layer_media_type(compression, format)?;
        let sink = HashCount {
            inner: out,
            hasher: Algorithm::Sha256.hasher(),
            count: 0,
        };
        let enc = match compression {
            Compression::Gzip => {
                Encoder::Gzip(ParallelGzEncoder::new(sink, DEFAULT_LEVEL, threads()))
            }
            Compression::Zstd => {
                let mut z = zstd::stream::write::Encoder::new(sink, ZSTD_LEVEL)
                    .map_err(LayerError::Write)?;
                // With at least one worker zstd's output is the same for
                // any worker count, so digests stay reproducible.
                let workers = u32::try_from(threads()).unwrap_or(2);
                z.multithread(workers).map_err(LayerError::Write)?;
                z.include_checksum(true).map_err(LayerError::Write)?;
                Encoder::Zstd(z)
            }
            Compression::None => Encoder::None(sink),
        };
        Ok(LayerBlobWriter {
            diff: Algorithm::Sha256.hasher(),
            uncompressed: 0,
            enc,
            media_type,
        })
    }

    /// Ends the compressed stream, flushes `W` and returns the blob's
    /// description with `W` (durability, e.g. `fsync`, is the caller's).
    pub fn finish(self) -> Result<(LayerBlob, W)> {
        let mut sink = match self.enc {
            Encoder::Gzip(g) => g.finish().map_err(LayerError::Write)?,
            Encoder::Zstd(z) => z.finish().map_err(LayerError::Write)?,
            Encoder::None(s) => s,
        };
        sink.flush().map_err(LayerError::Write)?;
        let blob = LayerBlob {
            digest: sink.hasher.finish(),
            diff_id: self.diff.finish(),
            size: sink.count,
            uncompressed_size: self.uncompressed,
            media_type: self.media_type,
        };
        Ok((blob, sink.inner))
    }
}

impl<W: Write> Write for LayerBlobWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = match &mut self.enc {
            Encoder::Gzip(g) => g.write(buf)?,
            Encoder::Zstd(z) => z.write(buf)?,
            Encoder::None(s) => s.write(buf)?,
        };
        self.diff.update(&buf[..n]);
        self.uncompressed += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.enc {
            Encoder::Gzip(g) => g.flush(),
            Encoder::Zstd(z) => z.flush(),
            Encoder::None(s) => s.flush(),
        }
    }
}

/// Writes a layer blob durably at `path`: `produce` writes the tar into the
/// compressing writer; the bytes go to `path.partial` in the same directory,
/// which is fsynced, renamed to `path`, and the directory fsynced. On error
/// the partial file is removed. For digest-named storage, pass a staging
/// name and rename once the returned digest is known.
pub fn compress_to_file<T>(
    path: &Path,
    compression: Compression,
    format: ImageFormat,
    produce: impl FnOnce(&mut LayerBlobWriter<BufWriter<File>>) -> Result<T>,
) -> Result<(LayerBlob, T)> {
    let partial = partial_path(path);
    let result = write_partial(&partial, compression, format, produce);
    let (blob, value) = match result {
        Ok(ok) => ok,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    if let Err(e) = std::fs::rename(&partial, path) {
        let _ = std::fs::remove_file(&partial);
        return Err(io_err("rename into place", path)(e));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("fsync directory", dir))?;
    }
    Ok((blob, value))
}

fn write_partial<T>(
    partial: &Path,
    compression: Compression,
    format: ImageFormat,
    produce: impl FnOnce(&mut LayerBlobWriter<BufWriter<File>>) -> Result<T>,
) -> Result<(LayerBlob, T)> {
    let file = File::create(partial).map_err(io_err("create", partial))?;
    let mut writer =
        LayerBlobWriter::new(BufWriter::with_capacity(1 << 20, file), compression, format)?;
    let value = produce(&mut writer)?;
    let (blob, buffered) = writer.finish()?;
    let file = buffered
        .into_inner()
        .map_err(|e| io_err("write", partial)(e.into_error()))?;
    file.sync_all().map_err(io_err("fsync", partial))?;
    Ok((blob, value))
}

fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn media_types_per_format() {
        assert_eq!(
            layer_media_type(Compression::Gzip, ImageFormat::Oci).unwrap(),
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        assert_eq!(
            layer_media_type(Compression::Gzip, ImageFormat::Docker).unwrap(),
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
        assert_eq!(
            layer_media_type(Compression::None, ImageFormat::Oci).unwrap(),
            "application/vnd.oci.image.layer.v1.tar"
        );
        assert!(layer_media_type(Compression::Zstd, ImageFormat::Docker).is_err());
    }

    #[test]
    fn digests_cover_compressed_and_uncompressed_bytes() {
        let tar = vec![7u8; 5000];
        for c in [Compression::Gzip, Compression::Zstd, Compression::None] {
            let mut w = LayerBlobWriter::new(Vec::new(), c, ImageFormat::Oci).unwrap();
            w.write_all(&tar).unwrap();
            let (blob, out) = w.finish().unwrap();
            assert_eq!(blob.diff_id, Digest::sha256_of(&tar));
            assert_eq!(blob.digest, Digest::sha256_of(&out));
            assert_eq!(blob.size, out.len() as u64);
            assert_eq!(blob.uncompressed_size, 5000);
            let mut back = Vec::new();
            match c {
                Compression::Gzip => {
                    flate2::read::GzDecoder::new(out.as_slice())
                        .read_to_end(&mut back)
                        .unwrap();
                }
                Compression::Zstd => {
                    zstd::stream::read::Decoder::new(out.as_slice())
                        .unwrap()
                        .read_to_end(&mut back)
                        .unwrap();
                }
                Compression::None => back = out,
            }
            assert_eq!(back, tar, "{}", c.name());
        }
    }

    #[test]
    fn file_is_renamed_into_place_only_on_success() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("layer");
        let (blob, ()) = compress_to_file(&path, Compression::Gzip, ImageFormat::Oci, |w| {
            w.write_all(b"hello").map_err(LayerError::Write)
        })
        .unwrap();
        assert_eq!(
            blob.digest,
            Digest::sha256_of(&std::fs::read(&path).unwrap())
        );

        let failed = dir.path().join("failed");
        let err = compress_to_file(&failed, Compression::Gzip, ImageFormat::Oci, |_| {
            Err::<(), _>(LayerError::Write(io::Error::other("producer gave up")))
        });
        assert!(err.is_err());
        assert!(!failed.exists());
        assert!(!partial_path(&failed).exists());
    }
}
