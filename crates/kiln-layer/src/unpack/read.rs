//! The reading side of a layer blob: compression detected by magic bytes,
//! the compressed and the uncompressed bytes hashed as they stream by.

use std::io::{self, BufRead, BufReader, Read};

use kiln_oci::{Algorithm, Digest, Hasher};

use crate::blob::Compression;

pub(crate) struct HashRead<R> {
    pub(crate) inner: R,
    hasher: Hasher,
    count: u64,
}

impl<R> HashRead<R> {
    pub(crate) fn new(inner: R) -> HashRead<R> {
        HashRead {
            inner,
            hasher: Algorithm::Sha256.hasher(),
            count: 0,
        }
    }

    pub(crate) fn finish(self) -> (Digest, u64, R) {
        (self.hasher.finish(), self.count, self.inner)
    }
}

impl<R: Read> Read for HashRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

pub(crate) type Raw<R> = BufReader<HashRead<R>>;

pub(crate) enum Decoder<R: Read> {
    Gzip(Box<flate2::bufread::MultiGzDecoder<Raw<R>>>),
    Zstd(zstd::stream::read::Decoder<'static, Raw<R>>),
    Plain(Raw<R>),
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

impl<R: Read> Decoder<R> {
    pub(crate) fn new(reader: R) -> io::Result<(Decoder<R>, Compression)> {
        let mut raw = BufReader::with_capacity(1 << 20, HashRead::new(reader));
        let head = raw.fill_buf()?;
        Ok(if head.starts_with(GZIP_MAGIC) {
            (
                Decoder::Gzip(Box::new(flate2::bufread::MultiGzDecoder::new(raw))),
                Compression::Gzip,
            )
        } else if head.starts_with(ZSTD_MAGIC) {
            (
                Decoder::Zstd(zstd::stream::read::Decoder::with_buffer(raw)?),
                Compression::Zstd,
            )
        } else {
            (Decoder::Plain(raw), Compression::None)
        })
    }

    /// Reads whatever compressed bytes the decoder left unread (so the
    /// digest covers the whole blob) and returns their hash and count.
    pub(crate) fn finish(self) -> io::Result<(Digest, u64)> {
        let mut raw = match self {
            Decoder::Gzip(g) => g.into_inner(),
            Decoder::Zstd(z) => z.finish(),
            Decoder::Plain(p) => p,
        };
        io::copy(&mut raw, &mut io::sink())?;
        let (digest, count, _) = raw.into_inner().finish();
        Ok((digest, count))
    }
}

impl<R: Read> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Gzip(g) => g.read(buf),
            Decoder::Zstd(z) => z.read(buf),
            Decoder::Plain(p) => p.read(buf),
        }
    }
}
