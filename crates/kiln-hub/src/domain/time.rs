//! Time as the hub records it: unix seconds in, RFC 3339 (UTC) out.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("unix time {0} cannot be written as an RFC 3339 date (years 0000-9999 only)")]
pub struct TimeOutOfRange(pub i64);

/// `2024-05-01T12:00:00Z`.
pub fn rfc3339(unix: i64) -> Result<String, TimeOutOfRange> {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .ok_or(TimeOutOfRange(unix))
}

/// `20240501120000`: the compact UTC stamp OSBS puts in unique tags.
pub fn compact_stamp(unix: i64) -> Result<String, TimeOutOfRange> {
    let t = OffsetDateTime::from_unix_timestamp(unix).map_err(|_| TimeOutOfRange(unix))?;
    if !(0..=9999).contains(&t.year()) {
        return Err(TimeOutOfRange(unix));
    }
    Ok(format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(rfc3339(0).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_714_564_800).unwrap(), "2024-05-01T12:00:00Z");
        assert_eq!(compact_stamp(1_714_564_801).unwrap(), "20240501120001");
        assert_eq!(rfc3339(i64::MAX), Err(TimeOutOfRange(i64::MAX)));
        assert!(compact_stamp(-62_167_219_201).is_err());
    }
}
