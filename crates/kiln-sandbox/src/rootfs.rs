//! Mounting the root filesystem: an overlay of many lower layers through the new mount
//! API (`lowerdir+`, one layer per call, no page limit), the classic option string as the
//! fallback for kernels before 6.8, or a bind mount of a prepared directory.

use std::io;
use std::path::{Path, PathBuf};

use crate::kernel::{Kernel, MountCall};
use crate::spec::RootFs;

/// Overlay options that keep the upper directory self-contained: whole copied-up files
/// and real renamed directories, no references into the lower layers, no index.
pub const OVERLAY_OPTIONS: [(&str, &str); 3] = [
    ("redirect_dir", "off"),
    ("metacopy", "off"),
    ("index", "off"),
];

/// The legacy `mount(2)` data argument is one page, NUL included.
const CLASSIC_DATA_MAX: usize = 4095;

pub fn mount_rootfs_with<K: Kernel>(
    k: &mut K,
    rootfs: &RootFs,
    target: &Path,
) -> Result<(), String> {
    match rootfs {
        RootFs::Dir(dir) => k
            .mount(&MountCall::new(
                Some(dir),
                target,
                None,
                libc::MS_BIND | libc::MS_REC,
                None,
            ))
            .map_err(|e| {
                format!(
                    "bind-mounting root directory {} on {}: {e}",
                    dir.display(),
                    target.display()
                )
            }),
        RootFs::Overlay {
            lowers,
            upper,
            work,
        } => match mount_overlay_new_api(k, lowers, upper, work, target) {
            Ok(()) => Ok(()),
            Err(NewApi::Unsupported) => mount_overlay_classic(k, lowers, upper, work, target),
            Err(NewApi::Failed(message)) => Err(message),
        },
    }
}

enum NewApi {
    /// No fsopen, or an overlay without `lowerdir+` (or a path it cannot take).
    Unsupported,
    Failed(String),
}

fn is_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOSYS | libc::EINVAL | libc::EOPNOTSUPP | libc::ENODEV)
    )
}

fn mount_overlay_new_api<K: Kernel>(
    k: &mut K,
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<(), NewApi> {
    let fs = match k.fsopen("overlay") {
        Ok(fs) => fs,
        Err(e) if is_unsupported(&e) => return Err(NewApi::Unsupported),
        Err(e) => return Err(NewApi::Failed(format!("opening an overlay context: {e}"))),
    };
    let result = configure_overlay(k, fs, lowers, upper, work, target);
    k.fsclose(fs);
    result
}

fn configure_overlay<K: Kernel>(
    k: &mut K,
    fs: crate::kernel::FsHandle,
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<(), NewApi> {
    let text = |p: &Path| {
        p.to_str()
            .map(str::to_owned)
            .ok_or_else(|| NewApi::Failed(format!("overlay path {} is not UTF-8", p.display())))
    };
    for lower in lowers {
        let value = text(lower)?;
        match k.fsconfig_string(fs, "lowerdir+", &value) {
            Ok(()) => {}
            Err(e) if is_unsupported(&e) => return Err(NewApi::Unsupported),
            Err(e) => {
                return Err(NewApi::Failed(format!(
                    "overlay lower layer {}: {e}",
                    lower.display()
                )));
            }
        }
    }
    let set = |k: &mut K, key: &str, value: &str| {
        k.fsconfig_string(fs, key, value)
            .map_err(|e| NewApi::Failed(format!("overlay option {key}={value}: {e}")))
    };
    set(k, "upperdir", &text(upper)?)?;
    set(k, "workdir", &text(work)?)?;
    for (key, value) in OVERLAY_OPTIONS {
        set(k, key, value)?;
    }
    k.fsconfig_create(fs).map_err(|e| {
        NewApi::Failed(format!(
            "creating overlay (upper {}, {} lower layers): {e}",
            upper.display(),
            lowers.len()
        ))
    })?;
    k.fsmount_at(fs, target)
        .map_err(|e| NewApi::Failed(format!("attaching overlay at {}: {e}", target.display())))
}

/// Backslash-escapes what the overlay option parser splits on.
fn escape(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        if matches!(c, '\\' | ':' | ',') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn classic_data(lowers: &[String], upper: &Path, work: &Path) -> String {
    let mut data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowers.join(":"),
        escape(upper),
        escape(work)
    );
    for (key, value) in OVERLAY_OPTIONS {
        data.push_str(&format!(",{key}={value}"));
    }
    data
}

fn common_parent(paths: &[PathBuf]) -> Option<PathBuf> {
    let mut common = paths.first()?.parent()?.to_path_buf();
    for p in paths {
        while !p.starts_with(&common) {
            common = common.parent()?.to_path_buf();
        }
    }
    Some(common)
}

/// The option string, made short when needed by naming the lower layers relative to their
/// common parent (which then must be the current directory during the mount).
pub(crate) fn classic_plan(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
) -> Result<(Option<PathBuf>, String), String> {
    let absolute: Vec<String> = lowers.iter().map(|p| escape(p)).collect();
    let data = classic_data(&absolute, upper, work);
    if data.len() <= CLASSIC_DATA_MAX {
        return Ok((None, data));
    }
    let too_long = |len: usize| {
        format!(
            "{} lower layers do not fit the classic overlay option string ({len} bytes > {CLASSIC_DATA_MAX}) and this kernel lacks lowerdir+",
            lowers.len()
        )
    };
    let Some(parent) = common_parent(lowers).filter(|p| p != Path::new("/")) else {
        return Err(too_long(data.len()));
    };
    let relative: Vec<String> = lowers
        .iter()
        .map(|p| escape(p.strip_prefix(&parent).unwrap_or(p)))
        .collect();
    let data = classic_data(&relative, upper, work);
    if data.len() > CLASSIC_DATA_MAX {
        return Err(too_long(data.len()));
    }
    Ok((Some(parent), data))
}

fn mount_overlay_classic<K: Kernel>(
    k: &mut K,
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<(), String> {
    let (chdir, data) = classic_plan(lowers, upper, work)?;
    let previous = match &chdir {
        Some(dir) => {
            let previous = k
                .current_dir()
                .map_err(|e| format!("reading the current directory: {e}"))?;
            k.chdir(dir)
                .map_err(|e| format!("entering the layer directory {}: {e}", dir.display()))?;
            Some(previous)
        }
        None => None,
    };
    let result = k
        .mount(&MountCall::new(
            Some(Path::new("overlay")),
            target,
            Some("overlay"),
            0,
            Some(&data),
        ))
        .map_err(|e| {
            format!(
                "mounting overlay (upper {}, {} lower layers) on {}: {e}",
                upper.display(),
                lowers.len(),
                target.display()
            )
        });
    if let Some(previous) = previous {
        let _ = k.chdir(&previous);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::recording::{Op, RecordingKernel};

    fn overlay(n: usize, base: &str) -> RootFs {
        RootFs::Overlay {
            lowers: (0..n)
                .map(|i| PathBuf::from(format!("{base}/{i:04}/fs")))
                .collect(),
            upper: "/s/up".into(),
            work: "/s/work".into(),
        }
    }

    #[test]
    fn new_api_adds_layers_one_by_one() {
        let mut k = RecordingKernel::new();
        mount_rootfs_with(&mut k, &overlay(2, "/l"), Path::new("/t")).unwrap();
        let cfg = |key: &str, value: &str| Op::FsConfig {
            key: key.into(),
            value: value.into(),
        };
        assert_eq!(
            k.ops,
            vec![
                Op::FsOpen("overlay".into()),
                cfg("lowerdir+", "/l/0000/fs"),
                cfg("lowerdir+", "/l/0001/fs"),
                cfg("upperdir", "/s/up"),
                cfg("workdir", "/s/work"),
                cfg("redirect_dir", "off"),
                cfg("metacopy", "off"),
                cfg("index", "off"),
                Op::FsCreate,
                Op::FsMount("/t".into()),
                Op::FsClose,
            ]
        );
    }

    #[test]
    fn falls_back_to_classic_when_lowerdir_plus_is_unknown() {
        let mut k = RecordingKernel::new();
        k.fail = Some(Box::new(|op| match op {
            Op::FsConfig { key, .. } if key == "lowerdir+" => Some(libc::EINVAL),
            _ => None,
        }));
        mount_rootfs_with(&mut k, &overlay(2, "/l"), Path::new("/t")).unwrap();
        let mounts = k.mounts();
        assert_eq!(mounts.len(), 1);
        assert_eq!(
            mounts[0].data.as_deref(),
            Some(
                "lowerdir=/l/0000/fs:/l/0001/fs,upperdir=/s/up,workdir=/s/work,redirect_dir=off,metacopy=off,index=off"
            )
        );
        assert!(k.ops.contains(&Op::FsClose));
    }

    #[test]
    fn classic_uses_relative_paths_beyond_a_page() {
        let base = "/var/lib/kiln/storage/snapshots/a-rather-long-directory-name";
        let RootFs::Overlay {
            lowers,
            upper,
            work,
        } = overlay(150, base)
        else {
            unreachable!()
        };
        let (dir, data) = classic_plan(&lowers, &upper, &work).unwrap();
        assert_eq!(dir.as_deref(), Some(Path::new(base)));
        assert!(data.starts_with("lowerdir=0000/fs:0001/fs:"));
        assert!(data.len() <= CLASSIC_DATA_MAX);

        let mut k = RecordingKernel::new();
        k.dirs(&[base, "/cwd"]);
        k.cwd = "/cwd".into();
        k.fail = Some(Box::new(|op| match op {
            Op::FsOpen(_) => Some(libc::ENOSYS),
            _ => None,
        }));
        mount_rootfs_with(&mut k, &overlay(150, base), Path::new("/t")).unwrap();
        let chdirs: Vec<&Op> = k.ops.iter().filter(|o| matches!(o, Op::Chdir(_))).collect();
        assert_eq!(
            chdirs,
            vec![&Op::Chdir(base.into()), &Op::Chdir("/cwd".into())]
        );
    }

    #[test]
    fn classic_too_long_even_relative_is_a_clear_error() {
        let lowers: Vec<PathBuf> = (0..600)
            .map(|i| PathBuf::from(format!("/{i:08}/fs")))
            .collect();
        let err = classic_plan(&lowers, Path::new("/u"), Path::new("/w")).unwrap_err();
        assert!(err.contains("600 lower layers"), "{err}");
    }

    #[test]
    fn escapes_separators() {
        assert_eq!(escape(Path::new("/a:b,c\\d")), "/a\\:b\\,c\\\\d");
    }

    #[test]
    fn real_errors_are_not_fallbacks() {
        let mut k = RecordingKernel::new();
        k.fail = Some(Box::new(|op| match op {
            Op::FsConfig { value, .. } if value == "/l/0001/fs" => Some(libc::ENOENT),
            _ => None,
        }));
        let err = mount_rootfs_with(&mut k, &overlay(2, "/l"), Path::new("/t")).unwrap_err();
        assert!(err.contains("/l/0001/fs"), "{err}");
        assert!(k.mounts().is_empty());
    }

    #[test]
    fn dir_is_a_recursive_bind() {
        let mut k = RecordingKernel::new();
        mount_rootfs_with(&mut k, &RootFs::Dir("/prepared".into()), Path::new("/t")).unwrap();
        assert_eq!(
            k.mounts()[0],
            &MountCall::new(
                Some(Path::new("/prepared")),
                Path::new("/t"),
                None,
                libc::MS_BIND | libc::MS_REC,
                None
            )
        );
    }
}
