//! The Dockerfile rules that are pure functions: shell and exec forms,
//! heredoc scripts, WORKDIR resolution, HEALTHCHECK, history text, layer
//! media types per format, the automatic platform ARGs.

use kiln_client::Platform;
use kiln_dockerfile::{Command, CommandLine, Healthcheck, Instruction};

use crate::image::{Format, ImageConfig};

pub(crate) fn scratch_config(platform: &Platform) -> ImageConfig {
    let mut c = ImageConfig {
        architecture: platform.architecture.clone(),
        os: platform.os.clone(),
        variant: platform.variant.clone(),
        ..ImageConfig::default()
    };
    // BuildKit gives scratch images the default PATH.
    c.env_set("PATH", kiln_sandbox::DEFAULT_PATH);
    c
}

pub(crate) fn shell_of(config: &ImageConfig) -> Vec<String> {
    config
        .config
        .shell
        .clone()
        .unwrap_or_else(|| vec!["/bin/sh".to_string(), "-c".to_string()])
}

/// argv of a RUN: exec form as is; shell form through SHELL, with heredoc
/// bodies appended so the shell reads them itself. `RUN <<EOF` alone runs
/// the body as the script.
pub(crate) fn run_args(
    config: &ImageConfig,
    command: &CommandLine,
    heredocs: &[kiln_dockerfile::Heredoc],
) -> Vec<String> {
    match command {
        CommandLine::Exec(v) => v.clone(),
        CommandLine::Shell(text) => {
            let mut v = shell_of(config);
            if heredocs.len() == 1 && is_bare_heredoc(text) {
                v.push(heredocs[0].body());
                return v;
            }
            let mut script = text.clone();
            for h in heredocs {
                script.push('\n');
                script.push_str(&h.content);
                script.push_str(&h.name);
            }
            v.push(script);
            v
        }
    }
}

pub(crate) fn is_bare_heredoc(text: &str) -> bool {
    let t = text.trim();
    t.starts_with("<<") && !t.contains(char::is_whitespace)
}

pub(crate) fn resolve_workdir(current: &str, dir: &str) -> String {
    let joined = if dir.starts_with('/') {
        dir.to_string()
    } else {
        format!("{}/{dir}", if current.is_empty() { "/" } else { current })
    };
    let cleaned = kiln_dockerfile::clean_path(&joined);
    if cleaned.starts_with('/') {
        cleaned
    } else {
        format!("/{cleaned}")
    }
}

pub(crate) fn healthcheck(h: &Healthcheck) -> crate::image::Healthcheck {
    match h {
        Healthcheck::None => crate::image::Healthcheck {
            test: Some(vec!["NONE".to_string()]),
            ..Default::default()
        },
        Healthcheck::Check {
            test,
            interval,
            timeout,
            start_period,
            start_interval,
            retries,
        } => {
            let ns = |d: &Option<std::time::Duration>| {
                d.map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
                    .unwrap_or(0)
            };
            crate::image::Healthcheck {
                test: Some(test.clone()),
                interval: ns(interval),
                timeout: ns(timeout),
                start_period: ns(start_period),
                start_interval: ns(start_interval),
                retries: retries
                    .map(|r| i32::try_from(r).unwrap_or(i32::MAX))
                    .unwrap_or(0),
            }
        }
    }
}

pub(crate) fn created_by(ins: &Instruction) -> String {
    let text = ins.original.trim();
    match &ins.command {
        Command::Run(_) => format!("RUN {}", text.strip_prefix("RUN").unwrap_or(text).trim()),
        _ => text.to_string(),
    }
}

pub(crate) fn media_for_format(media_type: &str, format: Format) -> Option<String> {
    use kiln_oci::media::*;
    let oci = match media_type {
        OCI_LAYER_GZIP | DOCKER_LAYER_GZIP => OCI_LAYER_GZIP,
        OCI_LAYER_TAR | kiln_layer::DOCKER_LAYER_TAR => OCI_LAYER_TAR,
        OCI_LAYER_ZSTD => OCI_LAYER_ZSTD,
        other => return Some(other.to_string()),
    };
    match format {
        Format::Oci => Some(oci.to_string()),
        Format::Docker => match oci {
            OCI_LAYER_GZIP => Some(DOCKER_LAYER_GZIP.to_string()),
            OCI_LAYER_TAR => Some(kiln_layer::DOCKER_LAYER_TAR.to_string()),
            _ => None,
        },
    }
}

pub(crate) fn builtin_arg(p: &Platform, name: &str) -> Option<String> {
    Some(match name {
        "TARGETPLATFORM" | "BUILDPLATFORM" => p.to_string(),
        "TARGETOS" | "BUILDOS" => p.os.clone(),
        "TARGETARCH" | "BUILDARCH" => p.architecture.clone(),
        "TARGETVARIANT" | "BUILDVARIANT" => p.variant.clone().unwrap_or_default(),
        _ => return None,
    })
}
#[cfg(test)]
mod tests {
    use super::*;
    use kiln_dockerfile::Dockerfile;

    fn first_instruction(df: &str) -> Instruction {
        let parsed = Dockerfile::parse(df).unwrap();
        parsed.stages[0].instructions[0].clone()
    }

    fn args_of(df: &str, config: &ImageConfig) -> Vec<String> {
        match first_instruction(df).command {
            Command::Run(r) => run_args(config, &r.command, &r.heredocs),
            other => panic!("not a RUN: {other:?}"),
        }
    }

    #[test]
    fn shell_and_exec_forms() {
        let c = ImageConfig::default();
        assert_eq!(
            args_of("FROM scratch\nRUN echo $HOME\n", &c),
            ["/bin/sh", "-c", "echo $HOME"]
        );
        assert_eq!(
            args_of("FROM scratch\nRUN [\"echo\", \"$HOME\"]\n", &c),
            ["echo", "$HOME"]
        );
        let mut bash = ImageConfig::default();
        bash.config.shell = Some(vec!["/bin/bash".into(), "-ec".into()]);
        assert_eq!(
            args_of("FROM scratch\nRUN true\n", &bash),
            ["/bin/bash", "-ec", "true"]
        );
    }

    #[test]
    fn heredocs_go_to_the_shell() {
        let c = ImageConfig::default();
        // A bare heredoc is the script itself.
        assert_eq!(
            args_of("FROM scratch\nRUN <<EOF\necho a\necho b\nEOF\n", &c),
            ["/bin/sh", "-c", "echo a\necho b\n"]
        );
        // A command with a heredoc gets the body and delimiter appended.
        assert_eq!(
            args_of("FROM scratch\nRUN cat <<EOF > /f\nhi\nEOF\n", &c),
            ["/bin/sh", "-c", "cat <<EOF > /f\nhi\nEOF"]
        );
    }

    #[test]
    fn workdir_resolution() {
        assert_eq!(resolve_workdir("", "app"), "/app");
        assert_eq!(resolve_workdir("/srv", "sub/../x"), "/srv/x");
        assert_eq!(resolve_workdir("/srv", "/abs/"), "/abs");
        assert_eq!(resolve_workdir("/a/b", ".."), "/a");
        assert_eq!(resolve_workdir("/", "../.."), "/");
    }

    #[test]
    fn healthcheck_durations_in_nanoseconds() {
        let ins = first_instruction(
            "FROM scratch\nHEALTHCHECK --interval=30s --timeout=3s --retries=2 CMD [\"true\"]\n",
        );
        let Command::Healthcheck(h) = ins.command else {
            panic!("not a HEALTHCHECK");
        };
        let hc = healthcheck(&h);
        assert_eq!(
            hc.test.as_deref(),
            Some(&["CMD".to_string(), "true".to_string()][..])
        );
        assert_eq!(hc.interval, 30_000_000_000);
        assert_eq!(hc.timeout, 3_000_000_000);
        assert_eq!(hc.retries, 2);
        let none = healthcheck(&Healthcheck::None);
        assert_eq!(none.test.as_deref(), Some(&["NONE".to_string()][..]));
    }

    #[test]
    fn layer_media_types_follow_the_format() {
        use kiln_oci::media::*;
        assert_eq!(
            media_for_format(OCI_LAYER_GZIP, Format::Docker).as_deref(),
            Some(DOCKER_LAYER_GZIP)
        );
        assert_eq!(
            media_for_format(DOCKER_LAYER_GZIP, Format::Oci).as_deref(),
            Some(OCI_LAYER_GZIP)
        );
        assert_eq!(media_for_format(OCI_LAYER_ZSTD, Format::Docker), None);
        assert_eq!(
            media_for_format(OCI_LAYER_ZSTD, Format::Oci).as_deref(),
            Some(OCI_LAYER_ZSTD)
        );
    }

    #[test]
    fn platform_args() {
        let p = Platform::new("linux", "arm64", Some("v8"));
        assert_eq!(
            builtin_arg(&p, "TARGETPLATFORM").as_deref(),
            Some("linux/arm64/v8")
        );
        assert_eq!(builtin_arg(&p, "TARGETARCH").as_deref(), Some("arm64"));
        assert_eq!(builtin_arg(&p, "BUILDVARIANT").as_deref(), Some("v8"));
        assert_eq!(builtin_arg(&p, "HOME"), None);
    }

    #[test]
    fn scratch_has_the_default_path() {
        let c = scratch_config(&Platform::new("linux", "amd64", None));
        assert_eq!(c.env_get("PATH"), Some(kiln_sandbox::DEFAULT_PATH));
        assert_eq!(c.architecture, "amd64");
    }

    #[test]
    fn history_text() {
        let ins = first_instruction("FROM scratch\nRUN   echo hi\n");
        assert_eq!(created_by(&ins), "RUN echo hi");
    }
}
