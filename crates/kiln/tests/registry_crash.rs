//! The registry binary under hostile conditions: raw HTTP that lies, and a
//! `kill -9` in the middle of a push followed by a restart.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kiln_oci::Digest;

struct Registry {
    child: Child,
    addr: SocketAddr,
}

impl Registry {
    fn start(data: &Path, addr: Option<SocketAddr>) -> Registry {
        let addr = addr.unwrap_or_else(|| {
            let l = TcpListener::bind("127.0.0.1:0").expect("free port");
            l.local_addr().expect("addr")
        });
        let child = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args([
                "registry",
                "serve",
                "--listen",
                &addr.to_string(),
                "--data-dir",
            ])
            .arg(data)
            .env("KILN_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start kiln");
        let r = Registry { child, addr };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if TcpStream::connect(addr).is_ok() && r.request("GET", "/v2/", &[], b"").0 == 200 {
                return r;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("registry did not start on {addr}");
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// One request on its own connection: (status, head, body).
    fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> (u16, String, Vec<u8>) {
        let mut s = TcpStream::connect(self.addr).expect("connect");
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).expect("write head");
        s.write_all(body).expect("write body");
        // A body shorter than its Content-Length: end it by closing our half.
        let declared = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"));
        if declared.is_some_and(|(_, v)| v.parse::<usize>().is_ok_and(|n| n > body.len())) {
            let _ = s.shutdown(std::net::Shutdown::Write);
        }
        read_response(&mut s)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn read_response(s: &mut TcpStream) -> (u16, String, Vec<u8>) {
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(raw.len(), |i| i + 4);
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head, raw[split..].to_vec())
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

fn push(r: &Registry, repo: &str, data: &[u8]) -> Digest {
    let d = Digest::sha256_of(data);
    let (status, _, body) = r.request(
        "POST",
        &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
        &[],
        data,
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    d
}

#[test]
fn lying_content_length_and_traversal_names_are_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let r = Registry::start(tmp.path(), None);
    let data = vec![5u8; 1000];
    let d = Digest::sha256_of(&data);

    // Claims 1000 bytes, sends 500, closes: nothing is stored.
    let (status, _, _) = r.request(
        "POST",
        &format!("/v2/lie/blobs/uploads/?digest={d}"),
        &[("Content-Length", "1000".into())],
        &data[..500],
    );
    assert!(status == 400 || status == 0, "status {status}");
    assert_eq!(
        r.request("HEAD", &format!("/v2/lie/blobs/{d}"), &[], b"").0,
        404
    );

    // Claims 500, sends 1000: the 500 read do not match the digest.
    let (status, _, body) = r.request(
        "POST",
        &format!("/v2/lie/blobs/uploads/?digest={d}"),
        &[("Content-Length", "500".into())],
        &data,
    );
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("DIGEST_INVALID"));
    assert_eq!(
        r.request("HEAD", &format!("/v2/lie/blobs/{d}"), &[], b"").0,
        404
    );

    for path in [
        "/v2/../x/tags/list",
        "/v2/a/../../etc/manifests/latest",
        "/v2/a//b/tags/list",
        "/v2/%2e%2e/x/tags/list",
    ] {
        let (status, _, body) = r.request("GET", path, &[], b"");
        assert!(status == 400 || status == 404, "{path}: {status}");
        assert!(
            String::from_utf8_lossy(&body).contains("NAME_INVALID") || status == 404,
            "{path}"
        );
    }
    // Still healthy.
    push(&r, "after/lies", b"ok");
}

#[test]
fn kill_9_during_push_loses_nothing_committed() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut r = Registry::start(tmp.path(), None);
    let addr = r.addr;

    // Committed before the crash.
    let layer: Vec<u8> = (0..3_000_000u32).map(|i| (i % 241) as u8).collect();
    let ld = push(&r, "crash/app", &layer);
    let cd = push(&r, "crash/app", b"{}");
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{ld}","size":{}}}]}}"#,
        layer.len()
    );
    let (status, _, _) = r.request(
        "PUT",
        "/v2/crash/app/manifests/v1",
        &[(
            "Content-Type",
            "application/vnd.oci.image.manifest.v1+json".into(),
        )],
        manifest.as_bytes(),
    );
    assert_eq!(status, 201);

    // A chunked upload: one chunk acknowledged, the next cut by kill -9.
    let big: Vec<u8> = (0..16_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let (status, head, _) = r.request("POST", "/v2/crash/app/blobs/uploads/", &[], b"");
    assert_eq!(status, 202);
    let loc = header(&head, "location").expect("location");
    let (status, _, _) = r.request(
        "PATCH",
        &loc,
        &[("Content-Range", format!("0-{}", (4 << 20) - 1))],
        &big[..4 << 20],
    );
    assert_eq!(status, 202);
    let mut s = TcpStream::connect(addr).expect("connect");
    let rest = &big[4 << 20..];
    write!(
        s,
        "PATCH {loc} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n",
        rest.len()
    )
    .expect("head");
    s.write_all(&rest[..6 << 20]).expect("partial body");
    std::thread::sleep(Duration::from_millis(300));
    r.kill9();
    drop(s);

    // Restart on the same data: the upload resumes where the bytes on disk end.
    let r = Registry::start(tmp.path(), Some(addr));
    let (status, head, _) = r.request("GET", &loc, &[], b"");
    assert_eq!(status, 204, "{head}");
    let range = header(&head, "range").expect("range");
    let have: usize = range
        .trim_start_matches("0-")
        .parse::<usize>()
        .expect("range end")
        + 1;
    assert!(have >= 4 << 20 && have <= big.len(), "{range}");
    let d = Digest::sha256_of(&big);
    let (status, _, body) = r.request(
        "PUT",
        &format!("{loc}?digest={d}"),
        &[("Content-Range", format!("{have}-{}", big.len() - 1))],
        &big[have..],
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));

    // Everything served matches its digest.
    for (digest, len) in [(ld, layer.len()), (cd, 2), (d, big.len())] {
        let (status, _, body) =
            r.request("GET", &format!("/v2/crash/app/blobs/{digest}"), &[], b"");
        assert_eq!(status, 200);
        assert_eq!(body.len(), len);
        assert_eq!(Digest::sha256_of(&body), digest);
    }
    let (status, _, body) = r.request("GET", "/v2/crash/app/manifests/v1", &[], b"");
    assert_eq!(status, 200);
    assert_eq!(body, manifest.as_bytes());
}
