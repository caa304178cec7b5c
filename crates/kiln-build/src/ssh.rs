//! `RUN --mount=type=ssh`: the agents a build may use (`--ssh`), where a
//! RUN's ssh mounts go (BuildKit's defaults), and the socket kiln serves to
//! the sandbox for each of them.
//!
//! The sandbox never sees the caller's agent socket itself: kiln listens on
//! a socket of its own, owned and with the mode the mount asks for, and
//! answers from its keys or passes listing and signing requests on to the
//! forwarded agent (BuildKit does the same through its session).

use std::collections::BTreeMap;
use std::os::unix::fs::FileTypeExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::UnixStream;

use crate::error::{BuildError, io_err};
use crate::options::SshSource;
use crate::sshagent::{self, AgentKey};

/// The id of an ssh mount that names none, and of `--ssh default`.
pub const DEFAULT_ID: &str = "default";

/// What an `--ssh` id stands for.
#[derive(Debug, Clone)]
pub enum Agent {
    /// An agent's socket, forwarded read-only.
    Forward(PathBuf),
    /// Keys read from files, served by kiln.
    Keys(Arc<Vec<AgentKey>>),
}

/// Checks the `--ssh` values and reads their key files, so that a wrong
/// path fails the build before any step runs, as with BuildKit.
pub fn resolve(sources: &[SshSource]) -> Result<BTreeMap<String, Agent>, BuildError> {
    let mut agents = BTreeMap::new();
    for source in sources {
        let err = |message: String| BuildError::Ssh {
            id: source.id.clone(),
            message,
        };
        if agents.contains_key(&source.id) {
            return Err(err("given twice".to_string()));
        }
        if source.paths.is_empty() {
            return Err(err("no agent socket or key file given".to_string()));
        }
        let mut files = Vec::new();
        for path in &source.paths {
            let meta =
                std::fs::metadata(path).map_err(|e| err(format!("{}: {e}", path.display())))?;
            if meta.file_type().is_socket() && source.paths.len() > 1 {
                return Err(err(format!(
                    "{} is an agent socket: a socket must be the only source of an id",
                    path.display()
                )));
            }
            files.push((path, meta.file_type().is_socket()));
        }
        let agent = match files.as_slice() {
            [(path, true)] => Agent::Forward(path.to_path_buf()),
            _ => {
                let mut keys = Vec::new();
                for (path, _) in files {
                    let text =
                        std::fs::read(path).map_err(|e| err(format!("{}: {e}", path.display())))?;
                    let key = AgentKey::from_openssh(&text)
                        .map_err(|e| err(format!("{}: {e}", path.display())))?;
                    keys.push(key);
                }
                Agent::Keys(Arc::new(keys))
            }
        };
        agents.insert(source.id.clone(), agent);
    }
    Ok(agents)
}

/// One `--mount=type=ssh` of a RUN with BuildKit's defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshMount {
    pub id: String,
    pub target: String,
    pub required: bool,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

/// The ssh mounts among `mounts`, in order: id `default`, target
/// `/run/buildkit/ssh_agent.N` (N counting the RUN's ssh mounts, whether
/// they name a target or not), owner 0:0, mode 0600 — BuildKit's
/// `dispatchSSH` and `ExecOp.Marshal`.
pub fn ssh_mounts(mounts: &[kiln_dockerfile::Mount]) -> Vec<SshMount> {
    mounts
        .iter()
        .filter(|m| m.kind == kiln_dockerfile::MountType::Ssh)
        .enumerate()
        .map(|(n, m)| SshMount {
            id: m
                .id
                .clone()
                .filter(|id| !id.is_empty())
                .unwrap_or_else(|| DEFAULT_ID.to_string()),
            target: m
                .target
                .clone()
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| format!("/run/buildkit/ssh_agent.{n}")),
            required: m.required,
            uid: m.uid.unwrap_or(0),
            gid: m.gid.unwrap_or(0),
            mode: m.mode.unwrap_or(0o600),
        })
        .collect()
}

/// The `SSH_AUTH_SOCK=` entry BuildKit adds to a RUN with ssh mounts: the
/// first mount's target, whatever it is, unless the environment already
/// sets the variable. It is added whether or not an optional agent was
/// given, as BuildKit decides it before knowing.
pub fn auth_sock_env(env: &[String], mounts: &[SshMount]) -> Option<String> {
    let first = mounts.first()?;
    let set = env
        .iter()
        .any(|kv| kv.split_once('=').map(|(k, _)| k) == Some("SSH_AUTH_SOCK"));
    (!set).then(|| format!("SSH_AUTH_SOCK={}", first.target))
}

/// A socket kiln serves for one RUN; it stops serving, with every
/// connection, when dropped.
pub struct AgentSocket {
    task: tokio::task::JoinHandle<()>,
}

impl AgentSocket {
    /// Listens on `path` (which must not exist), owned by `uid`:`gid` with
    /// `mode`. Needs a tokio runtime.
    pub fn start(
        agent: &Agent,
        path: &Path,
        uid: u32,
        gid: u32,
        mode: u32,
    ) -> Result<AgentSocket, BuildError> {
        use std::os::unix::fs::PermissionsExt as _;
        let listener = tokio::net::UnixListener::bind(path).map_err(|e| io_err(path, e))?;
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|e| io_err(path, e))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| io_err(path, e))?;
        let agent = agent.clone();
        let task = tokio::spawn(async move {
            // Dropped with the task: aborting it ends every connection.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((conn, _)) => {
                            conns.spawn(serve(conn, agent.clone()));
                        }
                        Err(_) => break,
                    },
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Ok(AgentSocket { task })
    }
}

impl Drop for AgentSocket {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One client of the socket: request, answer, until it hangs up or breaks
/// the protocol.
async fn serve(mut conn: UnixStream, agent: Agent) {
    let mut upstream: Option<UnixStream> = None;
    while let Some(msg) = read_message(&mut conn).await {
        let reply = match &agent {
            Agent::Keys(keys) => {
                // Signing is a few microseconds: no need for a blocking thread.
                sshagent::answer(keys, &msg)
            }
            Agent::Forward(path) if sshagent::forwardable(&msg) => {
                match forward(&mut upstream, path, &msg).await {
                    Some(reply) => reply,
                    None => {
                        // The next request gets a new connection.
                        upstream = None;
                        vec![sshagent::FAILURE]
                    }
                }
            }
            Agent::Forward(_) => vec![sshagent::FAILURE],
        };
        if conn.write_all(&sshagent::frame(&reply)).await.is_err() {
            return;
        }
    }
}

async fn forward(upstream: &mut Option<UnixStream>, path: &Path, msg: &[u8]) -> Option<Vec<u8>> {
    if upstream.is_none() {
        *upstream = Some(UnixStream::connect(path).await.ok()?);
    }
    let conn = upstream.as_mut()?;
    conn.write_all(&sshagent::frame(msg)).await.ok()?;
    read_message(conn).await
}

async fn read_message(conn: &mut UnixStream) -> Option<Vec<u8>> {
    let mut prefix = [0u8; 4];
    conn.read_exact(&mut prefix).await.ok()?;
    let len = sshagent::message_len(prefix)?;
    let mut msg = vec![0u8; len];
    conn.read_exact(&mut msg).await.ok()?;
    Some(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mounts(specs: &[&str]) -> Vec<kiln_dockerfile::Mount> {
        let text = specs
            .iter()
            .map(|s| format!("--mount={s} "))
            .collect::<String>();
        let df =
            kiln_dockerfile::Dockerfile::parse(&format!("FROM scratch\nRUN {text}true\n")).unwrap();
        let ins = &df.stages[0].instructions[0];
        match &ins.command {
            kiln_dockerfile::Command::Run(r) => r.mounts.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults_are_buildkits() {
        let m = ssh_mounts(&mounts(&[
            "type=ssh",
            "type=cache,target=/c",
            "type=ssh,id=git,target=/tmp/git.sock,required,uid=1000,gid=100,mode=0660",
            "type=ssh,id=other",
        ]));
        assert_eq!(
            m,
            vec![
                SshMount {
                    id: "default".into(),
                    target: "/run/buildkit/ssh_agent.0".into(),
                    required: false,
                    uid: 0,
                    gid: 0,
                    mode: 0o600,
                },
                SshMount {
                    id: "git".into(),
                    target: "/tmp/git.sock".into(),
                    required: true,
                    uid: 1000,
                    gid: 100,
                    mode: 0o660,
                },
                SshMount {
                    id: "other".into(),
                    target: "/run/buildkit/ssh_agent.2".into(),
                    required: false,
                    uid: 0,
                    gid: 0,
                    mode: 0o600,
                },
            ]
        );
        assert!(ssh_mounts(&mounts(&["type=tmpfs,target=/t"])).is_empty());
    }

    #[test]
    fn auth_sock_is_the_first_target_unless_set() {
        let m = ssh_mounts(&mounts(&["type=ssh,target=/a.sock", "type=ssh"]));
        assert_eq!(
            auth_sock_env(&["PATH=/bin".into()], &m).as_deref(),
            Some("SSH_AUTH_SOCK=/a.sock")
        );
        assert_eq!(auth_sock_env(&["SSH_AUTH_SOCK=/mine".into()], &m), None);
        assert_eq!(auth_sock_env(&[], &[]), None);
    }

    #[test]
    fn resolve_sorts_sockets_from_keys() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("agent.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let bogus = dir.path().join("bogus");
        std::fs::write(&bogus, "not a key").unwrap();
        let src = |id: &str, paths: &[&Path]| SshSource {
            id: id.into(),
            paths: paths.iter().map(|p| p.to_path_buf()).collect(),
        };
        let agents = resolve(&[src("default", &[&sock])]).unwrap();
        assert!(matches!(&agents["default"], Agent::Forward(p) if *p == sock));
        let msg = |sources: &[SshSource]| resolve(sources).unwrap_err().to_string();
        let e = msg(&[src("k", &[&bogus])]);
        assert!(
            e.starts_with("--ssh k: ") && e.contains("bogus: not an unencrypted OpenSSH"),
            "{e}"
        );
        let e = msg(&[src("k", &[&dir.path().join("missing")])]);
        assert!(e.contains("missing: No such file"), "{e}");
        let e = msg(&[src("k", &[&sock, &bogus])]);
        assert!(e.contains("must be the only source"), "{e}");
        let e = msg(&[src("a", &[&sock]), src("a", &[&sock])]);
        assert!(e.contains("--ssh a: given twice"), "{e}");
        let e = msg(&[src("a", &[])]);
        assert!(e.contains("no agent socket or key file"), "{e}");
    }

    async fn request(sock: &Path, msg: &[u8]) -> Vec<u8> {
        let mut conn = UnixStream::connect(sock).await.unwrap();
        conn.write_all(&sshagent::frame(msg)).await.unwrap();
        read_message(&mut conn).await.unwrap()
    }

    #[tokio::test]
    async fn serves_its_keys_on_a_socket_owned_as_asked() {
        use std::os::unix::fs::MetadataExt as _;
        let dir = tempfile::tempdir().unwrap();
        let key = AgentKey::from_openssh(crate::sshagent::tests::ED25519.as_bytes()).unwrap();
        let agent = Agent::Keys(Arc::new(vec![key]));
        let sock = dir.path().join("a.sock");
        let uid = rustix::process::geteuid().as_raw();
        let gid = rustix::process::getegid().as_raw();
        let served = AgentSocket::start(&agent, &sock, uid, gid, 0o640).unwrap();
        let meta = std::fs::metadata(&sock).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.mode() & 0o7777, 0o640);
        let answer = request(&sock, &[sshagent::REQUEST_IDENTITIES]).await;
        assert_eq!(&answer[..5], &[sshagent::IDENTITIES_ANSWER, 0, 0, 0, 1]);
        // Adding a key is refused.
        assert_eq!(request(&sock, &[17, 0]).await, vec![sshagent::FAILURE]);
        // An open connection ends with the socket.
        let mut open = UnixStream::connect(&sock).await.unwrap();
        drop(served);
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), open.read(&mut buf))
            .await
            .unwrap();
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    }

    #[tokio::test]
    async fn forwards_only_listing_and_signing() {
        let dir = tempfile::tempdir().unwrap();
        let upstream_path = dir.path().join("upstream.sock");
        let upstream = tokio::net::UnixListener::bind(&upstream_path).unwrap();
        // The caller's agent: records what reaches it, answers each with 6.
        let seen = tokio::spawn(async move {
            let (mut conn, _) = upstream.accept().await.unwrap();
            let mut seen = Vec::new();
            while let Some(msg) = read_message(&mut conn).await {
                seen.push(msg[0]);
                conn.write_all(&sshagent::frame(&[6])).await.unwrap();
            }
            seen
        });
        let sock = dir.path().join("a.sock");
        let served = AgentSocket::start(
            &Agent::Forward(upstream_path.clone()),
            &sock,
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw(),
            0o600,
        )
        .unwrap();
        let mut conn = UnixStream::connect(&sock).await.unwrap();
        for (msg, want) in [
            (vec![sshagent::REQUEST_IDENTITIES], 6),
            (vec![17, 0, 0, 0, 0], sshagent::FAILURE),
            (vec![sshagent::SIGN_REQUEST, 1, 2], 6),
            (vec![22, 0, 0, 0, 0], sshagent::FAILURE),
            (vec![19], sshagent::FAILURE),
        ] {
            conn.write_all(&sshagent::frame(&msg)).await.unwrap();
            assert_eq!(
                read_message(&mut conn).await.unwrap(),
                vec![want],
                "{msg:?}"
            );
        }
        drop(conn);
        drop(served);
        let seen = tokio::time::timeout(std::time::Duration::from_secs(10), seen)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            seen,
            vec![sshagent::REQUEST_IDENTITIES, sshagent::SIGN_REQUEST]
        );
    }
}
