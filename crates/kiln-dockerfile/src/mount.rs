//! `RUN --mount=...` options, parsed and validated like BuildKit's
//! `commands_runmount.go`.

use crate::Error;

/// What a `RUN --mount` mounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountType {
    /// A directory of the build context or another stage/image (default).
    Bind,
    /// A persistent cache directory.
    Cache,
    /// An empty tmpfs.
    Tmpfs,
    /// A build secret.
    Secret,
    /// The SSH agent socket.
    Ssh,
}

impl MountType {
    /// The name used in Dockerfiles.
    pub fn as_str(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        }
    }
}

/// How concurrent builds share a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheSharing {
    /// Used by all writers at once (default).
    Shared,
    /// Each writer gets its own copy when the cache is busy.
    Private,
    /// Writers wait for each other.
    Locked,
}

/// One `--mount` of a RUN instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// `type=`.
    pub kind: MountType,
    /// `from=`: a stage name or index, or an image.
    pub from: Option<String>,
    /// `source=`/`src=`.
    pub source: Option<String>,
    /// `target=`/`dst=`/`destination=`.
    pub target: Option<String>,
    /// `readonly`/`ro`/`rw`; defaults to read-only except cache and tmpfs.
    pub readonly: bool,
    /// `id=`.
    pub id: Option<String>,
    /// `sharing=` (cache mounts only).
    pub sharing: Option<CacheSharing>,
    /// `required` (secret and ssh).
    pub required: bool,
    /// `mode=` (octal).
    pub mode: Option<u32>,
    /// `uid=`.
    pub uid: Option<u32>,
    /// `gid=`.
    pub gid: Option<u32>,
    /// `size=` in bytes (tmpfs).
    pub size: Option<u64>,
    /// `env=`: expose a secret as this environment variable.
    pub env: Option<String>,
}

/// Splits one CSV record the way Go's `encoding/csv` reads it.
fn csv_fields(s: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err("extraneous or missing \" in quoted-field".into()),
                    Some('"') => match chars.peek() {
                        Some('"') => {
                            chars.next();
                            field.push('"');
                        }
                        Some(',') | None => break,
                        Some(_) => return Err("extraneous or missing \" in quoted-field".into()),
                    },
                    Some(c) => field.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                if c == '"' {
                    return Err("bare \" in non-quoted-field".into());
                }
                field.push(c);
                chars.next();
            }
        }
        fields.push(field);
        match chars.next() {
            Some(',') => continue,
            _ => return Ok(fields),
        }
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    // Go's strconv.ParseBool.
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Parses sizes like go-units' `RAMInBytes` (`64m`, `1.5GiB`, binary units).
fn ram_in_bytes(v: &str) -> Option<u64> {
    let num_end = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(num_end);
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') {
        return None;
    }
    let n: f64 = num.parse().ok()?;
    let unit = unit.strip_prefix(' ').unwrap_or(unit).to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let mult: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        "p" => 1 << 50,
        _ => return None,
    };
    Some((n * mult as f64) as u64)
}

/// Parses one `--mount` value. `expand` is applied to every option value;
/// with `deferred` set (parsing before expansion), values that still hold a
/// `$` are kept as written in text fields and left unchecked otherwise.
pub(crate) fn parse_mount(
    spec: &str,
    expand: &dyn Fn(&str) -> Result<String, Error>,
    deferred: bool,
) -> Result<Mount, Error> {
    let fields =
        csv_fields(spec).map_err(|e| Error::msg(format!("failed to parse csv mounts: {e}")))?;
    let mut m = Mount {
        kind: MountType::Bind,
        from: None,
        source: None,
        target: None,
        readonly: false,
        id: None,
        sharing: None,
        required: false,
        mode: None,
        uid: None,
        gid: None,
        size: None,
        env: None,
    };
    let mut ro_auto = true;
    for field in &fields {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v)),
            None => (field.to_ascii_lowercase(), None),
        };
        let Some(value) = value else {
            match key.as_str() {
                "readonly" | "ro" => {
                    m.readonly = true;
                    ro_auto = false;
                    continue;
                }
                "readwrite" | "rw" => {
                    m.readonly = false;
                    ro_auto = false;
                    continue;
                }
                "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => {
                    m.required = true;
                    continue;
                }
                "required" => {
                    return Err(Error::msg(format!(
                        "unexpected key '{key}' for mount type '{}'",
                        m.kind.as_str()
                    )));
                }
                _ => {
                    return Err(Error::msg(format!(
                        "invalid field '{field}' must be a key=value pair"
                    )));
                }
            }
        };
        // Stage dependencies are worked out before expansion, so `from`
        // cannot use variables (BuildKit's rule).
        let has_var = value
            .char_indices()
            .any(|(i, c)| c == '$' && value[i + 1..].chars().next().is_some_and(|n| n != '\n'));
        if deferred && key == "from" && has_var {
            return Err(Error::msg(format!(
                "'{key}' doesn't support variable expansion, define alias stage instead"
            )));
        }
        let value = expand(value)?;
        let unresolved = deferred && value.contains('$');
        let invalid = |what: &str| Error::msg(format!("invalid value for {what}: {value}"));
        match key.as_str() {
            "type" if unresolved => {}
            "type" => {
                m.kind = match value.to_ascii_lowercase().as_str() {
                    "bind" => MountType::Bind,
                    "cache" => MountType::Cache,
                    "tmpfs" => MountType::Tmpfs,
                    "secret" => MountType::Secret,
                    "ssh" => MountType::Ssh,
                    _ => {
                        return Err(Error::msg(format!(
                            "unsupported mount type {}",
                            crate::parser::go_quote(&value)
                        )));
                    }
                }
            }
            "from" => m.from = Some(value),
            "source" | "src" => m.source = Some(value),
            "target" | "dst" | "destination" => m.target = Some(value),
            "id" => m.id = Some(value),
            "env" => m.env = Some(value),
            _ if unresolved => {}
            "readonly" | "ro" => {
                m.readonly = parse_bool(&value).ok_or_else(|| invalid(&key))?;
                ro_auto = false;
            }
            "readwrite" | "rw" => {
                m.readonly = !parse_bool(&value).ok_or_else(|| invalid(&key))?;
                ro_auto = false;
            }
            "required" => {
                if !matches!(m.kind, MountType::Secret | MountType::Ssh) {
                    return Err(Error::msg(format!(
                        "unexpected key '{key}' for mount type '{}'",
                        m.kind.as_str()
                    )));
                }
                m.required = parse_bool(&value).ok_or_else(|| invalid(&key))?;
            }
            "sharing" => {
                m.sharing = Some(match value.to_ascii_lowercase().as_str() {
                    "shared" => CacheSharing::Shared,
                    "private" => CacheSharing::Private,
                    "locked" => CacheSharing::Locked,
                    _ => {
                        return Err(Error::msg(format!(
                            "unsupported sharing value {}",
                            crate::parser::go_quote(&value)
                        )));
                    }
                })
            }
            "mode" => {
                m.mode = Some(
                    u32::from_str_radix(&value, 8)
                        .map_err(|_| Error::msg(format!("invalid value {value} for mode")))?,
                )
            }
            "uid" => {
                m.uid = Some(
                    value
                        .parse()
                        .map_err(|_| Error::msg(format!("invalid value {value} for uid")))?,
                )
            }
            "gid" => {
                m.gid = Some(
                    value
                        .parse()
                        .map_err(|_| Error::msg(format!("invalid value {value} for gid")))?,
                )
            }
            "size" => {
                if m.kind != MountType::Tmpfs {
                    return Err(Error::msg(format!(
                        "size not allowed for {} type mounts",
                        crate::parser::go_quote(m.kind.as_str())
                    )));
                }
                m.size = Some(
                    ram_in_bytes(&value)
                        .ok_or_else(|| Error::msg(format!("invalid value {value} for size")))?,
                )
            }
            _ => {
                return Err(Error::msg(format!("unexpected key '{key}' in '{field}'")));
            }
        }
    }
    let file_info_allowed = matches!(
        m.kind,
        MountType::Secret | MountType::Ssh | MountType::Cache
    );
    for (set, what) in [
        (m.mode.is_some(), "mode"),
        (m.uid.is_some(), "uid"),
        (m.gid.is_some(), "gid"),
    ] {
        if set && !file_info_allowed {
            return Err(Error::msg(format!(
                "{what} not allowed for {} type mounts",
                crate::parser::go_quote(m.kind.as_str())
            )));
        }
    }
    if ro_auto {
        m.readonly = !matches!(m.kind, MountType::Cache | MountType::Tmpfs);
    }
    if m.sharing.is_some() && m.kind != MountType::Cache {
        return Err(Error::msg(format!(
            "invalid cache sharing set for {} mount",
            m.kind.as_str()
        )));
    }
    // BuildKit refuses this when it converts the RUN; the mount is already
    // known to be wrong here, with the Dockerfile line at hand.
    if m.kind == MountType::Ssh && m.source.is_some() {
        return Err(Error::msg("ssh does not support source"));
    }
    if m.kind == MountType::Secret {
        if m.from.is_some() {
            return Err(Error::msg("secret mount should not have a from"));
        }
        if m.source.is_none() && m.target.is_none() && m.id.is_none() && m.env.is_none() {
            return Err(Error::msg(
                "invalid secret mount. one of source, target required",
            ));
        }
        if m.source.is_some() && m.id.is_some() {
            return Err(Error::msg("both source and id can't be set"));
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Mount, Error> {
        parse_mount(s, &|v| Ok(v.to_string()), true)
    }

    #[test]
    fn cache_mount() {
        let m =
            p("type=cache,target=/root/.cache,id=pip,sharing=locked,mode=0755,uid=1000,gid=1000")
                .unwrap();
        assert_eq!(m.kind, MountType::Cache);
        assert_eq!(m.target.as_deref(), Some("/root/.cache"));
        assert_eq!(m.sharing, Some(CacheSharing::Locked));
        assert_eq!(m.mode, Some(0o755));
        assert_eq!((m.uid, m.gid), (Some(1000), Some(1000)));
        assert!(!m.readonly);
    }

    #[test]
    fn bind_defaults_read_only() {
        let m = p("target=/src,from=builder,source=/out").unwrap();
        assert_eq!(m.kind, MountType::Bind);
        assert!(m.readonly);
        assert!(!p("type=bind,dst=/x,rw").unwrap().readonly);
        assert!(!p("type=bind,dst=/x,readonly=false").unwrap().readonly);
    }

    #[test]
    fn secret_ssh_tmpfs() {
        let m = p("type=secret,id=tok,env=TOKEN,required").unwrap();
        assert!(m.required && m.env.as_deref() == Some("TOKEN"));
        assert!(p("type=secret").is_err());
        assert!(p("type=secret,id=a,source=b").is_err());
        assert!(p("type=ssh,required=true").unwrap().required);
        assert_eq!(
            p("type=tmpfs,target=/t,size=64m").unwrap().size,
            Some(64 << 20)
        );
        assert!(p("type=bind,target=/t,size=64m").is_err());
    }

    #[test]
    fn ssh_options_parse_like_buildkit() {
        // Defaults are BuildKit's at conversion time: id "default", target
        // /run/buildkit/ssh_agent.N, mode 0600, owner 0:0; unset here.
        let m = p("type=ssh").unwrap();
        assert_eq!(m.kind, MountType::Ssh);
        assert_eq!((m.id.as_deref(), m.target.as_deref()), (None, None));
        assert!(!m.required);
        assert_eq!((m.mode, m.uid, m.gid), (None, None, None));
        let m =
            p("type=ssh,id=gitlab,dst=/tmp/agent.sock,required=true,mode=0640,uid=1000,gid=100")
                .unwrap();
        assert_eq!(m.id.as_deref(), Some("gitlab"));
        assert_eq!(m.target.as_deref(), Some("/tmp/agent.sock"));
        assert!(m.required);
        assert_eq!((m.mode, m.uid, m.gid), (Some(0o640), Some(1000), Some(100)));
        assert!(p("type=ssh,required").unwrap().required);
        assert!(!p("type=ssh,required=false").unwrap().required);
        assert!(p("type=ssh,required=maybe").is_err());
        assert!(p("type=ssh,mode=9").is_err());
        assert!(p("type=ssh,uid=-1").is_err());
        assert_eq!(
            p("type=ssh,source=/x").unwrap_err().message,
            "ssh does not support source"
        );
        assert!(p("type=ssh,sharing=locked").is_err());
        assert!(p("type=ssh,size=1m").is_err());
        // `required` is only known once the type is: BuildKit reads in order.
        assert!(p("required,type=ssh").is_err());
    }

    #[test]
    fn rejects() {
        assert!(
            p("type=nfs")
                .unwrap_err()
                .message
                .contains("unsupported mount type")
        );
        assert!(
            p("type=bind,uid=1")
                .unwrap_err()
                .message
                .contains("uid not allowed")
        );
        assert!(p("type=bind,sharing=shared").is_err());
        assert!(p("required").is_err());
        assert!(
            p("bogus=1")
                .unwrap_err()
                .message
                .contains("unexpected key 'bogus'")
        );
        assert!(
            p("from=$STAGE")
                .unwrap_err()
                .message
                .contains("doesn't support variable expansion")
        );
        assert!(p("target").is_err());
    }

    #[test]
    fn csv_quoting() {
        let m = p("type=bind,\"target=/a,b\"").unwrap();
        assert_eq!(m.target.as_deref(), Some("/a,b"));
        assert!(p("target=/a\"b").is_err());
    }
}
