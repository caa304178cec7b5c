//! Query strings, and `n`/`last` pagination.

use crate::error::{ErrorCode, RegistryError};

pub struct Query(Vec<(String, String)>);

/// A page of items, and the `(n, last)` of the next page when there is one.
pub type Page = (Vec<String>, Option<(usize, String)>);

fn decode(s: &str) -> String {
    // '+' stays '+': media types in `artifactType` contain it.
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(hi), Some(lo)) = (hex_val(b[i + 1]), hex_val(b[i + 2]))
        {
            out.push(hi << 4 | lo);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

impl Query {
    pub fn parse(q: Option<&str>) -> Query {
        let pairs = q
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (decode(k), decode(v)),
                None => (decode(p), String::new()),
            })
            .collect();
        Query(pairs)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// A page of the sorted `items` after `last`, at most `n` long, and the
    /// `(n, last)` of the next page when there is one.
    pub fn paginate(&self, items: Vec<String>) -> Result<Page, RegistryError> {
        let n = match self.get("n") {
            Some(n) => Some(n.parse::<usize>().map_err(|_| {
                RegistryError::new(ErrorCode::Unsupported, format!("n={n:?} is not a number"))
                    .with_status(http::StatusCode::BAD_REQUEST)
            })?),
            None => None,
        };
        let last = self.get("last");
        let rest: Vec<String> = items
            .into_iter()
            .filter(|i| last.is_none_or(|l| i.as_str() > l))
            .collect();
        match n {
            Some(n) if n < rest.len() => {
                let page: Vec<String> = rest.into_iter().take(n).collect();
                let next = page.last().cloned().map(|l| (n, l));
                Ok((page, next))
            }
            _ => Ok((rest, None)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items() -> Vec<String> {
        ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn pages() {
        let q = Query::parse(Some("n=2"));
        assert_eq!(
            q.paginate(items()).unwrap(),
            (vec!["a".into(), "b".into()], Some((2, "b".into())))
        );
        let q = Query::parse(Some("n=2&last=b"));
        assert_eq!(
            q.paginate(items()).unwrap(),
            (vec!["c".into(), "d".into()], None)
        );
        let q = Query::parse(Some("last=c"));
        assert_eq!(q.paginate(items()).unwrap(), (vec!["d".into()], None));
        let q = Query::parse(Some("n=0"));
        assert_eq!(q.paginate(items()).unwrap().0, Vec::<String>::new());
        assert!(Query::parse(Some("n=x")).paginate(items()).is_err());
    }

    #[test]
    fn decodes() {
        let q = Query::parse(Some(
            "mount=sha256%3Aab&from=a%2Fb&artifactType=application/x+json",
        ));
        assert_eq!(q.get("mount"), Some("sha256:ab"));
        assert_eq!(q.get("from"), Some("a/b"));
        assert_eq!(q.get("artifactType"), Some("application/x+json"));
        assert_eq!(q.get("missing"), None);
    }
}
