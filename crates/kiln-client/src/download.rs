//! Plain HTTP(S) downloads with the client's TLS settings (`ADD <url>`).

use std::path::Path;

use futures::StreamExt;
use kiln_oci::{Digest, Hasher};
use tokio::io::AsyncWriteExt;

use crate::client::Client;
use crate::error::{Error, Result};

/// What a download produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    pub size: u64,
    pub digest: Digest,
    /// `Last-Modified` as seconds since the epoch, when the server sent one.
    pub last_modified: Option<i64>,
}

impl Client {
    /// GETs `url` into `dest` (written whole or not at all), hashing it.
    /// Certificates are verified unless the client was made with
    /// `tls_verify: false`.
    pub async fn download(&self, url: &str, dest: &Path) -> Result<Downloaded> {
        let http = self.http_for_downloads();
        let resp = http.get(url).send().await.map_err(|e| Error::Http {
            method: "GET".to_string(),
            url: url.to_string(),
            error: e,
        })?;
        let status = resp.status();
        if !status.is_success() {
            return Err(Error::Status {
                method: "GET".to_string(),
                status: status.as_u16(),
                url: url.to_string(),
                errors: Vec::new(),
            });
        }
        let last_modified = resp
            .headers()
            .get(reqwest::header::LAST_MODIFIED)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_http_date);
        let partial = dest.with_extension("partial");
        let mut file = tokio::fs::File::create(&partial)
            .await
            .map_err(|e| Error::Io {
                path: partial.clone(),
                source: e,
            })?;
        let mut hasher = Hasher::Sha256(Default::default());
        let mut size = 0u64;
        let mut body = resp.bytes_stream();
        let result: Result<()> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| Error::Http {
                    method: "GET".to_string(),
                    url: url.to_string(),
                    error: e,
                })?;
                hasher.update(&chunk);
                size += chunk.len() as u64;
                file.write_all(&chunk).await.map_err(|e| Error::Io {
                    path: partial.clone(),
                    source: e,
                })?;
            }
            file.flush().await.map_err(|e| Error::Io {
                path: partial.clone(),
                source: e,
            })
        }
        .await;
        if let Err(e) = result {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(e);
        }
        tokio::fs::rename(&partial, dest)
            .await
            .map_err(|e| Error::Io {
                path: dest.to_path_buf(),
                source: e,
            })?;
        Ok(Downloaded {
            size,
            digest: hasher.finish(),
            last_modified,
        })
    }
}

/// RFC 7231 IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn parse_http_date(s: &str) -> Option<i64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    if parts.len() != 6 || parts[5] != "GMT" {
        return None;
    }
    let day: i64 = parts[1].parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == parts[2])? as i64
        + 1;
    let year: i64 = parts[3].parse().ok()?;
    let hms: Vec<i64> = parts[4].split(':').filter_map(|x| x.parse().ok()).collect();
    if hms.len() != 3 {
        return None;
    }
    // Days from civil (Howard Hinnant).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hms[0] * 3600 + hms[1] * 60 + hms[2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse_http_date("yesterday"), None);
    }
}
