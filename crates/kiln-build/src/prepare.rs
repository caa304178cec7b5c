//! Preparing the steps that read inputs: RUN (its environment, mounts,
//! secrets) and COPY/ADD (sources from the context, a stage, an image,
//! heredocs or URLs), each with the cache key over everything it reads.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_dockerfile::{Command, DockerIgnore, Instruction, MountType, Source};
use kiln_oci::Digest;

use crate::cachekey::{KeyBuilder, base_key};
use crate::error::{BuildError, io_err};
use crate::executor::{Executor, State, StepWork, located};
use crate::fileop::{FileOp, IgnoreAdapter, SourceRoot, source_options};
use crate::options::{Network, SecretFrom};
use crate::run::{self, RunRequest};
use crate::semantics::run_args;

impl Executor {
    pub(crate) async fn prepare_run(
        &mut self,
        state: &State,
        ins: &Instruction,
    ) -> Result<(Digest, RunRequest), BuildError> {
        let Command::Run(r) = &ins.command else {
            return Err(BuildError::Internal("not a RUN".into()));
        };
        let args = run_args(&state.config, &r.command, &r.heredocs);
        let env = state.run_env();
        let network = match r.network {
            kiln_dockerfile::NetworkMode::None => Network::None,
            kiln_dockerfile::NetworkMode::Host => Network::Host,
            kiln_dockerfile::NetworkMode::Default => self.opts.network,
        };
        let mut k = KeyBuilder::new("run");
        k.field("parent", state.key.to_string())
            .field("args", serde_json::to_vec(&args).unwrap_or_default())
            .field("env", env.join("\0"))
            .field("user", &state.config.config.user)
            .field("workdir", &state.config.config.working_dir)
            .field("network", format!("{network:?}"))
            .field("security", format!("{:?}", r.security));
        let mut mounts = Vec::new();
        let ssh = crate::ssh::ssh_mounts(&r.mounts);
        let mut ssh_plan = ssh.iter();
        for m in &r.mounts {
            let target = m.target.clone().unwrap_or_default();
            k.field("mount", format!("{m:?}"));
            match m.kind {
                MountType::Bind => {
                    let (lowers, from_key) = self
                        .mount_source(m.from.as_deref())
                        .await
                        .map_err(|e| located(e, &self.dockerfile_path, ins))?;
                    let source = m.source.clone().unwrap_or_else(|| "/".to_string());
                    if let Some(from_key) = from_key {
                        k.field("bind-from", from_key.to_string());
                    } else {
                        let digest = self
                            .context_digest(
                                std::slice::from_ref(&source),
                                &kiln_fileops::SourceOptions::default(),
                            )
                            .await
                            .map_err(|e| located(e, &self.dockerfile_path, ins))?;
                        k.field("bind-context", digest);
                    }
                    mounts.push(run::MountReq::Bind {
                        lowers,
                        source,
                        target,
                        readonly: m.readonly,
                    });
                }
                MountType::Cache => {
                    let id = m.id.clone().unwrap_or_else(|| target.clone());
                    mounts.push(run::MountReq::Cache {
                        dir: self.store.cache_mount_dir(&id)?,
                        target,
                        uid: m.uid,
                        gid: m.gid,
                        mode: m.mode,
                    });
                }
                MountType::Tmpfs => mounts.push(run::MountReq::Tmpfs {
                    target,
                    size: m.size,
                }),
                MountType::Secret => {
                    let id =
                        m.id.clone()
                            .or_else(|| {
                                m.target
                                    .as_deref()
                                    .and_then(|t| t.rsplit('/').next())
                                    .map(str::to_string)
                            })
                            .unwrap_or_default();
                    let file = self.secret_file(&id)?;
                    match file {
                        Some(path) => {
                            let target = if target.is_empty() && m.env.is_none() {
                                format!("/run/secrets/{id}")
                            } else {
                                target
                            };
                            mounts.push(run::MountReq::Secret {
                                file: path,
                                target,
                                env: m.env.clone(),
                                uid: m.uid,
                                gid: m.gid,
                                mode: m.mode,
                            })
                        }
                        None if m.required => {
                            return Err(located(
                                BuildError::MissingSecret(id),
                                &self.dockerfile_path,
                                ins,
                            ));
                        }
                        None => {}
                    }
                }
                MountType::Ssh => {
                    // The key has the mount as written; the agent, like a
                    // secret, is not part of it.
                    let Some(plan) = ssh_plan.next() else {
                        return Err(BuildError::Internal("ssh mounts miscounted".into()));
                    };
                    match self.ssh_agents.get(&plan.id) {
                        Some(agent) => mounts.push(run::MountReq::Ssh {
                            agent: agent.clone(),
                            target: plan.target.clone(),
                            uid: plan.uid,
                            gid: plan.gid,
                            mode: plan.mode,
                        }),
                        None if plan.required => {
                            return Err(located(
                                BuildError::MissingSsh(plan.id.clone()),
                                &self.dockerfile_path,
                                ins,
                            ));
                        }
                        None => {}
                    }
                }
            }
        }
        for m in &self.opts.run_mounts {
            // What a mounted file says decides what the step does (a package
            // repository, say): its content is part of the key.
            let source = std::fs::canonicalize(&m.source).map_err(|e| io_err(&m.source, e))?;
            k.field("volume", format!("{}:{}", m.target, m.readonly))
                .field("volume-content", path_digest(&source)?);
            mounts.push(run::MountReq::Host {
                source,
                target: m.target.clone(),
                readonly: m.readonly,
            });
        }
        let mut env = env;
        env.extend(crate::ssh::auth_sock_env(&env, &ssh));
        let req = RunRequest {
            args,
            env,
            cwd: if state.config.config.working_dir.is_empty() {
                "/".to_string()
            } else {
                state.config.config.working_dir.clone()
            },
            user: state.config.config.user.clone(),
            network,
            insecure: r.security == kiln_dockerfile::Security::Insecure,
            mounts,
        };
        Ok((k.finish(), req))
    }

    /// Layers and cache key of a `from=` stage or image; `None` key means
    /// the build context.
    pub(crate) async fn mount_source(
        &self,
        from: Option<&str>,
    ) -> Result<(Option<Vec<PathBuf>>, Option<Digest>), BuildError> {
        let Some(from) = from else {
            return Ok((None, None));
        };
        match self
            .dockerfile
            .resolve_from(from)
            .map_err(|e| self.df_err(e))?
        {
            Source::Stage(i) => {
                let st = self
                    .stage_results
                    .get(&i)
                    .ok_or_else(|| BuildError::Internal(format!("stage {from} was not built")))?;
                Ok((Some(st.lowers(&self.store)), Some(st.key.clone())))
            }
            Source::Image(name) if name.eq_ignore_ascii_case("scratch") => {
                Ok((Some(Vec::new()), Some(base_key("scratch", ""))))
            }
            Source::Image(name) => {
                let img = self.base_image(&name).await?;
                let lowers = img
                    .layers
                    .iter()
                    .rev()
                    .map(|l| self.store.layer_dir(&l.diff_id))
                    .collect();
                Ok((
                    Some(lowers),
                    Some(base_key(&img.manifest_digest.to_string(), "")),
                ))
            }
        }
    }

    pub(crate) fn secret_file(&mut self, id: &str) -> Result<Option<PathBuf>, BuildError> {
        let Some(secret) = self.opts.secrets.iter().find(|s| s.id == id).cloned() else {
            return Ok(None);
        };
        match secret.source {
            SecretFrom::File(p) => {
                let abs = std::fs::canonicalize(&p).map_err(|e| io_err(&p, e))?;
                Ok(Some(abs))
            }
            SecretFrom::Env(var) => {
                let Ok(value) = std::env::var(&var) else {
                    return Ok(None);
                };
                if self.secrets_dir.is_none() {
                    self.secrets_dir = Some(self.store.scratch("secrets")?);
                }
                let dir = self
                    .secrets_dir
                    .as_ref()
                    .map(|s| s.path().to_path_buf())
                    .unwrap_or_default();
                let path = dir.join(Digest::sha256_of(id.as_bytes()).hex());
                write_private(&path, value.as_bytes())?;
                Ok(Some(path))
            }
        }
    }

    /// The content digest of what `patterns` select in the build context
    /// (`select`: `--exclude`, `--parents`; excluded files are not read).
    pub(crate) async fn context_digest(
        &mut self,
        patterns: &[String],
        select: &kiln_fileops::SourceOptions,
    ) -> Result<String, BuildError> {
        let context = self.opts.context.clone();
        let ignore = self.ignore.clone();
        let mut cache = std::mem::take(&mut self.digest_cache);
        let (result, cache) = tokio::task::spawn_blocking({
            let patterns = patterns.to_vec();
            let select = select.clone();
            move || {
                let r = (|| {
                    let mut root = kiln_fileops::Root::open_context(&context)?;
                    if !ignore.is_empty()
                        && let Ok(m) = DockerIgnore::from_patterns(&ignore)
                    {
                        root = root.with_ignore(Arc::new(IgnoreAdapter(m)));
                    }
                    let matches = kiln_fileops::resolve_sources_with(&root, &patterns, &select)?;
                    kiln_fileops::content_digest(&root, &matches, &mut cache)
                })();
                (r, cache)
            }
        })
        .await
        .map_err(|e| BuildError::Internal(e.to_string()))?;
        self.digest_cache = cache;
        Ok(result.map_err(BuildError::Context)?.digest)
    }

    pub(crate) async fn copy_step(
        &mut self,
        state: &mut State,
        ins: &Instruction,
        sources: &kiln_dockerfile::Sources,
        extra: CopyExtra,
    ) -> Result<(), BuildError> {
        let workdir = if state.config.config.working_dir.is_empty() {
            "/".to_string()
        } else {
            state.config.config.working_dir.clone()
        };
        let mut k = KeyBuilder::new(if extra.extract { "add" } else { "copy" });
        k.field("parent", state.key.to_string())
            .field("dest", &sources.dest)
            .field("workdir", &workdir)
            .field("chown", extra.chown.clone().unwrap_or_default())
            .field("chmod", extra.chmod.clone().unwrap_or_default())
            .field("patterns", sources.paths.join("\0"))
            .field("excludes", extra.excludes.join("\0"));
        if extra.parents {
            // Only then, so that the keys of every other COPY stay as they were.
            k.field("parents", "true");
        }
        let select = source_options(&extra.excludes, extra.parents).map_err(|e| {
            located(
                BuildError::FileOp(format!("--exclude: {e}")),
                &self.dockerfile_path,
                ins,
            )
        })?;
        let _ = extra.link; // --link layers are independent; kiln's are already content-addressed.
        let mut ops = Vec::new();
        // Heredoc sources and downloads are staged as files of their own.
        let staged = if !sources.inline.is_empty() || sources.paths.iter().any(|p| is_url(p)) {
            Some(self.store.scratch("files")?)
        } else {
            None
        };
        let mut local_patterns = Vec::new();
        let mut staged_names = Vec::new();
        for p in &sources.paths {
            if is_url(p) {
                if extra.from.is_some() || !extra.extract {
                    return Err(located(
                        BuildError::Unsupported(format!("COPY from a URL ({p}); use ADD")),
                        &self.dockerfile_path,
                        ins,
                    ));
                }
                let dir = staged
                    .as_ref()
                    .map(|s| s.path().to_path_buf())
                    .unwrap_or_default();
                let name = crate::download::fetch(self, p, &dir, extra.checksum.as_deref())
                    .await
                    .map_err(|e| located(e, &self.dockerfile_path, ins))?;
                k.field("url", p);
                staged_names.push(format!("/{name}"));
            } else {
                local_patterns.push(p.clone());
            }
        }
        for inline in &sources.inline {
            let dir = staged
                .as_ref()
                .map(|s| s.path().to_path_buf())
                .unwrap_or_default();
            let name = inline.path.trim_start_matches('/').to_string();
            let file = dir.join(&name);
            std::fs::write(&file, inline.data.as_bytes()).map_err(|e| io_err(&file, e))?;
            k.field("inline", format!("{name}\0{}", inline.data));
            staged_names.push(format!("/{name}"));
        }
        if let Some(dir) = &staged {
            let digest_files = {
                let dir = dir.path().to_path_buf();
                let names = staged_names.clone();
                tokio::task::spawn_blocking(move || -> Result<String, kiln_fileops::Error> {
                    let root = kiln_fileops::Root::open_context(&dir)?;
                    let m = kiln_fileops::resolve_sources(&root, &names)?;
                    let mut c = kiln_fileops::FileDigestCache::new();
                    Ok(kiln_fileops::content_digest(&root, &m, &mut c)?.digest)
                })
                .await
                .map_err(|e| BuildError::Internal(e.to_string()))?
                .map_err(BuildError::Context)?
            };
            k.field("staged", digest_files);
        }
        if !local_patterns.is_empty() {
            let source = match &extra.from {
                Some(from) => {
                    let (lowers, from_key) = self
                        .mount_source(Some(from))
                        .await
                        .map_err(|e| located(e, &self.dockerfile_path, ins))?;
                    k.field("from", from_key.map(|d| d.to_string()).unwrap_or_default());
                    SourceRoot::Layers {
                        lowers: lowers.unwrap_or_default(),
                    }
                }
                None => {
                    let digest = self
                        .context_digest(&local_patterns, &select)
                        .await
                        .map_err(|e| located(e, &self.dockerfile_path, ins))?;
                    k.field("context", digest);
                    SourceRoot::Context {
                        path: std::fs::canonicalize(&self.opts.context)
                            .map_err(|e| io_err(&self.opts.context, e))?,
                        ignore: self.ignore.clone(),
                    }
                }
            };
            ops.push((source, local_patterns, true));
        }
        if let Some(dir) = &staged {
            // Downloads and heredocs are files named as such: --exclude
            // never drops a source named without wildcards, and --parents
            // has no path to keep for them.
            ops.push((
                SourceRoot::Files {
                    path: dir.path().to_path_buf(),
                },
                staged_names,
                false,
            ));
        }
        k.field("pending-workdir", state.pending_workdir.to_string());
        let key = k.finish();
        // Several source roots (context files plus heredocs or downloads)
        // are several copies into one layer; the destination must then be
        // a directory, as Docker requires for several sources.
        let multi = ops.len() > 1;
        let mut file_ops: Vec<FileOp> = ops
            .into_iter()
            .map(|(source, patterns, local)| FileOp::Copy {
                source,
                patterns,
                dest: if multi && !sources.dest.ends_with('/') {
                    format!("{}/", sources.dest)
                } else {
                    sources.dest.clone()
                },
                workdir: workdir.clone(),
                chown: extra.chown.clone(),
                chmod: extra.chmod.clone(),
                extract: extra.extract,
                excludes: if local {
                    extra.excludes.clone()
                } else {
                    Vec::new()
                },
                parents: local && extra.parents,
            })
            .collect();
        if state.pending_workdir {
            file_ops.push(FileOp::Mkdir {
                path: workdir.clone(),
                user: String::new(),
            });
        }
        let result = self
            .fs_step(state, ins, key, StepWork::File(file_ops))
            .await;
        state.pending_workdir = false;
        drop(staged);
        result
    }
}

pub(crate) struct CopyExtra {
    pub(crate) from: Option<String>,
    pub(crate) chown: Option<String>,
    pub(crate) chmod: Option<String>,
    pub(crate) extract: bool,
    pub(crate) checksum: Option<String>,
    pub(crate) link: bool,
    pub(crate) excludes: Vec<String>,
    /// COPY `--parents`.
    pub(crate) parents: bool,
}

pub(crate) fn is_url(p: &str) -> bool {
    p.starts_with("http://") || p.starts_with("https://")
}

pub(crate) fn write_private(path: &Path, data: &[u8]) -> Result<(), BuildError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io_err(path, e))?;
    f.write_all(data).map_err(|e| io_err(path, e))
}

/// A digest of a file's content, or of a directory's names and contents.
fn path_digest(path: &Path) -> Result<String, BuildError> {
    let mut k = KeyBuilder::new("path");
    add_path(&mut k, path, "")?;
    Ok(k.finish().to_string())
}

fn add_path(k: &mut KeyBuilder, path: &Path, rel: &str) -> Result<(), BuildError> {
    let meta = std::fs::metadata(path).map_err(|e| io_err(path, e))?;
    if meta.is_dir() {
        let mut names: Vec<_> = std::fs::read_dir(path)
            .map_err(|e| io_err(path, e))?
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        names.sort();
        for name in names {
            let child_rel = format!("{rel}/{}", name.to_string_lossy());
            add_path(k, &path.join(&name), &child_rel)?;
        }
    } else {
        let data = std::fs::read(path).map_err(|e| io_err(path, e))?;
        k.field("file", rel).field("content", data);
    }
    Ok(())
}
