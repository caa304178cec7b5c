//! Preparing a checked-out dist-git tree for the builder, as
//! atomic-reactor's pre-build plugins do: read the Dockerfile (or
//! Containerfile) and `container.yaml`, take the NVR labels and the parent
//! image from the final stage ([`prepare`]); then write a generated
//! Dockerfile that adds the automatic labels (`add_labels_in_dockerfile`)
//! and copies the Dockerfile into `/root/buildinfo/` (`add_dockerfile`)
//! ([`inject`]); and render the target's package repositories as `.repo`
//! files to bind-mount into RUN steps, so they never enter a layer
//! ([`write_repo_files`]; OSBS `ADD`ed them and deleted them again).
//!
//! No network: labels inherited from the parent image are not seen here.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use kiln_dockerfile::{Command, Dockerfile, MetaArgs, Source};

/// Where OSBS puts the build's Dockerfile in the image
/// (atomic-reactor's `IMAGE_BUILD_INFO_DIR`).
pub const BUILDINFO_DIR: &str = "/root/buildinfo";
/// Where package repositories are mounted in RUN steps.
pub const YUM_REPOS_DIR: &str = "/etc/yum.repos.d";
/// The name of the generated Dockerfile in the output directory.
pub const GENERATED_DOCKERFILE: &str = "Dockerfile.kiln";

/// Label names by role, preferred name first, as osbs-client's `Labels`
/// knows them (`component` is kiln's short alias).
const COMPONENT_LABELS: &[&str] = &["com.redhat.component", "component", "BZComponent"];
const NAME_LABELS: &[&str] = &["name", "Name"];
const VERSION_LABELS: &[&str] = &["version", "Version"];
const RELEASE_LABELS: &[&str] = &["release", "Release"];

/// Old label names and their current names: when only the old one is set,
/// the new one is added with its value (atomic-reactor's aliases).
const ALIASES: &[(&str, &str)] = &[
    ("Name", "name"),
    ("Version", "version"),
    ("Release", "release"),
    ("Architecture", "architecture"),
    ("BZComponent", "com.redhat.component"),
    ("Build_Host", "com.redhat.build-host"),
    ("Vendor", "vendor"),
    ("Authoritative_Registry", "authoritative-source-url"),
    ("RUN", "run"),
    ("INSTALL", "install"),
    ("UNINSTALL", "uninstall"),
];

/// Labels that configuration may set but a Dockerfile's own value wins
/// (atomic-reactor's `dont_overwrite_if_in_dockerfile`).
const DOCKERFILE_WINS: &[&str] = &["distribution-scope", "com.redhat.license_terms"];

/// What can go wrong preparing a build.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Neither `Dockerfile` nor `Containerfile` exists.
    #[error("{}: no Dockerfile or Containerfile", .dir.display())]
    NoDockerfile {
        /// The dist-git tree.
        dir: PathBuf,
    },
    /// Reading a file failed.
    #[error("reading {}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Writing a file failed.
    #[error("writing {}: {source}", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The Dockerfile does not parse or its variables do not expand.
    #[error("{}:{}: {}", .path.display(), .source.line, .source.message)]
    Dockerfile {
        /// The Dockerfile.
        path: PathBuf,
        /// The parser's error (with its line).
        source: kiln_dockerfile::Error,
    },
    /// Required labels are absent from the final stage.
    #[error(
        "{}: required labels missing from the final stage: {}",
        .path.display(),
        .missing.join(", ")
    )]
    MissingLabels {
        /// The Dockerfile.
        path: PathBuf,
        /// The missing labels, as `name` or `a (or b)`.
        missing: Vec<String>,
    },
    /// The Dockerfile has no release label and none was given.
    #[error(
        "{}: no release label and no release given: the hub assigns one before injecting",
        .path.display()
    )]
    MissingRelease {
        /// The Dockerfile.
        path: PathBuf,
    },
    /// A label that cannot be written into a Dockerfile.
    #[error("label {key:?}: {reason}")]
    InvalidLabel {
        /// The label name.
        key: String,
        /// Why.
        reason: String,
    },
    /// A package repository that cannot be rendered.
    #[error("package repository {name:?}: {reason}")]
    InvalidRepo {
        /// The repository id.
        name: String,
        /// Why.
        reason: String,
    },
    /// The output directory would put generated files into the context.
    #[error("output directory {} is inside the build context {}", .out_dir.display(), .context.display())]
    OutputInContext {
        /// The output directory.
        out_dir: PathBuf,
        /// The build context.
        context: PathBuf,
    },
    /// Appending to the Dockerfile did not give the instructions intended
    /// (an unterminated continuation or heredoc at the end of the file).
    #[error("{}: cannot append instructions: {reason}", .path.display())]
    Unappendable {
        /// The Dockerfile.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// The build's identity, from the final stage's labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `com.redhat.component` (or `component`, `BZComponent`): the koji
    /// package name, the N of the build's NVR.
    pub component: String,
    /// `name`: the image repository name.
    pub name: String,
    /// `version`.
    pub version: String,
    /// `release`, when the Dockerfile sets it (else the hub picks the
    /// next free one).
    pub release: Option<String>,
}

/// A dist-git tree, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// Every label the final stage sets (its own and those of the stages
    /// it is built FROM), ARG- and ENV-expanded.
    pub labels: BTreeMap<String, String>,
    /// Component, name, version and release from `labels`.
    pub identity: Identity,
    /// The final stage's parent image (FROM, following stages, ARGs
    /// expanded); `None` for `scratch`.
    pub parent: Option<String>,
    /// The Dockerfile read.
    pub dockerfile_path: PathBuf,
    /// Its text.
    pub dockerfile: String,
    /// `container.yaml`, raw (the hub parses it).
    pub container_yaml: Option<String>,
}

fn read(path: &Path) -> Result<String, Error> {
    fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn write(path: &Path, data: &str) -> Result<(), Error> {
    fs::write(path, data).map_err(|source| Error::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads the dist-git tree at `dir`: the Dockerfile (`Dockerfile`, else
/// `Containerfile`), its final stage's labels and parent image, and
/// `container.yaml`. `build_args` override ARG defaults as `--build-arg`
/// would. Fails early on what cannot build: no Dockerfile, a syntax
/// error, missing `com.redhat.component`/`name`/`version` labels.
pub fn prepare(dir: &Path, build_args: &BTreeMap<String, String>) -> Result<Prepared, Error> {
    let dockerfile_path = ["Dockerfile", "Containerfile"]
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::NoDockerfile {
            dir: dir.to_path_buf(),
        })?;
    let text = read(&dockerfile_path)?;
    let yaml_path = dir.join("container.yaml");
    let container_yaml = if yaml_path.is_file() {
        Some(read(&yaml_path)?)
    } else {
        None
    };
    let df_err = |source| Error::Dockerfile {
        path: dockerfile_path.clone(),
        source,
    };
    let df = Dockerfile::parse(&text).map_err(df_err)?;
    let meta = df
        .meta_args(&|n| build_args.get(n).cloned())
        .map_err(df_err)?;
    let target = df.target(None).map_err(df_err)?.index;
    let (labels, parent) = final_stage(&df, &meta, build_args, target).map_err(df_err)?;

    let get = |names: &[&str]| -> Option<String> {
        names
            .iter()
            .find_map(|n| labels.get(*n).filter(|v| !v.is_empty()).cloned())
    };
    let mut missing = Vec::new();
    let mut require = |names: &[&str], shown: &str| {
        let v = get(names);
        if v.is_none() {
            missing.push(shown.to_string());
        }
        v.unwrap_or_default()
    };
    let component = require(COMPONENT_LABELS, "com.redhat.component (or component)");
    let name = require(NAME_LABELS, "name");
    let version = require(VERSION_LABELS, "version");
    if !missing.is_empty() {
        return Err(Error::MissingLabels {
            path: dockerfile_path,
            missing,
        });
    }
    let identity = Identity {
        component,
        name,
        version,
        release: get(RELEASE_LABELS),
    };
    Ok(Prepared {
        labels,
        identity,
        parent,
        dockerfile_path,
        dockerfile: text,
        container_yaml,
    })
}

/// The labels of stage `target` and its parent image: the stages it is
/// built FROM are evaluated first, since a stage inherits their labels
/// and ENV (not their ARGs).
fn final_stage(
    df: &Dockerfile,
    meta: &MetaArgs,
    build_args: &BTreeMap<String, String>,
    target: usize,
) -> Result<(BTreeMap<String, String>, Option<String>), kiln_dockerfile::Error> {
    let mut chain = vec![target];
    let parent = loop {
        let Some(&stage) = chain.last() else {
            break None;
        };
        match df.base(stage, &|n| meta.get(n))? {
            // `base` only names earlier stages, so this ends.
            Source::Stage(i) => chain.push(i),
            Source::Image(image) => {
                break (!image.eq_ignore_ascii_case("scratch")).then_some(image);
            }
        }
    };
    let mut labels = BTreeMap::new();
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for &stage in chain.iter().rev() {
        let mut args: BTreeMap<String, String> = BTreeMap::new();
        for ins in &df.stages[stage].instructions {
            if !matches!(
                ins.command,
                Command::Arg(_) | Command::Env(_) | Command::Label(_)
            ) {
                continue;
            }
            // ENV wins over an ARG of the same name, as in BuildKit.
            let lookup = |n: &str| env.get(n).or_else(|| args.get(n)).cloned();
            let ins = ins.expand(&lookup, df.escape)?;
            match ins.command {
                Command::Arg(defs) => {
                    for def in defs {
                        let value = build_args
                            .get(&def.name)
                            .cloned()
                            .or(def.default)
                            .or_else(|| meta.get(&def.name));
                        match value {
                            Some(v) => args.insert(def.name, v),
                            None => args.remove(&def.name),
                        };
                    }
                }
                Command::Env(kvs) => env.extend(kvs.into_iter().map(|kv| (kv.key, kv.value))),
                Command::Label(kvs) => labels.extend(kvs.into_iter().map(|kv| (kv.key, kv.value))),
                _ => {}
            }
        }
    }
    Ok((labels, parent))
}

/// The source repository, for the `vcs-*` labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vcs {
    /// `vcs-url`.
    pub url: String,
    /// `vcs-ref`: the commit id.
    pub commit: String,
}

/// What [`inject`] adds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InjectOptions {
    /// `build-date`, as the caller formats it (atomic-reactor: ISO 8601
    /// UTC, e.g. `2024-05-01T12:34:56`). Given, not read from the clock,
    /// so the output is reproducible.
    pub build_date: String,
    /// `architecture` (e.g. `x86_64`).
    pub architecture: String,
    /// `vcs-type=git`, `vcs-url`, `vcs-ref`.
    pub vcs: Option<Vcs>,
    /// The release to build when the Dockerfile has none or another one
    /// is imposed (a bumped or isolated-build release).
    pub release: Option<String>,
    /// Further labels from configuration (vendor, distribution-scope, …).
    pub extra_labels: BTreeMap<String, String>,
}

/// What [`inject`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injected {
    /// The generated Dockerfile to build with (outside the context).
    pub dockerfile: PathBuf,
    /// The copy of the Dockerfile added to the image, in the context.
    pub buildinfo_file: PathBuf,
    /// Its path in the image: `/root/buildinfo/Dockerfile-N-V-R`.
    pub buildinfo_path: String,
    /// `name-version-release` (with `/` in the name made `-`), as in the
    /// buildinfo file name.
    pub nvr: String,
    /// The labels added, in the order of the LABEL line.
    pub labels: Vec<(String, String)>,
}

/// Writes what the build needs on top of the dist-git tree:
/// - `out_dir/Dockerfile.kiln`: the Dockerfile plus, at the end of the
///   final stage, `ADD Dockerfile-N-V-R /root/buildinfo/Dockerfile-N-V-R`
///   and one `LABEL` line with the automatic labels — the order
///   atomic-reactor gives them (labels first, then the ADD inserted before
///   the last line);
/// - `context/Dockerfile-N-V-R`: the Dockerfile as it stood after the
///   labels were added (what OSBS copies into the image), with an
///   exception appended to `.dockerignore` if that would exclude it.
///
/// The checked-out Dockerfile is not modified. `out_dir` must lie outside
/// `context`, so the generated Dockerfile never enters the image.
pub fn inject(
    prepared: &Prepared,
    context: &Path,
    out_dir: &Path,
    opts: &InjectOptions,
) -> Result<Injected, Error> {
    fs::create_dir_all(out_dir).map_err(|source| Error::Write {
        path: out_dir.to_path_buf(),
        source,
    })?;
    let canon = |p: &Path| {
        fs::canonicalize(p).map_err(|source| Error::Read {
            path: p.to_path_buf(),
            source,
        })
    };
    let (context_c, out_c) = (canon(context)?, canon(out_dir)?);
    if out_c.starts_with(&context_c) {
        return Err(Error::OutputInContext {
            out_dir: out_dir.to_path_buf(),
            context: context.to_path_buf(),
        });
    }
    let path = &prepared.dockerfile_path;
    let df_err = |source| Error::Dockerfile {
        path: path.clone(),
        source,
    };
    let escape = Dockerfile::parse(&prepared.dockerfile)
        .map_err(df_err)?
        .escape;

    let release = opts
        .release
        .clone()
        .filter(|r| !r.is_empty())
        .or_else(|| prepared.identity.release.clone())
        .ok_or_else(|| Error::MissingRelease { path: path.clone() })?;
    let nvr = format!(
        "{}-{}-{}",
        prepared.identity.name, prepared.identity.version, release
    )
    .replace('/', "-");
    let df_name = format!("Dockerfile-{nvr}");
    let buildinfo_path = format!("{BUILDINFO_DIR}/{df_name}");

    let labels = labels_to_add(prepared, opts, &release);
    let label_line = if labels.is_empty() {
        None
    } else {
        let mut words = Vec::with_capacity(labels.len());
        for (k, v) in &labels {
            words.push(format!("{}={}", quote(k, escape)?, quote(v, escape)?));
        }
        Some(format!("LABEL {}\n", words.join(" ")))
    };

    let mut base = prepared.dockerfile.clone();
    if !base.ends_with('\n') {
        base.push('\n');
    }
    let add_line = format!("ADD {df_name} {buildinfo_path}\n");
    let (snapshot, generated) = match &label_line {
        Some(l) => (format!("{base}\n{l}"), format!("{base}\n{add_line}{l}")),
        None => (base.clone(), format!("{base}\n{add_line}")),
    };
    check_appended(path, &generated, &buildinfo_path, labels.len())?;

    let buildinfo_file = context.join(&df_name);
    write(&buildinfo_file, &snapshot)?;
    allow_in_dockerignore(context, &df_name)?;
    let dockerfile = out_dir.join(GENERATED_DOCKERFILE);
    write(&dockerfile, &generated)?;
    Ok(Injected {
        dockerfile,
        buildinfo_file,
        buildinfo_path,
        nvr,
        labels,
    })
}

/// The labels to append, in atomic-reactor's order: configured labels,
/// the release, the automatic labels, then aliases for old label names.
/// A label the Dockerfile already sets to the same value is skipped.
fn labels_to_add(
    prepared: &Prepared,
    opts: &InjectOptions,
    release: &str,
) -> Vec<(String, String)> {
    let existing = &prepared.labels;
    let mut wanted: Vec<(String, String)> = Vec::new();
    for (k, v) in &opts.extra_labels {
        if DOCKERFILE_WINS.contains(&k.as_str()) && existing.contains_key(k) {
            continue;
        }
        wanted.push((k.clone(), v.clone()));
    }
    wanted.push(("release".into(), release.into()));
    wanted.push(("build-date".into(), opts.build_date.clone()));
    wanted.push(("architecture".into(), opts.architecture.clone()));
    if let Some(vcs) = &opts.vcs {
        wanted.push(("vcs-type".into(), "git".into()));
        wanted.push(("vcs-url".into(), vcs.url.clone()));
        wanted.push(("vcs-ref".into(), vcs.commit.clone()));
    }
    let mut seen = BTreeSet::new();
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in wanted {
        if v.is_empty() {
            continue;
        }
        if existing.get(&k) == Some(&v) || !seen.insert(k.clone()) {
            continue;
        }
        out.push((k, v));
    }
    for (old, new) in ALIASES {
        if let Some(v) = existing.get(*old)
            && !existing.contains_key(*new)
            && !seen.contains(*new)
        {
            seen.insert((*new).to_string());
            out.push(((*new).to_string(), v.clone()));
        }
    }
    out
}

/// A double-quoted Dockerfile word holding `s` literally: the escape
/// character, `"` and `$` (LABEL values are expanded) are escaped.
fn quote(s: &str, escape: char) -> Result<String, Error> {
    if s.contains(['\n', '\r']) {
        return Err(Error::InvalidLabel {
            key: s.to_string(),
            reason: "line breaks cannot be written into a LABEL line".to_string(),
        });
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == escape || c == '"' || c == '$' {
            out.push(escape);
        }
        out.push(c);
    }
    out.push('"');
    Ok(out)
}

/// Parses the generated Dockerfile back and checks that the final stage
/// ends with the ADD and LABEL intended: a trailing backslash or an open
/// heredoc in the original would otherwise swallow them.
fn check_appended(
    path: &Path,
    generated: &str,
    buildinfo_path: &str,
    n_labels: usize,
) -> Result<(), Error> {
    let unappendable = |reason: String| Error::Unappendable {
        path: path.to_path_buf(),
        reason,
    };
    let df = Dockerfile::parse(generated)
        .map_err(|e| unappendable(format!("line {}: {}", e.line, e.message)))?;
    let last = df
        .stages
        .last()
        .ok_or_else(|| unappendable("no stages".into()))?;
    let mut tail = last.instructions.iter().rev();
    if n_labels > 0 {
        match tail.next().map(|i| &i.command) {
            Some(Command::Label(kvs)) if kvs.len() == n_labels => {}
            _ => {
                return Err(unappendable(
                    "the appended LABEL was absorbed by the instruction before it (does the file end in a continuation?)".into(),
                ));
            }
        }
    }
    match tail.next().map(|i| &i.command) {
        Some(Command::Add(add)) if add.sources.dest == buildinfo_path => Ok(()),
        _ => Err(unappendable(
            "the appended ADD was absorbed by the instruction before it (does the file end in a continuation?)".into(),
        )),
    }
}

/// If the context's `.dockerignore` would exclude `name`, appends an
/// exception for it (atomic-reactor does the same for its repo files).
fn allow_in_dockerignore(context: &Path, name: &str) -> Result<(), Error> {
    let path = context.join(".dockerignore");
    if !path.is_file() {
        return Ok(());
    }
    let text = read(&path)?;
    let ignore =
        kiln_dockerfile::DockerIgnore::parse(&text).map_err(|source| Error::Dockerfile {
            path: path.clone(),
            source,
        })?;
    if !ignore.is_excluded(name) {
        return Ok(());
    }
    let mut text = text;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!("!{name}\n"));
    write(&path, &text)
}

/// A package repository of the build target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoSpec {
    /// The repository id (`[name]`), also the file name.
    pub name: String,
    /// `baseurl`.
    pub baseurl: String,
    /// `gpgcheck`.
    pub gpgcheck: bool,
}

/// A `.repo` file to bind-mount read-only into every RUN step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoMount {
    /// The file on the host.
    pub source: PathBuf,
    /// Where it goes in the build container:
    /// `/etc/yum.repos.d/<name>.repo`.
    pub target: String,
}

/// The `.repo` file (yum/dnf INI) for `repo`.
pub fn render_repo(repo: &RepoSpec) -> Result<String, Error> {
    let invalid = |reason: &str| Error::InvalidRepo {
        name: repo.name.clone(),
        reason: reason.to_string(),
    };
    // dnf's rule for repo ids; the id is also the file name.
    if repo.name.is_empty()
        || repo.name.starts_with('.')
        || !repo
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
    {
        return Err(invalid(
            "a repository id is letters, digits and -_.: (not starting with '.')",
        ));
    }
    if repo.baseurl.is_empty()
        || repo
            .baseurl
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(invalid("baseurl must be one URL without spaces"));
    }
    // metadata_expire=0: a base layer may carry dnf's metadata cache from
    // an earlier build, and a rebuild exists because the repository changed.
    Ok(format!(
        "[{name}]\nname={name}\nbaseurl={url}\nenabled=1\ngpgcheck={gpg}\nmetadata_expire=0\n",
        name = repo.name,
        url = repo.baseurl,
        gpg = u8::from(repo.gpgcheck),
    ))
}

/// Renders every repository into `dir` as `<name>.repo` and returns the
/// mounts the builder gives each RUN step. The files are never added to
/// the Dockerfile, so no layer holds them.
pub fn write_repo_files(repos: &[RepoSpec], dir: &Path) -> Result<Vec<RepoMount>, Error> {
    fs::create_dir_all(dir).map_err(|source| Error::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut names = BTreeSet::new();
    let mut mounts = Vec::with_capacity(repos.len());
    for repo in repos {
        let text = render_repo(repo)?;
        if !names.insert(repo.name.as_str()) {
            return Err(Error::InvalidRepo {
                name: repo.name.clone(),
                reason: "given twice".to_string(),
            });
        }
        let file = format!("{}.repo", repo.name);
        let source = dir.join(&file);
        write(&source, &text)?;
        mounts.push(RepoMount {
            source,
            target: format!("{YUM_REPOS_DIR}/{file}"),
        });
    }
    Ok(mounts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_values_literal() {
        assert_eq!(quote("a b", '\\').unwrap(), r#""a b""#);
        assert_eq!(quote(r#"x"$y\z"#, '\\').unwrap(), r#""x\"\$y\\z""#);
        assert_eq!(quote(r#"x"$y\z"#, '`').unwrap(), r#""x`"`$y\z""#);
        assert!(quote("a\nb", '\\').is_err());
        // What the Dockerfile parser reads back is the original value.
        for escape in ['\\', '`'] {
            let value = r#"we"ird $HOME \ `tick` value"#;
            let df = format!(
                "# escape={escape}\nFROM scratch\nLABEL k={}\n",
                quote(value, escape).unwrap()
            );
            let parsed = Dockerfile::parse(&df).unwrap();
            let ins = parsed.stages[0].instructions[0]
                .expand(&|_| Some("EXPANDED".into()), parsed.escape)
                .unwrap();
            let Command::Label(kvs) = ins.command else {
                panic!("not a label")
            };
            assert_eq!(kvs[0].value, value, "escape {escape}");
        }
    }

    #[test]
    fn repo_rendering() {
        let repo = RepoSpec {
            name: "fedora-40_build:x86".into(),
            baseurl: "http://127.0.0.1:8080/repo/$basearch/".into(),
            gpgcheck: false,
        };
        assert_eq!(
            render_repo(&repo).unwrap(),
            "[fedora-40_build:x86]\nname=fedora-40_build:x86\n\
             baseurl=http://127.0.0.1:8080/repo/$basearch/\nenabled=1\ngpgcheck=0\nmetadata_expire=0\n"
        );
        let signed = RepoSpec {
            gpgcheck: true,
            ..repo.clone()
        };
        assert!(render_repo(&signed).unwrap().contains("gpgcheck=1\n"));
        for bad in ["", ".hidden", "a/b", "a b", "x]\n[y"] {
            let r = RepoSpec {
                name: bad.into(),
                ..repo.clone()
            };
            assert!(
                matches!(render_repo(&r), Err(Error::InvalidRepo { .. })),
                "{bad:?}"
            );
        }
        let r = RepoSpec {
            baseurl: "http://a\nexclude=*".into(),
            ..repo
        };
        assert!(render_repo(&r).is_err());
    }
}
