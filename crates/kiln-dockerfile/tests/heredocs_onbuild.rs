//! Heredocs and ONBUILD.
#![allow(clippy::unwrap_used)]

use kiln_dockerfile::{Command, CommandLine, Instruction, parse, parse_onbuild_trigger};

fn ins(src: &str, i: usize) -> Instruction {
    Instruction::from_node(&parse(src).unwrap().nodes[i]).unwrap()
}

#[test]
fn run_with_two_heredocs() {
    let src = "FROM a\nRUN <<one cat /dev/stdin - 3<<'two' > /out\necho $HOME\none\nraw $HOME\ntwo\nRUN after\n";
    let ast = parse(src).unwrap();
    assert_eq!(ast.nodes.len(), 3);
    assert_eq!((ast.nodes[1].start_line, ast.nodes[1].end_line), (2, 6));
    let Command::Run(r) = Instruction::from_node(&ast.nodes[1]).unwrap().command else {
        panic!()
    };
    assert_eq!(
        r.command,
        CommandLine::Shell("<<one cat /dev/stdin - 3<<'two' > /out".into())
    );
    assert_eq!(r.heredocs.len(), 2);
    assert_eq!(
        (r.heredocs[0].name.as_str(), r.heredocs[0].content.as_str()),
        ("one", "echo $HOME\n")
    );
    assert!(r.heredocs[0].expand);
    assert_eq!((r.heredocs[1].name.as_str(), r.heredocs[1].fd), ("two", 3));
    assert!(!r.heredocs[1].expand);
    assert_eq!(r.heredocs[1].content, "raw $HOME\n");
    // RUN heredoc bodies are never expanded by the front end.
    let x = Instruction::from_node(&ast.nodes[1])
        .unwrap()
        .expand(&|_| Some("X".into()), '\\')
        .unwrap();
    let Command::Run(r) = x.command else { panic!() };
    assert_eq!(r.heredocs[0].content, "echo $HOME\n");
}

#[test]
fn chomp_strips_tabs() {
    let i = ins("FROM a\nRUN <<-EOF\n\techo a\n\t\techo b\n\tEOF\n", 1);
    let Command::Run(r) = &i.command else {
        panic!()
    };
    assert!(r.heredocs[0].chomp);
    assert_eq!(r.heredocs[0].content, "\techo a\n\t\techo b\n");
    assert_eq!(r.heredocs[0].body(), "echo a\necho b\n");
}

#[test]
fn copy_heredoc_expansion_depends_on_quoting() {
    let src = "FROM a\nCOPY <<EOF /expanded\nhome=$HOME \"q\" \\$HOME\nEOF\nCOPY <<\"EOF\" /literal\nhome=$HOME\nEOF\nCOPY <<-EOF /tabs\n\tv=$V\n\tEOF\n";
    let lookup = |n: &str| match n {
        "HOME" => Some("/root".to_string()),
        "V" => Some("1".to_string()),
        _ => None,
    };
    let c1 = ins(src, 1).expand(&lookup, '\\').unwrap();
    let Command::Copy(c) = &c1.command else {
        panic!()
    };
    assert!(c.sources.paths.is_empty());
    assert_eq!(c.sources.inline[0].path, "EOF");
    assert_eq!(c.sources.inline[0].data, "home=/root \"q\" $HOME\n");
    assert_eq!(c.sources.dest, "/expanded");
    let c2 = ins(src, 2).expand(&lookup, '\\').unwrap();
    let Command::Copy(c) = &c2.command else {
        panic!()
    };
    assert!(!c.sources.inline[0].expand);
    assert_eq!(c.sources.inline[0].data, "home=$HOME\n");
    let c3 = ins(src, 3).expand(&lookup, '\\').unwrap();
    let Command::Copy(c) = &c3.command else {
        panic!()
    };
    assert_eq!(c.sources.inline[0].data, "v=1\n");
}

#[test]
fn heredoc_not_recognised_in_json_or_quotes() {
    let ast = parse("FROM a\nRUN [\"echo\", \"<<EOF\"]\nRUN echo \"<<EOF\"\n").unwrap();
    assert_eq!(ast.nodes.len(), 3);
    assert!(ast.nodes[1].heredocs.is_empty() && ast.nodes[2].heredocs.is_empty());
}

#[test]
fn heredoc_as_destination_is_refused() {
    let ast = parse("FROM a\nCOPY a <<EOF\nx\nEOF\n").unwrap();
    let e = Instruction::from_node(&ast.nodes[1]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "line 2, column 1: COPY cannot accept a heredoc as a destination"
    );
}

#[test]
fn onbuild_keeps_trigger_text() {
    let i = ins(
        "FROM a\nONBUILD RUN echo hi\nonbuild COPY --from=x a /b\n",
        1,
    );
    assert_eq!(i.command, Command::Onbuild("RUN echo hi".into()));
    let i = ins("FROM a\nonbuild COPY --from=x a /b\n", 1);
    assert_eq!(i.command, Command::Onbuild("COPY --from=x a /b".into()));
    let i = ins("FROM a\nONBUILD RUN <<EOF\necho hi\nEOF\n", 1);
    assert_eq!(
        i.command,
        Command::Onbuild("RUN <<EOF\necho hi\nEOF".into())
    );
    for (src, msg) in [
        (
            "FROM a\nONBUILD ONBUILD RUN x\n",
            "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
        ),
        (
            "FROM a\nONBUILD FROM b\n",
            "FROM isn't allowed as an ONBUILD trigger",
        ),
        (
            "FROM a\nONBUILD MAINTAINER me\n",
            "MAINTAINER isn't allowed as an ONBUILD trigger",
        ),
        (
            "FROM a\nONBUILD\n",
            "ONBUILD requires at least one argument",
        ),
    ] {
        let e = Instruction::from_node(&parse(src).unwrap().nodes[1]).unwrap_err();
        assert_eq!(e.to_string(), format!("line 2, column 1: {msg}"));
    }
}

#[test]
fn onbuild_trigger_parsing() {
    let i = parse_onbuild_trigger("RUN make install").unwrap();
    assert_eq!(i.keyword(), "RUN");
    let i = parse_onbuild_trigger("COPY --chown=1 . /src").unwrap();
    let Command::Copy(c) = &i.command else {
        panic!()
    };
    assert_eq!(c.chown.as_deref(), Some("1"));
    let i = parse_onbuild_trigger("RUN <<EOF\necho hi\nEOF").unwrap();
    let Command::Run(r) = &i.command else {
        panic!()
    };
    assert_eq!(r.heredocs[0].content, "echo hi\n");
    for (t, msg) in [
        (
            "ONBUILD RUN x",
            "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
        ),
        ("FROM x", "FROM isn't allowed as an ONBUILD trigger"),
        (
            "MAINTAINER x",
            "MAINTAINER isn't allowed as an ONBUILD trigger",
        ),
        (
            "RUN a\nRUN b",
            "onbuild trigger should be a single expression",
        ),
    ] {
        assert_eq!(parse_onbuild_trigger(t).unwrap_err().message, msg);
    }
    assert!(
        parse_onbuild_trigger("BOGUS x")
            .unwrap_err()
            .message
            .contains("unknown instruction: BOGUS")
    );
}
