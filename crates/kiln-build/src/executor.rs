//! Runs a Dockerfile: stages in dependency order, each instruction either
//! answered from the build cache or executed (RUN in the sandbox, COPY/ADD
//! and WORKDIR in the file helper), every filesystem change committed as a
//! layer, metadata instructions folded into the image config.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kiln_client::{Client, ClientOptions, Credentials, Platform};
use kiln_dockerfile::{Command, CommandLine, DockerIgnore, Dockerfile, Instruction, Source};
use kiln_oci::Digest;
use kiln_sandbox::RootFs;
use serde::{Deserialize, Serialize};

use crate::cachekey::base_key;
use crate::error::{BuildError, io_err};
use crate::fileop::{self, FileOp, FileOpSpec, SourceRoot};
use crate::image::{Empty, Format, History, ImageConfig, rfc3339};
use crate::layers;
use crate::options::{BuildOptions, pinned_base};
use crate::prepare::CopyExtra;
use crate::progress::Progress;
use crate::pull::{self, BaseImage, human_size};
use crate::run::{self, RunRequest};
use crate::semantics::{
    builtin_arg, created_by, healthcheck, media_for_format, resolve_workdir, scratch_config,
    shell_of,
};
use crate::store::{LayerInfo, Store};

/// Where a stage stands after an instruction.
#[derive(Debug, Clone)]
pub(crate) struct State {
    pub config: ImageConfig,
    pub layers: Vec<LayerInfo>,
    /// Cache key of the filesystem so far.
    pub key: Digest,
    /// ARGs declared in this stage: name → value (None: declared, unset).
    pub args: Vec<(String, Option<String>)>,
    /// Where the base came from, for cross-repository mounts on push.
    pub origin: Option<(String, String)>,
    /// The base image as written in FROM and the manifest it resolved to
    /// (through earlier stages); None for scratch.
    pub base: Option<BaseRef>,
    /// WORKDIR was set and not yet created by a filesystem step.
    pub pending_workdir: bool,
    /// CMD was given in this stage (ENTRYPOINT then keeps it).
    pub cmd_set: bool,
    /// The time of the newest filesystem change (or the base image's):
    /// what history entries and the image's `created` say.
    pub created: String,
}

impl State {
    /// Layer directories, topmost first, as overlay wants them.
    ///
    /// A layer that occurs twice (two steps that made the same change, say
    /// only touching `/etc`) is stacked once, at its topmost place: overlay
    /// refuses a directory twice (ELOOP), and the upper copy shadows
    /// everything the lower one holds anyway.
    pub fn lowers(&self, store: &Store) -> Vec<PathBuf> {
        let mut seen = std::collections::HashSet::new();
        self.layers
            .iter()
            .rev()
            .filter(|l| seen.insert(l.diff_id.clone()))
            .map(|l| store.layer_dir(&l.diff_id))
            .collect()
    }

    fn arg(&self, name: &str) -> Option<String> {
        self.args
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.clone())
    }

    /// Variables for expanding an instruction: ENV wins over ARG.
    pub(crate) fn lookup(&self, name: &str) -> Option<String> {
        self.config
            .env_get(name)
            .map(str::to_string)
            .or_else(|| self.arg(name))
    }

    /// The environment a RUN sees: the image's, plus build args not
    /// shadowed by ENV.
    pub(crate) fn run_env(&self) -> Vec<String> {
        let mut env: Vec<String> = self.config.env().to_vec();
        for (name, value) in &self.args {
            if let Some(v) = value
                && self.config.env_get(name).is_none()
            {
                env.retain(|kv| kv.split_once('=').map(|(k, _)| k) != Some(name));
                env.push(format!("{name}={v}"));
            }
        }
        env
    }
}

/// The result of one finished build.
#[derive(Debug, Clone)]
pub struct BuildResult {
    pub manifest_digest: Digest,
    pub manifest: Vec<u8>,
    pub config_digest: Digest,
    pub config: ImageConfig,
    pub layers: Vec<LayerInfo>,
    pub format: Format,
    /// `registry/repo` of the base image, for mounting its layers on push.
    pub origin: Option<(String, String)>,
    /// The final stage's base image (the parent image), None for scratch.
    pub base: Option<BaseRef>,
    /// Steps answered from the cache / executed.
    pub cache_hits: usize,
    pub executed: usize,
}

/// An image a stage started from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseRef {
    /// As written in FROM, after ARG expansion.
    pub reference: String,
    pub manifest_digest: Digest,
}

/// What the cache remembers of a filesystem step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CachedStep {
    diff_id: Option<Digest>,
    /// When the step first ran: a cache hit keeps it, so a build that
    /// changes nothing gives the same image.
    #[serde(default)]
    created: Option<String>,
}

pub struct Executor {
    pub(crate) opts: BuildOptions,
    pub(crate) store: Store,
    pub(crate) client: Client,
    pub(crate) progress: Progress,
    pub(crate) platform: Platform,
    pub(crate) dockerfile: Dockerfile,
    pub(crate) dockerfile_path: PathBuf,
    pub(crate) ignore: Vec<String>,
    pub(crate) digest_cache: kiln_fileops::FileDigestCache,
    pub(crate) stage_results: BTreeMap<usize, State>,
    pub(crate) build_args_used: std::collections::BTreeSet<String>,
    pub(crate) steps_total: usize,
    pub(crate) step: usize,
    pub(crate) cache_hits: usize,
    pub(crate) executed: usize,
    pub(crate) now: String,
    pub(crate) secrets_dir: Option<crate::store::Scratch>,
    /// `--ssh` ids, checked and their key files read.
    pub(crate) ssh_agents: BTreeMap<String, crate::ssh::Agent>,
    pub(crate) snapshotter: Snapshotter,
    /// The copying snapshotter's last root, for the state key it belongs to.
    pub(crate) materialized: Option<(Digest, crate::store::Scratch)>,
    /// Keys of `base_pins` that replaced some image; the others are
    /// reported, since a pin that applies nowhere means the build is not
    /// on the base it was meant to be.
    pub(crate) pins_used: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

/// How a step gets a writable root on top of its parent's layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Snapshotter {
    /// overlayfs: the step writes an upper directory, which is the layer.
    Overlay,
    /// A full copy of the root per step, diffed afterwards (no overlayfs).
    Copy,
}

impl Snapshotter {
    /// `KILN_BUILD_SNAPSHOTTER=overlay|copy` forces one; otherwise overlay
    /// when the kernel mounts it in the store's directory.
    pub fn detect(store: &Store) -> Snapshotter {
        match std::env::var("KILN_BUILD_SNAPSHOTTER").as_deref() {
            Ok("copy") => Snapshotter::Copy,
            Ok("overlay") => Snapshotter::Overlay,
            _ if kiln_sandbox::overlay_supported(&store.root().join("tmp")) => Snapshotter::Overlay,
            _ => Snapshotter::Copy,
        }
    }
}

const BUILTIN_ARGS: [&str; 8] = [
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
];

/// Passed to RUN without an ARG declaration, as Docker does.
const PROXY_ARGS: [&str; 8] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// The registry client of a build (pulls and pushes alike): credentials
/// from the usual auth files, `tls_verify` as the options say.
pub(crate) fn registry_client(
    opts: &BuildOptions,
    progress: &Progress,
) -> Result<Client, BuildError> {
    let credentials = match Credentials::from_auth_files() {
        Ok(c) => c,
        Err(e) => {
            progress.line(&format!("[Warning] registry credentials not loaded: {e}"));
            Credentials::new()
        }
    };
    Client::new(ClientOptions {
        tls_verify: opts.tls_verify,
        credentials,
        ..ClientOptions::default()
    })
    .map_err(|e| BuildError::Internal(format!("registry client: {e}")))
}

impl Executor {
    pub fn new(opts: BuildOptions, progress: Progress) -> Result<Executor, BuildError> {
        let store = Store::open(&opts.root)?;
        let snapshotter = Snapshotter::detect(&store);
        if snapshotter == Snapshotter::Copy {
            progress.line("overlayfs is not available: each step works on a copy of its root");
        }
        let dockerfile_path = match &opts.dockerfile {
            Some(p) => p.clone(),
            None => {
                let df = opts.context.join("Dockerfile");
                let cf = opts.context.join("Containerfile");
                if !df.exists() && cf.exists() { cf } else { df }
            }
        };
        let text =
            std::fs::read_to_string(&dockerfile_path).map_err(|e| io_err(&dockerfile_path, e))?;
        let dockerfile = Dockerfile::parse(&text).map_err(|e| BuildError::Dockerfile {
            file: dockerfile_path.clone(),
            error: e,
        })?;
        let ignore = read_dockerignore(&opts.context, &dockerfile_path)?;
        let ssh_agents = crate::ssh::resolve(&opts.ssh)?;
        // A bad pin is the caller's mistake whether or not a FROM uses it.
        for (name, pin) in &opts.base_pins {
            pin.parse::<kiln_oci::Reference>()
                .map_err(|e| BuildError::BadReference {
                    reference: pin.clone(),
                    message: format!("pinned for {name}: {e}"),
                })?;
        }
        let client = registry_client(&opts, &progress)?;
        let digest_cache =
            kiln_fileops::FileDigestCache::load(&store.context_digest_cache_path(&opts.context))
                .unwrap_or_default();
        let now = rfc3339(match opts.source_date_epoch {
            Some(t) => t,
            None => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
        });
        Ok(Executor {
            opts,
            store,
            client,
            progress,
            platform: Platform::host(),
            dockerfile,
            dockerfile_path,
            ignore,
            digest_cache,
            stage_results: BTreeMap::new(),
            build_args_used: Default::default(),
            steps_total: 0,
            step: 0,
            cache_hits: 0,
            executed: 0,
            now,
            secrets_dir: None,
            ssh_agents,
            snapshotter,
            materialized: None,
            pins_used: Default::default(),
        })
    }

    pub(crate) fn df_err(&self, e: kiln_dockerfile::Error) -> BuildError {
        BuildError::Dockerfile {
            file: self.dockerfile_path.clone(),
            error: e,
        }
    }

    fn builtin_arg(&self, name: &str) -> Option<String> {
        builtin_arg(&self.platform, name)
    }

    pub async fn build(mut self) -> Result<BuildResult, BuildError> {
        let build_args = self.opts.build_args.clone();
        let meta = self
            .dockerfile
            .meta_args(&|n| build_args.get(n).cloned())
            .map_err(|e| self.df_err(e))?;
        let platform = self.platform.clone();
        let meta_lookup = |n: &str| meta.get(n).or_else(|| builtin_arg(&platform, n));
        let target = self
            .dockerfile
            .target(self.opts.target.as_deref())
            .map_err(|e| self.df_err(e))?
            .index;
        let order = self
            .dockerfile
            .build_order(target, &meta_lookup)
            .map_err(|e| self.df_err(e))?;
        self.steps_total = order
            .iter()
            .map(|&i| self.dockerfile.stages[i].instructions.len() + 1)
            .sum();
        for name in meta.values.iter().map(|(n, _)| n.clone()) {
            self.build_args_used.insert(name);
        }
        for &index in &order {
            let state = self.run_stage(index, &meta).await?;
            self.stage_results.insert(index, state);
        }
        for arg in self.opts.build_args.keys() {
            if !self.build_args_used.contains(arg) && !PROXY_ARGS.contains(&arg.as_str()) {
                self.progress.line(&format!(
                    "[Warning] one or more build args were not consumed: [{arg}]"
                ));
            }
        }
        if let Ok(used) = self.pins_used.lock() {
            for (name, pin) in &self.opts.base_pins {
                if !used.contains(name) {
                    self.progress.line(&format!(
                        "[Warning] {name} was pinned to {pin}, but no stage built uses {name}"
                    ));
                }
            }
        }
        let _ = self
            .digest_cache
            .save(&self.store.context_digest_cache_path(&self.opts.context));
        let state = self
            .stage_results
            .remove(&target)
            .ok_or_else(|| BuildError::Internal("target stage was not built".into()))?;
        self.finish_image(state).await
    }

    async fn run_stage(
        &mut self,
        index: usize,
        meta: &kiln_dockerfile::MetaArgs,
    ) -> Result<State, BuildError> {
        let stage = self.dockerfile.stages[index].clone();
        let platform = self.platform.clone();
        let meta_lookup = |n: &str| meta.get(n).or_else(|| builtin_arg(&platform, n));
        let from = stage
            .from
            .expand(&meta_lookup, self.dockerfile.escape)
            .map_err(|e| self.df_err(e))?;
        self.step += 1;
        self.progress.line(&format!(
            "[{}/{}] {}",
            self.step,
            self.steps_total,
            stage.from_instruction.original.trim()
        ));
        let base = self
            .dockerfile
            .base(index, &meta_lookup)
            .map_err(|e| self.df_err(e))?;
        let mut state = match base {
            Source::Stage(i) => self
                .stage_results
                .get(&i)
                .cloned()
                .ok_or_else(|| BuildError::Internal(format!("stage {i} was not built")))?,
            Source::Image(name) if name.eq_ignore_ascii_case("scratch") => State {
                config: scratch_config(&self.platform),
                layers: Vec::new(),
                key: base_key("scratch", &self.platform.to_string()),
                args: Vec::new(),
                origin: None,
                base: None,
                pending_workdir: false,
                cmd_set: false,
                created: self.now.clone(),
            },
            Source::Image(name) => {
                let img = self
                    .base_image(&name)
                    .await
                    .map_err(|e| located(e, &self.dockerfile_path, &stage.from_instruction))?;
                let config = img.config(&self.store)?;
                // Until a step changes files, the image is as old as its base.
                let created = match (&config.created, self.opts.source_date_epoch) {
                    (Some(t), None) => t.clone(),
                    _ => self.now.clone(),
                };
                State {
                    config,
                    layers: img.layers.clone(),
                    key: base_key(&img.manifest_digest.to_string(), &self.platform.to_string()),
                    args: Vec::new(),
                    origin: Some((img.registry.clone(), img.repository.clone())),
                    base: Some(BaseRef {
                        reference: name.clone(),
                        manifest_digest: img.manifest_digest.clone(),
                    }),
                    pending_workdir: false,
                    cmd_set: false,
                    created,
                }
            }
        };
        if let Some(platform) = &from.platform
            && platform != &self.platform.to_string()
            && !platform.starts_with("$")
        {
            self.progress.line(&format!(
                "[Warning] FROM --platform={platform}: kiln builds for {} only",
                self.platform
            ));
        }
        // A stage starts with no ARGs of its own, only meta ARGs it re-declares.
        state.args.clear();
        state.cmd_set = false;
        // Inherited ONBUILD triggers run first, then are cleared.
        if let Some(triggers) = state.config.config.on_build.take() {
            for text in triggers {
                let ins = kiln_dockerfile::parse_onbuild_trigger(&text).map_err(|e| {
                    BuildError::OnBuild {
                        trigger: text.clone(),
                        message: e.to_string(),
                    }
                })?;
                self.progress
                    .line(&format!("  ONBUILD {}", ins.original.trim()));
                self.instruction(&mut state, &ins, meta).await?;
            }
        }
        for ins in &stage.instructions {
            self.step += 1;
            self.progress.line(&format!(
                "[{}/{}] {}",
                self.step,
                self.steps_total,
                ins.original.trim()
            ));
            self.instruction(&mut state, ins, meta).await?;
        }
        Ok(state)
    }

    /// The image `name` names, or the one pinned in its place: the caller
    /// keeps `name` as the reference written, the digest (and so the cache
    /// keys) come from the image returned.
    pub(crate) async fn base_image(&self, name: &str) -> Result<BaseImage, BuildError> {
        let pulled = match pinned_base(&self.opts.base_pins, name) {
            Some((key, pin)) => {
                self.progress
                    .line(&format!("Using {pin} for {name} (pinned)"));
                if let Ok(mut used) = self.pins_used.lock() {
                    used.insert(key.to_string());
                }
                pin
            }
            None => name,
        };
        pull::base_image(
            &self.client,
            &self.store,
            pulled,
            self.opts.pull,
            &self.platform,
            &self.progress,
        )
        .await
    }

    pub(crate) fn history(&self, state: &mut State, ins: &Instruction, empty: bool) {
        state.config.history.push(History {
            created: Some(state.created.clone()),
            created_by: Some(created_by(ins)),
            comment: Some("kiln".to_string()),
            empty_layer: empty,
            ..History::default()
        });
    }

    async fn instruction(
        &mut self,
        state: &mut State,
        raw: &Instruction,
        meta: &kiln_dockerfile::MetaArgs,
    ) -> Result<(), BuildError> {
        let escape = self.dockerfile.escape;
        // ARG is expanded with the values known before it.
        let ins = {
            let st: &State = state;
            raw.expand(&|n| st.lookup(n), escape)
                .map_err(|e| self.df_err(e))?
        };
        match &ins.command {
            Command::From(_) => {
                return Err(BuildError::Internal("FROM inside a stage".into()));
            }
            Command::Arg(defs) => {
                for def in defs {
                    self.build_args_used.insert(def.name.clone());
                    let value = self
                        .opts
                        .build_args
                        .get(&def.name)
                        .cloned()
                        .or_else(|| def.default.clone())
                        .or_else(|| meta.get(&def.name))
                        .or_else(|| {
                            BUILTIN_ARGS
                                .contains(&def.name.as_str())
                                .then(|| self.builtin_arg(&def.name))
                                .flatten()
                        });
                    state.args.push((def.name.clone(), value));
                }
                self.history(state, &ins, true);
            }
            Command::Env(kvs) => {
                for kv in kvs {
                    state.config.env_set(&kv.key, &kv.value);
                }
                self.history(state, &ins, true);
            }
            Command::Label(kvs) => {
                for kv in kvs {
                    state.config.label_set(&kv.key, &kv.value);
                }
                self.history(state, &ins, true);
            }
            Command::Maintainer(m) => {
                state.config.author = Some(m.clone());
                self.history(state, &ins, true);
            }
            Command::User(u) => {
                state.config.config.user = u.clone();
                self.history(state, &ins, true);
            }
            Command::Cmd(c) => {
                state.config.config.cmd = Some(self.command_args(state, c));
                state.cmd_set = true;
                self.history(state, &ins, true);
            }
            Command::Entrypoint(c) => {
                state.config.config.entrypoint = Some(self.command_args(state, c));
                // Docker: ENTRYPOINT drops a CMD inherited from the base
                // image; a CMD given earlier in this stage stays.
                if !state.cmd_set {
                    state.config.config.cmd = None;
                }
                self.history(state, &ins, true);
            }
            Command::Expose(ports) => {
                let map = state
                    .config
                    .config
                    .exposed_ports
                    .get_or_insert_with(BTreeMap::new);
                for p in ports {
                    let key = if p.contains('/') {
                        p.clone()
                    } else {
                        format!("{p}/tcp")
                    };
                    map.insert(key, Empty {});
                }
                self.history(state, &ins, true);
            }
            Command::Volume(vols) => {
                let map = state
                    .config
                    .config
                    .volumes
                    .get_or_insert_with(BTreeMap::new);
                for v in vols {
                    map.insert(v.clone(), Empty {});
                }
                self.history(state, &ins, true);
            }
            Command::StopSignal(s) => {
                state.config.config.stop_signal = s.clone();
                self.history(state, &ins, true);
            }
            Command::Healthcheck(h) => {
                state.config.config.healthcheck = Some(healthcheck(h));
                self.history(state, &ins, true);
            }
            Command::Shell(sh) => {
                state.config.config.shell = Some(sh.clone());
                self.history(state, &ins, true);
            }
            Command::Onbuild(trigger) => {
                state
                    .config
                    .config
                    .on_build
                    .get_or_insert_with(Vec::new)
                    .push(trigger.clone());
                self.history(state, &ins, true);
            }
            Command::Workdir(dir) => {
                // Like buildah, the directory is created by the next RUN,
                // COPY or ADD (after a COPY's own parents, which take its
                // --chown owner), not by WORKDIR itself.
                let path = resolve_workdir(&state.config.config.working_dir, dir);
                state.config.config.working_dir = path;
                state.pending_workdir = true;
                self.history(state, &ins, true);
            }
            Command::Run(_) => {
                let (key, req) = self.prepare_run(state, &ins).await?;
                self.fs_step(state, &ins, key, StepWork::Run(Box::new(req)))
                    .await?;
                state.pending_workdir = false;
            }
            Command::Copy(c) => {
                let extra = CopyExtra {
                    from: c.from.clone(),
                    chown: c.chown.clone(),
                    chmod: c.chmod.clone(),
                    extract: false,
                    checksum: None,
                    link: c.link,
                    excludes: c.excludes.clone(),
                    parents: c.parents,
                };
                self.copy_step(state, &ins, &c.sources, extra).await?;
            }
            Command::Add(a) => {
                let extra = CopyExtra {
                    from: None,
                    chown: a.chown.clone(),
                    chmod: a.chmod.clone(),
                    extract: a.unpack.unwrap_or(true),
                    checksum: a.checksum.clone(),
                    link: a.link,
                    excludes: a.excludes.clone(),
                    // BuildKit's ADD has no --parents; the parser refuses it.
                    parents: false,
                };
                self.copy_step(state, &ins, &a.sources, extra).await?;
            }
        }
        Ok(())
    }

    fn command_args(&self, state: &State, c: &CommandLine) -> Vec<String> {
        match c {
            CommandLine::Exec(v) => v.clone(),
            CommandLine::Shell(s) => {
                let mut v = shell_of(&state.config);
                v.push(s.clone());
                v
            }
        }
    }

    /// A step that changes the filesystem: answered from the cache when its
    /// key is known and its layer is still stored, executed otherwise.
    pub(crate) async fn fs_step(
        &mut self,
        state: &mut State,
        ins: &Instruction,
        key: Digest,
        work: StepWork,
    ) -> Result<(), BuildError> {
        if !self.opts.no_cache
            && let Some(cached) = self.store.cache_get::<CachedStep>(&key)
            && let Some(layer) = self.cached_layer(&cached)?
        {
            self.cache_hits += 1;
            self.progress.line("--> Using cache");
            state.created = match (&cached.created, self.opts.source_date_epoch) {
                (Some(t), None) => t.clone(),
                _ => self.now.clone(),
            };
            self.apply_layer(state, ins, key, layer);
            return Ok(());
        }
        self.executed += 1;
        let layer = match self.snapshotter {
            Snapshotter::Overlay => self.execute_overlay(state, ins, work).await?,
            Snapshotter::Copy => self.execute_copying(state, ins, &key, work).await?,
        };
        if let Some(info) = &layer {
            self.progress.line(&format!(
                "--> layer {} ({})",
                pull::short(&info.digest),
                human_size(info.size)
            ));
        }
        self.store.cache_put(
            &key,
            &CachedStep {
                diff_id: layer.as_ref().map(|l| l.diff_id.clone()),
                created: Some(self.now.clone()),
            },
        )?;
        state.created = self.now.clone();
        self.apply_layer(state, ins, key, layer);
        Ok(())
    }

    /// Runs a step on an overlay of the state's layers; its upper directory
    /// becomes the layer.
    async fn execute_overlay(
        &mut self,
        state: &State,
        ins: &Instruction,
        work: StepWork,
    ) -> Result<Option<LayerInfo>, BuildError> {
        let scratch = self.store.scratch("step")?;
        let upper = scratch.path().join("upper");
        let work_dir = scratch.path().join("work");
        let empty = scratch.path().join("empty");
        for d in [&upper, &work_dir, &empty] {
            std::fs::create_dir(d).map_err(|e| io_err(d, e))?;
        }
        let mut lowers = state.lowers(&self.store);
        if lowers.is_empty() {
            lowers.push(empty.clone());
        }
        let rootfs = RootFs::Overlay {
            lowers,
            upper: upper.clone(),
            work: work_dir,
        };
        match work {
            StepWork::Run(req) => {
                let stubs = run::run(self, &req, rootfs, ins).await?;
                layers::drop_stubs(&upper, &stubs);
            }
            StepWork::File(ops) => {
                let spec = FileOpSpec {
                    root: rootfs,
                    scratch: scratch.path().join("mnt"),
                    ops,
                };
                fileop::run(&self.opts.helper, &spec)
                    .await
                    .map_err(|e| located(e, &self.dockerfile_path, ins))?;
            }
        }
        if layers::is_empty_dir(&upper)? {
            return Ok(None);
        }
        let store = self.store.clone();
        let spec = self.blob_spec();
        let info = tokio::task::spawn_blocking(move || layers::commit_upper(&store, &upper, spec))
            .await
            .map_err(|e| BuildError::Internal(e.to_string()))??;
        drop(scratch);
        Ok(Some(info))
    }

    /// The copying snapshotter (no overlayfs): the step runs on a full copy
    /// of the state's root, and the layer is the difference of the two
    /// trees. The copy is kept as the next step's starting root.
    async fn execute_copying(
        &mut self,
        state: &State,
        ins: &Instruction,
        key: &Digest,
        work: StepWork,
    ) -> Result<Option<LayerInfo>, BuildError> {
        let old = match self.materialized.take() {
            Some((k, dir)) if k == state.key => dir,
            _ => {
                let dir = self.store.scratch("rootfs")?;
                let lowers = state.lowers(&self.store);
                let dest = dir.path().join("rootfs");
                tokio::task::spawn_blocking(move || layers::materialize(&lowers, &dest))
                    .await
                    .map_err(|e| BuildError::Internal(e.to_string()))??;
                dir
            }
        };
        let old_root = old.path().join("rootfs");
        let new = self.store.scratch("rootfs")?;
        let new_root = new.path().join("rootfs");
        layers::copy_rootfs(&old_root, &new_root)?;
        match work {
            StepWork::Run(req) => {
                run::run(self, &req, RootFs::Dir(new_root.clone()), ins).await?;
            }
            StepWork::File(ops) => {
                let step = self.store.scratch("step")?;
                let mut converted = Vec::new();
                for (i, op) in ops.into_iter().enumerate() {
                    converted.push(match op {
                        FileOp::Copy {
                            source: SourceRoot::Layers { lowers },
                            patterns,
                            dest,
                            workdir,
                            chown,
                            chmod,
                            extract,
                            excludes,
                            parents,
                        } => {
                            let path = step.path().join(format!("source{i}"));
                            let p2 = path.clone();
                            tokio::task::spawn_blocking(move || layers::materialize(&lowers, &p2))
                                .await
                                .map_err(|e| BuildError::Internal(e.to_string()))??;
                            FileOp::Copy {
                                source: SourceRoot::Dir { path },
                                patterns,
                                dest,
                                workdir,
                                chown,
                                chmod,
                                extract,
                                excludes,
                                parents,
                            }
                        }
                        other => other,
                    });
                }
                let spec = FileOpSpec {
                    root: RootFs::Dir(new_root.clone()),
                    scratch: step.path().join("mnt"),
                    ops: converted,
                };
                fileop::run(&self.opts.helper, &spec)
                    .await
                    .map_err(|e| located(e, &self.dockerfile_path, ins))?;
            }
        }
        let store = self.store.clone();
        let spec = self.blob_spec();
        let (o, n) = (old_root.clone(), new_root.clone());
        let layer =
            tokio::task::spawn_blocking(move || layers::commit_tree_diff(&store, &o, &n, spec))
                .await
                .map_err(|e| BuildError::Internal(e.to_string()))??;
        drop(old);
        self.materialized = Some((key.clone(), new));
        Ok(layer)
    }

    /// The cached layer in this build's compression, recompressed from the
    /// stored directory when only another compression's blob exists.
    /// `Some(None)`: the step is cached and changed nothing.
    fn cached_layer(&self, cached: &CachedStep) -> Result<Option<Option<LayerInfo>>, BuildError> {
        let Some(diff_id) = &cached.diff_id else {
            return Ok(Some(None));
        };
        if !self.store.has_layer_dir(diff_id) {
            return Ok(None);
        }
        let want = kiln_layer::layer_media_type(
            layers::layer_compression(self.opts.compression),
            layers::layer_format(self.opts.format),
        )?;
        if let Some(info) = self.store.blob_of_layer(diff_id, want)
            && self.store.has_blob(&info.digest)
        {
            return Ok(Some(Some(info)));
        }
        let info = layers::recompress(&self.store, diff_id, self.blob_spec())?;
        self.store.put_blob_of_layer(&info)?;
        Ok(Some(Some(info)))
    }

    fn blob_spec(&self) -> layers::BlobSpec {
        layers::BlobSpec {
            compression: self.opts.compression,
            format: self.opts.format,
            source_date_epoch: self.opts.source_date_epoch,
        }
    }

    fn apply_layer(
        &self,
        state: &mut State,
        ins: &Instruction,
        key: Digest,
        layer: Option<LayerInfo>,
    ) {
        let empty = layer.is_none();
        if let Some(info) = layer {
            let _ = self.store.put_blob_of_layer(&info);
            state.config.rootfs.diff_ids.push(info.diff_id.clone());
            state.layers.push(info);
        }
        state.key = key;
        self.history(state, ins, empty);
    }

    async fn finish_image(self, mut state: State) -> Result<BuildResult, BuildError> {
        for (k, v) in &self.opts.labels {
            state.config.label_set(k, v);
        }
        state.config.created = Some(state.created.clone());
        if state.config.architecture.is_empty() {
            state.config.architecture = self.platform.architecture.clone();
            state.config.os = self.platform.os.clone();
        }
        let format = self.opts.format;
        let mut layer_descs = Vec::new();
        for l in &state.layers {
            let media_type = media_for_format(&l.media_type, format).ok_or_else(|| {
                BuildError::FormatMismatch {
                    media_type: l.media_type.clone(),
                }
            })?;
            layer_descs.push(kiln_oci::Descriptor {
                media_type,
                digest: l.digest.clone(),
                size: i64::try_from(l.size).unwrap_or(i64::MAX),
                urls: None,
                annotations: None,
                artifact_type: None,
                platform: None,
            });
        }
        let config_json = state.config.to_json();
        let config_digest = self.store.put_blob(&config_json)?;
        let config_desc = kiln_oci::Descriptor {
            media_type: format.config_media_type().to_string(),
            digest: config_digest.clone(),
            size: config_json.len() as i64,
            urls: None,
            annotations: None,
            artifact_type: None,
            platform: None,
        };
        let manifest = crate::image::manifest_json(format, &config_desc, &layer_descs, None);
        let manifest_digest = self.store.put_blob(&manifest)?;
        self.progress.line(&format!(
            "--> {} ({} steps from cache, {} executed)",
            pull::short(&manifest_digest),
            self.cache_hits,
            self.executed
        ));
        Ok(BuildResult {
            manifest_digest,
            manifest,
            config_digest,
            config: state.config,
            layers: state.layers,
            format,
            origin: state.origin,
            base: state.base,
            cache_hits: self.cache_hits,
            executed: self.executed,
        })
    }

    pub(crate) fn dockerfile_path(&self) -> &Path {
        &self.dockerfile_path
    }
}

pub(crate) enum StepWork {
    Run(Box<RunRequest>),
    File(Vec<FileOp>),
}

fn read_dockerignore(context: &Path, dockerfile: &Path) -> Result<Vec<String>, BuildError> {
    // BuildKit prefers `<Dockerfile>.dockerignore` next to the Dockerfile.
    let specific = PathBuf::from(format!("{}.dockerignore", dockerfile.display()));
    let path = if specific.exists() {
        specific
    } else {
        context.join(".dockerignore")
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let ig = DockerIgnore::parse(&text).map_err(|e| BuildError::Dockerfile {
                file: path.clone(),
                error: e,
            })?;
            Ok(ig.patterns())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_err(&path, e)),
    }
}

/// Adds the Dockerfile position to an error from a step.
pub(crate) fn located(e: BuildError, file: &Path, ins: &Instruction) -> BuildError {
    match e {
        BuildError::Step { .. } | BuildError::RunFailed { .. } => e,
        other => BuildError::Step {
            file: file.to_path_buf(),
            line: ins.location.start_line,
            instruction: ins.original.trim().chars().take(200).collect(),
            error: Box::new(other),
        },
    }
}
