//! Build logs: one append-only file per build; followers read the file and
//! wait for more. The same path serves `watch-logs`, the API and the worker.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

#[derive(Clone)]
pub struct LogStore {
    dir: PathBuf,
    /// A change counter per build, bumped on every append and on the end of
    /// the build, that followers wait on.
    signals: Arc<Mutex<HashMap<i64, watch::Sender<u64>>>>,
}

impl LogStore {
    pub fn open(dir: &Path) -> std::io::Result<LogStore> {
        std::fs::create_dir_all(dir)?;
        Ok(LogStore {
            dir: dir.to_path_buf(),
            signals: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    fn path(&self, build_id: i64) -> PathBuf {
        self.dir.join(format!("{build_id}.log"))
    }

    fn signal(&self, build_id: i64) -> watch::Sender<u64> {
        let mut map = self.signals.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(build_id)
            .or_insert_with(|| watch::channel(0).0)
            .clone()
    }

    pub fn append(&self, build_id: i64, data: &[u8]) -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(build_id))?;
        f.write_all(data)?;
        self.notify(build_id);
        Ok(())
    }

    /// Wakes followers (more bytes, or the build ended).
    pub fn notify(&self, build_id: i64) {
        self.signal(build_id).send_modify(|n| *n += 1);
    }

    /// Bytes from `offset` on (empty when there are none yet).
    pub fn read_from(&self, build_id: i64, offset: u64) -> std::io::Result<Vec<u8>> {
        let mut f = match std::fs::File::open(self.path(build_id)) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        f.seek(SeekFrom::Start(offset))?;
        let mut out = Vec::new();
        f.take(4 << 20).read_to_end(&mut out)?;
        Ok(out)
    }

    pub fn subscribe(&self, build_id: i64) -> watch::Receiver<u64> {
        self.signal(build_id).subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_and_reads_from_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let logs = LogStore::open(dir.path()).unwrap();
        assert!(logs.read_from(7, 0).unwrap().is_empty());
        let mut rx = logs.subscribe(7);
        logs.append(7, b"hello ").unwrap();
        logs.append(7, b"world\n").unwrap();
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
        assert_eq!(logs.read_from(7, 0).unwrap(), b"hello world\n");
        assert_eq!(logs.read_from(7, 6).unwrap(), b"world\n");
        assert!(logs.read_from(7, 100).unwrap().is_empty());
    }
}
