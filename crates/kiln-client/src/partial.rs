//! A download target written as `DEST.partial` and renamed into place only
//! once complete and verified; dropped uncommitted, it removes itself.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncWriteExt, BufWriter};

use crate::error::{Error, Result};

/// Big writes: chunks off the network are small, blocking-pool hops are not free.
const WRITE_BUFFER: usize = 1 << 20;

pub(crate) struct PartialFile {
    partial: PathBuf,
    dest: PathBuf,
    file: Option<BufWriter<tokio::fs::File>>,
}

pub(crate) fn partial_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().map(OsString::from).unwrap_or_default();
    name.push(".partial");
    dest.with_file_name(name)
}

impl PartialFile {
    pub(crate) async fn create(dest: &Path) -> Result<PartialFile> {
        let partial = partial_path(dest);
        let file = tokio::fs::File::create(&partial)
            .await
            .map_err(|e| Error::io(&partial, e))?;
        Ok(PartialFile {
            partial,
            dest: dest.to_owned(),
            file: Some(BufWriter::with_capacity(WRITE_BUFFER, file)),
        })
    }

    pub(crate) async fn write(&mut self, data: &[u8]) -> Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        file.write_all(data)
            .await
            .map_err(|e| Error::io(&self.partial, e))
    }

    /// Flushes, fsyncs, renames over the destination and fsyncs the
    /// directory, so a crash leaves either the old file or the whole new one.
    pub(crate) async fn commit(mut self) -> Result<()> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |e| Error::io(path, e)
        };
        if let Some(mut file) = self.file.take() {
            file.flush().await.map_err(io(&self.partial))?;
            file.get_mut().sync_all().await.map_err(io(&self.partial))?;
        }
        tokio::fs::rename(&self.partial, &self.dest)
            .await
            .map_err(io(&self.dest))?;
        // Renamed: nothing left for Drop to clean up.
        self.partial = PathBuf::new();
        if let Some(dir) = self.dest.parent().filter(|d| !d.as_os_str().is_empty()) {
            let dir = tokio::fs::File::open(dir).await.map_err(io(dir))?;
            dir.sync_all().await.map_err(io(&self.dest))?;
        }
        Ok(())
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.partial.as_os_str().is_empty() {
            // Best effort: the error that brought us here is the one to report.
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn commits_or_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("blob");
        assert_eq!(partial_path(&dest), dir.path().join("blob.partial"));

        let mut p = PartialFile::create(&dest).await.unwrap();
        p.write(b"abc").await.unwrap();
        assert!(partial_path(&dest).exists());
        drop(p);
        assert!(!partial_path(&dest).exists());
        assert!(!dest.exists());

        let mut p = PartialFile::create(&dest).await.unwrap();
        p.write(b"abc").await.unwrap();
        p.commit().await.unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"abc");
        assert!(!partial_path(&dest).exists());
    }
}
