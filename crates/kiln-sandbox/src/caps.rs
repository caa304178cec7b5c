//! Capability names, Docker's default set, and applying a user's credentials.

use std::io;

use crate::kernel::{CapSets, Kernel};
use crate::user::Credentials;

/// Capability names indexed by their number (linux/capability.h).
const NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Docker's (and BuildKit's) default capability set for containers and RUN steps.
pub const DOCKER_DEFAULT: [&str; 14] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// [`DOCKER_DEFAULT`] as a bit mask, as `CapBnd`/`CapEff` show it in `/proc/self/status`.
pub const DOCKER_DEFAULT_MASK: u64 = 0x0000_0000_a804_25fb;

fn number(name: &str) -> Option<u32> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    NAMES.iter().position(|n| *n == bare).map(|i| i as u32)
}

/// The mask of a capability list; `None` means Docker's default set, `ALL` every known one.
pub fn mask(names: Option<&[String]>) -> Result<u64, String> {
    let Some(names) = names else {
        return Ok(DOCKER_DEFAULT_MASK);
    };
    let mut mask = 0u64;
    for name in names {
        if name.eq_ignore_ascii_case("ALL") || name.eq_ignore_ascii_case("CAP_ALL") {
            mask |= (1u64 << NAMES.len()) - 1;
            continue;
        }
        let bit = number(name).ok_or_else(|| format!("unknown capability {name:?}"))?;
        mask |= 1u64 << bit;
    }
    Ok(mask)
}

/// Switches to `creds` keeping only `mask`: the bounding set is cut to the mask while we
/// still hold CAP_SETPCAP, then ids change, then the sets are written. Like Docker (since
/// the CVE-2022-24769 fix) the inheritable and ambient sets stay empty, and a non-root
/// user runs with empty permitted/effective sets (only file capabilities or setuid
/// binaries, within the bounding set, grant more).
pub fn apply_credentials<K: Kernel>(k: &mut K, creds: &Credentials, mask: u64) -> io::Result<()> {
    let last = k.last_cap()?;
    let known = if last >= 63 {
        u64::MAX
    } else {
        (1u64 << (last + 1)) - 1
    };
    let mask = mask & known;
    for cap in 0..=last.min(63) {
        if mask & (1u64 << cap) == 0 {
            k.drop_bounding_cap(cap)?;
        }
    }
    k.clear_ambient_caps()?;
    k.set_groups(&creds.groups)?;
    k.set_gid(creds.gid)?;
    k.set_uid(creds.uid)?;
    let sets = if creds.uid == 0 {
        CapSets {
            effective: mask,
            permitted: mask,
            inheritable: 0,
        }
    } else {
        CapSets::default()
    };
    k.set_caps(sets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::recording::{Op, RecordingKernel};

    #[test]
    fn docker_default_mask_matches_names() {
        let names: Vec<String> = DOCKER_DEFAULT.iter().map(|s| s.to_string()).collect();
        assert_eq!(mask(Some(&names)).unwrap(), DOCKER_DEFAULT_MASK);
        assert_eq!(mask(None).unwrap(), DOCKER_DEFAULT_MASK);
    }

    #[test]
    fn names_with_prefix_and_case() {
        let names = vec!["cap_sys_admin".to_string(), "NET_ADMIN".to_string()];
        assert_eq!(mask(Some(&names)).unwrap(), (1 << 21) | (1 << 12));
        assert_eq!(mask(Some(&[])).unwrap(), 0);
        assert!(
            mask(Some(&["BOGUS".to_string()]))
                .unwrap_err()
                .contains("BOGUS")
        );
        assert_eq!(mask(Some(&["ALL".to_string()])).unwrap(), (1 << 41) - 1);
    }

    fn creds(uid: u32) -> Credentials {
        Credentials {
            uid,
            gid: uid,
            groups: vec![10],
            home: "/".into(),
        }
    }

    #[test]
    fn root_keeps_mask_in_effective_and_bounding() {
        let mut k = RecordingKernel::new();
        apply_credentials(&mut k, &creds(0), DOCKER_DEFAULT_MASK).unwrap();
        let dropped: Vec<u32> = k
            .ops
            .iter()
            .filter_map(|op| match op {
                Op::DropBounding(c) => Some(*c),
                _ => None,
            })
            .collect();
        let expected: Vec<u32> = (0..=40)
            .filter(|c| DOCKER_DEFAULT_MASK & (1 << c) == 0)
            .collect();
        assert_eq!(dropped, expected);
        let tail: Vec<&Op> = k.ops.iter().skip(dropped.len()).collect();
        assert_eq!(
            tail,
            vec![
                &Op::ClearAmbient,
                &Op::SetGroups(vec![10]),
                &Op::SetGid(0),
                &Op::SetUid(0),
                &Op::SetCaps(CapSets {
                    effective: DOCKER_DEFAULT_MASK,
                    permitted: DOCKER_DEFAULT_MASK,
                    inheritable: 0
                }),
            ]
        );
    }

    #[test]
    fn non_root_gets_empty_sets_after_id_switch() {
        let mut k = RecordingKernel::new();
        apply_credentials(&mut k, &creds(1000), DOCKER_DEFAULT_MASK).unwrap();
        let n = k.ops.len();
        assert_eq!(k.ops[n - 2], Op::SetUid(1000));
        assert_eq!(k.ops[n - 1], Op::SetCaps(CapSets::default()));
    }
}
