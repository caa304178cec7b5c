//! `ADD <url>`: fetched with the registry client's TLS settings, checked
//! against `--checksum`, named after the URL, mode 0600 and the server's
//! Last-Modified time, as Docker does.

use std::path::Path;

use crate::error::{BuildError, io_err};
use crate::executor::Executor;

/// Downloads `url` into `dir`; returns the file name it got.
pub async fn fetch(
    ex: &Executor,
    url: &str,
    dir: &Path,
    checksum: Option<&str>,
) -> Result<String, BuildError> {
    let name = kiln_fileops::url_file_name(url).map_err(BuildError::Context)?;
    let dest = dir.join(&name);
    ex.progress.line(&format!("Downloading {url}"));
    let got = ex
        .client
        .download(url, &dest)
        .await
        .map_err(|e| BuildError::Download {
            url: url.to_string(),
            message: e.to_string(),
        })?;
    if let Some(want) = checksum {
        let want: kiln_oci::Digest =
            want.parse()
                .map_err(|e: kiln_oci::DigestError| BuildError::Download {
                    url: url.to_string(),
                    message: format!("invalid --checksum {want:?}: {e}"),
                })?;
        if want.algorithm() != got.digest.algorithm() || want != got.digest {
            let _ = std::fs::remove_file(&dest);
            return Err(BuildError::Download {
                url: url.to_string(),
                message: format!("checksum mismatch: expected {want}, got {}", got.digest),
            });
        }
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        &dest,
        std::fs::Permissions::from_mode(kiln_fileops::REMOTE_FILE_MODE),
    )
    .map_err(|e| io_err(&dest, e))?;
    if let Some(t) = got.last_modified {
        let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.max(0) as u64);
        let f = std::fs::File::options()
            .write(true)
            .open(&dest)
            .map_err(|e| io_err(&dest, e))?;
        f.set_modified(time).map_err(|e| io_err(&dest, e))?;
    }
    Ok(name)
}
