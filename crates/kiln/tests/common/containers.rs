//! podman, buildah and skopeo with private state.
//!
//! Each [`ContainerTools`] has its own storage (`--root`/`--runroot`), its
//! own `containers.conf` (runc, pinned ulimits, cgroupfs, file events: what
//! this machine needs, see DESIGN.md "Test environment"), its own
//! `registries.conf` marking the registries under test insecure (plain
//! http), its own auth file and temp dir. Nothing is shared with the host's
//! or another test's containers.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Result, bail};

use super::process::{RunExt, write_file};
use super::registry::toml_str;
use super::scratch::Scratch;

pub struct ContainerTools {
    root: PathBuf,
    runroot: PathBuf,
    libpod_tmp: PathBuf,
    tmp: PathBuf,
    containers_conf: PathBuf,
    registries_conf: PathBuf,
    storage_conf: PathBuf,
    auth_file: PathBuf,
    // last: dropped after everything that might still use it
    scratch: Scratch,
}

impl ContainerTools {
    /// Private podman/buildah/skopeo state; `insecure_registries` are
    /// `HOST:PORT` entries reachable over plain http.
    pub fn new(insecure_registries: &[&str]) -> Result<Self> {
        let scratch = Scratch::new("containers")?;
        let root = scratch.mkdir("root")?;
        let runroot = scratch.mkdir("runroot")?;
        let libpod_tmp = scratch.mkdir("libpod-tmp")?;
        let tmp = scratch.mkdir("tmp")?;
        let containers_conf = scratch.join("containers.conf");
        let registries_conf = scratch.join("registries.conf");
        let storage_conf = scratch.join("storage.conf");
        let auth_file = scratch.join("auth.json");

        write_file(
            &containers_conf,
            "[containers]\n\
             default_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n\
             \n\
             [engine]\n\
             runtime = \"runc\"\n\
             cgroup_manager = \"cgroupfs\"\n\
             events_logger = \"file\"\n",
        )?;
        let mut reg = String::from("unqualified-search-registries = []\n");
        for r in insecure_registries {
            reg.push_str(&format!(
                "\n[[registry]]\nlocation = {}\ninsecure = true\n",
                toml_str(r)
            ));
        }
        write_file(&registries_conf, reg)?;
        write_file(
            &storage_conf,
            format!(
                "[storage]\ndriver = \"overlay\"\ngraphroot = {}\nrunroot = {}\n",
                toml_str(&root.to_string_lossy()),
                toml_str(&runroot.to_string_lossy())
            ),
        )?;
        // The tools refuse to start when REGISTRY_AUTH_FILE names a missing file.
        write_file(&auth_file, "{\"auths\":{}}\n")?;

        Ok(Self {
            root,
            runroot,
            libpod_tmp,
            tmp,
            containers_conf,
            registries_conf,
            storage_conf,
            auth_file,
            scratch,
        })
    }

    fn env(&self, cmd: &mut Command) {
        cmd.env("CONTAINERS_CONF", &self.containers_conf)
            .env("CONTAINERS_REGISTRIES_CONF", &self.registries_conf)
            .env("CONTAINERS_STORAGE_CONF", &self.storage_conf)
            .env("REGISTRY_AUTH_FILE", &self.auth_file)
            .env("TMPDIR", &self.tmp)
            .env_remove("DOCKER_CONFIG")
            .env_remove("XDG_CONFIG_HOME");
    }

    /// `podman --root .. --runroot .. --tmpdir ..` with the private config.
    pub fn podman(&self) -> Command {
        let mut c = Command::new("podman");
        self.env(&mut c);
        c.arg("--root")
            .arg(&self.root)
            .arg("--runroot")
            .arg(&self.runroot)
            .arg("--tmpdir")
            .arg(&self.libpod_tmp)
            .args([
                "--storage-driver",
                "overlay",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
            ]);
        c
    }

    /// `buildah --root .. --runroot ..` sharing podman's storage.
    pub fn buildah(&self) -> Command {
        let mut c = Command::new("buildah");
        self.env(&mut c);
        c.arg("--root")
            .arg(&self.root)
            .arg("--runroot")
            .arg(&self.runroot)
            .args(["--storage-driver", "overlay"]);
        c
    }

    /// `skopeo` with the private registries.conf and auth file (its
    /// `containers-storage:` transport sees the same storage as podman).
    pub fn skopeo(&self) -> Command {
        let mut c = Command::new("skopeo");
        self.env(&mut c);
        c
    }

    pub fn auth_file(&self) -> &Path {
        &self.auth_file
    }

    pub fn scratch(&self) -> &Scratch {
        &self.scratch
    }

    /// Imports an OCI layout image (`oci:DIR:TAG`) into storage under `name`
    /// (e.g. `localhost/fixture:latest`); returns the image ID.
    pub fn import(&self, oci_ref: &str, name: &str) -> Result<String> {
        let out = self.podman().args(["pull", "-q", oci_ref]).run_ok()?;
        let id = out.last_line().to_owned();
        if id.is_empty() {
            bail!("podman pull {oci_ref} printed no image ID");
        }
        self.podman().args(["tag", &id, name]).run_ok()?;
        Ok(id)
    }

    /// `podman image inspect --format FORMAT IMAGE`, trimmed.
    pub fn podman_inspect(&self, image: &str, format: &str) -> Result<String> {
        let out = self
            .podman()
            .args(["image", "inspect", "--format", format, image])
            .run_ok()?;
        Ok(out.stdout.trim().to_owned())
    }
}

impl Drop for ContainerTools {
    fn drop(&mut self) {
        // Unmount anything a failed test left mounted (Scratch unmounts too,
        // but this lets podman clean its own state first).
        let _ = self.podman().args(["rm", "-a", "-f"]).run();
        let _ = self.buildah().args(["rm", "-a"]).run();
    }
}
