//! Dist-git: where a build's sources come from. A build is submitted as
//! `GIT_URL#REF`; the hub resolves REF to a commit (ls-remote style) and a
//! worker checks that commit out as a plain tree, without `.git`, as the
//! build context (OSBS builds never see `.git` either).
//!
//! Local paths and `file://` URLs are read in place (no copy, no `git`
//! binary); `http(s)://` repositories are fetched with gix into a temporary
//! bare repository. ssh is refused: workers hold no keys.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime};

use gix::ObjectId;
use gix::bstr::ByteSlice;
use gix::objs::tree::EntryKind;
use gix::remote::Direction;

/// What can go wrong fetching dist-git.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The `GIT_URL#REF` text is malformed.
    #[error("invalid build source {spec:?}: {reason}")]
    InvalidSource {
        /// The source as given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A URL scheme the worker cannot fetch (ssh, git://, …).
    #[error(
        "{url}: {scheme} URLs are not supported (workers hold no keys); \
         use the repository's https:// URL, a file:// URL or a local path"
    )]
    UnsupportedUrl {
        /// The URL.
        url: String,
        /// Its scheme (`ssh`, `git`, …).
        scheme: String,
    },
    /// No branch, tag or ref of that name exists.
    #[error("ref {reference:?} not found in {url}; branches: {}", list_or_none(.branches))]
    RefNotFound {
        /// The repository URL.
        url: String,
        /// The ref asked for.
        reference: String,
        /// The branches the repository has, for the message.
        branches: Vec<String>,
    },
    /// A commit id that the repository does not hold (or, fetched over
    /// HTTP, that no branch or tag reaches).
    #[error("commit {commit} not found in {url} (not reachable from any branch or tag)")]
    CommitNotFound {
        /// The repository URL.
        url: String,
        /// The commit id (or prefix) asked for.
        commit: String,
    },
    /// The repository has no commits.
    #[error("{url} has no commits (HEAD points to the unborn branch {head:?})")]
    EmptyRepository {
        /// The repository URL.
        url: String,
        /// Where HEAD points.
        head: String,
    },
    /// The host or directory could not be reached.
    #[error("cannot reach {url}: {reason}")]
    Unreachable {
        /// The repository URL.
        url: String,
        /// Why (connection refused, no such directory, HTTP status, …).
        reason: String,
    },
    /// There is something at the URL, but not a git repository.
    #[error("{url} is not a git repository: {reason}")]
    NotARepository {
        /// The repository URL.
        url: String,
        /// What was found instead.
        reason: String,
    },
    /// The checkout destination already holds files.
    #[error("checkout destination {} exists and is not empty", .path.display())]
    DestinationNotEmpty {
        /// The destination.
        path: PathBuf,
    },
    /// A tree entry whose name would escape the checkout or write into
    /// `.git` (git refuses these too).
    #[error("{url} at {commit}: refusing to check out unsafe path {path:?}")]
    UnsafePath {
        /// The repository URL.
        url: String,
        /// The commit.
        commit: String,
        /// The offending path.
        path: String,
    },
    /// A local file operation failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Any other git failure (corrupt objects, protocol errors, …).
    #[error("{url}: {context}: {message}")]
    Git {
        /// The repository URL or path.
        url: String,
        /// What was being done.
        context: &'static str,
        /// gix's account of it, causes included.
        message: String,
    },
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".to_string()
    } else {
        items.join(", ")
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn git_err<E: std::fmt::Display>(url: &str, context: &'static str) -> impl FnOnce(E) -> Error {
    let url = url.to_string();
    move |e| Error::Git {
        url,
        context,
        message: format!("{e:#}"),
    }
}

/// Splits `GIT_URL#REF` into the URL and the ref (`None`: the remote's
/// default branch, i.e. its HEAD). The URL is checked to be one the worker
/// can fetch: a local path, `file://` or `http(s)://`; ssh (`ssh://`,
/// `git@host:path`) and `git://` are refused.
pub fn parse_source(spec: &str) -> Result<(String, Option<String>), Error> {
    let invalid = |reason: &str| Error::InvalidSource {
        spec: spec.to_string(),
        reason: reason.to_string(),
    };
    // Ref names may contain '#', URLs (without a fragment) may not.
    let (url, reference) = match spec.split_once('#') {
        Some((url, reference)) => {
            if reference.is_empty() {
                return Err(invalid("empty ref after '#'"));
            }
            (url, Some(reference.to_string()))
        }
        None => (spec, None),
    };
    if url.is_empty() {
        return Err(invalid("empty repository URL"));
    }
    if url.chars().any(|c| c.is_control()) {
        return Err(invalid("control character in the URL"));
    }
    if let Some(reference) = &reference {
        validate_ref(reference).map_err(|reason| invalid(&reason))?;
    }
    location(url)?;
    Ok((url.to_string(), reference))
}

/// The ref syntax rules of `git check-ref-format` that matter here, so a
/// typo fails at submission, not on a worker.
fn validate_ref(reference: &str) -> Result<(), String> {
    if reference.chars().any(|c| {
        c.is_control() || c == ' ' || matches!(c, '~' | '^' | ':' | '?' | '*' | '[' | '\\')
    }) {
        return Err(format!(
            "ref {reference:?} holds a character git refuses in ref names"
        ));
    }
    if reference.contains("..") || reference.starts_with('/') || reference.ends_with('/') {
        return Err(format!("ref {reference:?} is not a valid ref name"));
    }
    Ok(())
}

/// Where a repository is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Location {
    Local(PathBuf),
    Http(String),
}

fn location(url: &str) -> Result<Location, Error> {
    let unsupported = |scheme: &str| Error::UnsupportedUrl {
        url: url.to_string(),
        scheme: scheme.to_string(),
    };
    if let Some((scheme, rest)) = url.split_once("://") {
        return match scheme.to_ascii_lowercase().as_str() {
            "http" | "https" => {
                if rest.is_empty() || rest.starts_with('/') {
                    Err(Error::InvalidSource {
                        spec: url.to_string(),
                        reason: "no host in the URL".to_string(),
                    })
                } else {
                    Ok(Location::Http(url.to_string()))
                }
            }
            "file" => {
                // file:///abs/path; a host part other than localhost is
                // another machine's path, which we cannot read.
                let path = rest.strip_prefix("localhost").unwrap_or(rest);
                if !path.starts_with('/') {
                    return Err(Error::InvalidSource {
                        spec: url.to_string(),
                        reason: "file:// URLs need an absolute path (file:///path)".to_string(),
                    });
                }
                Ok(Location::Local(PathBuf::from(path)))
            }
            other => Err(unsupported(other)),
        };
    }
    // git's rule: a colon before the first slash makes `host:path` an
    // scp-like ssh address.
    let first_slash = url.find('/').unwrap_or(url.len());
    if url[..first_slash].contains(':') {
        return Err(unsupported("ssh"));
    }
    Ok(Location::Local(PathBuf::from(url)))
}

/// A ref as the repository advertises it, peeled to what it finally
/// points at.
#[derive(Debug, Clone)]
struct AdvertisedRef {
    /// Full name: `HEAD`, `refs/heads/main`, `refs/tags/v1`.
    name: String,
    /// For symbolic refs (HEAD): the ref pointed to.
    target: Option<String>,
    /// The peeled object (the commit for branches and tags of commits);
    /// `None` for an unborn HEAD.
    object: Option<ObjectId>,
}

/// What a ref name resolved to.
enum Pick {
    /// A ref's object.
    Object(ObjectId),
    /// Text that names no ref but looks like a commit id (full or
    /// abbreviated): only the objects can tell.
    CommitId(String),
}

fn looks_like_commit_id(s: &str) -> bool {
    (4..=40).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Resolves `reference` against advertised refs the way `git rev-parse`
/// does for names: `HEAD`, a full `refs/…` name, then `refs/tags/X`,
/// `refs/heads/X`, `refs/remotes/X`; failing that, hex is a commit id.
fn pick(url: &str, refs: &[AdvertisedRef], reference: Option<&str>) -> Result<Pick, Error> {
    let find = |name: &str| refs.iter().find(|r| r.name == name);
    let reference = reference.unwrap_or("HEAD");
    let candidates: Vec<String> = if reference == "HEAD" || reference.starts_with("refs/") {
        vec![reference.to_string()]
    } else {
        vec![
            format!("refs/{reference}"),
            format!("refs/tags/{reference}"),
            format!("refs/heads/{reference}"),
            format!("refs/remotes/{reference}"),
        ]
    };
    for name in &candidates {
        if let Some(r) = find(name) {
            return match r.object {
                Some(id) => Ok(Pick::Object(id)),
                None => Err(Error::EmptyRepository {
                    url: url.to_string(),
                    head: r.target.clone().unwrap_or_else(|| r.name.clone()),
                }),
            };
        }
    }
    if reference == "HEAD" && refs.is_empty() {
        return Err(Error::EmptyRepository {
            url: url.to_string(),
            head: "HEAD".to_string(),
        });
    }
    if looks_like_commit_id(reference) {
        return Ok(Pick::CommitId(reference.to_ascii_lowercase()));
    }
    let mut branches: Vec<String> = refs
        .iter()
        .filter_map(|r| r.name.strip_prefix("refs/heads/"))
        .map(str::to_string)
        .collect();
    branches.sort();
    Err(Error::RefNotFound {
        url: url.to_string(),
        reference: reference.to_string(),
        branches,
    })
}

/// Resolves `reference` (a branch, tag, full ref name or commit id; `None`
/// for the default branch) in the repository at `url` to a commit id, as
/// `git ls-remote` would. Over HTTP only the refs are listed, unless the
/// reference is a commit id that no ref points at: then the history is
/// fetched to check that the commit exists.
pub fn resolve(url: &str, reference: Option<&str>) -> Result<String, Error> {
    match location(url)? {
        Location::Local(path) => {
            let repo = open_local(url, &path)?;
            let refs = local_refs(url, &repo)?;
            let id = commit_of(url, &repo, pick(url, &refs, reference)?)?;
            Ok(id.to_string())
        }
        Location::Http(_) => {
            let tmp = tempfile::tempdir().map_err(io_err(&std::env::temp_dir()))?;
            let repo = gix::init_bare(tmp.path())
                .map_err(git_err(url, "creating a scratch repository"))?;
            let refs = {
                let remote = fetch_remote(url, &repo)?;
                let connection = remote
                    .connect(Direction::Fetch)
                    .map_err(|e| classify_remote_error(url, e))?;
                let (ref_map, _handshake) = connection
                    .ref_map(gix::progress::Discard, ref_map_options())
                    .map_err(|e| classify_remote_error(url, e))?;
                advertised(&ref_map.remote_refs)
            };
            match pick(url, &refs, reference)? {
                // Advertised tags come peeled: this is the commit.
                Pick::Object(id) => Ok(id.to_string()),
                Pick::CommitId(hex) => {
                    // A ref's tip needs no download.
                    if let Ok(wanted) = ObjectId::from_hex(hex.as_bytes())
                        && refs.iter().any(|r| r.object == Some(wanted))
                    {
                        return Ok(hex);
                    }
                    fetch_all(url, &repo, |_| Ok(()))?;
                    Ok(commit_of(url, &repo, Pick::CommitId(hex))?.to_string())
                }
            }
        }
    }
}

/// The result of [`checkout`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    /// The commit checked out (full hex id).
    pub commit: String,
    /// The directory holding its tree.
    pub dest: PathBuf,
    /// Submodule paths, left as empty directories (not fetched).
    pub submodules: Vec<String>,
}

/// Checks out `reference` (as for [`resolve`]; a full commit id is the
/// usual case on a worker) of the repository at `url` into `dest`, which
/// must not exist or be empty. `dest` receives the commit's tree as plain
/// files — no `.git` — with the executable bit and symlinks as committed
/// and every file's mtime set to the commit time, so the same commit gives
/// the same build context.
pub fn checkout(url: &str, reference: Option<&str>, dest: &Path) -> Result<Checkout, Error> {
    match fs::read_dir(dest) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Error::DestinationNotEmpty {
                    path: dest.to_path_buf(),
                });
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(dest)(e)),
    }
    // `dest` is created only once the commit is known, so an unknown ref
    // leaves nothing behind; a failure while writing leaves a partial tree.
    let create = || fs::create_dir_all(dest).map_err(io_err(dest));
    let (commit, submodules) = match location(url)? {
        Location::Local(path) => {
            let repo = open_local(url, &path)?;
            let refs = local_refs(url, &repo)?;
            let id = commit_of(url, &repo, pick(url, &refs, reference)?)?;
            create()?;
            (id, write_commit(url, &repo, id, dest)?)
        }
        Location::Http(_) => {
            let tmp = tempfile::tempdir().map_err(io_err(&std::env::temp_dir()))?;
            let repo = gix::init_bare(tmp.path())
                .map_err(git_err(url, "creating a scratch repository"))?;
            let refs = fetch_all(url, &repo, |refs| pick(url, refs, reference).map(drop))?;
            let id = commit_of(url, &repo, pick(url, &refs, reference)?)?;
            create()?;
            (id, write_commit(url, &repo, id, dest)?)
        }
    };
    Ok(Checkout {
        commit: commit.to_string(),
        dest: dest.to_path_buf(),
        submodules,
    })
}

fn open_local(url: &str, path: &Path) -> Result<gix::Repository, Error> {
    match fs::metadata(path) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(Error::NotARepository {
                url: url.to_string(),
                reason: "not a directory".to_string(),
            });
        }
        Err(e) => {
            return Err(Error::Unreachable {
                url: url.to_string(),
                reason: e.to_string(),
            });
        }
    }
    // Exactly this directory (or its .git), never a parent: a typo must not
    // silently build some enclosing repository.
    let mut opts = gix::open::Options::isolated();
    opts = opts.strict_config(false);
    gix::open_opts(path, opts).map_err(|e| Error::NotARepository {
        url: url.to_string(),
        reason: format!("{e}"),
    })
}

fn local_refs(url: &str, repo: &gix::Repository) -> Result<Vec<AdvertisedRef>, Error> {
    let mut refs = Vec::new();
    let head = repo.head().map_err(git_err(url, "reading HEAD"))?;
    let head_target = head.referent_name().map(|n| n.as_bstr().to_string());
    let head_id = repo.head_id().ok().map(|id| id.detach());
    refs.push(AdvertisedRef {
        name: "HEAD".to_string(),
        target: head_target,
        object: head_id,
    });
    let platform = repo.references().map_err(git_err(url, "listing refs"))?;
    for r in platform.all().map_err(git_err(url, "listing refs"))? {
        let mut r = r.map_err(git_err(url, "reading a ref"))?;
        let name = r.name().as_bstr().to_string();
        let object = r.peel_to_id().ok().map(|id| id.detach());
        refs.push(AdvertisedRef {
            name,
            target: None,
            object,
        });
    }
    Ok(refs)
}

/// The commit `pick` designates in `repo` (tags peeled; a ref to a tree
/// or blob is refused).
fn commit_of(url: &str, repo: &gix::Repository, pick: Pick) -> Result<ObjectId, Error> {
    let (id, what) = match pick {
        Pick::Object(id) => (id, id.to_string()),
        Pick::CommitId(hex) => {
            let not_found = || Error::CommitNotFound {
                url: url.to_string(),
                commit: hex.clone(),
            };
            let id = if hex.len() == 40 {
                ObjectId::from_hex(hex.as_bytes()).map_err(|_| not_found())?
            } else {
                let prefix = gix::hash::Prefix::from_hex(&hex).map_err(|_| not_found())?;
                match repo.objects.lookup_prefix(prefix, None) {
                    Ok(Some(Ok(id))) => id,
                    Ok(Some(Err(()))) => {
                        return Err(Error::Git {
                            url: url.to_string(),
                            context: "resolving a commit id",
                            message: format!("{hex} is ambiguous: give more digits"),
                        });
                    }
                    Ok(None) => return Err(not_found()),
                    Err(e) => return Err(git_err(url, "looking up objects")(e)),
                }
            };
            if !repo.has_object(id) {
                return Err(not_found());
            }
            (id, hex)
        }
    };
    let object = repo.find_object(id).map_err(|_| Error::CommitNotFound {
        url: url.to_string(),
        commit: what.clone(),
    })?;
    let commit = object.peel_to_commit().map_err(|e| Error::Git {
        url: url.to_string(),
        context: "peeling to a commit",
        message: format!("{what} is not a commit: {e:#}"),
    })?;
    Ok(commit.id)
}

fn ref_map_options() -> gix::remote::ref_map::Options {
    gix::remote::ref_map::Options {
        // List every ref (HEAD included): the ref map is also what error
        // messages list branches from.
        prefix_from_spec_as_filter_on_remote: false,
        ..Default::default()
    }
}

fn fetch_remote<'repo>(
    url: &str,
    repo: &'repo gix::Repository,
) -> Result<gix::Remote<'repo>, Error> {
    install_crypto_provider();
    repo.remote_at(url)
        .map_err(|e| Error::InvalidSource {
            spec: url.to_string(),
            reason: format!("{e:#}"),
        })?
        .with_fetch_tags(gix::remote::fetch::Tags::None)
        .with_refspecs(
            ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"],
            Direction::Fetch,
        )
        .map_err(git_err(url, "setting up the fetch"))
}

/// Fetches every branch and tag of `url` into `repo`; returns the refs
/// the remote advertised. `check` sees them before any object is
/// downloaded, so an unknown ref costs no transfer.
fn fetch_all(
    url: &str,
    repo: &gix::Repository,
    check: impl FnOnce(&[AdvertisedRef]) -> Result<(), Error>,
) -> Result<Vec<AdvertisedRef>, Error> {
    let remote = fetch_remote(url, repo)?;
    let connection = remote
        .connect(Direction::Fetch)
        .map_err(|e| classify_remote_error(url, e))?;
    let prepare = connection
        .prepare_fetch(gix::progress::Discard, ref_map_options())
        .map_err(|e| classify_remote_error(url, e))?;
    let refs = advertised(&prepare.ref_map().remote_refs);
    check(&refs)?;
    if refs.iter().all(|r| r.object.is_none()) {
        // Nothing to fetch; `pick` reports the empty repository.
        return Ok(refs);
    }
    let interrupt = AtomicBool::new(false);
    prepare
        .receive(gix::progress::Discard, &interrupt)
        .map_err(|e| classify_remote_error(url, e))?;
    Ok(refs)
}

fn advertised(remote_refs: &[gix::protocol::handshake::Ref]) -> Vec<AdvertisedRef> {
    use gix::protocol::handshake::Ref;
    remote_refs
        .iter()
        .map(|r| match r {
            Ref::Peeled {
                full_ref_name,
                object,
                ..
            }
            | Ref::Direct {
                full_ref_name,
                object,
            } => AdvertisedRef {
                name: full_ref_name.to_string(),
                target: None,
                object: Some(*object),
            },
            Ref::Symbolic {
                full_ref_name,
                target,
                object,
                ..
            } => AdvertisedRef {
                name: full_ref_name.to_string(),
                target: Some(target.to_string()),
                object: Some(*object),
            },
            Ref::Unborn {
                full_ref_name,
                target,
            } => AdvertisedRef {
                name: full_ref_name.to_string(),
                target: Some(target.to_string()),
                object: None,
            },
        })
        .collect()
}

/// Sorts a failed HTTP conversation into "not there" (connection refused,
/// DNS, timeouts, 5xx), "not a repository" (404 for `info/refs`) and the
/// rest.
fn classify_remote_error(url: &str, err: gix::Error) -> Error {
    let mut status = None;
    let mut transport = false;
    let mut visit = |e: &(dyn std::error::Error + 'static)| {
        if let Some(r) = e.downcast_ref::<reqwest::Error>() {
            status = status.or(r.status());
            transport |= r.is_connect() || r.is_timeout() || r.is_request();
        }
    };
    for e in err.iter_errors() {
        walk_sources(e, &mut visit);
    }
    let message = format!("{err:#}");
    match status {
        Some(s) if s == reqwest::StatusCode::NOT_FOUND => Error::NotARepository {
            url: url.to_string(),
            reason: format!("HTTP {s} for {url}/info/refs"),
        },
        Some(s) => Error::Unreachable {
            url: url.to_string(),
            reason: format!("HTTP {s}: {message}"),
        },
        None if transport => Error::Unreachable {
            url: url.to_string(),
            reason: message,
        },
        None => Error::Git {
            url: url.to_string(),
            context: "fetching",
            message,
        },
    }
}

/// Visits `e` and its causes, looking inside `io::Error`s too: their
/// `source()` skips the wrapped error itself, which is where gix's HTTP
/// transport keeps reqwest's error.
fn walk_sources(
    e: &(dyn std::error::Error + 'static),
    visit: &mut dyn FnMut(&(dyn std::error::Error + 'static)),
) {
    let mut next = Some(e);
    let mut depth = 0;
    while let Some(e) = next {
        depth += 1;
        if depth > 32 {
            break;
        }
        visit(e);
        if let Some(inner) = e.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
            walk_sources(inner, visit);
        }
        if let Some(g) = e.downcast_ref::<gix::Error>() {
            for inner in g.iter_errors() {
                if !std::ptr::addr_eq(inner, e) {
                    walk_sources(inner, visit);
                }
            }
        }
        next = e.source();
    }
}

/// reqwest is built without a default TLS crypto provider (the one it
/// would bring needs a C toolchain); gix's HTTP client uses the process
/// default, so install ring's once. Losing the race to another installer
/// is fine: any provider will do.
fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Writes the tree of `commit` into `dest`; returns submodule paths.
fn write_commit(
    url: &str,
    repo: &gix::Repository,
    commit: ObjectId,
    dest: &Path,
) -> Result<Vec<String>, Error> {
    let commit_obj = repo
        .find_commit(commit)
        .map_err(git_err(url, "reading the commit"))?;
    let mtime = commit_obj
        .time()
        .ok()
        .and_then(|t| u64::try_from(t.seconds).ok())
        .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s));
    let tree = commit_obj
        .tree_id()
        .map_err(git_err(url, "reading the commit"))?
        .detach();
    let unsafe_path = |path: String| Error::UnsafePath {
        url: url.to_string(),
        commit: commit.to_string(),
        path,
    };

    let mut submodules = Vec::new();
    // Explicit stack: tree depth is attacker-controlled.
    let mut pending = vec![(tree, dest.to_path_buf(), String::new())];
    while let Some((tree_id, dir, rel)) = pending.pop() {
        let tree = repo
            .find_tree(tree_id)
            .map_err(git_err(url, "reading a tree"))?;
        let decoded = tree.decode().map_err(git_err(url, "decoding a tree"))?;
        for entry in &decoded.entries {
            let name = entry
                .filename
                .to_str()
                .map_err(|_| unsafe_path(format!("{rel}{}", entry.filename)))?;
            let rel_path = format!("{rel}{name}");
            if name.is_empty()
                || name == "."
                || name == ".."
                || name.contains('/')
                || name.contains('\0')
                || name.eq_ignore_ascii_case(".git")
            {
                return Err(unsafe_path(rel_path));
            }
            let path = dir.join(name);
            match entry.mode.kind() {
                EntryKind::Tree => {
                    fs::create_dir(&path).map_err(io_err(&path))?;
                    pending.push((entry.oid.to_owned(), path, format!("{rel_path}/")));
                }
                EntryKind::Blob | EntryKind::BlobExecutable => {
                    let blob = repo
                        .find_blob(entry.oid)
                        .map_err(git_err(url, "reading a file"))?;
                    write_file(
                        &path,
                        &blob.data,
                        entry.mode.kind() == EntryKind::BlobExecutable,
                        mtime,
                    )?;
                }
                EntryKind::Link => {
                    let blob = repo
                        .find_blob(entry.oid)
                        .map_err(git_err(url, "reading a symlink"))?;
                    let target = blob
                        .data
                        .to_path()
                        .map_err(|_| unsafe_path(rel_path.clone()))?
                        .to_path_buf();
                    std::os::unix::fs::symlink(&target, &path).map_err(io_err(&path))?;
                }
                EntryKind::Commit => {
                    // A submodule: git leaves an empty directory until it
                    // is initialised; dist-git builds do not fetch them.
                    fs::create_dir(&path).map_err(io_err(&path))?;
                    submodules.push(rel_path);
                }
            }
        }
    }
    submodules.sort();
    Ok(submodules)
}

fn write_file(
    path: &Path,
    data: &[u8],
    executable: bool,
    mtime: Option<SystemTime>,
) -> Result<(), Error> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mode = if executable { 0o755 } else { 0o644 };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io_err(path))?;
    io::Write::write_all(&mut file, data).map_err(io_err(path))?;
    // The umask may have masked bits off at creation.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io_err(path))?;
    if let Some(t) = mtime {
        file.set_modified(t).map_err(io_err(path))?;
    }
    Ok(())
}

/// What `kiln container-build` learns from the checkout it runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalCheckout {
    /// The URL to build from: remote `origin`'s fetch URL, else the
    /// repository itself as a `file://` URL.
    pub url: String,
    /// HEAD's commit (full hex id).
    pub commit: String,
    /// The branch HEAD is on (`None` when detached).
    pub branch: Option<String>,
    /// Tracked files differ from HEAD (staged or not): the build uses the
    /// commit, not these changes. Untracked files are not counted.
    pub dirty: bool,
    /// The top of the worktree.
    pub workdir: PathBuf,
}

/// Describes the git checkout containing `dir` (searching upwards like
/// git): its remote URL, HEAD commit and whether tracked files were
/// changed since.
pub fn local_checkout_info(dir: &Path) -> Result<LocalCheckout, Error> {
    let shown = dir.display().to_string();
    let repo = gix::discover(dir).map_err(|e| Error::NotARepository {
        url: shown.clone(),
        reason: format!("{e}"),
    })?;
    let workdir = repo
        .workdir()
        .ok_or_else(|| Error::NotARepository {
            url: shown.clone(),
            reason: "a bare repository has no checkout to build".to_string(),
        })?
        .to_path_buf();
    let workdir = fs::canonicalize(&workdir).map_err(io_err(&workdir))?;
    let head = repo.head_id().map_err(|_| Error::EmptyRepository {
        url: shown.clone(),
        head: repo
            .head_name()
            .ok()
            .flatten()
            .map(|n| n.as_bstr().to_string())
            .unwrap_or_else(|| "HEAD".to_string()),
    })?;
    let commit = head.detach();
    let branch = repo
        .head_name()
        .ok()
        .flatten()
        .map(|n| n.shorten().to_string());

    let url = match repo.find_remote("origin") {
        Ok(remote) => match remote.url(Direction::Fetch) {
            Some(u) => remote_url_text(&u.to_bstring().to_string(), &workdir),
            None => file_url(&workdir),
        },
        Err(_) => file_url(&workdir),
    };
    let dirty = is_dirty(&shown, &repo, commit, &workdir)?;
    Ok(LocalCheckout {
        url,
        commit: commit.to_string(),
        branch,
        dirty,
        workdir,
    })
}

fn file_url(path: &Path) -> String {
    format!("file://{}", path.display())
}

/// A relative remote path means nothing to the hub: anchor it at the
/// worktree.
fn remote_url_text(url: &str, workdir: &Path) -> String {
    if url.contains("://") || url.starts_with('/') || location(url).is_err() {
        return url.to_string();
    }
    let joined = workdir.join(url);
    fs::canonicalize(&joined)
        .unwrap_or(joined)
        .display()
        .to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Executable,
    Symlink,
    Submodule,
}

fn kind_of_tree(k: EntryKind) -> Option<Kind> {
    match k {
        EntryKind::Blob => Some(Kind::File),
        EntryKind::BlobExecutable => Some(Kind::Executable),
        EntryKind::Link => Some(Kind::Symlink),
        EntryKind::Commit => Some(Kind::Submodule),
        EntryKind::Tree => None,
    }
}

fn kind_of_index(m: gix::index::entry::Mode) -> Option<Kind> {
    use gix::index::entry::Mode;
    if m == Mode::FILE {
        Some(Kind::File)
    } else if m == Mode::FILE_EXECUTABLE {
        Some(Kind::Executable)
    } else if m == Mode::SYMLINK {
        Some(Kind::Symlink)
    } else if m == Mode::COMMIT {
        Some(Kind::Submodule)
    } else {
        None
    }
}

/// Whether tracked content differs from HEAD: the index against HEAD's
/// tree (staged changes), then each tracked file against the index, by
/// size and mtime first and by content when those differ or are too
/// recent to trust (git's "racy" case). Clean/smudge filters are not
/// applied, so a repository using them may read as dirty.
fn is_dirty(
    url: &str,
    repo: &gix::Repository,
    head: ObjectId,
    workdir: &Path,
) -> Result<bool, Error> {
    let head_files = tree_files(url, repo, head)?;
    let index_path = repo.index_path();
    let index = match repo.open_index() {
        Ok(index) => index,
        // No index at all: everything HEAD holds was deleted from it.
        Err(_) if !index_path.exists() => return Ok(!head_files.is_empty()),
        Err(e) => return Err(git_err(url, "reading the index")(e)),
    };
    let index_mtime = fs::metadata(&index_path).and_then(|m| m.modified()).ok();

    let mut seen = 0usize;
    for entry in index.entries() {
        if entry.stage_raw() != 0 {
            return Ok(true); // an unresolved merge
        }
        let path = entry.path(&index).to_str_lossy().into_owned();
        let Some(kind) = kind_of_index(entry.mode) else {
            return Ok(true); // sparse directory entries and the like
        };
        match head_files.get(&path) {
            Some((k, id)) if *k == kind && *id == entry.id => seen += 1,
            _ => return Ok(true),
        }
        if kind == Kind::Submodule
            || entry
                .flags
                .contains(gix::index::entry::Flags::SKIP_WORKTREE)
        {
            continue;
        }
        if worktree_differs(repo, workdir, &path, kind, entry, index_mtime)? {
            return Ok(true);
        }
    }
    Ok(seen != head_files.len())
}

fn worktree_differs(
    repo: &gix::Repository,
    workdir: &Path,
    rel: &str,
    kind: Kind,
    entry: &gix::index::Entry,
    index_mtime: Option<SystemTime>,
) -> Result<bool, Error> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let path = workdir.join(rel);
    let meta = match fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(io_err(&path)(e)),
    };
    let actual = if meta.file_type().is_symlink() {
        Kind::Symlink
    } else if meta.is_file() {
        if meta.permissions().mode() & 0o100 != 0 {
            Kind::Executable
        } else {
            Kind::File
        }
    } else {
        return Ok(true);
    };
    if actual != kind {
        return Ok(true);
    }
    let same_stat = u64::from(entry.stat.size) == (meta.len() & 0xffff_ffff)
        && i64::from(entry.stat.mtime.secs) == meta.mtime()
        && i64::from(entry.stat.mtime.nsecs) == meta.mtime_nsec();
    let racy = match (meta.modified().ok(), index_mtime) {
        (Some(m), Some(i)) => m >= i,
        _ => true,
    };
    if same_stat && !racy {
        return Ok(false);
    }
    let data = if kind == Kind::Symlink {
        let target = fs::read_link(&path).map_err(io_err(&path))?;
        target.into_os_string().into_encoded_bytes()
    } else {
        fs::read(&path).map_err(io_err(&path))?
    };
    let id =
        gix::objs::compute_hash(repo.object_hash(), gix::objs::Kind::Blob, &data).map_err(|e| {
            Error::Git {
                url: workdir.display().to_string(),
                context: "hashing a file",
                message: format!("{e:#}"),
            }
        })?;
    Ok(id != entry.id)
}

/// Every non-tree entry of `commit`'s tree, by path.
fn tree_files(
    url: &str,
    repo: &gix::Repository,
    commit: ObjectId,
) -> Result<BTreeMap<String, (Kind, ObjectId)>, Error> {
    let commit = repo
        .find_commit(commit)
        .map_err(git_err(url, "reading HEAD"))?;
    let root = commit
        .tree_id()
        .map_err(git_err(url, "reading HEAD"))?
        .detach();
    let mut files = BTreeMap::new();
    let mut pending = vec![(root, String::new())];
    while let Some((tree_id, prefix)) = pending.pop() {
        let tree = repo
            .find_tree(tree_id)
            .map_err(git_err(url, "reading a tree"))?;
        let decoded = tree.decode().map_err(git_err(url, "decoding a tree"))?;
        for entry in &decoded.entries {
            let path = format!("{prefix}{}", entry.filename.to_str_lossy());
            match kind_of_tree(entry.mode.kind()) {
                None => pending.push((entry.oid.to_owned(), format!("{path}/"))),
                Some(kind) => {
                    files.insert(path, (kind, entry.oid.to_owned()));
                }
            }
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_splits_url_and_ref() {
        assert_eq!(
            parse_source("https://git.example/rpms/hello#f40").unwrap(),
            (
                "https://git.example/rpms/hello".to_string(),
                Some("f40".to_string())
            )
        );
        assert_eq!(
            parse_source("/srv/git/hello").unwrap(),
            ("/srv/git/hello".to_string(), None)
        );
        assert_eq!(
            parse_source("file:///srv/git/hello#refs/heads/a#b").unwrap(),
            (
                "file:///srv/git/hello".to_string(),
                Some("refs/heads/a#b".to_string())
            )
        );
        assert_eq!(
            parse_source("relative/dir#0123abcd").unwrap().1.as_deref(),
            Some("0123abcd")
        );
    }

    #[test]
    fn source_refuses_what_a_worker_cannot_fetch() {
        for spec in [
            "git@src.example:rpms/hello#main",
            "ssh://git@src.example/rpms/hello",
            "git://src.example/hello",
            "src.example:hello",
        ] {
            let err = parse_source(spec).unwrap_err();
            assert!(matches!(err, Error::UnsupportedUrl { .. }), "{spec}: {err}");
            assert!(err.to_string().contains("https://"), "{err}");
        }
        for spec in [
            "",
            "#main",
            "https://x/y#",
            "https:///path",
            "file://relative",
            "/r#a..b",
            "/r#a b",
        ] {
            assert!(
                matches!(parse_source(spec), Err(Error::InvalidSource { .. })),
                "{spec} accepted"
            );
        }
    }

    #[test]
    fn locations() {
        assert_eq!(
            location("file:///a/b").unwrap(),
            Location::Local("/a/b".into())
        );
        assert_eq!(
            location("file://localhost/a").unwrap(),
            Location::Local("/a".into())
        );
        assert_eq!(location("./a:b").unwrap(), Location::Local("./a:b".into()));
        assert_eq!(
            location("HTTPS://h/x.git").unwrap(),
            Location::Http("HTTPS://h/x.git".into())
        );
    }

    fn r(name: &str, id: u8) -> AdvertisedRef {
        AdvertisedRef {
            name: name.to_string(),
            target: None,
            object: Some(ObjectId::from_bytes_or_panic(&[id; 20])),
        }
    }

    fn picked(p: Pick) -> String {
        match p {
            Pick::Object(id) => id.to_string()[..2].to_string(),
            Pick::CommitId(hex) => format!("commit {hex}"),
        }
    }

    #[test]
    fn names_resolve_like_rev_parse() {
        let refs = vec![
            AdvertisedRef {
                name: "HEAD".into(),
                target: Some("refs/heads/main".into()),
                object: Some(ObjectId::from_bytes_or_panic(&[1; 20])),
            },
            r("refs/heads/main", 1),
            r("refs/heads/v1", 2),
            r("refs/tags/v1", 3),
            r("refs/heads/abc1234", 4),
        ];
        let p = |s: Option<&str>| picked(pick("u", &refs, s).unwrap());
        assert_eq!(p(None), "01");
        assert_eq!(p(Some("main")), "01");
        // git prefers the tag when a branch has the same name.
        assert_eq!(p(Some("v1")), "03");
        assert_eq!(p(Some("refs/heads/v1")), "02");
        assert_eq!(p(Some("abc1234")), "04");
        assert_eq!(p(Some("DEADBEEF")), "commit deadbeef");
        let err = pick("u", &refs, Some("nosuch")).err().unwrap();
        assert_eq!(
            err.to_string(),
            r#"ref "nosuch" not found in u; branches: abc1234, main, v1"#
        );
    }

    #[test]
    fn unborn_head_is_an_empty_repository() {
        let refs = vec![AdvertisedRef {
            name: "HEAD".into(),
            target: Some("refs/heads/main".into()),
            object: None,
        }];
        assert!(matches!(
            pick("u", &refs, None),
            Err(Error::EmptyRepository { .. })
        ));
        assert!(matches!(
            pick("u", &[], None),
            Err(Error::EmptyRepository { .. })
        ));
    }
}
