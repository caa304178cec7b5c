#![allow(clippy::unwrap_used)]
//! Writing layer tars from real overlay-format directories, compressing
//! them, and reading them back with kiln and with the system tools.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::*;
use kiln_layer::*;
use kiln_oci::Digest;
use rustix::fs::FileType;

/// security.capability v2 granting cap_net_raw (bit 13), effective.
const CAP_NET_RAW: [u8; 20] = [
    0, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// A layer directory holding every kind of change.
fn build_layer(dir: &Path) {
    let p = |s: &str| dir.join(s);
    for d in ["dev", "etc", "usr/bin", "var/cache", "deep"] {
        std::fs::create_dir_all(p(d)).unwrap();
    }
    mknod(&p("dev/zero"), FileType::CharacterDevice, 1, 5);
    mknod(&p("dev/pipe"), FileType::Fifo, 0, 0);
    mknod(&p("etc/old.conf"), FileType::CharacterDevice, 0, 0); // whiteout
    std::fs::write(p("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    setxattr(&p("etc/passwd"), "user.note", b"kept");
    std::fs::write(p("usr/bin/ping"), vec![0x7f; 3000]).unwrap();
    std::fs::set_permissions(p("usr/bin/ping"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    setxattr(&p("usr/bin/ping"), "security.capability", &CAP_NET_RAW);
    std::fs::hard_link(p("usr/bin/ping"), p("usr/bin/ping6")).unwrap();
    std::os::unix::fs::symlink("usr/bin", p("bin")).unwrap();
    setxattr(&p("var/cache"), "trusted.overlay.opaque", b"y");
    std::fs::write(p("var/cache/fresh"), "new").unwrap();
    let long = "l".repeat(120);
    std::fs::write(p(&format!("deep/{long}")), "long").unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(p("etc/sock")).unwrap();
    rustix::fs::chownat(
        rustix::fs::CWD,
        p("etc/passwd"),
        Some(rustix::fs::Uid::from_raw(1000)),
        Some(rustix::fs::Gid::from_raw(1001)),
        rustix::fs::AtFlags::empty(),
    )
    .unwrap();
    set_mtime(&p("etc/passwd"), 500);
}

fn write_to_vec(dir: &Path, opts: &TarOptions) -> Vec<u8> {
    let mut out = Vec::new();
    write_layer(dir, opts, &mut out).unwrap();
    out
}

#[test]
fn layer_tar_has_the_exact_entries() {
    if !root_or_skip("layer_tar_has_the_exact_entries") {
        return;
    }
    let tmp = tempdir();
    build_layer(tmp.path());
    let tar_bytes = write_to_vec(tmp.path(), &TarOptions::default());
    let names: Vec<(String, char, String)> = list(&tar_bytes)
        .into_iter()
        .map(|(n, t, l, _)| (n, t, l))
        .collect();
    let long = format!("deep/{}", "l".repeat(120));
    let e = |n: &str, t: char, l: &str| (n.to_string(), t, l.to_string());
    assert_eq!(
        names,
        vec![
            e("bin", '2', "usr/bin"),
            e("deep/", '5', ""),
            e(&long, '0', ""),
            e("dev/", '5', ""),
            e("dev/pipe", '6', ""),
            e("dev/zero", '3', ""),
            e("etc/", '5', ""),
            e("etc/.wh.old.conf", '0', ""),
            e("etc/passwd", '0', ""),
            e("usr/", '5', ""),
            e("usr/bin/", '5', ""),
            e("usr/bin/ping", '0', ""),
            e("usr/bin/ping6", '1', "usr/bin/ping"),
            e("var/", '5', ""),
            e("var/cache/", '5', ""),
            e("var/cache/.wh..wh..opq", '0', ""),
            e("var/cache/fresh", '0', ""),
        ]
    );

    // Header details: owners, mode bits, xattrs, no overlay xattrs.
    let mut ar = tar::Archive::new(tar_bytes.as_slice());
    for entry in ar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let h = entry.header().clone();
        let xattrs: Vec<(String, Vec<u8>)> = entry
            .pax_extensions()
            .unwrap()
            .map(|exts| {
                exts.map(|x| {
                    let x = x.unwrap();
                    (x.key().unwrap().to_string(), x.value_bytes().to_vec())
                })
                .filter(|(k, _)| k.starts_with("SCHILY.xattr."))
                .collect()
            })
            .unwrap_or_default();
        assert_eq!(h.username_bytes(), Some(&b""[..]), "{path}");
        assert!(
            xattrs.iter().all(|(k, _)| !k.contains("overlay")),
            "{path}: {xattrs:?}"
        );
        match path.as_str() {
            "etc/passwd" => {
                assert_eq!(
                    (h.uid().unwrap(), h.gid().unwrap(), h.mtime().unwrap()),
                    (1000, 1001, 500)
                );
                assert_eq!(
                    xattrs,
                    vec![("SCHILY.xattr.user.note".to_string(), b"kept".to_vec())]
                );
            }
            "usr/bin/ping" => {
                assert_eq!(h.mode().unwrap(), 0o4755);
                assert_eq!(h.size().unwrap(), 3000);
                assert_eq!(
                    xattrs,
                    vec![(
                        "SCHILY.xattr.security.capability".to_string(),
                        CAP_NET_RAW.to_vec()
                    )]
                );
            }
            "etc/.wh.old.conf" => assert_eq!((h.size().unwrap(), h.mode().unwrap()), (0, 0)),
            "dev/zero" => {
                assert_eq!(
                    (h.device_major().unwrap(), h.device_minor().unwrap()),
                    (Some(1), Some(5))
                );
            }
            _ => {}
        }
    }
    assert_eq!(tar_bytes.len() % 512, 0);
}

#[test]
fn writes_are_deterministic_and_mtimes_clamp_to_source_date_epoch() {
    if !root_or_skip("writes_are_deterministic_and_mtimes_clamp_to_source_date_epoch") {
        return;
    }
    let tmp = tempdir();
    build_layer(tmp.path());
    let opts = TarOptions::default();
    assert_eq!(
        write_to_vec(tmp.path(), &opts),
        write_to_vec(tmp.path(), &opts)
    );

    let clamped = TarOptions {
        source_date_epoch: Some(1000),
    };
    let bytes = write_to_vec(tmp.path(), &clamped);
    for (name, _, _, mtime) in list(&bytes) {
        let want = if name == "etc/passwd" { 500 } else { 1000 };
        assert_eq!(mtime, want, "{name}");
    }
    // Same content, same epoch → same digest even after the files' mtimes move.
    let digest = |b: &[u8]| Digest::sha256_of(b);
    std::fs::write(tmp.path().join("var/cache/fresh"), "new").unwrap();
    assert_eq!(digest(&write_to_vec(tmp.path(), &clamped)), digest(&bytes));
}

#[test]
fn round_trip_gives_identical_bytes_and_digests() {
    if !root_or_skip("round_trip_gives_identical_bytes_and_digests") {
        return;
    }
    let tmp = tempdir();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    build_layer(&src);
    let opts = TarOptions::default();
    for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let mut w = LayerBlobWriter::new(Vec::new(), compression, ImageFormat::Oci).unwrap();
        write_layer(&src, &opts, &mut w).unwrap();
        let (blob, bytes) = w.finish().unwrap();

        let dest = tmp.path().join(format!("unpacked-{}", compression.name()));
        std::fs::create_dir(&dest).unwrap();
        let expected = Expected {
            digest: Some(blob.digest.clone()),
            diff_id: Some(blob.diff_id.clone()),
            size: Some(blob.size),
        };
        let stats =
            unpack_layer(bytes.as_slice(), Some(&expected), &dest, UnpackMode::Layer).unwrap();
        assert_eq!(stats.compression, compression);
        assert_eq!(
            (stats.digest.clone(), stats.diff_id.clone()),
            (blob.digest.clone(), blob.diff_id.clone())
        );

        // Overlay lower format on disk.
        let wh = std::fs::symlink_metadata(dest.join("etc/old.conf")).unwrap();
        assert!(std::os::unix::fs::FileTypeExt::is_char_device(
            &wh.file_type()
        ));
        assert_eq!(std::os::unix::fs::MetadataExt::rdev(&wh), 0);
        assert_eq!(
            getxattr(&dest.join("var/cache"), "trusted.overlay.opaque"),
            Some(b"y".to_vec())
        );
        assert_eq!(
            getxattr(&dest.join("usr/bin/ping"), "security.capability"),
            Some(CAP_NET_RAW.to_vec())
        );
        let ping = std::fs::metadata(dest.join("usr/bin/ping")).unwrap();
        assert_eq!(ping.permissions().mode() & 0o7777, 0o4755);
        assert_eq!(std::os::unix::fs::MetadataExt::nlink(&ping), 2);

        let mut again = LayerBlobWriter::new(Vec::new(), compression, ImageFormat::Oci).unwrap();
        write_layer(&dest, &opts, &mut again).unwrap();
        let (blob2, bytes2) = again.finish().unwrap();
        assert_eq!(blob2, blob, "{}", compression.name());
        assert_eq!(bytes2, bytes);
    }
}

fn tool(name: &str) -> bool {
    let found = Command::new(name).arg("--version").output().is_ok();
    if !found {
        eprintln!("{name} not installed: skipping its check");
    }
    found
}

#[test]
fn system_tools_accept_the_compressed_blobs() {
    if !root_or_skip("system_tools_accept_the_compressed_blobs") {
        return;
    }
    let tmp = tempdir();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    build_layer(&src);
    // Big enough for several parallel gzip blocks, not all compressible.
    let mut x: u64 = 1;
    let noise: Vec<u8> = (0..3 * GZIP_BLOCK_SIZE)
        .map(|i| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            if i % 3 == 0 { (x >> 56) as u8 } else { b'a' }
        })
        .collect();
    std::fs::write(src.join("big.bin"), &noise).unwrap();

    for (compression, check, decompress) in [
        (Compression::Gzip, "gzip", ["gzip", "-dc"]),
        (Compression::Zstd, "zstd", ["zstd", "-dc"]),
    ] {
        let path = tmp.path().join(format!("blob.{check}"));
        let (blob, stats) = compress_to_file(&path, compression, ImageFormat::Oci, |w| {
            write_layer(&src, &TarOptions::default(), w)
        })
        .unwrap();
        assert_eq!(blob.uncompressed_size, stats.bytes);
        assert_eq!(
            blob.digest,
            Digest::sha256_of(&std::fs::read(&path).unwrap())
        );
        if tool(check) {
            let t = Command::new(check).arg("-t").arg(&path).status().unwrap();
            assert!(t.success(), "{check} -t");
            let out = Command::new(decompress[0])
                .arg(decompress[1])
                .arg(&path)
                .output()
                .unwrap();
            assert!(out.status.success());
            assert_eq!(Digest::sha256_of(&out.stdout), blob.diff_id, "{check}");
        }
        if compression == Compression::Gzip && tool("tar") {
            let out = Command::new("tar").arg("-tzf").arg(&path).output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let listing = String::from_utf8_lossy(&out.stdout);
            assert!(listing.lines().any(|l| l == "usr/bin/ping6"), "{listing}");
            assert!(listing.lines().any(|l| l == "big.bin"));
        }
    }
}

#[test]
fn tree_diff_finds_every_kind_of_change() {
    if !root_or_skip("tree_diff_finds_every_kind_of_change") {
        return;
    }
    let tmp = tempdir();
    let old = tmp.path().join("old");
    let new = tmp.path().join("new");
    for d in ["etc", "opt/app", "srv"] {
        std::fs::create_dir_all(old.join(d)).unwrap();
    }
    std::fs::write(old.join("etc/same"), "same").unwrap();
    std::fs::write(old.join("etc/gone"), "bye").unwrap();
    std::fs::write(old.join("etc/sneaky"), "AAAA").unwrap();
    std::fs::write(old.join("etc/mode"), "m").unwrap();
    std::fs::write(old.join("opt/app/x"), "x").unwrap();
    std::fs::write(old.join("srv/file"), "f").unwrap();
    set_mtime(&old.join("etc/sneaky"), 1_000_000);
    let cp = Command::new("cp")
        .arg("-a")
        .arg(&old)
        .arg(&new)
        .status()
        .unwrap();
    assert!(cp.success());

    std::fs::remove_file(new.join("etc/gone")).unwrap();
    // Same size, same whole-second mtime, different bytes: only a content
    // comparison can see it.
    std::fs::write(new.join("etc/sneaky"), "BBBB").unwrap();
    set_mtime(&new.join("etc/sneaky"), 1_000_000);
    std::fs::set_permissions(new.join("etc/mode"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::remove_dir_all(new.join("opt/app")).unwrap();
    std::fs::write(new.join("opt/app"), "now a file").unwrap();
    std::fs::write(new.join("srv/added"), "+").unwrap();
    let mut out = Vec::new();
    write_tree_diff(&old, &new, &TarOptions::default(), &mut out).unwrap();
    let names: Vec<(String, char)> = list(&out).into_iter().map(|(n, t, _, _)| (n, t)).collect();
    let e = |n: &str, t: char| (n.to_string(), t);
    assert_eq!(
        names,
        vec![
            e("etc/", '5'),
            e("etc/.wh.gone", '0'),
            e("etc/mode", '0'),
            e("etc/sneaky", '0'),
            e("opt/", '5'),
            e("opt/app", '0'),
            e("srv/", '5'),
            e("srv/added", '0'),
        ]
    );

    // Applying the diff to a copy of old reproduces new's contents.
    let applied = tmp.path().join("applied");
    assert!(
        Command::new("cp")
            .arg("-a")
            .arg(&old)
            .arg(&applied)
            .status()
            .unwrap()
            .success()
    );
    unpack_layer(out.as_slice(), None, &applied, UnpackMode::Apply).unwrap();
    let strip = |root: &Path| -> Vec<(std::path::PathBuf, String)> {
        snapshot(root)
            .into_iter()
            .map(|(p, d)| (p.strip_prefix(root).unwrap().to_path_buf(), d))
            .collect()
    };
    assert_eq!(strip(&applied), strip(&new));
    let mode = std::fs::metadata(applied.join("etc/mode"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn apply_mode_deletes_whiteouts_and_empties_opaque_dirs() {
    if !root_or_skip("apply_mode_deletes_whiteouts_and_empties_opaque_dirs") {
        return;
    }
    let tmp = tempdir();
    let rootfs = tmp.path().join("rootfs");
    for d in ["etc", "var/cache/old", "usr/bin"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::write(rootfs.join("etc/old.conf"), "old").unwrap();
    std::fs::write(rootfs.join("etc/keep"), "keep").unwrap();
    std::fs::write(rootfs.join("var/cache/old/x"), "x").unwrap();
    std::fs::write(rootfs.join("var/cache/stale"), "s").unwrap();

    let layer = tmp.path().join("layer");
    std::fs::create_dir(&layer).unwrap();
    build_layer(&layer);
    let mut tar_bytes = Vec::new();
    write_layer(&layer, &TarOptions::default(), &mut tar_bytes).unwrap();
    let mut gz = LayerBlobWriter::new(Vec::new(), Compression::Gzip, ImageFormat::Docker).unwrap();
    gz.write_all(&tar_bytes).unwrap();
    let (blob, gz_bytes) = gz.finish().unwrap();
    assert_eq!(
        blob.media_type,
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );

    unpack_layer(gz_bytes.as_slice(), None, &rootfs, UnpackMode::Apply).unwrap();
    assert!(!rootfs.join("etc/old.conf").exists());
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/keep")).unwrap(),
        "keep"
    );
    let cache: Vec<_> = std::fs::read_dir(rootfs.join("var/cache"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(cache, vec!["fresh".to_string()]);
    // No overlay artefacts in a plain rootfs.
    assert_eq!(
        getxattr(&rootfs.join("var/cache"), "trusted.overlay.opaque"),
        None
    );
}
