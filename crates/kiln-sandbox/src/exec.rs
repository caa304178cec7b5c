//! The last steps of the command's process: environment, credentials, working directory,
//! PATH lookup and execve.

use std::path::{Path, PathBuf};

use crate::caps;
use crate::kernel::Kernel;
use crate::report::FailureKind;
use crate::spec::{DEFAULT_PATH, SandboxSpec};
use crate::user::Credentials;

/// Why the command could not be started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecFailure {
    pub kind: FailureKind,
    pub message: String,
}

/// The command's environment: exactly the spec's, plus Docker's defaults for PATH and
/// HOME when the spec has none. Later duplicates win, as with Docker's ENV.
pub fn build_env(env: &[String], home: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for entry in env {
        let key = entry.split('=').next().unwrap_or_default();
        out.retain(|e| e.split('=').next() != Some(key));
        out.push(entry.clone());
    }
    let has = |out: &[String], key: &str| out.iter().any(|e| e.split('=').next() == Some(key));
    if !has(&out, "PATH") {
        out.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !has(&out, "HOME") {
        out.push(format!("HOME={home}"));
    }
    out
}

fn lookup<'a>(env: &'a [String], key: &str) -> Option<&'a str> {
    env.iter()
        .filter_map(|e| e.split_once('='))
        .rfind(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

fn classify(command: &str, path: &Path, e: &std::io::Error) -> ExecFailure {
    let kind = match e.raw_os_error() {
        Some(libc::ENOENT | libc::ENOTDIR) => FailureKind::NotFound,
        _ => FailureKind::NotExecutable,
    };
    ExecFailure {
        kind,
        message: format!("exec {command:?} ({}): {e}", path.display()),
    }
}

/// Executes `args` with `env`, looking `args[0]` up in the PATH of `env` like execvp
/// (but never falling back to /bin/sh). Returns only on failure.
pub fn exec_args<K: Kernel>(k: &mut K, args: &[String], env: &[String]) -> ExecFailure {
    let Some(command) = args.first() else {
        return ExecFailure {
            kind: FailureKind::Setup,
            message: "no command given".to_owned(),
        };
    };
    if command.contains('/') {
        let path = Path::new(command);
        let e = k.execve(path, args, env);
        return classify(command, path, &e);
    }
    let mut denied: Option<(PathBuf, std::io::Error)> = None;
    for dir in lookup(env, "PATH").unwrap_or(DEFAULT_PATH).split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(command);
        let e = k.execve(&candidate, args, env);
        match e.raw_os_error() {
            Some(libc::ENOENT | libc::ENOTDIR | libc::ENAMETOOLONG | libc::ELOOP) => {}
            Some(libc::EACCES) => {
                denied.get_or_insert((candidate, e));
            }
            _ => return classify(command, &candidate, &e),
        }
    }
    match denied {
        Some((path, e)) => classify(command, &path, &e),
        None => ExecFailure {
            kind: FailureKind::NotFound,
            message: format!("exec {command:?}: executable file not found in $PATH"),
        },
    }
}

/// Everything the command's process does after the fork: signals, umask, credentials
/// and capabilities, working directory, descriptors, exec.
pub fn start_command<K: Kernel>(k: &mut K, spec: &SandboxSpec, creds: &Credentials) -> ExecFailure {
    let setup = |message: String| ExecFailure {
        kind: FailureKind::Setup,
        message,
    };
    k.reset_signals();
    k.set_umask(0o022);
    let mask = match caps::mask(spec.capabilities.as_deref()) {
        Ok(mask) => mask,
        Err(e) => return setup(e),
    };
    if let Err(e) = caps::apply_credentials(k, creds, mask) {
        return setup(format!(
            "switching to uid {} gid {}: {e}",
            creds.uid, creds.gid
        ));
    }
    if let Err(e) = k.chdir(Path::new(&spec.cwd)) {
        return setup(format!("entering working directory {}: {e}", spec.cwd));
    }
    // Only stdio reaches the command; the report descriptor is already close-on-exec.
    k.cloexec_from(3);
    let env = build_env(&spec.env, &creds.home);
    exec_args(k, &spec.args, &env)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::recording::{Node, Op, RecordingKernel};
    use crate::spec::RootFs;

    fn execs(k: &RecordingKernel) -> Vec<String> {
        k.ops
            .iter()
            .filter_map(|o| match o {
                Op::Execve { path, .. } => Some(path.display().to_string()),
                _ => None,
            })
            .collect()
    }

    fn exe(k: &mut RecordingKernel, path: &str) {
        k.file(path, "#!");
        if let Some(Node::File { mode, .. }) = k.files.get_mut(Path::new(path)) {
            *mode = 0o755;
        }
    }

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn env_defaults_and_overrides() {
        let env = build_env(&args(&["A=1", "A=2", "HOME=/h"]), "/root");
        assert_eq!(
            env,
            args(&["A=2", "HOME=/h", &format!("PATH={DEFAULT_PATH}")])
        );
        let env = build_env(&args(&["PATH=/x"]), "/home/app");
        assert_eq!(env, args(&["PATH=/x", "HOME=/home/app"]));
    }

    #[test]
    fn path_search_in_order() {
        let mut k = RecordingKernel::new();
        exe(&mut k, "/bin/tool");
        let f = exec_args(
            &mut k,
            &args(&["tool", "-v"]),
            &args(&["PATH=/usr/bin:/bin:/sbin"]),
        );
        assert!(f.message.ends_with("execve recorded"), "{}", f.message);
        assert_eq!(execs(&k), vec!["/usr/bin/tool", "/bin/tool"]);
    }

    #[test]
    fn not_found_and_not_executable() {
        let mut k = RecordingKernel::new();
        let f = exec_args(&mut k, &args(&["nope"]), &args(&["PATH=/a:/b"]));
        assert_eq!(f.kind, FailureKind::NotFound);
        assert!(
            f.message.contains("executable file not found in $PATH"),
            "{}",
            f.message
        );

        k.file("/b/plain", "data");
        let f = exec_args(&mut k, &args(&["plain"]), &args(&["PATH=/a:/b"]));
        assert_eq!(f.kind, FailureKind::NotExecutable);
        assert!(f.message.contains("/b/plain"), "{}", f.message);

        let f = exec_args(&mut k, &args(&["/abs/missing"]), &[]);
        assert_eq!(f.kind, FailureKind::NotFound);
        assert_eq!(execs(&k).last().map(String::as_str), Some("/abs/missing"));
    }

    #[test]
    fn default_path_when_env_has_none() {
        let mut k = RecordingKernel::new();
        exec_args(&mut k, &args(&["x"]), &[]);
        assert_eq!(execs(&k).len(), DEFAULT_PATH.split(':').count());
        assert_eq!(execs(&k)[0], "/usr/local/sbin/x");
    }

    #[test]
    fn start_command_order() {
        let mut k = RecordingKernel::new();
        k.dirs(&["/w"]);
        exe(&mut k, "/bin/sh");
        let mut spec = SandboxSpec::new(RootFs::Dir("/".into()), args(&["sh", "-c", "true"]));
        spec.cwd = "/w".into();
        spec.env = args(&["PATH=/bin"]);
        let creds = Credentials {
            uid: 1000,
            gid: 1000,
            groups: vec![],
            home: "/".into(),
        };
        let f = start_command(&mut k, &spec, &creds);
        assert!(f.message.ends_with("execve recorded"), "{}", f.message);
        let pos = |op: &Op| k.ops.iter().position(|o| o == op).unwrap();
        assert!(pos(&Op::ResetSignals) < pos(&Op::SetUid(1000)));
        assert!(pos(&Op::SetUid(1000)) < pos(&Op::Chdir("/w".into())));
        assert!(pos(&Op::Chdir("/w".into())) < pos(&Op::CloexecFrom(3)));
        assert_eq!(execs(&k), vec!["/bin/sh"]);
    }

    #[test]
    fn missing_cwd_is_a_setup_failure() {
        let mut k = RecordingKernel::new();
        let mut spec = SandboxSpec::new(RootFs::Dir("/".into()), args(&["sh"]));
        spec.cwd = "/missing".into();
        let creds = Credentials {
            uid: 0,
            gid: 0,
            groups: vec![],
            home: "/".into(),
        };
        let f = start_command(&mut k, &spec, &creds);
        assert_eq!(f.kind, FailureKind::Setup);
        assert!(f.message.contains("/missing"));
    }
}
