#![allow(clippy::unwrap_used)]
//! WORKDIR directory creation.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use common::*;
use kiln_fileops::mkdir_workdir;

#[test]
fn workdir_is_created_with_parents_owned_by_user() {
    let e = env();
    assert!(mkdir_workdir(&e.dst_root(), "/srv/app", Some((1000, 1000))).unwrap());
    for d in ["srv", "srv/app"] {
        let md = fs::metadata(e.dst.join(d)).unwrap();
        assert_eq!(
            (md.uid(), md.gid(), md.mode() & 0o7777),
            (1000, 1000, 0o755),
            "{d}"
        );
    }
}

#[test]
fn existing_workdir_is_left_alone() {
    let e = env();
    fs::create_dir(e.dst.join("data")).unwrap();
    fs::set_permissions(e.dst.join("data"), fs::Permissions::from_mode(0o700)).unwrap();
    assert!(!mkdir_workdir(&e.dst_root(), "/data", Some((5, 5))).unwrap());
    let md = fs::metadata(e.dst.join("data")).unwrap();
    assert_eq!((md.uid(), md.mode() & 0o7777), (0, 0o700));
}

#[test]
fn workdir_through_hostile_symlink_stays_in_root() {
    let e = env();
    let sentinel = e.tmp.path().join("sentinel");
    fs::create_dir(&sentinel).unwrap();
    link(sentinel.to_str().unwrap(), &e.dst.join("work"));
    assert!(mkdir_workdir(&e.dst_root(), "/work/app", None).unwrap());
    assert_eq!(fs::read_dir(&sentinel).unwrap().count(), 0);
    assert!(
        e.dst
            .join(sentinel.strip_prefix("/").unwrap())
            .join("app")
            .is_dir()
    );
}

#[test]
fn workdir_over_a_file_is_an_error() {
    let e = env();
    write(&e.dst.join("f"), "x");
    let err = mkdir_workdir(&e.dst_root(), "/f/sub", None).unwrap_err();
    assert!(err.to_string().contains("WORKDIR /f/sub"), "{err}");
}
