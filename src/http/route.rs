//! Parsing a `/v2/...` path into a typed route. Repository names contain
//! slashes, so the path is read from the right, where the endpoint's fixed
//! words are. Values are still raw text here; handlers validate them.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'a> {
    Catalog,
    Tags { name: &'a str },
    Manifest { name: &'a str, reference: &'a str },
    Referrers { name: &'a str, digest: &'a str },
    UploadStart { name: &'a str },
    Upload { name: &'a str, id: &'a str },
    Blob { name: &'a str, digest: &'a str },
}

impl Route<'_> {
    /// What a request on this route does, as the audit log names a refusal
    /// of it, and the repository it names when that is a valid name.
    pub fn audit_action(&self, method: &axum::http::Method) -> (&'static str, Option<&str>) {
        use axum::http::Method;
        let (action, name) = match self {
            Route::Catalog => ("catalog.read", None),
            Route::Tags { name } => ("tags.read", Some(*name)),
            Route::Referrers { name, .. } => ("referrers.read", Some(*name)),
            Route::Manifest { name, .. } => (
                match *method {
                    Method::PUT => "manifest.push",
                    Method::DELETE => "manifest.delete",
                    _ => "manifest.pull",
                },
                Some(*name),
            ),
            Route::Blob { name, .. } => (
                if *method == Method::DELETE {
                    "blob.delete"
                } else {
                    "blob.pull"
                },
                Some(*name),
            ),
            Route::UploadStart { name } | Route::Upload { name, .. } => ("blob.push", Some(*name)),
        };
        let name = name.filter(|n| n.parse::<crate::oci::RepositoryName>().is_ok());
        (action, name)
    }
}

/// `path` is the part after `/v2/`, exactly as sent (not percent-decoded, so
/// an encoded slash can never smuggle a path segment into a name).
pub fn parse(path: &str) -> Option<Route<'_>> {
    if path == "_catalog" {
        return Some(Route::Catalog);
    }
    if let Some(name) = path.strip_suffix("/tags/list") {
        return Some(Route::Tags { name });
    }
    if let Some(name) = path
        .strip_suffix("/blobs/uploads/")
        .or_else(|| path.strip_suffix("/blobs/uploads"))
    {
        return Some(Route::UploadStart { name });
    }
    let (prefix, last) = path.rsplit_once('/')?;
    let (name, kind) = prefix.rsplit_once('/')?;
    match kind {
        "manifests" => Some(Route::Manifest {
            name,
            reference: last,
        }),
        "referrers" => Some(Route::Referrers { name, digest: last }),
        "blobs" => Some(Route::Blob { name, digest: last }),
        "uploads" => name
            .strip_suffix("/blobs")
            .map(|name| Route::Upload { name, id: last }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_endpoint() {
        assert_eq!(parse("_catalog"), Some(Route::Catalog));
        assert_eq!(parse("a/b/tags/list"), Some(Route::Tags { name: "a/b" }));
        assert_eq!(
            parse("a/manifests/latest"),
            Some(Route::Manifest {
                name: "a",
                reference: "latest"
            })
        );
        assert_eq!(
            parse("a/b/referrers/sha256:x"),
            Some(Route::Referrers {
                name: "a/b",
                digest: "sha256:x"
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
            parse("a/b/blobs/uploads/123"),
            Some(Route::Upload {
                name: "a/b",
                id: "123"
            })
        );
        assert_eq!(
            parse("a/blobs/sha256:x"),
            Some(Route::Blob {
                name: "a",
                digest: "sha256:x"
            })
        );
    }

    #[test]
    fn names_may_contain_endpoint_words() {
        assert_eq!(
            parse("blobs/manifests/blobs/sha256:x"),
            Some(Route::Blob {
                name: "blobs/manifests",
                digest: "sha256:x"
            })
        );
        assert_eq!(
            parse("x/blobs/uploads/manifests/v1"),
            Some(Route::Manifest {
                name: "x/blobs/uploads",
                reference: "v1"
            })
        );
    }

    #[test]
    fn unknown_paths() {
        assert_eq!(parse(""), None);
        assert_eq!(parse("a"), None);
        assert_eq!(parse("a/other/x"), None);
        assert_eq!(parse("a/uploads/x"), None);
    }
}
