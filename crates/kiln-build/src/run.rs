//! A RUN step: the sandbox spec (overlay root, RUN --mount mounts, env,
//! user, network), the helper process, and the command's output streamed to
//! the build log with its last lines kept for the error message.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use kiln_dockerfile::Instruction;
use kiln_sandbox::{Mount, RootFs, SandboxSpec};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::error::BuildError;
use crate::executor::{Executor, located};
use crate::options::Network;

const TAIL_LINES: usize = 20;

#[derive(Debug, Clone)]
pub enum MountReq {
    /// From the build context (`lowers` None) or a stage/image's layers.
    Bind {
        lowers: Option<Vec<PathBuf>>,
        source: String,
        target: String,
        readonly: bool,
    },
    Cache {
        dir: PathBuf,
        target: String,
        uid: Option<u32>,
        gid: Option<u32>,
        mode: Option<u32>,
    },
    Tmpfs {
        target: String,
        size: Option<u64>,
    },
    /// A host path given by the caller (`-v`), not from the Dockerfile.
    Host {
        source: PathBuf,
        target: String,
        readonly: bool,
    },
    Secret {
        file: PathBuf,
        target: String,
        env: Option<String>,
        uid: Option<u32>,
        gid: Option<u32>,
        mode: Option<u32>,
    },
    /// An agent socket kiln serves at `target` for the RUN's duration.
    Ssh {
        agent: crate::ssh::Agent,
        target: String,
        uid: u32,
        gid: u32,
        mode: u32,
    },
}

#[derive(Debug, Clone)]
pub struct RunRequest {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: String,
    pub network: Network,
    pub insecure: bool,
    pub mounts: Vec<MountReq>,
}

/// Runs the command; returns mount placeholders to drop from the layer.
pub async fn run(
    ex: &Executor,
    req: &RunRequest,
    rootfs: RootFs,
    ins: &Instruction,
) -> Result<Vec<PathBuf>, BuildError> {
    let scratch = ex.store.scratch("mounts")?;
    let copying = matches!(rootfs, RootFs::Dir(_));
    let mut spec = SandboxSpec::new(rootfs, req.args.clone());
    spec.env = req.env.clone();
    spec.cwd = req.cwd.clone();
    spec.user = req.user.clone();
    spec.hostname = "kiln".to_string();
    spec.hosts = kiln_sandbox::default_hosts(&spec.hostname);
    spec.network = match req.network {
        Network::Host => kiln_sandbox::Network::Host,
        Network::None => kiln_sandbox::Network::None,
    };
    if req.network == Network::Host {
        spec.resolv_conf = kiln_sandbox::host_resolv_conf().unwrap_or_default();
    }
    if req.insecure {
        spec.capabilities = Some(vec!["ALL".to_string()]);
    }
    // Sockets live outside the store: a socket path has at most 107 bytes.
    let socket_parent = Some(std::env::temp_dir())
        .filter(|t| t.as_os_str().len() <= 64)
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    let mut ssh_dir = None;
    let mut agent_sockets = Vec::new();
    for (i, m) in req.mounts.iter().enumerate() {
        match m {
            MountReq::Ssh {
                agent,
                target,
                uid,
                gid,
                mode,
            } => {
                let dir = match &ssh_dir {
                    Some(d) => d,
                    None => ssh_dir.insert(
                        tempfile::Builder::new()
                            .prefix("kiln-ssh-")
                            .tempdir_in(&socket_parent)
                            .map_err(|e| crate::error::io_err(&socket_parent, e))?,
                    ),
                };
                let socket = dir.path().join(format!("agent{i}.sock"));
                agent_sockets.push(crate::ssh::AgentSocket::start(
                    agent, &socket, *uid, *gid, *mode,
                )?);
                spec.mounts.push(Mount::Socket {
                    source: socket,
                    target: target.clone(),
                });
            }
            MountReq::Bind {
                lowers: Some(layers),
                source,
                target,
                readonly,
            } if copying => {
                // Without overlay the stage's root is materialised; a
                // read-write mount gets a private copy anyway.
                let root = scratch.path().join(format!("stage{i}"));
                crate::layers::materialize(layers, &root)?;
                let src = safe_join(&root, source)?;
                spec.mounts.push(Mount::Bind {
                    source: src,
                    target: target.clone(),
                    readonly: *readonly,
                });
            }
            MountReq::Bind {
                lowers: Some(layers),
                source,
                target,
                readonly,
            } => spec.mounts.push(Mount::Layers {
                lowers: layers.clone(),
                source: source.clone(),
                target: target.clone(),
                readonly: *readonly,
            }),
            MountReq::Bind {
                lowers: None,
                source,
                target,
                readonly,
            } => {
                let context = std::fs::canonicalize(&ex.opts.context)
                    .map_err(|e| crate::error::io_err(&ex.opts.context, e))?;
                let src = safe_join(&context, source)?;
                // A read-write bind must not change the context: writes go
                // to a private copy, as BuildKit discards them.
                let src = if *readonly {
                    src
                } else {
                    let copy = scratch.path().join(format!("rw{i}"));
                    copy_tree(&src, &copy)?;
                    copy
                };
                spec.mounts.push(Mount::Bind {
                    source: src,
                    target: target.clone(),
                    readonly: *readonly,
                });
            }
            MountReq::Cache {
                dir,
                target,
                uid,
                gid,
                mode,
            } => {
                prepare_owned_dir(dir, *uid, *gid, *mode)?;
                spec.mounts.push(Mount::Bind {
                    source: dir.clone(),
                    target: target.clone(),
                    readonly: false,
                });
            }
            MountReq::Host {
                source,
                target,
                readonly,
            } => spec.mounts.push(Mount::Bind {
                source: source.clone(),
                target: target.clone(),
                readonly: *readonly,
            }),
            MountReq::Tmpfs { target, size } => spec.mounts.push(Mount::Tmpfs {
                target: target.clone(),
                size: *size,
                mode: None,
            }),
            MountReq::Secret {
                file,
                target,
                env,
                uid,
                gid,
                mode,
            } => {
                if let Some(var) = env {
                    let value =
                        std::fs::read_to_string(file).map_err(|e| crate::error::io_err(file, e))?;
                    spec.env
                        .push(format!("{var}={}", value.trim_end_matches('\n')));
                }
                if !target.is_empty() {
                    // A private copy with the requested owner and mode; the
                    // secret never enters the layer (it is a bind mount).
                    let copy = scratch.path().join(format!("secret{i}"));
                    std::fs::copy(file, &copy).map_err(|e| crate::error::io_err(file, e))?;
                    set_owner_mode(
                        &copy,
                        uid.unwrap_or(0),
                        gid.unwrap_or(0),
                        mode.unwrap_or(0o400),
                    )?;
                    spec.mounts.push(Mount::Bind {
                        source: copy,
                        target: target.clone(),
                        readonly: true,
                    });
                }
            }
        }
    }

    let prepared = kiln_sandbox::prepare(&ex.opts.helper.program, &helper_args(ex), &spec)
        .map_err(|e| located(BuildError::Sandbox(e), ex.dockerfile_path(), ins))?;
    let mut cmd = tokio::process::Command::from(prepared.command);
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| BuildError::Helper {
        program: ex.opts.helper.program.clone(),
        message: e.to_string(),
    })?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let progress = ex.progress.clone();
    let (tail_out, tail_err) = tokio::join!(
        forward(stdout, progress.clone()),
        forward(stderr, progress.clone())
    );
    let status = child
        .wait()
        .await
        .map_err(|e| BuildError::Internal(format!("waiting for the sandbox: {e}")))?;
    let outcome = prepared.report.outcome(status);
    let mut tail: Vec<String> = tail_out.into_iter().chain(tail_err).collect();
    if tail.len() > TAIL_LINES {
        tail.drain(..tail.len() - TAIL_LINES);
    }
    match outcome {
        Ok(s) if s.success() => {}
        Ok(s) => {
            return Err(BuildError::RunFailed {
                file: ex.dockerfile_path().to_path_buf(),
                line: ins.location.start_line,
                command: req.args.join(" "),
                status: s.to_string(),
                tail: tail.join("\n"),
            });
        }
        Err(e) => {
            return Err(located(BuildError::Sandbox(e), ex.dockerfile_path(), ins));
        }
    }
    let stubs = prepared.report.leftover_stubs().unwrap_or_default();
    drop(agent_sockets);
    drop(ssh_dir);
    drop(scratch);
    Ok(stubs)
}

fn helper_args(ex: &Executor) -> Vec<&str> {
    let mut v: Vec<&str> = ex.opts.helper.args.iter().map(String::as_str).collect();
    v.push("sandbox");
    v
}

/// Copies lines to the build log, keeping the last few.
async fn forward(
    pipe: Option<impl AsyncRead + Unpin>,
    progress: crate::progress::Progress,
) -> Vec<String> {
    let mut tail = VecDeque::new();
    let Some(pipe) = pipe else {
        return Vec::new();
    };
    let mut reader = BufReader::new(pipe);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                progress.raw(&line);
                if tail.len() == TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(String::from_utf8_lossy(&line).trim_end().to_string());
            }
        }
    }
    tail.into()
}

/// `source` inside the build context, refusing paths that climb out.
fn safe_join(base: &Path, source: &str) -> Result<PathBuf, BuildError> {
    let cleaned = kiln_dockerfile::clean_path(&format!("/{source}"));
    if cleaned.split('/').any(|c| c == "..") {
        return Err(BuildError::Context(kiln_fileops::Error::OutsideContext(
            source.to_string(),
        )));
    }
    let joined = base.join(cleaned.trim_start_matches('/'));
    // Resolve symlinks and check the result is still inside the context.
    let real = std::fs::canonicalize(&joined).map_err(|e| crate::error::io_err(&joined, e))?;
    if !real.starts_with(base) {
        return Err(BuildError::Context(kiln_fileops::Error::OutsideContext(
            source.to_string(),
        )));
    }
    Ok(real)
}

fn copy_tree(src: &Path, dest: &Path) -> Result<(), BuildError> {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(src)
        .arg(dest)
        .status()
        .map_err(|e| crate::error::io_err(src, e))?;
    if status.success() {
        Ok(())
    } else {
        Err(BuildError::Internal(format!(
            "copying {} for a read-write bind mount failed",
            src.display()
        )))
    }
}

fn prepare_owned_dir(
    dir: &Path,
    uid: Option<u32>,
    gid: Option<u32>,
    mode: Option<u32>,
) -> Result<(), BuildError> {
    if uid.is_some() || gid.is_some() || mode.is_some() {
        set_owner_mode(
            dir,
            uid.unwrap_or(0),
            gid.unwrap_or(0),
            mode.unwrap_or(0o755),
        )?;
    }
    Ok(())
}

fn set_owner_mode(p: &Path, uid: u32, gid: u32, mode: u32) -> Result<(), BuildError> {
    use std::os::unix::fs::PermissionsExt;
    std::os::unix::fs::chown(p, Some(uid), Some(gid)).map_err(|e| crate::error::io_err(p, e))?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .map_err(|e| crate::error::io_err(p, e))
}
