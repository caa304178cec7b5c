//! Typed instructions built from syntax-tree nodes, with BuildKit's
//! argument checks and error messages, and variable expansion of exactly
//! the fields BuildKit expands.

use std::time::Duration;

use crate::Error;
use crate::flags::{FlagError, FlagType, Flags};
use crate::mount::{Mount, parse_mount};
use crate::parser::{Heredoc, Node, chomp_heredoc_content, parse_heredoc};
use crate::shell::{Lexer, Lookup};

/// Where an instruction is in the Dockerfile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Location {
    /// 1-based first line.
    pub start_line: usize,
    /// 1-based last line (continuations and heredoc bodies included).
    pub end_line: usize,
    /// 1-based column of the keyword.
    pub column: usize,
}

/// One instruction: what it says, where it is, and its text as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// The typed content.
    pub command: Command,
    /// Source location.
    pub location: Location,
    /// The instruction line as written, continuations joined (image
    /// history's `created_by` is built from this).
    pub original: String,
}

/// The instructions of a Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `FROM [--platform=p] image [AS name]`.
    From(From),
    /// `RUN`.
    Run(Run),
    /// `CMD`.
    Cmd(CommandLine),
    /// `ENTRYPOINT`.
    Entrypoint(CommandLine),
    /// `COPY`.
    Copy(Copy),
    /// `ADD`.
    Add(Add),
    /// `ENV k=v ...` or `ENV k v`.
    Env(Vec<KeyValue>),
    /// `LABEL k=v ...` or `LABEL k v`.
    Label(Vec<KeyValue>),
    /// `ARG name[=default] ...`.
    Arg(Vec<ArgDef>),
    /// `WORKDIR path`.
    Workdir(String),
    /// `USER user[:group]`.
    User(String),
    /// `EXPOSE port[/proto] ...` (sorted, like BuildKit).
    Expose(Vec<String>),
    /// `VOLUME path ...` or JSON.
    Volume(Vec<String>),
    /// `STOPSIGNAL signal`.
    StopSignal(String),
    /// `HEALTHCHECK`.
    Healthcheck(Healthcheck),
    /// `SHELL ["exe", "arg"]`.
    Shell(Vec<String>),
    /// `ONBUILD trigger`: the trigger's text, for the image config.
    Onbuild(String),
    /// `MAINTAINER name`.
    Maintainer(String),
}

/// `FROM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct From {
    /// The base: an image reference, a stage name, or `scratch`.
    pub image: String,
    /// `AS name`, lower-cased.
    pub name: Option<String>,
    /// `--platform`.
    pub platform: Option<String>,
}

/// A command line in shell form (run by the SHELL) or exec (JSON) form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandLine {
    /// `RUN echo hi`: the text, given to the shell as is.
    Shell(String),
    /// `RUN ["echo", "hi"]`.
    Exec(Vec<String>),
}

/// `--network` of RUN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetworkMode {
    /// The builder's default.
    #[default]
    Default,
    /// No network.
    None,
    /// The host's network.
    Host,
}

/// `--security` of RUN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Security {
    /// The default sandbox.
    #[default]
    Sandbox,
    /// Privileged.
    Insecure,
}

/// `RUN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The command.
    pub command: CommandLine,
    /// Heredocs opened on the RUN line, in order (bodies go to the shell
    /// unexpanded; see [`Heredoc::body`] for `<<-` tab stripping).
    pub heredocs: Vec<Heredoc>,
    /// `--mount` options, parsed. Final after [`Instruction::expand`];
    /// before it, option values holding `$` are kept as written in text
    /// fields and unparsed in the others.
    pub mounts: Vec<Mount>,
    /// `--mount` values as written.
    pub mount_specs: Vec<String>,
    /// `--network`.
    pub network: NetworkMode,
    /// `--security`.
    pub security: Security,
}

/// A COPY/ADD source given inline as a heredoc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineSource {
    /// The heredoc name, used as the file name.
    pub path: String,
    /// The content (tabs already stripped for `<<-`).
    pub data: String,
    /// Whether variables in `data` are expanded (unquoted delimiter).
    pub expand: bool,
}

/// Sources and destination of COPY/ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    /// Source paths or URLs, as written until expanded.
    pub paths: Vec<String>,
    /// Heredoc sources.
    pub inline: Vec<InlineSource>,
    /// The destination.
    pub dest: String,
    /// Whether the JSON form was used.
    pub json: bool,
}

/// `COPY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    /// Sources and destination.
    pub sources: Sources,
    /// `--from`: stage name, stage index or image.
    pub from: Option<String>,
    /// `--chown`.
    pub chown: Option<String>,
    /// `--chmod`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--parents`.
    pub parents: bool,
    /// `--exclude` patterns.
    pub excludes: Vec<String>,
}

/// `ADD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Add {
    /// Sources and destination.
    pub sources: Sources,
    /// `--chown`.
    pub chown: Option<String>,
    /// `--chmod`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--keep-git-dir`.
    pub keep_git_dir: bool,
    /// `--checksum`.
    pub checksum: Option<String>,
    /// `--exclude` patterns.
    pub excludes: Vec<String>,
    /// `--unpack` (`None`: ADD's default, unpack local archives only).
    pub unpack: Option<bool>,
}

/// A `key value` pair of ENV or LABEL. Quotes and escapes are kept as
/// written until [`Instruction::expand`] processes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
}

/// One `name[=default]` of ARG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDef {
    /// The name.
    pub name: String,
    /// The default, if given (`ARG a=` gives `Some("")`).
    pub default: Option<String>,
}

/// `HEALTHCHECK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable the base image's check.
    None,
    /// `HEALTHCHECK [opts] CMD ...`.
    Check {
        /// `["CMD-SHELL", "cmd"]` (shell form) or `["CMD", args...]`.
        test: Vec<String>,
        /// `--interval`.
        interval: Option<Duration>,
        /// `--timeout`.
        timeout: Option<Duration>,
        /// `--start-period`.
        start_period: Option<Duration>,
        /// `--start-interval`.
        start_interval: Option<Duration>,
        /// `--retries`.
        retries: Option<u32>,
    },
}

impl Instruction {
    /// The instruction keyword in upper case (`COPY`).
    pub fn keyword(&self) -> &'static str {
        match &self.command {
            Command::From(_) => "FROM",
            Command::Run(_) => "RUN",
            Command::Cmd(_) => "CMD",
            Command::Entrypoint(_) => "ENTRYPOINT",
            Command::Copy(_) => "COPY",
            Command::Add(_) => "ADD",
            Command::Env(_) => "ENV",
            Command::Label(_) => "LABEL",
            Command::Arg(_) => "ARG",
            Command::Workdir(_) => "WORKDIR",
            Command::User(_) => "USER",
            Command::Expose(_) => "EXPOSE",
            Command::Volume(_) => "VOLUME",
            Command::StopSignal(_) => "STOPSIGNAL",
            Command::Healthcheck(_) => "HEALTHCHECK",
            Command::Shell(_) => "SHELL",
            Command::Onbuild(_) => "ONBUILD",
            Command::Maintainer(_) => "MAINTAINER",
        }
    }

    /// Builds the typed instruction for a syntax-tree node.
    pub fn from_node(node: &Node) -> Result<Instruction, Error> {
        let location = Location {
            start_line: node.start_line,
            end_line: node.end_line,
            column: node.column,
        };
        let command = parse_command(node).map_err(|e| match e {
            CmdError::Flag(fe) => {
                let column = fe
                    .flag
                    .as_ref()
                    .and_then(|f| flag_column(node, f))
                    .unwrap_or(node.column);
                Error {
                    line: node.start_line,
                    column,
                    end_line: node.end_line,
                    message: fe.message,
                }
            }
            CmdError::Other(e) => e.located(node.start_line, node.end_line, node.column),
        })?;
        Ok(Instruction {
            command,
            location,
            original: node.original.clone(),
        })
    }

    /// Expands variables in the fields BuildKit expands at build time:
    /// ADD/COPY sources, destination, `--chown`, `--chmod`, `--from`
    /// (and ADD `--checksum`); ENV and LABEL keys and values; EXPOSE;
    /// STOPSIGNAL; USER; VOLUME; WORKDIR; ARG defaults; RUN `--mount`
    /// option values; COPY/ADD heredoc bodies whose delimiter is unquoted
    /// (there quotes are kept and only `$` and escapes are processed).
    /// RUN/CMD/ENTRYPOINT/SHELL/HEALTHCHECK commands are left to the shell,
    /// and FROM is left alone (see [`From::expand`]).
    pub fn expand(&self, lookup: Lookup<'_>, escape: char) -> Result<Instruction, Error> {
        let l = self.location;
        self.expand_inner(lookup, escape)
            .map_err(|e| e.located(l.start_line, l.end_line, l.column))
    }

    fn expand_inner(&self, lookup: Lookup<'_>, escape: char) -> Result<Instruction, Error> {
        let lex = Lexer::new(escape);
        let word = |w: &str| lex.process_word(w, lookup);
        let opt = |w: &Option<String>| -> Result<Option<String>, Error> {
            w.as_deref().map(word).transpose()
        };
        let list =
            |ws: &[String]| -> Result<Vec<String>, Error> { ws.iter().map(|w| word(w)).collect() };
        let mut raw_lex = Lexer::new('\\');
        raw_lex.skip_process_quotes = true;
        let sources = |s: &Sources| -> Result<Sources, Error> {
            let mut inline = s.inline.clone();
            for src in &mut inline {
                if src.expand {
                    src.data = raw_lex.process_word(&src.data, lookup)?;
                }
            }
            Ok(Sources {
                paths: list(&s.paths)?,
                inline,
                dest: word(&s.dest)?,
                json: s.json,
            })
        };
        let kvs = |kv: &[KeyValue]| -> Result<Vec<KeyValue>, Error> {
            kv.iter()
                .map(|p| {
                    Ok(KeyValue {
                        key: word(&p.key)?,
                        value: word(&p.value)?,
                    })
                })
                .collect()
        };
        let command = match &self.command {
            Command::Copy(c) => Command::Copy(Copy {
                sources: sources(&c.sources)?,
                from: opt(&c.from)?,
                chown: opt(&c.chown)?,
                chmod: opt(&c.chmod)?,
                ..c.clone()
            }),
            Command::Add(a) => Command::Add(Add {
                sources: sources(&a.sources)?,
                chown: opt(&a.chown)?,
                chmod: opt(&a.chmod)?,
                checksum: opt(&a.checksum)?,
                ..a.clone()
            }),
            Command::Env(kv) => Command::Env(kvs(kv)?),
            Command::Label(kv) => Command::Label(kvs(kv)?),
            Command::Expose(p) => Command::Expose(list(p)?),
            Command::Volume(v) => Command::Volume(list(v)?),
            Command::StopSignal(s) => Command::StopSignal(word(s)?),
            Command::User(u) => Command::User(word(u)?),
            Command::Workdir(w) => Command::Workdir(word(w)?),
            Command::Arg(args) => Command::Arg(
                args.iter()
                    .map(|a| {
                        Ok(ArgDef {
                            name: a.name.clone(),
                            default: opt(&a.default)?,
                        })
                    })
                    .collect::<Result<_, Error>>()?,
            ),
            Command::Run(r) => {
                let expand_value = |v: &str| word(v);
                let mounts = r
                    .mount_specs
                    .iter()
                    .map(|s| parse_mount(s, &expand_value, false))
                    .collect::<Result<_, Error>>()?;
                Command::Run(Run {
                    mounts,
                    ..r.clone()
                })
            }
            other => other.clone(),
        };
        Ok(Instruction {
            command,
            location: self.location,
            original: self.original.clone(),
        })
    }
}

impl From {
    /// Expands the image and `--platform` with the meta ARGs (the ARGs
    /// before the first FROM, with build-arg overrides applied).
    pub fn expand(&self, meta_args: Lookup<'_>, escape: char) -> Result<From, Error> {
        let lex = Lexer::new(escape);
        let image = lex.process_word(&self.image, meta_args)?;
        if image.is_empty() {
            return Err(Error::msg(format!(
                "base name ({}) should not be blank",
                self.image
            )));
        }
        let platform = self
            .platform
            .as_deref()
            .map(|p| lex.process_word(p, meta_args))
            .transpose()?;
        Ok(From {
            image,
            name: self.name.clone(),
            platform,
        })
    }
}

/// Parses an ONBUILD trigger (as stored in an image config, e.g.
/// `RUN make`) into the instruction to run in the child build, refusing
/// what Docker refuses.
pub fn parse_onbuild_trigger(text: &str) -> Result<Instruction, Error> {
    let ast = crate::parser::parse(text)?;
    if ast.nodes.len() != 1 {
        return Err(Error::msg("onbuild trigger should be a single expression"));
    }
    let node = &ast.nodes[0];
    let name = node.instruction.to_ascii_uppercase();
    match name.as_str() {
        "ONBUILD" => Err(Error::msg(
            "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
        )),
        "FROM" | "MAINTAINER" => Err(Error::msg(format!(
            "{name} isn't allowed as an ONBUILD trigger"
        ))),
        _ => Instruction::from_node(node),
    }
}

enum CmdError {
    Flag(FlagError),
    Other(Error),
}

impl std::convert::From<FlagError> for CmdError {
    fn from(e: FlagError) -> Self {
        CmdError::Flag(e)
    }
}

impl std::convert::From<Error> for CmdError {
    fn from(e: Error) -> Self {
        CmdError::Other(e)
    }
}

fn err(msg: impl Into<String>) -> CmdError {
    CmdError::Other(Error::msg(msg))
}

/// The column of `--name` on the instruction's first line, for errors that
/// point at a flag.
fn flag_column(node: &Node, flag: &str) -> Option<usize> {
    let first = node.original.lines().next()?;
    let needle = format!("--{flag}");
    let byte = first.find(&needle)?;
    Some(node.column + first[..byte].trim_start().chars().count())
}

fn at_least_one(cmd: &str) -> CmdError {
    err(format!("{cmd} requires at least one argument"))
}

fn exactly_one(cmd: &str) -> CmdError {
    err(format!("{cmd} requires exactly one argument"))
}

fn parse_command(node: &Node) -> Result<Command, CmdError> {
    let args = &node.args;
    let no_flags = |_: ()| -> Result<(), CmdError> {
        Flags::new(&[]).parse(&node.flags)?;
        Ok(())
    };
    match node.name().as_str() {
        "env" | "label" => {
            no_flags(())?;
            let what = node.name().to_ascii_uppercase();
            if args.is_empty() {
                return Err(at_least_one(&what));
            }
            if !args.len().is_multiple_of(3) {
                return Err(err(format!("Bad input to {what}, too many arguments")));
            }
            let mut pairs = Vec::new();
            for t in args.chunks(3) {
                if t[0].is_empty() {
                    return Err(err(format!("{what} names can not be blank")));
                }
                pairs.push(KeyValue {
                    key: t[0].clone(),
                    value: t[1].clone(),
                });
            }
            Ok(if what == "ENV" {
                Command::Env(pairs)
            } else {
                Command::Label(pairs)
            })
        }
        "maintainer" => {
            if args.len() != 1 {
                return Err(exactly_one("MAINTAINER"));
            }
            no_flags(())?;
            Ok(Command::Maintainer(args[0].clone()))
        }
        "add" => parse_add(node),
        "copy" => parse_copy(node),
        "from" => parse_from(node),
        "onbuild" => parse_onbuild(node),
        "workdir" => {
            if args.len() != 1 {
                return Err(exactly_one("WORKDIR"));
            }
            no_flags(())?;
            Ok(Command::Workdir(args[0].clone()))
        }
        "run" => parse_run(node),
        "cmd" => {
            no_flags(())?;
            Ok(Command::Cmd(command_line(node)))
        }
        "entrypoint" => {
            no_flags(())?;
            Ok(Command::Entrypoint(command_line(node)))
        }
        "healthcheck" => parse_healthcheck(node),
        "expose" => {
            if args.is_empty() {
                return Err(at_least_one("EXPOSE"));
            }
            no_flags(())?;
            let mut ports = args.clone();
            ports.sort();
            Ok(Command::Expose(ports))
        }
        "user" => {
            if args.len() != 1 {
                return Err(exactly_one("USER"));
            }
            no_flags(())?;
            Ok(Command::User(args[0].clone()))
        }
        "volume" => {
            if args.is_empty() {
                return Err(at_least_one("VOLUME"));
            }
            no_flags(())?;
            let mut vols = Vec::new();
            for v in args {
                let v = v.trim();
                if v.is_empty() {
                    return Err(err("VOLUME specified can not be an empty string"));
                }
                vols.push(v.to_string());
            }
            Ok(Command::Volume(vols))
        }
        // BuildKit does not check STOPSIGNAL's or ARG's flags.
        "stopsignal" => {
            if args.len() != 1 {
                return Err(exactly_one("STOPSIGNAL"));
            }
            Ok(Command::StopSignal(args[0].clone()))
        }
        "arg" => {
            if args.is_empty() {
                return Err(at_least_one("ARG"));
            }
            let mut defs = Vec::new();
            for a in args {
                defs.push(match a.split_once('=') {
                    Some(("", _)) => return Err(err("ARG names can not be blank")),
                    Some((k, v)) => ArgDef {
                        name: k.to_string(),
                        default: Some(v.to_string()),
                    },
                    None => ArgDef {
                        name: a.clone(),
                        default: None,
                    },
                });
            }
            Ok(Command::Arg(defs))
        }
        "shell" => {
            no_flags(())?;
            if args.is_empty() {
                return Err(at_least_one("SHELL"));
            }
            if !node.json {
                return Err(err(format!(
                    "SHELL requires the arguments to be in JSON form (as in SHELL [\"executable\", \"parameters\"]), got: {}",
                    node.original.trim()
                )));
            }
            Ok(Command::Shell(args.clone()))
        }
        _ => Err(err(format!("unknown instruction: {}", node.instruction))),
    }
}

fn command_line(node: &Node) -> CommandLine {
    if node.json {
        CommandLine::Exec(node.args.clone())
    } else {
        CommandLine::Shell(node.args.join(" "))
    }
}

fn parse_from(node: &Node) -> Result<Command, CmdError> {
    let args = &node.args;
    let name = match args.len() {
        1 => None,
        3 if args[1].eq_ignore_ascii_case("as") => {
            let name = args[2].to_lowercase();
            if !crate::stages::is_valid_stage_name(&name) {
                return Err(err(format!(
                    "invalid name for build stage: {}, name can't start with a number or contain symbols",
                    crate::parser::go_quote(&args[2])
                )));
            }
            Some(name)
        }
        _ => return Err(err("FROM requires either one or three arguments")),
    };
    let mut flags = Flags::new(&[("platform", FlagType::String)]);
    flags.parse(&node.flags)?;
    Ok(Command::From(From {
        image: args[0].clone(),
        name,
        platform: flags.string("platform"),
    }))
}

fn parse_onbuild(node: &Node) -> Result<Command, CmdError> {
    let Some(sub) = &node.sub else {
        return Err(at_least_one("ONBUILD"));
    };
    Flags::new(&[]).parse(&node.flags)?;
    let trigger = sub.instruction.trim().to_ascii_uppercase();
    match trigger.as_str() {
        "ONBUILD" => {
            return Err(err("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"));
        }
        "MAINTAINER" | "FROM" => {
            return Err(err(format!(
                "{trigger} isn't allowed as an ONBUILD trigger"
            )));
        }
        _ => {}
    }
    // The expression is the original line without the ONBUILD keyword, with
    // heredoc bodies appended so the child build sees them.
    let orig = node.original.trim_start();
    let mut expr = match orig.get(..7) {
        Some(k) if k.eq_ignore_ascii_case("onbuild") => orig[7..].trim_start().to_string(),
        _ => orig.to_string(),
    };
    for h in &node.heredocs {
        expr.push('\n');
        expr.push_str(&h.content);
        expr.push_str(&h.name);
    }
    Ok(Command::Onbuild(expr))
}

fn parse_sources(node: &Node, cmd: &str) -> Result<Sources, CmdError> {
    let (srcs, dest) = node.args.split_at(node.args.len() - 1);
    let dest = &dest[0];
    if !node.json && parse_heredoc(dest).ok().flatten().is_some() {
        return Err(err(format!(
            "{cmd} cannot accept a heredoc as a destination"
        )));
    }
    let mut paths = Vec::new();
    let mut inline = Vec::new();
    for src in srcs {
        match (!node.json)
            .then(|| parse_heredoc(src).ok().flatten())
            .flatten()
        {
            Some(h) => {
                let doc = node.heredocs.iter().rev().find(|d| d.name == h.name);
                let mut data = doc.map(|d| d.content.clone()).unwrap_or_default();
                if h.chomp {
                    data = chomp_heredoc_content(&data);
                }
                inline.push(InlineSource {
                    path: h.name,
                    data,
                    expand: h.expand,
                });
            }
            None => paths.push(src.clone()),
        }
    }
    Ok(Sources {
        paths,
        inline,
        dest: dest.clone(),
        json: node.json,
    })
}

fn no_destination(cmd: &str) -> CmdError {
    err(format!(
        "{cmd} requires at least two arguments, but only one was provided. Destination could not be determined"
    ))
}

fn parse_copy(node: &Node) -> Result<Command, CmdError> {
    if node.args.len() < 2 {
        return Err(no_destination("COPY"));
    }
    let mut f = Flags::new(&[
        ("chown", FlagType::String),
        ("from", FlagType::String),
        ("chmod", FlagType::String),
        ("link", FlagType::Bool),
        ("parents", FlagType::Bool),
        ("exclude", FlagType::Strings),
    ]);
    f.parse(&node.flags)?;
    Ok(Command::Copy(Copy {
        sources: parse_sources(node, "COPY")?,
        from: f.string("from"),
        chown: f.string("chown"),
        chmod: f.string("chmod"),
        link: f.bool("link"),
        parents: f.bool("parents"),
        excludes: f.strings("exclude"),
    }))
}

fn parse_add(node: &Node) -> Result<Command, CmdError> {
    if node.args.len() < 2 {
        return Err(no_destination("ADD"));
    }
    let mut f = Flags::new(&[
        ("chown", FlagType::String),
        ("chmod", FlagType::String),
        ("link", FlagType::Bool),
        ("keep-git-dir", FlagType::Bool),
        ("checksum", FlagType::String),
        ("exclude", FlagType::Strings),
        ("unpack", FlagType::Bool),
    ]);
    f.parse(&node.flags)?;
    let unpack = node
        .flags
        .iter()
        .any(|a| a == "--unpack" || a.starts_with("--unpack="))
        .then(|| f.bool("unpack"));
    Ok(Command::Add(Add {
        sources: parse_sources(node, "ADD")?,
        chown: f.string("chown"),
        chmod: f.string("chmod"),
        link: f.bool("link"),
        keep_git_dir: f.bool("keep-git-dir"),
        checksum: f.string("checksum"),
        excludes: f.strings("exclude"),
        unpack,
    }))
}

fn parse_run(node: &Node) -> Result<Command, CmdError> {
    let mut f = Flags::new(&[
        ("mount", FlagType::Strings),
        ("network", FlagType::String),
        ("security", FlagType::String),
    ]);
    f.parse(&node.flags)?;
    let mount_specs = f.strings("mount");
    let identity = |v: &str| Ok(v.to_string());
    let mounts = mount_specs
        .iter()
        .map(|s| parse_mount(s, &identity, true))
        .collect::<Result<Vec<_>, Error>>()?;
    let network = match f.string("network").as_deref() {
        None | Some("default") => NetworkMode::Default,
        Some("none") => NetworkMode::None,
        Some("host") => NetworkMode::Host,
        Some(other) => {
            return Err(err(format!(
                "unsupported network mode {}",
                crate::parser::go_quote(other)
            )));
        }
    };
    let security = match f.string("security").as_deref() {
        None | Some("sandbox") => Security::Sandbox,
        Some("insecure") => Security::Insecure,
        Some(other) => {
            return Err(err(format!(
                "security={other} is not allowed, use sandbox or insecure"
            )));
        }
    };
    Ok(Command::Run(Run {
        command: command_line(node),
        heredocs: node.heredocs.clone(),
        mounts,
        mount_specs,
        network,
        security,
    }))
}

fn parse_healthcheck(node: &Node) -> Result<Command, CmdError> {
    let Some(first) = node.args.first() else {
        return Err(at_least_one("HEALTHCHECK"));
    };
    let typ = first.to_ascii_uppercase();
    let rest = &node.args[1..];
    if typ == "NONE" {
        if !rest.is_empty() {
            return Err(err("HEALTHCHECK NONE takes no arguments"));
        }
        return Ok(Command::Healthcheck(Healthcheck::None));
    }
    let mut f = Flags::new(&[
        ("interval", FlagType::String),
        ("timeout", FlagType::String),
        ("start-period", FlagType::String),
        ("start-interval", FlagType::String),
        ("retries", FlagType::String),
    ]);
    f.parse(&node.flags)?;
    if typ != "CMD" {
        return Err(err(format!(
            "Unknown type {} in HEALTHCHECK (try CMD)",
            crate::parser::go_quote(&typ)
        )));
    }
    let cmd: Vec<String> = if node.json {
        rest.to_vec()
    } else if rest.is_empty() {
        Vec::new()
    } else {
        vec![rest.join(" ")]
    };
    if cmd.is_empty() {
        return Err(err("Missing command after HEALTHCHECK CMD"));
    }
    let mut test = vec![if node.json { "CMD" } else { "CMD-SHELL" }.to_string()];
    test.extend(cmd);
    let interval = |name: &str| -> Result<Option<Duration>, CmdError> {
        let Some(v) = f.string(name).filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        let d = parse_go_duration(&v).map_err(err)?;
        match d {
            Some(d) if d.is_zero() => Ok(Some(d)),
            Some(d) if d >= Duration::from_millis(1) => Ok(Some(d)),
            _ => Err(err(format!(
                "Interval {} cannot be less than 1ms",
                crate::parser::go_quote(name)
            ))),
        }
    };
    let retries = match f.string("retries").filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => {
            let n: i64 = v.parse().map_err(|_| {
                err(format!(
                    "strconv.ParseInt: parsing {}: invalid syntax",
                    crate::parser::go_quote(&v)
                ))
            })?;
            if n < 0 {
                return Err(err(format!("--retries cannot be negative ({n})")));
            }
            Some(u32::try_from(n).map_err(|_| err(format!("--retries out of range ({n})")))?)
        }
    };
    Ok(Command::Healthcheck(Healthcheck::Check {
        test,
        interval: interval("interval")?,
        timeout: interval("timeout")?,
        start_period: interval("start-period")?,
        start_interval: interval("start-interval")?,
        retries,
    }))
}

/// Parses a Go duration (`1h30m`, `1.5s`, `300ms`, `-2s`); `Ok(None)` for a
/// negative one.
pub fn parse_go_duration(s: &str) -> Result<Option<Duration>, String> {
    let bad = || format!("time: invalid duration {}", crate::parser::go_quote(s));
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(Some(Duration::ZERO));
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total_ns: f64 = 0.0;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..n];
        if num.is_empty() || num == "." {
            return Err(bad());
        }
        let v: f64 = num.parse().map_err(|_| bad())?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..u];
        rest = &rest[u..];
        let mult = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => {
                return Err(format!(
                    "time: missing unit in duration {}",
                    crate::parser::go_quote(s)
                ));
            }
            u => {
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    crate::parser::go_quote(u),
                    crate::parser::go_quote(s)
                ));
            }
        };
        total_ns += v * mult;
    }
    if total_ns > 9.2e18 {
        return Err(bad());
    }
    if neg && total_ns > 0.0 {
        return Ok(None);
    }
    Ok(Some(Duration::from_nanos(total_ns.round() as u64)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(
            parse_go_duration("1h30m").unwrap(),
            Some(Duration::from_secs(5400))
        );
        assert_eq!(
            parse_go_duration("1.5s").unwrap(),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_go_duration("0").unwrap(), Some(Duration::ZERO));
        assert_eq!(parse_go_duration("-3s").unwrap(), None);
        assert!(parse_go_duration("5").is_err());
        assert!(parse_go_duration("5x").is_err());
        assert!(parse_go_duration("").is_err());
    }
}
