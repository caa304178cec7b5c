//! Stages, targets, dependencies, and error messages with locations.
#![allow(clippy::unwrap_used)]

use kiln_dockerfile::{Dockerfile, Source, parse};

const MULTI: &str = "\
ARG BASE=debian
ARG TAG=12
FROM ${BASE}:${TAG} AS base
RUN apt-get update

FROM base AS Deps
RUN --mount=type=bind,from=tools,source=/bin/x,target=/x true

FROM busybox AS tools

FROM base AS build
COPY --from=deps /deps /deps
COPY --from=2 /bin/x /x
COPY --from=alpine:3 /etc/os-release /

FROM scratch AS unused
COPY --from=build /out /

FROM scratch
COPY --from=build /out /app
";

#[test]
fn meta_args_and_stages() {
    let df = Dockerfile::parse(MULTI).unwrap();
    assert_eq!(df.meta_args.len(), 2);
    assert_eq!(df.stages.len(), 6);
    let names: Vec<String> = df.stages.iter().map(|s| s.display_name()).collect();
    assert_eq!(names, vec!["base", "deps", "tools", "build", "unused", "5"]);
    let meta = df
        .meta_args(&|n| (n == "TAG").then(|| "13".to_string()))
        .unwrap();
    assert_eq!(meta.get("BASE").as_deref(), Some("debian"));
    assert_eq!(meta.get("TAG").as_deref(), Some("13"));
    assert_eq!(
        df.base(0, &|n| meta.get(n)).unwrap(),
        Source::Image("debian:13".into())
    );
    assert_eq!(df.base(1, &|n| meta.get(n)).unwrap(), Source::Stage(0));
}

#[test]
fn lookup_by_name_or_index() {
    let df = Dockerfile::parse(MULTI).unwrap();
    assert_eq!(df.stage("DEPS").unwrap().index, 1);
    assert_eq!(df.stage("3").unwrap().name.as_deref(), Some("build"));
    assert!(df.stage("nope").is_none());
    assert_eq!(df.target(None).unwrap().index, 5);
    assert_eq!(df.target(Some("Build")).unwrap().index, 3);
    let e = df.target(Some("release")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "target stage \"release\" could not be found (stages: base, deps, tools, build, unused, 5)"
    );
}

#[test]
fn build_order_skips_unused_stages() {
    let df = Dockerfile::parse(MULTI).unwrap();
    let meta = df.meta_args(&|_| None).unwrap();
    let order = df.build_order(5, &|n| meta.get(n)).unwrap();
    assert_eq!(order, vec![0, 2, 1, 3, 5]);
    let order = df.build_order(2, &|n| meta.get(n)).unwrap();
    assert_eq!(order, vec![2]);
    assert_eq!(
        df.resolve_from("alpine:3").unwrap(),
        Source::Image("alpine:3".into())
    );
    assert_eq!(df.resolve_from("Tools").unwrap(), Source::Stage(2));
    assert!(
        df.resolve_from("9")
            .unwrap_err()
            .message
            .contains("invalid stage index 9")
    );
    let sources = df.direct_sources(3, &|n| meta.get(n)).unwrap();
    assert_eq!(
        sources,
        vec![
            Source::Stage(0),
            Source::Stage(1),
            Source::Stage(2),
            Source::Image("alpine:3".into())
        ]
    );
}

#[test]
fn from_a_later_stage_is_an_image_and_cycles_are_errors() {
    let df = Dockerfile::parse("FROM later AS first\nFROM alpine AS later\n").unwrap();
    assert_eq!(
        df.base(0, &|_| None).unwrap(),
        Source::Image("later".into())
    );
    let df = Dockerfile::parse(
        "FROM alpine AS a\nCOPY --from=b / /\nFROM alpine AS b\nCOPY --from=a / /\n",
    )
    .unwrap();
    let e = df.build_order(1, &|_| None).unwrap_err();
    assert!(
        e.message.contains("circular dependency detected on stage"),
        "{e}"
    );
}

fn err(src: &str) -> String {
    match parse(src) {
        Err(e) => e.to_string(),
        Ok(ast) => Dockerfile::from_ast(&ast).unwrap_err().to_string(),
    }
}

#[test]
fn error_messages_carry_line_and_column() {
    assert_eq!(
        err("FROM a\n\nFOOBAR x\n"),
        "line 3, column 1: unknown instruction: FOOBAR"
    );
    assert_eq!(
        err("FROM a\n  frob x\n"),
        "line 2, column 3: unknown instruction: frob"
    );
    assert_eq!(
        err("FROM a\nRUN <<EOF\necho hi\n"),
        "line 2, column 1: unterminated heredoc EOF"
    );
    assert_eq!(
        err("FROM a\nCOPY only-one\n"),
        "line 2, column 1: COPY requires at least two arguments, but only one was provided. Destination could not be determined"
    );
    assert_eq!(
        err("FROM a\nADD x\n").split(':').nth(1).unwrap().trim(),
        "ADD requires at least two arguments, but only one was provided. Destination could not be determined"
    );
    assert_eq!(
        err("FROM a\nWORKDIR\n"),
        "line 2, column 1: WORKDIR requires exactly one argument"
    );
    assert_eq!(
        err("FROM a\nUSER\n"),
        "line 2, column 1: USER requires exactly one argument"
    );
    assert_eq!(
        err("FROM a\nEXPOSE\n"),
        "line 2, column 1: EXPOSE requires at least one argument"
    );
    assert_eq!(
        err("FROM a\nENV\n"),
        "line 2, column 1: ENV requires at least one argument"
    );
    assert_eq!(
        err("FROM a\nENV A\n"),
        "line 2, column 1: ENV must have two arguments"
    );
    assert_eq!(
        err("FROM a\nLABEL a=1 b\n"),
        "line 2, column 1: Syntax error - can't find = in \"b\". Must be of the form: name=value"
    );
    assert_eq!(
        err("FROM\n"),
        "line 1, column 1: FROM requires either one or three arguments"
    );
    assert_eq!(
        err("FROM a AS\n"),
        "line 1, column 1: FROM requires either one or three arguments"
    );
    assert_eq!(
        err("FROM a AS 1st\n"),
        "line 1, column 1: invalid name for build stage: \"1st\", name can't start with a number or contain symbols"
    );
    assert_eq!(
        err("FROM a AS x\nFROM b AS X\n"),
        "line 2, column 1: duplicate stage name \"x\""
    );
    assert_eq!(
        err("FROM a\nCOPY --frob=x a b\n"),
        "line 2, column 6: Unknown flag: frob"
    );
    assert_eq!(
        err("FROM a\nRUN --mount=type=bogus x\n"),
        "line 2, column 1: unsupported mount type \"bogus\""
    );
    assert_eq!(
        err("FROM a\nSHELL /bin/sh -c\n"),
        "line 2, column 1: SHELL requires the arguments to be in JSON form (as in SHELL [\"executable\", \"parameters\"]), got: SHELL /bin/sh -c"
    );
    assert_eq!(
        err("FROM a\nCMD [\"a\", 1]\n"),
        "line 2, column 1: when using JSON array syntax, arrays must be comprised of strings only"
    );
    assert_eq!(
        err("RUN x\nFROM a\n"),
        "line 1, column 1: no build stage in current context (RUN before the first FROM)"
    );
    assert_eq!(
        err("# only a comment\n\n"),
        "line 2, column 1: file with no instructions"
    );
    assert_eq!(
        err("FROM a\nRUN a \\\n  b\nBAD\n"),
        "line 4, column 1: unknown instruction: BAD"
    );
}

#[test]
fn bad_json_falls_back_to_shell_form() {
    let df = Dockerfile::parse("FROM a\nCMD [\"echo\", \"unterminated]\nRUN ['single']\n").unwrap();
    let cmds: Vec<String> = df.stages[0]
        .instructions
        .iter()
        .map(|i| format!("{:?}", i.command))
        .collect();
    assert_eq!(cmds[0], r#"Cmd(Shell("[\"echo\", \"unterminated]"))"#);
    assert!(cmds[1].contains(r#"Shell("['single']")"#));
}
