//! `ADD <url>`: downloaded with the builder's HTTP client, checked against
//! `--checksum`, named after the URL, mode 0600 (Docker's rule).

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::Command;

use anyhow::{Result, ensure};
use common::buildcmp::BuildEnv;
use common::{RegistryServer, RunExt};

/// Serves `body` at any path over plain HTTP on 127.0.0.1 until the test
/// process ends; returns the port.
fn serve(body: &'static [u8]) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            // Read the request head.
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let mut s = stream;
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(body);
        }
    });
    port
}

const BODY: &[u8] = b"remote content\n";
// sha256 of BODY
const BODY_SHA256: &str = "c18243bcea0987f0dabe57a6714acda33fe58db2d6096c58a8b5be13ed378588";

#[test]
fn add_url_with_checksum() -> Result<()> {
    let env = BuildEnv::start()?;
    let base = env.push_busybox_base()?;
    let port = serve(BODY);
    let ctx = env.scratch.mkdir("ctx")?;
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {base}\n\
             ADD --checksum=sha256:{BODY_SHA256} http://127.0.0.1:{port}/dir/file.txt /data/\n\
             ADD http://127.0.0.1:{port}/other.txt /named.txt\n\
             RUN stat -c '%a %s %Y' /data/file.txt /named.txt && cat /data/file.txt\n"
        ),
    )?;
    let root = env.scratch.mkdir("root")?;
    let image = format!("{}/remote/add:1", env.registry.addr());
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args([
            "build",
            "--tls-verify=false",
            "--push",
            "-t",
            &image,
            "--root",
        ])
        .arg(&root)
        .arg(&ctx)
        .run()?
        .ok()?;
    let log = out.combined();
    ensure!(log.contains("600 15 784111777"), "mode, size, mtime: {log}");
    ensure!(log.contains("remote content"), "{log}");
    Ok(())
}

#[test]
fn add_url_checksum_mismatch_is_refused() -> Result<()> {
    let env = BuildEnv::start()?;
    let base = env.push_busybox_base()?;
    let port = serve(BODY);
    let ctx = env.scratch.mkdir("ctx")?;
    let wrong = "0".repeat(64);
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {base}\nADD --checksum=sha256:{wrong} http://127.0.0.1:{port}/f.txt /f\n"),
    )?;
    let root = env.scratch.mkdir("root")?;
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["build", "--tls-verify=false", "--root"])
        .arg(&root)
        .arg(&ctx)
        .run()?
        .fail()?;
    let log = out.combined();
    ensure!(
        log.contains("Dockerfile:2")
            && log.contains("checksum mismatch")
            && log.contains(&format!("sha256:{BODY_SHA256}")),
        "{log}"
    );
    Ok(())
}
