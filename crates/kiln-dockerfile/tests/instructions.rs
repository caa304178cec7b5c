//! Typed instructions and their expansion.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::Duration;

use kiln_dockerfile::{
    CacheSharing, Command, CommandLine, Dockerfile, Healthcheck, Instruction, MountType,
    NetworkMode, Security, parse,
};

fn one(src: &str) -> Instruction {
    let ast = parse(&format!("FROM scratch\n{src}")).unwrap();
    Instruction::from_node(&ast.nodes[1]).unwrap()
}

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let m: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |n: &str| m.get(n).cloned()
}

#[test]
fn from_forms() {
    let df = Dockerfile::parse("FROM --platform=$BUILDPLATFORM golang:1.22 AS Build\nFROM build\n")
        .unwrap();
    let f = &df.stages[0].from;
    assert_eq!(f.image, "golang:1.22");
    assert_eq!(f.name.as_deref(), Some("build"));
    assert_eq!(f.platform.as_deref(), Some("$BUILDPLATFORM"));
    let e = f
        .expand(&env(&[("BUILDPLATFORM", "linux/amd64")]), '\\')
        .unwrap();
    assert_eq!(e.platform.as_deref(), Some("linux/amd64"));
    let e = Dockerfile::parse("ARG X\nFROM ${X}\n").unwrap().stages[0]
        .from
        .expand(&|_| None, '\\');
    assert!(
        e.unwrap_err()
            .message
            .contains("base name (${X}) should not be blank")
    );
}

#[test]
fn run_forms_and_flags() {
    let i = one(
        "RUN --mount=type=cache,target=/root/.cache,sharing=private --mount=type=secret,id=npm,target=/run/npmrc --network=none --security=insecure make all",
    );
    let Command::Run(r) = &i.command else {
        panic!()
    };
    assert_eq!(r.command, CommandLine::Shell("make all".into()));
    assert_eq!(r.mounts.len(), 2);
    assert_eq!(r.mounts[0].kind, MountType::Cache);
    assert_eq!(r.mounts[0].sharing, Some(CacheSharing::Private));
    assert_eq!(r.mounts[1].kind, MountType::Secret);
    assert_eq!(r.mounts[1].id.as_deref(), Some("npm"));
    assert_eq!(r.network, NetworkMode::None);
    assert_eq!(r.security, Security::Insecure);

    let i = one(r#"RUN ["echo", "a b"]"#);
    let Command::Run(r) = &i.command else {
        panic!()
    };
    assert_eq!(
        r.command,
        CommandLine::Exec(vec!["echo".into(), "a b".into()])
    );

    let e = Instruction::from_node(&parse("RUN --network=bridge x").unwrap().nodes[0]).unwrap_err();
    assert!(e.message.contains("unsupported network mode \"bridge\""));
}

#[test]
fn run_mount_values_expand() {
    let i = one("RUN --mount=type=cache,target=$CACHE,uid=$UID,id=c-$V true");
    let Command::Run(r) = &i.command else {
        panic!()
    };
    assert_eq!(r.mounts[0].target.as_deref(), Some("$CACHE"));
    assert_eq!(r.mounts[0].uid, None);
    let x = i
        .expand(&env(&[("CACHE", "/c"), ("UID", "1000"), ("V", "1")]), '\\')
        .unwrap();
    let Command::Run(r) = &x.command else {
        panic!()
    };
    assert_eq!(r.mounts[0].target.as_deref(), Some("/c"));
    assert_eq!(r.mounts[0].uid, Some(1000));
    assert_eq!(r.mounts[0].id.as_deref(), Some("c-1"));
    // The command text is left to the shell.
    assert_eq!(r.command, CommandLine::Shell("true".into()));
    let bad = i.expand(&env(&[("UID", "me")]), '\\').unwrap_err();
    assert!(bad.message.contains("invalid value me for uid"), "{bad}");
    assert_eq!(bad.line, 2);
}

#[test]
fn copy_and_add() {
    let i = one(
        "COPY --from=build --chown=app:app --chmod=0644 --link --parents --exclude=*.md --exclude=tmp a b /dst/",
    );
    let Command::Copy(c) = &i.command else {
        panic!()
    };
    assert_eq!(c.sources.paths, vec!["a", "b"]);
    assert_eq!(c.sources.dest, "/dst/");
    assert_eq!(c.from.as_deref(), Some("build"));
    assert_eq!(c.chown.as_deref(), Some("app:app"));
    assert_eq!(c.chmod.as_deref(), Some("0644"));
    assert!(c.link && c.parents);
    assert_eq!(c.excludes, vec!["*.md", "tmp"]);

    let i = one(r#"COPY ["a b", "/c d/"]"#);
    let Command::Copy(c) = &i.command else {
        panic!()
    };
    assert!(c.sources.json);
    assert_eq!(c.sources.paths, vec!["a b"]);
    assert_eq!(c.sources.dest, "/c d/");

    let i =
        one("ADD --checksum=sha256:abc --keep-git-dir=true --unpack=false https://x/y.tar.gz /y");
    let Command::Add(a) = &i.command else {
        panic!()
    };
    assert_eq!(a.checksum.as_deref(), Some("sha256:abc"));
    assert!(a.keep_git_dir);
    assert_eq!(a.unpack, Some(false));
    let Command::Add(a) = &one("ADD x /y").command else {
        panic!()
    };
    assert_eq!(a.unpack, None);
}

#[test]
fn copy_expansion() {
    let i = one(r#"COPY --chown=${U}:${G} --from=$STAGE "$SRC"/x ${DEST:-/opt} "#);
    let x = i
        .expand(
            &env(&[("U", "1"), ("G", "2"), ("STAGE", "b"), ("SRC", "my dir")]),
            '\\',
        )
        .unwrap();
    let Command::Copy(c) = &x.command else {
        panic!()
    };
    assert_eq!(c.chown.as_deref(), Some("1:2"));
    assert_eq!(c.from.as_deref(), Some("b"));
    assert_eq!(c.sources.paths, vec!["my dir/x"]);
    assert_eq!(c.sources.dest, "/opt");
}

#[test]
fn env_and_label_forms() {
    let i = one(r#"ENV A=1 B="two words" C=a\ b D=$A-x"#);
    let x = i.expand(&env(&[("A", "one")]), '\\').unwrap();
    let Command::Env(kv) = &x.command else {
        panic!()
    };
    let got: Vec<(&str, &str)> = kv
        .iter()
        .map(|p| (p.key.as_str(), p.value.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![("A", "1"), ("B", "two words"), ("C", "a b"), ("D", "one-x")]
    );

    let i = one("ENV PATH /usr/local/bin:$PATH");
    let x = i.expand(&env(&[("PATH", "/bin")]), '\\').unwrap();
    let Command::Env(kv) = &x.command else {
        panic!()
    };
    assert_eq!(
        (kv[0].key.as_str(), kv[0].value.as_str()),
        ("PATH", "/usr/local/bin:/bin")
    );

    let i = one(r#"LABEL "com.example.name"="a \"b\"" version=$V"#);
    let x = i.expand(&env(&[("V", "1.0")]), '\\').unwrap();
    let Command::Label(kv) = &x.command else {
        panic!()
    };
    assert_eq!(kv[0].key, "com.example.name");
    assert_eq!(kv[0].value, "a \"b\"");
    assert_eq!(kv[1].value, "1.0");
    let Command::Label(kv) = &one("LABEL maintainer Jane Doe <j@d.o>").command else {
        panic!()
    };
    assert_eq!(kv[0].value, "Jane Doe <j@d.o>");
}

#[test]
fn arg_expose_volume_misc() {
    let Command::Arg(a) = &one("ARG A B=1 C=").command else {
        panic!()
    };
    assert_eq!(a.len(), 3);
    assert_eq!((a[0].name.as_str(), a[0].default.as_deref()), ("A", None));
    assert_eq!(a[1].default.as_deref(), Some("1"));
    assert_eq!(a[2].default.as_deref(), Some(""));
    let x = one("ARG V=${BASE}-1")
        .expand(&env(&[("BASE", "v2")]), '\\')
        .unwrap();
    let Command::Arg(a) = &x.command else {
        panic!()
    };
    assert_eq!(a[0].default.as_deref(), Some("v2-1"));

    let x = one("EXPOSE 8080/tcp $P")
        .expand(&env(&[("P", "53/udp")]), '\\')
        .unwrap();
    assert_eq!(
        x.command,
        Command::Expose(vec!["53/udp".into(), "8080/tcp".into()])
    );
    let Command::Volume(v) = &one(r#"VOLUME ["/a", "/b"]"#).command else {
        panic!()
    };
    assert_eq!(v, &vec!["/a".to_string(), "/b".to_string()]);
    let Command::Volume(v) = &one("VOLUME /a /b").command else {
        panic!()
    };
    assert_eq!(v.len(), 2);
    let x = one("WORKDIR $HOME/src")
        .expand(&env(&[("HOME", "/root")]), '\\')
        .unwrap();
    assert_eq!(x.command, Command::Workdir("/root/src".into()));
    let x = one("USER ${U:-app}").expand(&|_| None, '\\').unwrap();
    assert_eq!(x.command, Command::User("app".into()));
    let x = one("STOPSIGNAL $S")
        .expand(&env(&[("S", "SIGTERM")]), '\\')
        .unwrap();
    assert_eq!(x.command, Command::StopSignal("SIGTERM".into()));
    assert_eq!(
        one("MAINTAINER Jane").command,
        Command::Maintainer("Jane".into())
    );
    assert_eq!(
        one(r#"SHELL ["/bin/bash", "-c"]"#).command,
        Command::Shell(vec!["/bin/bash".into(), "-c".into()])
    );
    assert_eq!(
        one("CMD echo $HOME")
            .expand(&env(&[("HOME", "/x")]), '\\')
            .unwrap()
            .command,
        Command::Cmd(CommandLine::Shell("echo $HOME".into()))
    );
    assert_eq!(
        one(r#"ENTRYPOINT ["/init"]"#).command,
        Command::Entrypoint(CommandLine::Exec(vec!["/init".into()]))
    );
}

#[test]
fn healthcheck() {
    let Command::Healthcheck(h) = &one("HEALTHCHECK --interval=30s --timeout=3s --start-period=1m --start-interval=500ms --retries=3 CMD curl -f http://localhost/").command else { panic!() };
    assert_eq!(
        h,
        &Healthcheck::Check {
            test: vec!["CMD-SHELL".into(), "curl -f http://localhost/".into()],
            interval: Some(Duration::from_secs(30)),
            timeout: Some(Duration::from_secs(3)),
            start_period: Some(Duration::from_secs(60)),
            start_interval: Some(Duration::from_millis(500)),
            retries: Some(3),
        }
    );
    let Command::Healthcheck(h) = &one(r#"HEALTHCHECK CMD ["/check", "-q"]"#).command else {
        panic!()
    };
    let Healthcheck::Check { test, .. } = h else {
        panic!()
    };
    assert_eq!(test, &vec!["CMD".to_string(), "/check".into(), "-q".into()]);
    assert_eq!(
        one("HEALTHCHECK NONE").command,
        Command::Healthcheck(Healthcheck::None)
    );
    let err = |s: &str| {
        Instruction::from_node(&parse(s).unwrap().nodes[0])
            .unwrap_err()
            .message
    };
    assert!(err("HEALTHCHECK --interval=1us CMD x").contains("cannot be less than 1ms"));
    assert!(err("HEALTHCHECK --retries=-1 CMD x").contains("--retries cannot be negative"));
    assert!(err("HEALTHCHECK NONE x").contains("takes no arguments"));
    assert!(err("HEALTHCHECK CONNECT x").contains("Unknown type \"CONNECT\""));
    assert!(err("HEALTHCHECK CMD").contains("Missing command after HEALTHCHECK CMD"));
    assert!(err("HEALTHCHECK").contains("HEALTHCHECK requires at least one argument"));
}

#[test]
fn location_and_original() {
    let ast = parse("FROM a\n\nRUN echo \\\n  hi\n").unwrap();
    let i = Instruction::from_node(&ast.nodes[1]).unwrap();
    assert_eq!(
        (
            i.location.start_line,
            i.location.end_line,
            i.location.column
        ),
        (3, 4, 1)
    );
    assert_eq!(i.original, "RUN echo   hi");
    assert_eq!(i.keyword(), "RUN");
}
