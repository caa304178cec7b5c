#![allow(clippy::unwrap_used)]
//! Hostile and corrupt layers: every escape attempt is refused with a typed
//! error naming the entry, nothing outside the destination is touched, and a
//! refused or unverified layer leaves no destination behind.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

use common::*;
use kiln_layer::*;
use kiln_oci::Digest;

struct Scene {
    _tmp: tempfile::TempDir,
    dest: PathBuf,
    sentinel: PathBuf,
}

/// `parent/dest` (empty) next to `parent/sentinel/file`.
fn scene() -> Scene {
    let tmp = tempdir();
    let dest = tmp.path().join("dest");
    let sentinel = tmp.path().join("sentinel");
    std::fs::create_dir(&dest).unwrap();
    std::fs::create_dir(&sentinel).unwrap();
    std::fs::write(sentinel.join("file"), "original").unwrap();
    Scene {
        _tmp: tmp,
        dest,
        sentinel,
    }
}

fn parent_listing(s: &Scene) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(s.dest.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Unpacks `tar` in both modes; returns the Layer-mode error after checking
/// that the sentinel and the parent directory are untouched in both.
fn refused(entries: &[(TarEntry, Vec<u8>)]) -> LayerError {
    let tar_bytes = raw_tar(entries);
    let mut first = None;
    for mode in [UnpackMode::Layer, UnpackMode::Apply] {
        let s = scene();
        let before = snapshot(&s.sentinel);
        let err = unpack_layer(tar_bytes.as_slice(), None, &s.dest, mode).unwrap_err();
        assert_eq!(snapshot(&s.sentinel), before, "{mode:?}: sentinel changed");
        let expected_parent = match mode {
            // A refused layer leaves no half-unpacked directory behind.
            UnpackMode::Layer => vec!["sentinel".to_string()],
            UnpackMode::Apply => vec!["dest".to_string(), "sentinel".to_string()],
        };
        assert_eq!(parent_listing(&s), expected_parent, "{mode:?}");
        first.get_or_insert(err);
    }
    first.unwrap()
}

fn entry_name(err: &LayerError) -> String {
    match err {
        LayerError::BadPath { entry, .. }
        | LayerError::SymlinkInPath { entry, .. }
        | LayerError::NotADirectory { entry, .. }
        | LayerError::BadHardlink { entry, .. } => entry.clone(),
        other => panic!("not an entry refusal: {other}"),
    }
}

#[test]
fn dot_dot_paths_are_refused() {
    if !root_or_skip("dot_dot_paths_are_refused") {
        return;
    }
    for bad in [
        "../x",
        "a/../../x",
        "../sentinel/file",
        "ok/../../sentinel/file",
    ] {
        let err = refused(&[raw(bad, EntryKind::Regular, "", b"pwned")]);
        assert!(matches!(err, LayerError::BadPath { .. }), "{bad}: {err}");
        assert_eq!(entry_name(&err), bad);
    }
}

#[test]
fn leading_slash_is_stripped_into_the_destination() {
    if !root_or_skip("leading_slash_is_stripped_into_the_destination") {
        return;
    }
    let s = scene();
    let name = format!("/tmp/kiln-layer-test-{}", std::process::id());
    let tar_bytes = raw_tar(&[raw(&name, EntryKind::Regular, "", b"inside")]);
    unpack_layer(tar_bytes.as_slice(), None, &s.dest, UnpackMode::Layer).unwrap();
    assert!(!Path::new(&name).exists());
    let inside = s.dest.join(name.trim_start_matches('/'));
    assert_eq!(std::fs::read_to_string(inside).unwrap(), "inside");
}

#[test]
fn writing_through_a_symlink_is_refused() {
    if !root_or_skip("writing_through_a_symlink_is_refused") {
        return;
    }
    for target in ["/", "../sentinel", "/proc/self/cwd"] {
        let err = refused(&[
            raw("evil", EntryKind::Symlink, target, b""),
            raw("evil/file", EntryKind::Regular, "", b"pwned"),
        ]);
        assert!(
            matches!(&err, LayerError::SymlinkInPath { component, .. } if component == "evil"),
            "{target}: {err}"
        );
        assert_eq!(entry_name(&err), "evil/file");
    }
    // A directory entry through the link is refused the same way.
    let err = refused(&[
        raw("evil", EntryKind::Symlink, "../sentinel", b""),
        raw("evil/sub/", EntryKind::Dir, "", b""),
    ]);
    assert!(matches!(err, LayerError::SymlinkInPath { .. }), "{err}");
}

#[test]
fn escaping_hardlinks_are_refused() {
    if !root_or_skip("escaping_hardlinks_are_refused") {
        return;
    }
    let err = refused(&[raw("h", EntryKind::Hardlink, "../../etc/passwd", b"")]);
    assert!(matches!(err, LayerError::BadHardlink { .. }), "{err}");
    assert_eq!(entry_name(&err), "h");

    let err = refused(&[
        raw("evil", EntryKind::Symlink, "../sentinel", b""),
        raw("h", EntryKind::Hardlink, "evil/file", b""),
    ]);
    assert!(
        matches!(&err, LayerError::BadHardlink { target, .. } if target == "evil/file"),
        "{err}"
    );

    let err = refused(&[raw("h", EntryKind::Hardlink, "missing", b"")]);
    assert!(matches!(err, LayerError::BadHardlink { .. }), "{err}");
}

#[test]
fn hardlink_to_a_symlink_links_the_symlink_itself() {
    if !root_or_skip("hardlink_to_a_symlink_links_the_symlink_itself") {
        return;
    }
    let s = scene();
    let before = snapshot(&s.sentinel);
    let tar_bytes = raw_tar(&[
        raw("s", EntryKind::Symlink, "../sentinel/file", b""),
        raw("h", EntryKind::Hardlink, "s", b""),
    ]);
    unpack_layer(tar_bytes.as_slice(), None, &s.dest, UnpackMode::Layer).unwrap();
    let h = std::fs::symlink_metadata(s.dest.join("h")).unwrap();
    assert!(h.file_type().is_symlink());
    assert_eq!(snapshot(&s.sentinel), before);
}

#[test]
fn a_file_entry_replaces_a_symlink_instead_of_writing_through_it() {
    if !root_or_skip("a_file_entry_replaces_a_symlink_instead_of_writing_through_it") {
        return;
    }
    for mode in [UnpackMode::Layer, UnpackMode::Apply] {
        let s = scene();
        let before = snapshot(&s.sentinel);
        let tar_bytes = raw_tar(&[
            raw("f", EntryKind::Symlink, "../sentinel/file", b""),
            raw("f", EntryKind::Regular, "", b"replaced"),
        ]);
        unpack_layer(tar_bytes.as_slice(), None, &s.dest, mode).unwrap();
        assert_eq!(
            std::fs::read_to_string(s.dest.join("f")).unwrap(),
            "replaced"
        );
        assert!(
            !std::fs::symlink_metadata(s.dest.join("f"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(snapshot(&s.sentinel), before, "{mode:?}");
    }
}

#[test]
fn whiteout_through_a_symlink_is_refused() {
    if !root_or_skip("whiteout_through_a_symlink_is_refused") {
        return;
    }
    let err = refused(&[
        raw("evil", EntryKind::Symlink, "../sentinel", b""),
        raw("evil/.wh.file", EntryKind::Regular, "", b""),
    ]);
    assert!(matches!(err, LayerError::SymlinkInPath { .. }), "{err}");
    let err = refused(&[raw(".wh..", EntryKind::Regular, "", b"")]);
    assert!(matches!(err, LayerError::BadPath { .. }), "{err}");
}

fn gzip_blob(tar_bytes: &[u8]) -> (LayerBlob, Vec<u8>) {
    let mut w = LayerBlobWriter::new(Vec::new(), Compression::Gzip, ImageFormat::Oci).unwrap();
    w.write_all(tar_bytes).unwrap();
    w.finish().unwrap()
}

#[test]
fn digest_and_diff_id_mismatches_are_detected_and_dest_removed() {
    if !root_or_skip("digest_and_diff_id_mismatches_are_detected_and_dest_removed") {
        return;
    }
    let tar_bytes = raw_tar(&[raw("hello", EntryKind::Regular, "", b"world")]);
    let (blob, gz) = gzip_blob(&tar_bytes);
    let wrong = Digest::sha256_of(b"something else");

    let s = scene();
    let exp = Expected {
        digest: Some(wrong.clone()),
        ..Expected::default()
    };
    let err = unpack_layer(gz.as_slice(), Some(&exp), &s.dest, UnpackMode::Layer).unwrap_err();
    assert!(
        matches!(&err, LayerError::DigestMismatch { expected, actual } if *expected == wrong && *actual == blob.digest),
        "{err}"
    );
    assert!(!s.dest.exists());

    let s = scene();
    let exp = Expected {
        digest: Some(blob.digest.clone()),
        diff_id: Some(wrong.clone()),
        size: Some(blob.size),
    };
    let err = unpack_layer(gz.as_slice(), Some(&exp), &s.dest, UnpackMode::Layer).unwrap_err();
    assert!(
        matches!(&err, LayerError::DiffIdMismatch { actual, .. } if *actual == blob.diff_id),
        "{err}"
    );
    assert!(!s.dest.exists());

    // Right values pass, and the stats report them.
    let s = scene();
    let exp = Expected {
        diff_id: Some(blob.diff_id.clone()),
        ..exp
    };
    let stats = unpack_layer(gz.as_slice(), Some(&exp), &s.dest, UnpackMode::Layer).unwrap();
    assert_eq!(
        (stats.digest, stats.diff_id, stats.size),
        (blob.digest, blob.diff_id, blob.size)
    );
    assert_eq!(
        std::fs::read_to_string(s.dest.join("hello")).unwrap(),
        "world"
    );
}

#[test]
fn corrupt_and_truncated_blobs_are_errors() {
    if !root_or_skip("corrupt_and_truncated_blobs_are_errors") {
        return;
    }
    let tar_bytes = raw_tar(&[raw("hello", EntryKind::Regular, "", &[b'x'; 10_000])]);
    let (_, gz) = gzip_blob(&tar_bytes);
    let s = scene();
    let truncated = &gz[..gz.len() / 2];
    let err = unpack_layer(truncated, None, &s.dest, UnpackMode::Layer).unwrap_err();
    assert!(matches!(err, LayerError::Read(_)), "{err}");
    assert!(!s.dest.exists());
}

#[test]
fn non_empty_destination_is_refused_and_kept() {
    if !root_or_skip("non_empty_destination_is_refused_and_kept") {
        return;
    }
    let s = scene();
    std::fs::write(s.dest.join("precious"), "keep").unwrap();
    let tar_bytes = raw_tar(&[raw("a", EntryKind::Regular, "", b"a")]);
    let err = unpack_layer(tar_bytes.as_slice(), None, &s.dest, UnpackMode::Layer).unwrap_err();
    assert!(matches!(err, LayerError::DestinationNotEmpty(_)), "{err}");
    assert_eq!(
        std::fs::read_to_string(s.dest.join("precious")).unwrap(),
        "keep"
    );
}
