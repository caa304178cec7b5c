//! COPY, ADD and WORKDIR run in a helper process: it enters a private mount
//! namespace, mounts the step's overlay (and the source stages' roots) there,
//! and does the file work with `kiln-fileops`. The mounts vanish with the
//! process, so a killed build leaves none behind on the host.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use kiln_dockerfile::DockerIgnore;
use kiln_fileops::{CopyOptions, CopySource, Excludes, Root, RootKind, SourceOptions};
use kiln_sandbox::RootFs;
use serde::{Deserialize, Serialize};

use crate::error::BuildError;
use crate::options::HelperCommand;

/// Where copied files come from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SourceRoot {
    /// The build context, seen through its .dockerignore patterns.
    Context { path: PathBuf, ignore: Vec<String> },
    /// Another stage's or image's root: its layer directories, topmost first
    /// (empty for `scratch`). Mounted read-only.
    Layers { lowers: Vec<PathBuf> },
    /// A plain directory holding downloaded or generated files (ADD URL,
    /// heredoc sources), treated like a build context.
    Files { path: PathBuf },
    /// A stage's or image's root materialised as a directory (the copying
    /// snapshotter); owners are kept as in `Layers`.
    Dir { path: PathBuf },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum FileOp {
    Copy {
        source: SourceRoot,
        patterns: Vec<String>,
        dest: String,
        workdir: String,
        chown: Option<String>,
        chmod: Option<String>,
        /// ADD: extract local archives.
        extract: bool,
        /// `--exclude` patterns (`.dockerignore` syntax, relative to each source).
        #[serde(default)]
        excludes: Vec<String>,
        /// COPY `--parents`.
        #[serde(default)]
        parents: bool,
    },
    Mkdir {
        path: String,
        /// The USER whose directory it becomes (empty: root).
        user: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileOpSpec {
    /// The step's root: an overlay (lower layers topmost first, upper and
    /// work dirs), or a full directory with the copying snapshotter.
    pub root: RootFs,
    /// A directory for mount points and read-only overlays' scratch.
    pub scratch: PathBuf,
    /// Done in order on the same root.
    pub ops: Vec<FileOp>,
}

#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    Ok { files: u64, bytes: u64 },
    Err { message: String },
}

/// Runs `spec` in a helper process and waits for it.
pub async fn run(helper: &HelperCommand, spec: &FileOpSpec) -> Result<(), BuildError> {
    let json = serde_json::to_vec(spec).map_err(|e| BuildError::Internal(e.to_string()))?;
    let mut cmd = tokio::process::Command::new(&helper.program);
    cmd.args(&helper.args)
        .arg("fileop")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| BuildError::Helper {
        program: helper.program.clone(),
        message: e.to_string(),
    })?;
    if let Some(mut stdin) = child.stdin.take() {
        use tokio::io::AsyncWriteExt;
        stdin
            .write_all(&json)
            .await
            .map_err(|e| BuildError::Internal(format!("file helper stdin: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| BuildError::Internal(format!("file helper: {e}")))?;
    match serde_json::from_slice::<Reply>(&out.stdout) {
        Ok(Reply::Ok { .. }) if out.status.success() => Ok(()),
        Ok(Reply::Err { message }) => Err(BuildError::FileOp(message)),
        _ => Err(BuildError::FileOp(format!(
            "file helper failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
    }
}

/// The helper's side: reads a [`FileOpSpec`] on stdin, answers on stdout.
/// Must run single-threaded (it unshares its mount namespace).
pub fn helper_main() -> i32 {
    let mut input = Vec::new();
    let reply = match std::io::stdin().read_to_end(&mut input) {
        Err(e) => Reply::Err {
            message: format!("reading the file operation: {e}"),
        },
        Ok(_) => match serde_json::from_slice::<FileOpSpec>(&input) {
            Err(e) => Reply::Err {
                message: format!("bad file operation: {e}"),
            },
            Ok(spec) => match execute(&spec) {
                Ok((files, bytes)) => Reply::Ok { files, bytes },
                Err(message) => Reply::Err { message },
            },
        },
    };
    let ok = matches!(reply, Reply::Ok { .. });
    let data = serde_json::to_vec(&reply).unwrap_or_default();
    let _ = std::io::stdout().write_all(&data);
    if ok { 0 } else { 1 }
}

fn execute(spec: &FileOpSpec) -> Result<(u64, u64), String> {
    kiln_sandbox::enter_private_mount_namespace().map_err(|e| e.to_string())?;
    let dest = match &spec.root {
        RootFs::Dir(dir) => Root::open_image(dir).map_err(|e| e.to_string())?,
        overlay => {
            let merged = spec.scratch.join("merged");
            mkdir(&merged)?;
            kiln_sandbox::mount_rootfs(overlay, &merged).map_err(|e| e.to_string())?;
            Root::open_image(&merged).map_err(|e| e.to_string())?
        }
    };
    let (mut files, mut bytes) = (0, 0);
    for (i, op) in spec.ops.iter().enumerate() {
        let (f, b) = execute_one(spec, &dest, op, i)?;
        files += f;
        bytes += b;
    }
    Ok((files, bytes))
}

fn execute_one(
    spec: &FileOpSpec,
    dest: &Root,
    op: &FileOp,
    index: usize,
) -> Result<(u64, u64), String> {
    match op {
        FileOp::Mkdir { path, user } => {
            let owner = if user.is_empty() {
                None
            } else {
                Some(kiln_fileops::resolve_user(dest, user).map_err(|e| e.to_string())?)
            };
            kiln_fileops::mkdir_workdir(dest, path, owner).map_err(|e| e.to_string())?;
            Ok((0, 0))
        }
        FileOp::Copy {
            source,
            patterns,
            dest: to,
            workdir,
            chown,
            chmod,
            extract,
            excludes,
            parents,
        } => {
            let src = open_source(spec, source, index)?;
            let select =
                source_options(excludes, *parents).map_err(|e| format!("--exclude: {e}"))?;
            let matches = kiln_fileops::resolve_sources_with(&src, patterns, &select)
                .map_err(|e| e.to_string())?;
            let sources: Vec<CopySource<'_>> = matches
                .iter()
                .map(|m| CopySource {
                    root: &src,
                    source: m,
                })
                .collect();
            let opts = CopyOptions {
                chown: chown.clone(),
                chmod: chmod.clone(),
            };
            let stats = if *extract {
                kiln_fileops::add(dest, &sources, to, workdir, &opts)
            } else {
                kiln_fileops::copy(dest, &sources, to, workdir, &opts)
            }
            .map_err(|e| e.to_string())?;
            Ok((stats.files, stats.bytes))
        }
    }
}

fn open_source(spec: &FileOpSpec, source: &SourceRoot, index: usize) -> Result<Root, String> {
    match source {
        SourceRoot::Context { path, ignore } => {
            let root = Root::open_context(path).map_err(|e| e.to_string())?;
            if ignore.is_empty() {
                return Ok(root);
            }
            let matcher = DockerIgnore::from_patterns(ignore).map_err(|e| e.to_string())?;
            Ok(root.with_ignore(Arc::new(IgnoreAdapter(matcher))))
        }
        SourceRoot::Files { path } => Root::open_context(path).map_err(|e| e.to_string()),
        SourceRoot::Dir { path } => Root::open_image(path).map_err(|e| e.to_string()),
        SourceRoot::Layers { lowers } => {
            let mnt = spec.scratch.join(format!("source{index}"));
            mkdir(&mnt)?;
            match lowers.as_slice() {
                [] => {}
                [only] => bind_readonly(only, &mnt)?,
                _ => {
                    let (upper, work) = (
                        spec.scratch.join("src-upper"),
                        spec.scratch.join("src-work"),
                    );
                    mkdir(&upper)?;
                    mkdir(&work)?;
                    let rootfs = RootFs::Overlay {
                        lowers: lowers.clone(),
                        upper,
                        work,
                    };
                    kiln_sandbox::mount_rootfs(&rootfs, &mnt).map_err(|e| e.to_string())?;
                }
            }
            let root = Root::open_image(&mnt).map_err(|e| e.to_string())?;
            debug_assert_eq!(root.kind(), RootKind::Image);
            Ok(root)
        }
    }
}

fn bind_readonly(src: &Path, target: &Path) -> Result<(), String> {
    use rustix::mount::{MountFlags, mount_bind, mount_remount};
    mount_bind(src, target).map_err(|e| format!("bind {}: {e}", src.display()))?;
    mount_remount(target, MountFlags::BIND | MountFlags::RDONLY, "")
        .map_err(|e| format!("read-only {}: {e}", target.display()))
}

fn mkdir(p: &Path) -> Result<(), String> {
    std::fs::create_dir_all(p).map_err(|e| format!("{}: {e}", p.display()))
}

/// What `--exclude` and `--parents` select, with the `.dockerignore`
/// matcher over the exclude patterns (as BuildKit matches them).
pub(crate) fn source_options(
    excludes: &[String],
    parents: bool,
) -> Result<SourceOptions, kiln_dockerfile::Error> {
    let excludes = if excludes.is_empty() {
        None
    } else {
        let matcher = DockerIgnore::from_patterns(excludes)?;
        Some(Excludes::new(Arc::new(IgnoreAdapter(matcher))))
    };
    Ok(SourceOptions { excludes, parents })
}

/// `.dockerignore` as `kiln-fileops` asks for it.
pub struct IgnoreAdapter(pub DockerIgnore);

impl kiln_fileops::Ignore for IgnoreAdapter {
    fn is_excluded(&self, path: &str) -> bool {
        self.0.is_excluded(path)
    }

    fn may_include_under(&self, dir: &str) -> bool {
        !self.0.can_skip_dir(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclude_patterns_become_a_dockerignore_matcher() {
        let none = source_options(&[], true).map_err(|e| e.to_string());
        assert!(matches!(
            none,
            Ok(SourceOptions {
                excludes: None,
                parents: true
            })
        ));
        let bad = source_options(&["ok".into(), "[a-".into()], false)
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert_eq!(bad, Err("syntax error in pattern \"[a-\"".to_string()));
        assert!(source_options(&["!".into()], false).is_err());

        // What the copier asks the matcher: exclusion, and whether an
        // excluded directory must still be walked for an exception.
        let adapter = IgnoreAdapter(
            DockerIgnore::from_patterns(&["node_modules", "docs", "!docs/README.md"])
                .unwrap_or_default(),
        );
        use kiln_fileops::Ignore as _;
        assert!(adapter.is_excluded("node_modules"));
        assert!(adapter.is_excluded("node_modules/a/b.js"));
        assert!(!adapter.is_excluded("src/node_modules"));
        assert!(!adapter.may_include_under("node_modules"));
        assert!(adapter.may_include_under("docs"));
        assert!(!adapter.is_excluded("docs/README.md"));
    }

    #[test]
    fn copy_ops_without_the_new_fields_still_parse() {
        let json = r#"{"Copy":{"source":{"Files":{"path":"/s"}},"patterns":["/a"],
            "dest":"/","workdir":"/","chown":null,"chmod":null,"extract":false}}"#;
        let op: FileOp = serde_json::from_str(json).unwrap_or(FileOp::Mkdir {
            path: String::new(),
            user: String::new(),
        });
        assert!(matches!(
            op,
            FileOp::Copy { ref excludes, parents: false, .. } if excludes.is_empty()
        ));
    }
}
