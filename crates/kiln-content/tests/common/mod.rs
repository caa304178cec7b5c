//! Real databases for the tests, made by the host's own tools: Debian's
//! `rpm`/`rpmbuild`/`rpmsign`, GnuPG, Berkeley DB's `db5.3_load`, and the
//! repository's cached fixtures.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_content::Package;

pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn need(tool: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .unwrap()
        .status
        .success();
    assert!(found, "{tool} missing: apt-get install {package}");
}

/// A cached fixture (`scripts/fixtures/NAME.sh -` prints its directory).
pub fn fixture(name: &str) -> PathBuf {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../scripts/fixtures/{name}.sh"));
    PathBuf::from(run(Command::new(script).arg("-")).trim())
}

/// The fixture RPMs kiln-data and kiln-hello (unsigned, noarch).
pub fn fixture_rpms() -> Vec<PathBuf> {
    let repo = fixture("rpm-repo").join("repo");
    let mut rpms: Vec<PathBuf> = std::fs::read_dir(&repo)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rpm"))
        .collect();
    rpms.sort();
    assert_eq!(rpms.len(), 2, "{}", repo.display());
    rpms
}

/// A throwaway GnuPG home with an ed25519 signing key; stops its agent
/// when dropped.
pub struct Gpg {
    pub home: tempfile::TempDir,
    pub public_key: PathBuf,
}

impl Gpg {
    pub fn new() -> Self {
        need("gpg", "gnupg");
        let home = tempfile::Builder::new()
            .prefix("kc-gpg")
            .tempdir_in("/tmp")
            .unwrap();
        run(Command::new("gpg")
            .env("GNUPGHOME", home.path())
            .args(["--batch", "--quiet", "--passphrase", "", "--quick-gen-key"])
            .args([
                "kiln test <kiln@example.invalid>",
                "ed25519",
                "sign",
                "never",
            ]));
        let public_key = home.path().join("pub.asc");
        run(Command::new("gpg")
            .env("GNUPGHOME", home.path())
            .args(["--batch", "--armor", "--output"])
            .arg(&public_key)
            .args(["--export", "kiln test"]));
        Self { home, public_key }
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home.path())
            .args(["--kill", "gpg-agent"])
            .status();
    }
}

/// Builds a noarch package with an epoch and a compound licence, signed
/// with `gpg`'s key, into `dir`.
pub fn signed_rpm_with_epoch(dir: &Path, gpg: &Gpg) -> PathBuf {
    need("rpmbuild", "rpm");
    let top = dir.join("rpmbuild");
    std::fs::create_dir_all(top.join("SPECS")).unwrap();
    let spec = top.join("SPECS/kiln-epoch.spec");
    std::fs::write(
        &spec,
        "Name: kiln-epoch\nEpoch: 3\nVersion: 2.5~rc1\nRelease: 7.kiln\n\
         Summary: epoch test\nLicense: GPL-2.0-or-later AND MIT\nBuildArch: noarch\n\
         %description\nA package with an epoch (kiln test).\n\
         %install\nmkdir -p %{buildroot}/usr/share/kiln-epoch\n\
         echo x > %{buildroot}/usr/share/kiln-epoch/x\n\
         %files\n/usr/share/kiln-epoch/x\n",
    )
    .unwrap();
    run(Command::new("rpmbuild")
        .args(["-bb", "--quiet", "--define"])
        .arg(format!("_topdir {}", top.display()))
        .arg(&spec));
    let rpm = top.join("RPMS/noarch/kiln-epoch-2.5~rc1-7.kiln.noarch.rpm");
    run(Command::new("rpmsign")
        .env("GNUPGHOME", gpg.home.path())
        // Debian's rpm names /usr/bin/gpg2, which Debian 12 no longer ships.
        .args(["--define", "__gpg /usr/bin/gpg"])
        .args(["--define", "_gpg_name kiln test", "--define"])
        .arg(format!("_gpg_path {}", gpg.home.path().display()))
        .arg("--addsign")
        .arg(&rpm));
    rpm
}

/// `rpm -qa` of a database inside `root`, in the shape of [`line`];
/// `gpg-pubkey` records are left out, as kiln-content leaves them out.
pub fn rpm_qa(root: &Path, dbpath: &str, defines: &[&str]) -> Vec<String> {
    let mut cmd = Command::new("rpm");
    cmd.arg("--root").arg(root).args(["--dbpath", dbpath]);
    for d in defines {
        cmd.args(["--define", d]);
    }
    cmd.args([
        "-qa",
        "--qf",
        "%{NAME}|%{EPOCHNUM}|%{VERSION}|%{RELEASE}|%{ARCH}|%{SOURCERPM}|%{LICENSE}|\
         %{SIGPGP:pgpsig}|%{SIGGPG:pgpsig}|%{DSAHEADER:pgpsig}|%{RSAHEADER:pgpsig}\n",
    ]);
    let mut lines: Vec<String> = run(&mut cmd)
        .lines()
        .filter(|l| !l.starts_with("gpg-pubkey|"))
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            // atomic-reactor's rule: the first signature tag set, and of
            // its text the key id after "Key ID ".
            let key = f[7..11]
                .iter()
                .find(|s| **s != "(none)")
                .map(|s| s.split("Key ID ").nth(1).unwrap().to_owned())
                .unwrap_or_else(|| "(none)".into());
            format!("{}|{key}", f[..7].join("|"))
        })
        .collect();
    lines.sort();
    lines
}

/// A package as an `rpm_qa` line.
pub fn line(p: &Package) -> String {
    let none = |o: &Option<String>| o.clone().unwrap_or_else(|| "(none)".into());
    format!(
        "{}|{}|{}|{}|{}|{}|{}|{}",
        p.name,
        p.epoch.unwrap_or(0),
        p.version,
        p.release,
        p.arch,
        none(&p.source),
        none(&p.license),
        none(&p.signing_key)
    )
}

/// Installs `rpms` into the database at `dbpath` inside `root` (only the
/// database: the files are not needed to list packages).
pub fn rpm_install(root: &Path, dbpath: &str, rpms: &[PathBuf]) {
    need("rpm", "rpm");
    run(Command::new("rpm")
        .arg("--root")
        .arg(root)
        .args(["--dbpath", dbpath, "-i", "--nodeps", "--justdb"])
        .args(rpms));
}

pub fn rpm_import(root: &Path, dbpath: &str, key: &Path) {
    run(Command::new("rpm")
        .arg("--root")
        .arg(root)
        .args(["--dbpath", dbpath, "--import"])
        .arg(key));
}

/// A Berkeley DB hash database holding the header blobs of an
/// `rpmdb.sqlite`, written by Berkeley DB itself (`db5.3_load`), keyed by
/// the instance number in host byte order as rpm < 4.16 wrote it.
pub fn bdb_from_sqlite(sqlite: &Path, packages: &Path, page_size: u32) {
    need("db5.3_load", "db5.3-util");
    need("sqlite3", "sqlite3");
    let rows = run(Command::new("sqlite3")
        .arg(sqlite)
        .arg("SELECT hnum, hex(blob) FROM Packages ORDER BY hnum"));
    let mut input = String::new();
    let escape = |bytes: &[u8]| {
        bytes
            .iter()
            .map(|b| format!("\\{b:02x}"))
            .collect::<String>()
    };
    for row in rows.lines() {
        let (hnum, hex) = row.split_once('|').unwrap();
        let hnum: u32 = hnum.parse().unwrap();
        let blob: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        input.push_str(&escape(&hnum.to_ne_bytes()));
        input.push('\n');
        input.push_str(&escape(&blob));
        input.push('\n');
    }
    let mut child = Command::new("db5.3_load")
        .args(["-T", "-t", "hash", "-c"])
        .arg(format!("db_pagesize={page_size}"))
        .arg(packages)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "db5.3_load failed");
}
