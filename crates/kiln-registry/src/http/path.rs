//! Which endpoint a `/v2/…` path names. Repository names have any depth, so
//! the path is read from the right.

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Route<'a> {
    Base,
    Catalog,
    Tags { name: &'a str },
    Manifest { name: &'a str, reference: &'a str },
    Blob { name: &'a str, digest: &'a str },
    UploadStart { name: &'a str },
    Upload { name: &'a str, id: &'a str },
    Referrers { name: &'a str, digest: &'a str },
}

impl Route<'_> {
    /// A label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Route::Base => "base",
            Route::Catalog => "catalog",
            Route::Tags { .. } => "tags",
            Route::Manifest { .. } => "manifest",
            Route::Blob { .. } => "blob",
            Route::UploadStart { .. } | Route::Upload { .. } => "upload",
            Route::Referrers { .. } => "referrers",
        }
    }

    pub fn name(&self) -> Option<&str> {
        match self {
            Route::Base | Route::Catalog => None,
            Route::Tags { name }
            | Route::Manifest { name, .. }
            | Route::Blob { name, .. }
            | Route::UploadStart { name }
            | Route::Upload { name, .. }
            | Route::Referrers { name, .. } => Some(name),
        }
    }
}

/// `path` is what follows `/v2/`.
pub fn parse(path: &str) -> Option<Route<'_>> {
    if path.is_empty() {
        return Some(Route::Base);
    }
    if path == "_catalog" {
        return Some(Route::Catalog);
    }
    let nonempty = |name: &str| !name.is_empty();
    if let Some(name) = path.strip_suffix("/tags/list") {
        return nonempty(name).then_some(Route::Tags { name });
    }
    if let Some(name) = path
        .strip_suffix("/blobs/uploads/")
        .or_else(|| path.strip_suffix("/blobs/uploads"))
    {
        return nonempty(name).then_some(Route::UploadStart { name });
    }
    let (head, last) = path.rsplit_once('/')?;
    let (head2, kind) = head.rsplit_once('/')?;
    if last.is_empty() || head2.is_empty() {
        return None;
    }
    match kind {
        "manifests" => Some(Route::Manifest {
            name: head2,
            reference: last,
        }),
        "blobs" => Some(Route::Blob {
            name: head2,
            digest: last,
        }),
        "referrers" => Some(Route::Referrers {
            name: head2,
            digest: last,
        }),
        "uploads" => {
            let name = head2.strip_suffix("/blobs")?;
            nonempty(name).then_some(Route::Upload { name, id: last })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_from_the_right() {
        assert_eq!(parse(""), Some(Route::Base));
        assert_eq!(parse("_catalog"), Some(Route::Catalog));
        assert_eq!(
            parse("a/b/c/tags/list"),
            Some(Route::Tags { name: "a/b/c" })
        );
        assert_eq!(
            parse("a/manifests/latest"),
            Some(Route::Manifest {
                name: "a",
                reference: "latest"
            })
        );
        assert_eq!(
            parse("a/blobs/uploads/"),
            Some(Route::UploadStart { name: "a" })
        );
        assert_eq!(
            parse("a/blobs/uploads"),
            Some(Route::UploadStart { name: "a" })
        );
        assert_eq!(
            parse("x/y/blobs/uploads/123"),
            Some(Route::Upload {
                name: "x/y",
                id: "123"
            })
        );
        assert_eq!(
            parse("x/blobs/sha256:ab"),
            Some(Route::Blob {
                name: "x",
                digest: "sha256:ab"
            })
        );
        assert_eq!(
            parse("x/referrers/sha256:ab"),
            Some(Route::Referrers {
                name: "x",
                digest: "sha256:ab"
            })
        );
        // Names whose components look like endpoint words.
        assert_eq!(
            parse("manifests/blobs/manifests/v1"),
            Some(Route::Manifest {
                name: "manifests/blobs",
                reference: "v1"
            })
        );
        assert_eq!(
            parse("a/blobs/uploads/blobs/sha256:1"),
            Some(Route::Blob {
                name: "a/blobs/uploads",
                digest: "sha256:1"
            })
        );
        for bad in [
            "a",
            "tags/list",
            "/manifests/x",
            "a/manifests/",
            "a/other/x",
            "blobs/uploads/",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
