//! Dockerfile syntax and semantics, behaving like BuildKit's Dockerfile
//! front end (`frontend/dockerfile/{parser,shell,instructions}`). Pure: no
//! I/O, no async.
//!
//! # Using it
//!
//! ```
//! use kiln_dockerfile::{Dockerfile, Command, Source};
//!
//! let df = Dockerfile::parse(
//!     "ARG BASE=alpine:3.20\n\
//!      FROM $BASE AS build\n\
//!      RUN --mount=type=cache,target=/root/.cache make\n\
//!      FROM scratch\n\
//!      COPY --from=build /out /app\n",
//! )?;
//! let meta = df.meta_args(&|_| None)?;              // build args override defaults
//! let target = df.target(None)?;                     // or Some("build")
//! let order = df.build_order(target.index, &|n| meta.get(n))?;
//! assert_eq!(order, vec![0, 1]);
//! assert_eq!(df.base(0, &|n| meta.get(n))?, Source::Image("alpine:3.20".into()));
//! for ins in &df.stages[1].instructions {
//!     // Expand with the stage's environment (ENV + ARG values) just before
//!     // executing; `ins.location` and `ins.original` are for messages and
//!     // image history.
//!     let ins = ins.expand(&|_| None, df.escape)?;
//!     if let Command::Copy(c) = &ins.command {
//!         assert_eq!(c.from.as_deref(), Some("build"));
//!     }
//! }
//! # Ok::<(), kiln_dockerfile::Error>(())
//! ```
//!
//! # Parts
//!
//! - [`parse`] builds the syntax tree ([`Ast`], [`Node`]) and
//!   [`Ast::dump`] prints it in BuildKit's test format.
//! - [`Dockerfile::from_ast`] / [`Dockerfile::parse`] type the
//!   instructions ([`Instruction`], [`Command`]) and group them into
//!   [`Stage`]s; [`Dockerfile::target`], [`Dockerfile::stage`],
//!   [`Dockerfile::build_order`], [`Dockerfile::resolve_from`] answer what a
//!   build needs.
//! - [`Instruction::expand`] and [`From::expand`] substitute variables in
//!   the fields BuildKit substitutes; [`shell::Lexer`] is the word lexer
//!   itself (with the set of unset variables a word referenced).
//! - [`parse_onbuild_trigger`] turns an inherited ONBUILD trigger into an
//!   instruction.
//! - [`DockerIgnore`] reads `.dockerignore` files.
//!
//! Every error is an [`Error`] with a 1-based line and column.

mod dockerignore;
mod error;
mod flags;
mod instruction;
mod mount;
pub mod parser;
pub mod shell;
mod stages;

pub use dockerignore::{DockerIgnore, clean_path};
pub use error::Error;
pub use instruction::{
    Add, ArgDef, Command, CommandLine, Copy, From, Healthcheck, InlineSource, Instruction,
    KeyValue, Location, NetworkMode, Run, Security, Sources, parse_go_duration,
    parse_onbuild_trigger,
};
pub use mount::{CacheSharing, Mount, MountType};
pub use parser::{Ast, Heredoc, Node, parse};
pub use stages::{Dockerfile, MetaArgs, Source, Stage, is_valid_stage_name};
