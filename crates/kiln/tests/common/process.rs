//! Running external programs with timeouts, and owning long-running servers.
//!
//! Every command run through [`RunExt`] is logged to stderr (the test harness
//! shows it only when a test fails), runs in its own process group with a
//! timeout, and returns its captured output. A long-running server is a
//! [`Server`]: its output goes to a log file, it is stopped (SIGTERM to its
//! whole process group, then SIGKILL) when dropped, and a small watchdog
//! process kills it if the test process dies without running destructors
//! (e.g. killed by a test-runner timeout).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rustix::process::{Pid, Signal};

/// Timeout for one client command (a push, a pull, a run ...).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(180);

/// How much of a command's output is echoed into the test log.
const ECHO_LIMIT: usize = 8 * 1024;

/// The captured result of a finished command.
#[derive(Debug, Clone)]
pub struct Output {
    pub cmdline: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// stdout followed by stderr, for matching messages wherever a client
    /// chose to print them.
    pub fn combined(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// Fails unless the command exited with status 0.
    pub fn ok(self) -> Result<Self> {
        if !self.success() {
            bail!(
                "command failed ({}): {}\n{}",
                self.status,
                self.cmdline,
                self.dump()
            );
        }
        Ok(self)
    }

    /// Fails if the command exited with status 0 (for expected failures).
    pub fn fail(self) -> Result<Self> {
        if self.success() {
            bail!(
                "command succeeded but was expected to fail: {}\n{}",
                self.cmdline,
                self.dump()
            );
        }
        Ok(self)
    }

    /// Fails unless the command failed and its output mentions one of
    /// `needles` (case-insensitive).
    pub fn fail_with_any(self, needles: &[&str]) -> Result<Self> {
        let out = self.fail()?;
        let text = out.combined().to_lowercase();
        if !needles.iter().any(|n| text.contains(&n.to_lowercase())) {
            bail!(
                "command failed as expected, but its output mentions none of {needles:?}: {}\n{}",
                out.cmdline,
                out.dump()
            );
        }
        Ok(out)
    }

    /// The last non-empty line of stdout, trimmed.
    pub fn last_line(&self) -> &str {
        self.stdout
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("")
    }

    fn dump(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            tail(&self.stdout, ECHO_LIMIT),
            tail(&self.stderr, ECHO_LIMIT)
        )
    }
}

/// Options for [`RunExt::run_opts`].
#[derive(Debug, Clone)]
pub struct RunOpts {
    pub stdin: Option<Vec<u8>>,
    pub timeout: Duration,
}

impl Default for RunOpts {
    fn default() -> Self {
        Self {
            stdin: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl RunOpts {
    pub fn stdin(data: impl Into<Vec<u8>>) -> Self {
        Self {
            stdin: Some(data.into()),
            ..Self::default()
        }
    }

    pub fn timeout(timeout: Duration) -> Self {
        Self {
            timeout,
            ..Self::default()
        }
    }
}

/// Run a [`Command`] to completion with a timeout, capturing its output.
pub trait RunExt {
    /// Runs the command; returns its output whatever the exit status.
    fn run_opts(&mut self, opts: RunOpts) -> Result<Output>;

    fn run(&mut self) -> Result<Output> {
        self.run_opts(RunOpts::default())
    }

    /// Runs the command and fails unless it exits with status 0.
    fn run_ok(&mut self) -> Result<Output> {
        self.run()?.ok()
    }

    /// Runs the command and fails if it exits with status 0.
    fn run_fail(&mut self) -> Result<Output> {
        self.run()?.fail()
    }
}

impl RunExt for Command {
    fn run_opts(&mut self, opts: RunOpts) -> Result<Output> {
        let cmdline = describe(self);
        eprintln!("$ {cmdline}");
        let start = Instant::now();
        self.stdin(if opts.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
        let mut child = self.spawn().with_context(|| {
            format!("cannot start `{cmdline}` (is it installed? run scripts/install-test-deps.sh)")
        })?;

        let stdin_thread = match (opts.stdin, child.stdin.take()) {
            (Some(data), Some(mut pipe)) => Some(thread::spawn(move || {
                // A client may exit before reading everything; ignore EPIPE.
                let _ = pipe.write_all(&data);
            })),
            _ => None,
        };
        let stdout_thread = child.stdout.take().map(read_in_thread);
        let stderr_thread = child.stderr.take().map(read_in_thread);

        let deadline = start + opts.timeout;
        let mut pause = Duration::from_millis(2);
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break Some(status);
            }
            if Instant::now() >= deadline {
                kill_group(child.id(), Signal::KILL);
                let _ = child.wait();
                break None;
            }
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        };
        // Anything left in the group (a daemonised helper holding our pipes)
        // would keep the readers blocked: the group is ours, end it.
        kill_group(child.id(), Signal::KILL);
        if let Some(t) = stdin_thread {
            let _ = t.join();
        }
        let stdout = join_reader(stdout_thread);
        let stderr = join_reader(stderr_thread);
        let elapsed = start.elapsed();

        let Some(status) = status else {
            bail!(
                "timed out after {:?}: {cmdline}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                opts.timeout,
                tail(&stdout, ECHO_LIMIT),
                tail(&stderr, ECHO_LIMIT)
            );
        };
        eprintln!("  -> {status} in {elapsed:.2?}");
        for (name, text) in [("stdout", &stdout), ("stderr", &stderr)] {
            if !text.trim().is_empty() {
                eprintln!("  {name}: {}", tail(text, ECHO_LIMIT).trim_end());
            }
        }
        Ok(Output {
            cmdline,
            status,
            stdout,
            stderr,
            elapsed,
        })
    }
}

fn read_in_thread<R: Read + Send + 'static>(mut r: R) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

fn join_reader(t: Option<thread::JoinHandle<Vec<u8>>>) -> String {
    t.and_then(|t| t.join().ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// A shell-like rendering of a command, with the environment it sets.
pub fn describe(cmd: &Command) -> String {
    let mut parts = Vec::new();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            parts.push(format!("{}={}", k.to_string_lossy(), v.to_string_lossy()));
        }
    }
    parts.push(cmd.get_program().to_string_lossy().into_owned());
    for a in cmd.get_args() {
        let a = a.to_string_lossy();
        if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'') {
            parts.push(format!("'{}'", a.replace('\'', r"'\''")));
        } else {
            parts.push(a.into_owned());
        }
    }
    parts.join(" ")
}

/// The last `limit` bytes of `s` (on a char boundary).
pub fn tail(s: &str, limit: usize) -> &str {
    if s.len() <= limit {
        return s;
    }
    let mut start = s.len() - limit;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// Sends `sig` to the process group `pgid`; errors (no such group) ignored.
pub fn kill_group(pgid: u32, sig: Signal) {
    if let Some(pid) = i32::try_from(pgid).ok().and_then(Pid::from_raw) {
        let _ = rustix::process::kill_process_group(pid, sig);
    }
}

/// A long-running background process (a registry, a daemon) owned by a test.
///
/// stdout and stderr go to `log`; the process leads its own process group,
/// and the whole group is stopped when the `Server` is dropped.
pub struct Server {
    name: String,
    child: Option<Child>,
    watchdog: Option<Child>,
    log: PathBuf,
    stop_timeout: Duration,
}

impl Server {
    /// Spawns `cmd` with output appended to `log`.
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Result<Self> {
        let cmdline = describe(cmd);
        eprintln!("$ {cmdline} &  (log: {})", log.display());
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open log {}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {name}: `{cmdline}`"))?;
        let watchdog = spawn_watchdog(child.id());
        Ok(Self {
            name: name.to_owned(),
            child: Some(child),
            watchdog,
            log: log.to_owned(),
            stop_timeout: Duration::from_secs(10),
        })
    }

    /// How long [`Server::stop`] waits after SIGTERM before SIGKILL.
    pub fn set_stop_timeout(&mut self, timeout: Duration) {
        self.stop_timeout = timeout;
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The end of the log, for error messages.
    pub fn log_tail(&self) -> String {
        tail(&self.log(), 16 * 1024).to_owned()
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        match self.child.as_mut() {
            Some(c) => c.try_wait().ok().flatten(),
            None => None,
        }
    }

    /// Fails (with the log) if the process has exited.
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.exited() {
            bail!(
                "{} exited unexpectedly ({status}); log {}:\n{}",
                self.name,
                self.log.display(),
                self.log_tail()
            );
        }
        Ok(())
    }

    /// Stops the process group: SIGTERM, then SIGKILL after the stop timeout.
    /// Returns the exit status (None if it had to be killed).
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let pgid = child.id();
        let mut result = None;
        if let Ok(Some(status)) = child.try_wait() {
            result = Some(status);
        } else {
            kill_group(pgid, Signal::TERM);
            let deadline = Instant::now() + self.stop_timeout;
            while Instant::now() < deadline {
                if let Ok(Some(status)) = child.try_wait() {
                    result = Some(status);
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
            if result.is_none() {
                eprintln!(
                    "{}: did not stop within {:?}; killing",
                    self.name, self.stop_timeout
                );
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // Helpers left in the group (e.g. a daemon's children) go too.
        kill_group(pgid, Signal::KILL);
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
        result
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let had_child = self.child.is_some();
        self.stop();
        // Always print: test runners show captured output only for failing
        // tests, and a test returning Err drops its servers before failing.
        if had_child {
            eprintln!(
                "===== {} log ({}) =====\n{}\n===== end of {} log =====",
                self.name,
                self.log.display(),
                self.log_tail(),
                self.name
            );
        }
    }
}

/// Starts a tiny shell loop that ends the process group `pgid` when this
/// test process dies first (destructors do not run when a test runner kills
/// a timed-out test). It lives in its own process group so that the runner's
/// kill does not take it along.
fn spawn_watchdog(pgid: u32) -> Option<Child> {
    let script = r#"
        while kill -0 "$1" 2>/dev/null && kill -0 "$2" 2>/dev/null; do sleep 1; done
        if kill -0 "$2" 2>/dev/null; then
            kill -TERM -"$2" 2>/dev/null; sleep 5; kill -KILL -"$2" 2>/dev/null
        fi
    "#;
    Command::new("/bin/sh")
        .args(["-c", script, "kiln-test-watchdog"])
        .arg(std::process::id().to_string())
        .arg(pgid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .ok()
}

/// Polls `ready` every 50 ms until it returns `Ok(true)`, the server exits,
/// or `timeout` passes.
pub fn wait_until(
    server: &mut Server,
    timeout: Duration,
    what: &str,
    mut ready: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last_err = None;
    loop {
        server.check_running()?;
        match ready() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_err = Some(e),
        }
        if Instant::now() >= deadline {
            bail!(
                "{} not {what} within {timeout:?} (last error: {}); log {}:\n{}",
                server.name(),
                last_err
                    .map(|e| format!("{e:#}"))
                    .unwrap_or_else(|| "none".into()),
                server.log_path().display(),
                server.log_tail()
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Writes `contents` to `path`, creating parent directories.
pub fn write_file(path: &Path, contents: impl AsRef<[u8]>) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).with_context(|| format!("mkdir {}", parent.display()))?;
    }
    let mut f = File::create(path).with_context(|| format!("create {}", path.display()))?;
    f.write_all(contents.as_ref())
        .with_context(|| format!("write {}", path.display()))
}
