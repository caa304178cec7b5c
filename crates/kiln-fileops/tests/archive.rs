#![allow(clippy::unwrap_used)]
//! ADD of local archives, including hostile ones built here with the tar crate.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;

use common::*;
use kiln_fileops::{
    ArchiveFormat, CopyOptions, CopySource, CopyStats, Error, Result, add, detect_archive,
    resolve_sources,
};

enum Item<'a> {
    File(&'a str, &'a str, u32),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
}

fn tar_bytes(items: &[Item<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for it in items {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        match it {
            Item::File(name, content, uid) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(content.len() as u64);
                h.set_mode(0o640);
                h.set_uid(*uid as u64);
                h.set_gid(*uid as u64);
                // Raw names: the tar crate's safe setters refuse `..`, hostile archives do not.
                set_name(&mut h, name);
                h.set_cksum();
                b.append(&h, content.as_bytes()).unwrap();
            }
            Item::Dir(name) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                h.set_mode(0o750);
                set_name(&mut h, name);
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
            Item::Symlink(name, target) | Item::Hardlink(name, target) => {
                h.set_entry_type(if matches!(it, Item::Symlink(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                });
                h.set_size(0);
                h.set_mode(0o777);
                set_name(&mut h, name);
                let gnu = h.as_gnu_mut().unwrap();
                gnu.linkname[..target.len()].copy_from_slice(target.as_bytes());
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

fn set_name(h: &mut tar::Header, name: &str) {
    let gnu = h.as_gnu_mut().unwrap();
    gnu.name = [0; 100];
    gnu.name[..name.len()].copy_from_slice(name.as_bytes());
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn add_ctx(e: &Env, src: &str, dest: &str, opts: &CopyOptions) -> Result<CopyStats> {
    let ctx = e.ctx_root();
    let m = resolve_sources(&ctx, &[src.to_string()])?;
    let sources: Vec<CopySource<'_>> = m
        .iter()
        .map(|m| CopySource {
            root: &ctx,
            source: m,
        })
        .collect();
    add(&e.dst_root(), &sources, dest, "/", opts)
}

fn sample() -> Vec<u8> {
    tar_bytes(&[
        Item::Dir("app/"),
        Item::File("app/a.txt", "AAA", 1000),
        Item::Symlink("app/link", "a.txt"),
        Item::Hardlink("app/hard", "app/a.txt"),
    ])
}

#[test]
fn plain_gzip_and_zstd_tars_are_detected() {
    let e = env();
    fs::write(e.ctx.join("p.tar"), sample()).unwrap();
    fs::write(e.ctx.join("g.tgz"), gzip(&sample())).unwrap();
    fs::write(
        e.ctx.join("z.tar.zst"),
        zstd::encode_all(&sample()[..], 1).unwrap(),
    )
    .unwrap();
    fs::write(e.ctx.join("text.txt"), "just text, not a tar").unwrap();
    fs::write(e.ctx.join("empty.tar"), vec![0u8; 1024]).unwrap();
    let ctx = e.ctx_root();
    let det = |p: &str| {
        let m = resolve_sources(&ctx, &[p.to_string()]).unwrap();
        detect_archive(&ctx, &m[0]).unwrap()
    };
    assert_eq!(det("p.tar"), Some(ArchiveFormat::Tar));
    assert_eq!(det("g.tgz"), Some(ArchiveFormat::Gzip));
    assert_eq!(det("z.tar.zst"), Some(ArchiveFormat::Zstd));
    assert_eq!(det("text.txt"), None);
    assert_eq!(det("empty.tar"), None);
}

#[test]
fn archive_is_extracted_into_dest_keeping_modes_owners_mtimes_links() {
    let e = env();
    fs::write(e.ctx.join("g.tgz"), gzip(&sample())).unwrap();
    let stats = add_ctx(&e, "g.tgz", "/opt", &CopyOptions::default()).unwrap();
    assert_eq!(
        (stats.files, stats.symlinks, stats.hardlinks, stats.dirs),
        (1, 1, 1, 1)
    );
    let a = fs::metadata(e.dst.join("opt/app/a.txt")).unwrap();
    assert_eq!(read(&e.dst.join("opt/app/a.txt")), "AAA");
    assert_eq!(a.mode() & 0o7777, 0o640);
    assert_eq!((a.uid(), a.gid()), (1000, 1000));
    assert_eq!(a.mtime(), 1_600_000_000);
    assert_eq!(
        fs::read_link(e.dst.join("opt/app/link")).unwrap().to_str(),
        Some("a.txt")
    );
    assert_eq!(
        fs::metadata(e.dst.join("opt/app/hard")).unwrap().ino(),
        a.ino()
    );
    let d = fs::metadata(e.dst.join("opt/app")).unwrap();
    assert_eq!(d.mode() & 0o7777, 0o750);
    assert_eq!(d.mtime(), 1_600_000_000);
}

#[test]
fn chown_applies_to_extracted_entries() {
    let e = env();
    fs::write(e.ctx.join("p.tar"), sample()).unwrap();
    add_ctx(
        &e,
        "p.tar",
        "/",
        &CopyOptions {
            chown: Some("7:8".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let a = fs::metadata(e.dst.join("app/a.txt")).unwrap();
    assert_eq!((a.uid(), a.gid()), (7, 8));
}

#[test]
fn existing_files_are_overwritten() {
    let e = env();
    write(&e.dst.join("app/a.txt"), "old");
    fs::write(e.ctx.join("p.tar"), sample()).unwrap();
    add_ctx(&e, "p.tar", "/", &CopyOptions::default()).unwrap();
    assert_eq!(read(&e.dst.join("app/a.txt")), "AAA");
}

#[test]
fn non_archive_is_copied_as_a_plain_file() {
    let e = env();
    fs::write(e.ctx.join("notes.gz"), "not really gzip").unwrap();
    fs::write(e.ctx.join("empty.tar"), vec![0u8; 1024]).unwrap();
    add_ctx(&e, "notes.gz", "/data/", &CopyOptions::default()).unwrap();
    add_ctx(&e, "empty.tar", "/data/x.tar", &CopyOptions::default()).unwrap();
    assert_eq!(read(&e.dst.join("data/notes.gz")), "not really gzip");
    assert_eq!(fs::metadata(e.dst.join("data/x.tar")).unwrap().len(), 1024);
}

fn hostile(items: &[Item<'_>]) -> (Env, std::path::PathBuf, Error) {
    let e = env();
    let sentinel = e.tmp.path().join("sentinel");
    fs::create_dir(&sentinel).unwrap();
    fs::write(e.ctx.join("evil.tar"), tar_bytes(items)).unwrap();
    let err = add_ctx(&e, "evil.tar", "/opt/app", &CopyOptions::default()).unwrap_err();
    (e, sentinel, err)
}

#[test]
fn archive_entry_with_dotdot_is_refused() {
    let (_e, sentinel, err) = hostile(&[Item::File("../../../../sentinel/pwned", "x", 0)]);
    assert!(
        matches!(err, Error::ArchiveBreakout { ref entry, .. } if entry == "../../../../sentinel/pwned"),
        "{err}"
    );
    assert!(err.to_string().contains("outside the destination"));
    assert_eq!(fs::read_dir(sentinel).unwrap().count(), 0);
}

#[test]
fn archive_absolute_symlink_followed_by_entry_through_it_is_refused() {
    let e0 = env();
    let target = e0.tmp.path().join("sentinel");
    let (e, sentinel, err) = hostile(&[
        Item::Symlink("escape", target.to_str().unwrap()),
        Item::File("escape/pwned", "x", 0),
    ]);
    assert!(
        matches!(err, Error::ArchiveBreakout { ref entry, .. } if entry == "escape/pwned"),
        "{err}"
    );
    assert_eq!(fs::read_dir(sentinel).unwrap().count(), 0);
    assert!(
        !e.dst
            .join(target.strip_prefix("/").unwrap())
            .join("pwned")
            .exists()
    );
}

#[test]
fn archive_relative_symlink_escaping_is_refused() {
    let (_e, _s, err) = hostile(&[Item::Symlink("up", "../../../..")]);
    assert!(
        matches!(err, Error::ArchiveBreakout { ref entry, .. } if entry == "up"),
        "{err}"
    );
    assert!(err.to_string().contains("invalid symlink"));
}

#[test]
fn archive_hardlink_outside_is_refused() {
    let (_e, _s, err) = hostile(&[Item::Hardlink("shadow", "../../etc/shadow")]);
    assert!(
        matches!(err, Error::ArchiveBreakout { ref entry, .. } if entry == "shadow"),
        "{err}"
    );
    let (_e, _s, err) = hostile(&[Item::Hardlink("ghost", "not/in/archive")]);
    assert!(
        matches!(err, Error::ArchiveBreakout { ref entry, .. } if entry == "ghost"),
        "{err}"
    );
}

#[test]
fn archive_into_hostile_image_symlink_stays_in_root() {
    let e = env();
    let sentinel = e.tmp.path().join("sentinel");
    fs::create_dir(&sentinel).unwrap();
    link(sentinel.to_str().unwrap(), &e.dst.join("opt"));
    fs::write(e.ctx.join("p.tar"), sample()).unwrap();
    add_ctx(&e, "p.tar", "/opt/", &CopyOptions::default()).unwrap();
    assert_eq!(fs::read_dir(&sentinel).unwrap().count(), 0);
    let inside = e.dst.join(sentinel.strip_prefix("/").unwrap());
    assert_eq!(read(&inside.join("app/a.txt")), "AAA");
}

#[test]
fn unsupported_compression_is_an_error_naming_the_file() {
    let e = env();
    fs::write(
        e.ctx.join("a.tar.xz"),
        [0xfd, b'7', b'z', b'X', b'Z', 0, 1, 2],
    )
    .unwrap();
    let err = add_ctx(&e, "a.tar.xz", "/", &CopyOptions::default()).unwrap_err();
    assert!(err.to_string().contains("/a.tar.xz"), "{err}");
}
