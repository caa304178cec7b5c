//! rpm's SQLite backend (rpm ≥ 4.16, the default since Fedora 33 and
//! RHEL 9): `rpmdb.sqlite`, table `Packages(hnum INTEGER PRIMARY KEY, blob)`.
//!
//! SQLite opens files by name and writes next to them (`-shm`, and a replay
//! of a `-wal` file), so the database is first copied, through the in-root
//! resolver, into a private directory: the image is never written, and
//! SQLite never follows a path of the image's choosing.

use std::io;
use std::path::{Path, PathBuf};

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{ConnectOptions, Row};

use crate::error::{Error, Result};
use crate::root::{Dir, Root};

pub(crate) const FILE: &str = "rpmdb.sqlite";
/// Transactions not yet checkpointed into the main file (rpm uses WAL).
const WAL: &str = "rpmdb.sqlite-wal";

/// A private copy of an image's `rpmdb.sqlite`.
pub(crate) struct Copy {
    dir: tempfile::TempDir,
    /// The database's path inside the image, for messages.
    pub source: PathBuf,
}

/// Copies the database of `dir` (blocking I/O).
pub(crate) fn copy(root: &Root, dir: &Dir) -> Result<Option<Copy>> {
    let Some((mut db, source)) = root.open_file_in(dir, FILE.as_ref())? else {
        return Ok(None);
    };
    let tmp = tempfile::Builder::new()
        .prefix("kiln-rpmdb-")
        .tempdir()
        .map_err(|e| io_err(&source, e))?;
    copy_to(&mut db, &tmp.path().join(FILE), &source)?;
    if let Some((mut wal, wal_path)) = root.open_file_in(dir, WAL.as_ref())? {
        copy_to(&mut wal, &tmp.path().join(WAL), &wal_path)?;
    }
    Ok(Some(Copy { dir: tmp, source }))
}

fn copy_to(from: &mut std::fs::File, to: &Path, source: &Path) -> Result<()> {
    let mut out = std::fs::File::create(to).map_err(|e| io_err(source, e))?;
    io::copy(from, &mut out).map_err(|e| io_err(source, e))?;
    Ok(())
}

fn io_err(path: &Path, source: io::Error) -> Error {
    Error::Io {
        path: path.to_owned(),
        source,
    }
}

impl Copy {
    /// Every (hnum, header blob) of the `Packages` table.
    pub async fn records(&self) -> Result<Vec<(i64, Vec<u8>)>> {
        let err = |source| Error::Sqlite {
            path: self.source.clone(),
            source,
        };
        let mut conn = SqliteConnectOptions::new()
            .filename(self.dir.path().join(FILE))
            .create_if_missing(false)
            // Keep whatever mode the file is in: the copy is private, and a
            // WAL file beside it is replayed on open.
            .journal_mode(SqliteJournalMode::Wal)
            // The schema comes from the image: it must not get to run
            // anything but SQLite's own functions.
            .pragma("trusted_schema", "OFF")
            .connect()
            .await
            .map_err(err)?;
        let rows = sqlx::query("SELECT hnum, blob FROM Packages ORDER BY hnum")
            .fetch_all(&mut conn)
            .await
            .map_err(err)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let hnum: i64 = row.try_get(0).map_err(err)?;
            let blob: Vec<u8> = row.try_get(1).map_err(err)?;
            out.push((hnum, blob));
        }
        // Close explicitly so the temporary directory goes after the file.
        sqlx::Connection::close(conn).await.map_err(err)?;
        Ok(out)
    }
}
