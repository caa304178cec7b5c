#![allow(clippy::unwrap_used)]
//! COPY semantics against real directories.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::sync::Arc;

use common::*;
use kiln_fileops::{CopyOptions, CopySource, Error, Root, resolve_sources};

fn opts() -> CopyOptions {
    CopyOptions::default()
}

#[test]
fn single_file_to_new_path_is_written_as_that_path() {
    let e = env();
    write(&e.ctx.join("a.txt"), "A");
    e.copy(&["a.txt"], "/opt/b.txt", "/", &opts()).unwrap();
    assert_eq!(read(&e.dst.join("opt/b.txt")), "A");
}

#[test]
fn dest_with_trailing_slash_is_a_directory() {
    let e = env();
    write(&e.ctx.join("a.txt"), "A");
    e.copy(&["a.txt"], "/opt/", "/", &opts()).unwrap();
    assert_eq!(read(&e.dst.join("opt/a.txt")), "A");
}

#[test]
fn existing_directory_dest_receives_the_file() {
    let e = env();
    write(&e.ctx.join("a.txt"), "A");
    fs::create_dir(e.dst.join("opt")).unwrap();
    e.copy(&["a.txt"], "/opt", "/", &opts()).unwrap();
    assert_eq!(read(&e.dst.join("opt/a.txt")), "A");
}

#[test]
fn relative_dest_is_relative_to_workdir() {
    let e = env();
    write(&e.ctx.join("a.txt"), "A");
    e.copy(&["a.txt"], "sub/", "/srv/app", &opts()).unwrap();
    e.copy(&["a.txt"], ".", "/srv/app", &opts()).unwrap();
    assert_eq!(read(&e.dst.join("srv/app/sub/a.txt")), "A");
    assert_eq!(read(&e.dst.join("srv/app/a.txt")), "A");
}

#[test]
fn directory_source_copies_its_contents_not_itself() {
    let e = env();
    write(&e.ctx.join("dir/x.txt"), "X");
    write(&e.ctx.join("dir/sub/y.txt"), "Y");
    let stats = e.copy(&["dir"], "/app", "/", &opts()).unwrap();
    assert_eq!(read(&e.dst.join("app/x.txt")), "X");
    assert_eq!(read(&e.dst.join("app/sub/y.txt")), "Y");
    assert!(!e.dst.join("app/dir").exists());
    assert_eq!((stats.files, stats.dirs), (2, 1));
}

#[test]
fn context_root_copies_everything() {
    let e = env();
    write(&e.ctx.join("a"), "1");
    write(&e.ctx.join("d/b"), "2");
    e.copy(&["."], "/", "/", &opts()).unwrap();
    assert_eq!(read(&e.dst.join("a")), "1");
    assert_eq!(read(&e.dst.join("d/b")), "2");
}

#[test]
fn several_sources_need_a_directory_destination() {
    let e = env();
    write(&e.ctx.join("a"), "1");
    write(&e.ctx.join("b"), "2");
    let err = e.copy(&["a", "b"], "/out", "/", &opts()).unwrap_err();
    assert!(matches!(err, Error::DestNotDirectory(_)), "{err}");
    assert!(
        err.to_string()
            .contains("must be a directory and end with a /")
    );
    e.copy(&["a", "b"], "/out/", "/", &opts()).unwrap();
    assert_eq!(read(&e.dst.join("out/a")), "1");
    assert_eq!(read(&e.dst.join("out/b")), "2");
    // A wildcard matching several files counts as several sources.
    assert!(e.copy(&["*"], "/other", "/", &opts()).is_err());
    e.copy(&["*"], "/out", "/", &opts()).unwrap(); // existing directory is fine
}

#[test]
fn missing_parents_are_created_0755_owned_by_root() {
    let e = env();
    write(&e.ctx.join("a"), "1");
    e.copy(&["a"], "/x/y/z/a", "/", &opts()).unwrap();
    for d in ["x", "x/y", "x/y/z"] {
        let md = fs::metadata(e.dst.join(d)).unwrap();
        assert_eq!(md.mode() & 0o7777, 0o755, "{d}");
        assert_eq!((md.uid(), md.gid()), (0, 0));
    }
}

#[test]
fn missing_parents_are_owned_by_chown_owner() {
    let e = env();
    write(&e.ctx.join("a"), "1");
    e.copy(
        &["a"],
        "/x/y/",
        "/",
        &CopyOptions {
            chown: Some("1234:5678".into()),
            ..opts()
        },
    )
    .unwrap();
    for d in ["x", "x/y", "x/y/a"] {
        let md = fs::symlink_metadata(e.dst.join(d)).unwrap();
        assert_eq!((md.uid(), md.gid()), (1234, 5678), "{d}");
    }
}

#[test]
fn top_level_symlink_is_followed_inner_symlinks_are_kept() {
    let e = env();
    write(&e.ctx.join("real.txt"), "R");
    link("real.txt", &e.ctx.join("link.txt"));
    write(&e.ctx.join("dir/f"), "F");
    link("f", &e.ctx.join("dir/inner"));
    link("dir", &e.ctx.join("dirlink"));
    e.copy(&["link.txt"], "/out/", "/", &opts()).unwrap();
    let md = fs::symlink_metadata(e.dst.join("out/link.txt")).unwrap();
    assert!(md.is_file());
    assert_eq!(read(&e.dst.join("out/link.txt")), "R");
    e.copy(&["dirlink"], "/d2", "/", &opts()).unwrap();
    assert_eq!(
        fs::read_link(e.dst.join("d2/inner")).unwrap().to_str(),
        Some("f")
    );
}

#[test]
fn top_level_symlink_out_of_context_resolves_inside_context() {
    let e = env();
    // An absolute target means the context's own "/", so /etc/hostname of
    // the host is never read; `../../..` stops at the context root.
    link("/etc/hostname", &e.ctx.join("abs"));
    link("../../../../etc/hostname", &e.ctx.join("rel"));
    write(&e.ctx.join("etc/hostname"), "context copy");
    e.copy(&["abs"], "/a", "/", &opts()).unwrap();
    e.copy(&["rel"], "/r", "/", &opts()).unwrap();
    assert_eq!(read(&e.dst.join("a")), "context copy");
    assert_eq!(read(&e.dst.join("r")), "context copy");
    fs::remove_file(e.ctx.join("etc/hostname")).unwrap();
    let err = e.copy(&["abs"], "/b", "/", &opts()).unwrap_err();
    assert!(matches!(err, Error::SourceNotFound(_)), "{err}");
}

#[test]
fn hostile_destination_symlinks_stay_inside_the_root() {
    let e = env();
    let sentinel = e.tmp.path().join("host-marker-dir");
    fs::create_dir(&sentinel).unwrap();
    write(&e.ctx.join("passwd"), "evil");
    write(&e.ctx.join("dir/f"), "F");
    link(sentinel.to_str().unwrap(), &e.dst.join("etc"));
    link("../../../../../..", &e.dst.join("up"));
    e.copy(&["passwd"], "/etc/passwd", "/", &opts()).unwrap();
    e.copy(&["passwd"], "/up/tmp/x", "/", &opts()).unwrap();
    e.copy(&["dir"], "/etc/", "/", &opts()).unwrap();
    assert_eq!(
        fs::read_dir(&sentinel).unwrap().count(),
        0,
        "nothing written outside the root"
    );
    let inside = e.dst.join(sentinel.strip_prefix("/").unwrap());
    assert_eq!(read(&inside.join("passwd")), "evil");
    assert_eq!(read(&inside.join("f")), "F");
    assert_eq!(read(&e.dst.join("tmp/x")), "evil");
}

#[test]
fn hardlinks_between_copied_files_are_preserved() {
    let e = env();
    write(&e.ctx.join("d/a"), "same");
    fs::hard_link(e.ctx.join("d/a"), e.ctx.join("d/b")).unwrap();
    fs::hard_link(e.ctx.join("d/a"), e.ctx.join("d/sub-c")).unwrap();
    let stats = e.copy(&["d"], "/out", "/", &opts()).unwrap();
    let a = fs::metadata(e.dst.join("out/a")).unwrap();
    let b = fs::metadata(e.dst.join("out/b")).unwrap();
    let c = fs::metadata(e.dst.join("out/sub-c")).unwrap();
    assert_eq!(a.ino(), b.ino());
    assert_eq!(a.ino(), c.ino());
    assert_ne!(a.ino(), fs::metadata(e.ctx.join("d/a")).unwrap().ino());
    assert_eq!((stats.files, stats.hardlinks), (1, 2));
}

#[test]
fn modes_are_preserved() {
    let e = env();
    write(&e.ctx.join("d/run.sh"), "#!/bin/sh");
    fs::set_permissions(e.ctx.join("d/run.sh"), fs::Permissions::from_mode(0o4751)).unwrap();
    fs::create_dir(e.ctx.join("d/private")).unwrap();
    fs::set_permissions(e.ctx.join("d/private"), fs::Permissions::from_mode(0o700)).unwrap();
    e.copy(&["d"], "/out", "/", &opts()).unwrap();
    assert_eq!(
        fs::metadata(e.dst.join("out/run.sh")).unwrap().mode() & 0o7777,
        0o4751
    );
    assert_eq!(
        fs::metadata(e.dst.join("out/private")).unwrap().mode() & 0o7777,
        0o700
    );
}

#[test]
fn chmod_applies_to_copied_files_and_dirs_not_to_dest_dir() {
    let e = env();
    write(&e.ctx.join("d/f"), "F");
    write(&e.ctx.join("d/sub/g"), "G");
    e.copy(
        &["d"],
        "/out",
        "/",
        &CopyOptions {
            chmod: Some("640".into()),
            ..opts()
        },
    )
    .unwrap();
    assert_eq!(
        fs::metadata(e.dst.join("out/f")).unwrap().mode() & 0o7777,
        0o640
    );
    assert_eq!(
        fs::metadata(e.dst.join("out/sub")).unwrap().mode() & 0o7777,
        0o640
    );
    assert_eq!(
        fs::metadata(e.dst.join("out")).unwrap().mode() & 0o7777,
        0o755
    );
    e.copy(
        &["d/f"],
        "/sym",
        "/",
        &CopyOptions {
            chmod: Some("u+x,g-r".into()),
            ..opts()
        },
    )
    .unwrap();
    let own = fs::metadata(e.ctx.join("d/f")).unwrap().mode() & 0o7777;
    let want = (own | 0o100) & !0o040;
    assert_eq!(
        fs::metadata(e.dst.join("sym")).unwrap().mode() & 0o7777,
        want
    );
    let err = e
        .copy(
            &["d/f"],
            "/bad",
            "/",
            &CopyOptions {
                chmod: Some("9x".into()),
                ..opts()
            },
        )
        .unwrap_err();
    assert!(matches!(err, Error::BadChmod(_)));
}

#[test]
fn context_files_belong_to_root_unless_chown() {
    let e = env();
    write(&e.ctx.join("f"), "F");
    std::os::unix::fs::chown(e.ctx.join("f"), Some(4321), Some(4321)).unwrap();
    e.copy(&["f"], "/a", "/", &opts()).unwrap();
    let md = fs::metadata(e.dst.join("a")).unwrap();
    assert_eq!((md.uid(), md.gid()), (0, 0));
    e.copy(
        &["f"],
        "/b",
        "/",
        &CopyOptions {
            chown: Some("77:88".into()),
            ..opts()
        },
    )
    .unwrap();
    let md = fs::metadata(e.dst.join("b")).unwrap();
    assert_eq!((md.uid(), md.gid()), (77, 88));
}

#[test]
fn stage_copies_keep_owners_unless_chown() {
    let e = env();
    write(&e.stage.join("app/f"), "F");
    std::os::unix::fs::chown(e.stage.join("app/f"), Some(1001), Some(1002)).unwrap();
    std::os::unix::fs::lchown(e.stage.join("app"), Some(1003), Some(1004)).unwrap();
    link("f", &e.stage.join("app/l"));
    std::os::unix::fs::lchown(e.stage.join("app/l"), Some(1005), Some(1006)).unwrap();
    let stage = Root::open_image(&e.stage).unwrap();
    e.copy_from(&stage, &["/"], "/", "/", &opts()).unwrap();
    let md = fs::metadata(e.dst.join("app/f")).unwrap();
    assert_eq!((md.uid(), md.gid()), (1001, 1002));
    let md = fs::metadata(e.dst.join("app")).unwrap();
    assert_eq!((md.uid(), md.gid()), (1003, 1004));
    let md = fs::symlink_metadata(e.dst.join("app/l")).unwrap();
    assert_eq!((md.uid(), md.gid()), (1005, 1006));
    e.copy_from(
        &stage,
        &["/app/f"],
        "/c",
        "/",
        &CopyOptions {
            chown: Some("5".into()),
            ..opts()
        },
    )
    .unwrap();
    let md = fs::metadata(e.dst.join("c")).unwrap();
    assert_eq!((md.uid(), md.gid()), (5, 5));
}

#[test]
fn stage_source_dotdot_stops_at_its_root() {
    let e = env();
    write(&e.stage.join("f"), "F");
    let stage = Root::open_image(&e.stage).unwrap();
    e.copy_from(&stage, &["../../f"], "/f", "/", &opts())
        .unwrap();
    assert_eq!(read(&e.dst.join("f")), "F");
}

#[test]
fn mtimes_are_preserved() {
    let e = env();
    write(&e.ctx.join("d/f"), "F");
    age(&e.ctx.join("d/f"));
    let src = fs::metadata(e.ctx.join("d/f")).unwrap();
    e.copy(&["d"], "/out", "/", &opts()).unwrap();
    let dst = fs::metadata(e.dst.join("out/f")).unwrap();
    assert_eq!(
        (dst.mtime(), dst.mtime_nsec()),
        (src.mtime(), src.mtime_nsec())
    );
}

#[test]
fn xattrs_and_file_capabilities_are_copied_from_stages() {
    let e = env();
    write(&e.stage.join("bin/ping"), "ELF");
    let path = e.stage.join("bin/ping");
    // VFS_CAP_REVISION_2 with cap_net_raw (bit 13) permitted and effective.
    let mut cap = vec![0u8; 20];
    cap[0..4].copy_from_slice(&0x0200_0001u32.to_le_bytes());
    cap[4..8].copy_from_slice(&(1u32 << 13).to_le_bytes());
    if rustix::fs::setxattr(
        &path,
        "security.capability",
        &cap,
        rustix::fs::XattrFlags::empty(),
    )
    .is_err()
    {
        eprintln!("file system without security xattrs; skipping");
        return;
    }
    let user_ok =
        rustix::fs::setxattr(&path, "user.kiln", b"v", rustix::fs::XattrFlags::empty()).is_ok();
    let stage = Root::open_image(&e.stage).unwrap();
    e.copy_from(
        &stage,
        &["/bin/ping"],
        "/usr/bin/ping",
        "/",
        &CopyOptions {
            chown: Some("0:0".into()),
            ..opts()
        },
    )
    .unwrap();
    let mut buf = [0u8; 64];
    let n = rustix::fs::getxattr(
        e.dst.join("usr/bin/ping"),
        "security.capability",
        &mut buf[..],
    )
    .unwrap();
    assert_eq!(&buf[..n], &cap[..]);
    if user_ok {
        let n =
            rustix::fs::getxattr(e.dst.join("usr/bin/ping"), "user.kiln", &mut buf[..]).unwrap();
        assert_eq!(&buf[..n], b"v");
    }
}

#[test]
fn file_replaces_existing_file_without_touching_its_other_links() {
    let e = env();
    write(&e.ctx.join("f"), "new");
    write(&e.dst.join("etc/conf"), "old");
    fs::hard_link(e.dst.join("etc/conf"), e.dst.join("etc/other")).unwrap();
    e.copy(&["f"], "/etc/conf", "/", &opts()).unwrap();
    assert_eq!(read(&e.dst.join("etc/conf")), "new");
    assert_eq!(read(&e.dst.join("etc/other")), "old");
}

#[test]
fn file_replaces_existing_symlink_inside_a_tree() {
    let e = env();
    write(&e.ctx.join("d/f"), "new");
    link("/nowhere", &e.dst.join("out/f"));
    e.copy(&["d"], "/out", "/", &opts()).unwrap();
    assert!(fs::symlink_metadata(e.dst.join("out/f")).unwrap().is_file());
}

#[test]
fn directory_over_existing_file_is_an_error() {
    let e = env();
    write(&e.ctx.join("d/sub/f"), "F");
    write(&e.dst.join("out/sub"), "I am a file");
    let err = e.copy(&["d"], "/out", "/", &opts()).unwrap_err();
    assert!(
        matches!(err, Error::CopyToNonDirectory(ref p) if p == "/out/sub"),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("cannot copy to non-directory: /out/sub")
    );
    write(&e.dst.join("file"), "x");
    let err = e.copy(&["d"], "/file", "/", &opts()).unwrap_err();
    assert!(matches!(err, Error::CopyToNonDirectory(_)), "{err}");
}

#[test]
fn directory_over_existing_symlink_inside_a_tree_is_an_error() {
    let e = env();
    write(&e.ctx.join("d/lib/f"), "F");
    fs::create_dir_all(e.dst.join("usr/lib")).unwrap();
    link("usr/lib", &e.dst.join("lib"));
    let err = e.copy(&["d"], "/", "/", &opts()).unwrap_err();
    assert!(matches!(err, Error::CopyToNonDirectory(_)), "{err}");
    // As the destination itself, a symlink to a directory is followed.
    e.copy(&["d/lib"], "/lib/", "/", &opts()).unwrap();
    assert_eq!(read(&e.dst.join("usr/lib/f")), "F");
}

#[test]
fn file_over_existing_directory_inside_a_tree_is_an_error() {
    let e = env();
    write(&e.ctx.join("d/x"), "F");
    fs::create_dir_all(e.dst.join("out/x/y")).unwrap();
    let err = e.copy(&["d"], "/out", "/", &opts()).unwrap_err();
    assert!(matches!(err, Error::ReplaceDirectory(_)), "{err}");
}

#[test]
fn chown_names_come_from_the_destination_passwd() {
    let e = env();
    write(&e.ctx.join("f"), "F");
    write(
        &e.dst.join("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\napp:x:1500:1600::/home/app:/bin/sh\n",
    );
    write(&e.dst.join("etc/group"), "root:x:0:\nstaff:x:50:\n");
    e.copy(
        &["f"],
        "/a",
        "/",
        &CopyOptions {
            chown: Some("app".into()),
            ..opts()
        },
    )
    .unwrap();
    let md = fs::metadata(e.dst.join("a")).unwrap();
    assert_eq!((md.uid(), md.gid()), (1500, 1600));
    e.copy(
        &["f"],
        "/b",
        "/",
        &CopyOptions {
            chown: Some("app:staff".into()),
            ..opts()
        },
    )
    .unwrap();
    let md = fs::metadata(e.dst.join("b")).unwrap();
    assert_eq!((md.uid(), md.gid()), (1500, 50));
    let err = e
        .copy(
            &["f"],
            "/c",
            "/",
            &CopyOptions {
                chown: Some("ghost".into()),
                ..opts()
            },
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "unable to find user ghost: no matching entries in passwd file"
    );
    assert!(!e.dst.join("c").exists());
}

#[test]
fn chown_passwd_lookup_does_not_follow_links_out_of_the_root() {
    let e = env();
    write(&e.ctx.join("f"), "F");
    // A passwd outside the root knows "daemon"; a link climbing out of the
    // root must not reach it.
    let host_etc = e.tmp.path().join("hostetc");
    write(&host_etc.join("passwd"), "daemon:x:1:1::/:/bin/sh\n");
    link(
        &format!("../../../../../../../..{}", host_etc.display()),
        &e.dst.join("etc"),
    );
    let err = e
        .copy(
            &["f"],
            "/a",
            "/",
            &CopyOptions {
                chown: Some("daemon".into()),
                ..opts()
            },
        )
        .unwrap_err();
    assert!(matches!(err, Error::UnknownUser(_)), "{err}");
}

#[test]
fn dockerignore_hides_files_from_directory_copies() {
    let e = env();
    write(&e.ctx.join("src/main.rs"), "fn main");
    write(&e.ctx.join("src/target/big"), "junk");
    write(&e.ctx.join("secret.key"), "k");
    let ig = |p: &str| p == "secret.key" || p == "src/target" || p.starts_with("src/target/");
    let ctx = Root::open_context(&e.ctx)
        .unwrap()
        .with_ignore(Arc::new(ig));
    e.copy_from(&ctx, &["."], "/app", "/", &opts()).unwrap();
    assert!(e.dst.join("app/src/main.rs").exists());
    assert!(!e.dst.join("app/src/target").exists());
    assert!(!e.dst.join("app/secret.key").exists());
}

#[test]
fn copying_a_large_tree_is_complete() {
    let e = env();
    let payload = vec![7u8; 64 * 1024];
    for i in 0..40 {
        for j in 0..50 {
            let p = e.ctx.join(format!("tree/d{i}/f{j}"));
            if j == 0 {
                fs::create_dir_all(p.parent().unwrap()).unwrap();
            }
            fs::write(p, &payload[..(i * 50 + j) % payload.len() + 1]).unwrap();
        }
    }
    let t = std::time::Instant::now();
    let stats = e.copy(&["tree"], "/t", "/", &opts()).unwrap();
    eprintln!(
        "copied {} files, {} bytes in {:?}",
        stats.files,
        stats.bytes,
        t.elapsed()
    );
    assert_eq!(stats.files, 2000);
    assert_eq!(fs::metadata(e.dst.join("t/d39/f49")).unwrap().len(), 2000);
}

#[test]
fn copy_sources_carry_their_root() {
    let e = env();
    write(&e.ctx.join("a"), "ctx");
    write(&e.stage.join("b"), "stage");
    let ctx = e.ctx_root();
    let stage = Root::open_image(&e.stage).unwrap();
    let ma = resolve_sources(&ctx, &["a".to_string()]).unwrap();
    let mb = resolve_sources(&stage, &["b".to_string()]).unwrap();
    let sources = [
        CopySource {
            root: &ctx,
            source: &ma[0],
        },
        CopySource {
            root: &stage,
            source: &mb[0],
        },
    ];
    kiln_fileops::copy(&e.dst_root(), &sources, "/both/", "/", &opts()).unwrap();
    assert_eq!(read(&e.dst.join("both/a")), "ctx");
    assert_eq!(read(&e.dst.join("both/b")), "stage");
}
