//! The commands of automatic rebuilds: which images hold a package
//! (`images-with`), a build's family (`lineage`), reporting updated packages
//! (`package-update`), what they would rebuild (`rebuild-plan`), what kiln
//! did about them (`events`, `event-info`), and which tags take rebuilds
//! (`list-tags`, `edit-tag`). Each is one or two calls of the hub's API;
//! the text is made by the pure functions below, `--json` prints the
//! records.

use std::io::{self, Write};

use anyhow::Result;
use kiln_hub::api::protocol::{
    BuildSummary, ImageMatch, ImagesQuery, Lineage, LineageNode, PackageUpdate,
    PackageUpdateAnswer, PlanView, PlannedImage, RebuildEventFilter, RebuildEventInfo, TagSettings,
};
use kiln_hub::domain::rpmver::{Nevra, PackageQuery};
use kiln_hub::model::{RebuildEvent, RebuildEventState, RebuildTrigger, TagInfo, Target};

use crate::hub_cmd::{HubArgs, connect, is_broken_pipe, or_dash, table};

#[derive(clap::Subcommand, Debug)]
pub enum RebuildCommand {
    /// List the images that hold a package (the latest on each tag).
    ///
    /// A version comparison finds only older (or newer) versions of it:
    /// quote it (`'openssl<3.0.9-2'`) or give NAME OP EVR as three words.
    ImagesWith {
        /// `NAME`, or `NAME<OP>[EPOCH:]VERSION[-RELEASE]` with OP one of
        /// `<`, `<=`, `=`, `>=`, `>`.
        #[arg(value_name = "PACKAGE[<OP>EVR]", required = true, num_args = 1..)]
        query: Vec<String>,
        /// Only the latest images on this tag.
        #[arg(long)]
        tag: Option<String>,
        /// Every complete build, not only the latest ones on the tags.
        #[arg(long)]
        all: bool,
        /// NAME is a source package: match every binary package built
        /// from it (`openssl` finds openssl-libs too).
        #[arg(long)]
        source: bool,
        /// Print the records as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a build's parent images and the builds made FROM it, as a tree.
    ///
    /// The tree starts at the oldest ancestor (the base image) and marks the
    /// build asked about; each build shows its state.
    Lineage {
        /// Build id or N-V-R.
        build: String,
        /// Print the records as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Report updated packages: their images are rebuilt (admin).
    ///
    /// The latest images holding older versions, on tags that take
    /// automatic rebuilds, are rebuilt, and the images built on them after
    /// them. Reporting the same packages again changes nothing.
    PackageUpdate {
        /// `NAME-[EPOCH:]VERSION-RELEASE.ARCH`, e.g. `openssl-1:3.0.9-2.fc40.x86_64`.
        #[arg(value_name = "NEVRA", required = true, value_parser = parse_nevra)]
        packages: Vec<String>,
        /// The repository the updates come from (for the record).
        #[arg(long)]
        repo: Option<String>,
        /// Print the records as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show what updated packages would rebuild (a dry run).
    ///
    /// The images in build order (batch 0 first), the ones reached but not
    /// rebuilt and why, and the updates no image needs; nothing is recorded.
    RebuildPlan {
        /// `NAME-[EPOCH:]VERSION-RELEASE.ARCH`.
        #[arg(value_name = "NEVRA", required = true, value_parser = parse_nevra)]
        packages: Vec<String>,
        /// Print the records as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List rebuild events (package updates, new parent builds), newest first.
    Events {
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(RebuildEventState::ALL.map(RebuildEventState::as_str)))]
        state: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        /// Print the records as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a rebuild event and each image it rebuilds.
    EventInfo {
        id: i64,
        /// Print the records as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the tags and whether their images take automatic rebuilds.
    ListTags {
        /// Print the records as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Turn automatic rebuilds of a tag's images on or off (admin).
    EditTag {
        tag: String,
        /// Rebuild the latest images on the tag when a package in them or
        /// their parent image is updated.
        #[arg(long, value_name = "true|false", action = clap::ArgAction::Set, required = true)]
        autorebuild: bool,
    },
}

fn parse_nevra(s: &str) -> Result<String, String> {
    Nevra::parse(s)
        .map(|_| s.to_string())
        .map_err(|e| format!("{e} (NAME-[EPOCH:]VERSION-RELEASE.ARCH)"))
}

/// Runs one command; the exit code as in `hub_cmd::run` (2: a usage error
/// found after parsing).
pub async fn run(args: HubArgs, cmd: RebuildCommand) -> Result<i32> {
    match run_command(args, cmd).await {
        Err(e) if is_broken_pipe(&e) => Ok(0),
        other => other,
    }
}

/// The records as JSON, in their fields' order (a macro: the bound would
/// name serde, which this crate does not depend on).
macro_rules! print_json {
    ($value:expr) => {
        print(&format!("{}\n", serde_json::to_string_pretty(&$value)?))
    };
}

fn print(text: &str) -> Result<()> {
    io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}

async fn run_command(args: HubArgs, cmd: RebuildCommand) -> Result<i32> {
    let client = connect(&args)?;
    match cmd {
        RebuildCommand::ImagesWith {
            query,
            tag,
            all,
            source,
            json,
        } => {
            let query = query.join(" ");
            if let Err(e) = PackageQuery::parse(query.trim()) {
                eprintln!("{e}");
                return Ok(2);
            }
            let q = ImagesQuery {
                package: query.trim().to_string(),
                tag: tag.clone(),
                all: all.then_some(true),
                source: source.then_some(true),
            };
            let found = client.images_with(&q).await?;
            if json {
                print_json!(found)?;
            } else if found.is_empty() {
                eprintln!("{}", no_images(&q));
            } else {
                print(&images_table(&found))?;
            }
            Ok(0)
        }
        RebuildCommand::Lineage { build, json } => {
            let l = client.lineage(&build).await?;
            if json {
                print_json!(l)?;
            } else {
                print(&lineage_tree(&l))?;
            }
            Ok(0)
        }
        RebuildCommand::PackageUpdate {
            packages,
            repo,
            json,
        } => {
            let answer = client
                .package_update(&PackageUpdate { packages, repo })
                .await?;
            if json {
                print_json!(answer)?;
            } else {
                print(&update_answer(&answer))?;
            }
            Ok(0)
        }
        RebuildCommand::RebuildPlan { packages, json } => {
            let plan = client.rebuild_plan(&packages).await?;
            if json {
                print_json!(plan)?;
            } else {
                print(&plan_text(&plan))?;
            }
            Ok(0)
        }
        RebuildCommand::Events { state, limit, json } => {
            let events = client
                .rebuild_events(&RebuildEventFilter { state, limit })
                .await?;
            if json {
                print_json!(events)?;
            } else {
                print(&events_table(&events))?;
            }
            Ok(0)
        }
        RebuildCommand::EventInfo { id, json } => {
            let info = client.rebuild_event(id).await?;
            if json {
                print_json!(info)?;
            } else {
                print(&event_info(&info))?;
            }
            Ok(0)
        }
        RebuildCommand::ListTags { json } => {
            let tags = client.list_tags().await?;
            if json {
                print_json!(tags)?;
            } else {
                let targets = client.list_targets().await?;
                print(&tags_table(&tags, &targets))?;
            }
            Ok(0)
        }
        RebuildCommand::EditTag { tag, autorebuild } => {
            let info = client.set_tag(&tag, &TagSettings { autorebuild }).await?;
            print(&format!(
                "tag {}: autorebuild {}\n",
                info.name,
                on_off(info.autorebuild)
            ))?;
            if !info.autorebuild {
                let targets = client.list_targets().await?;
                let still = opted_in_targets(&info.name, &targets);
                if !still.is_empty() {
                    eprintln!(
                        "note: its images are still rebuilt: target {} sends its builds there with autorebuild on",
                        still.join(", ")
                    );
                }
            }
            Ok(0)
        }
    }
}

// -------------------------------------------------------------- output --

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

/// What `images-with` says on stderr when nothing matched.
fn no_images(q: &ImagesQuery) -> String {
    let mut s = if q.source == Some(true) {
        format!("no images hold packages built from {}", q.package)
    } else {
        format!("no images hold {}", q.package)
    };
    if let Some(tag) = q.tag.as_deref().filter(|t| !t.is_empty()) {
        s.push_str(&format!(" on tag {tag}"));
    }
    if q.all != Some(true) {
        s.push_str(" (latest images on each tag; --all for every build)");
    }
    s
}

fn images_table(found: &[ImageMatch]) -> String {
    let rows: Vec<Vec<String>> = found
        .iter()
        .map(|m| {
            vec![
                or_dash(&m.nvr).to_string(),
                m.build_id.to_string(),
                m.package.clone(),
                or_dash(&m.tags.join(",")).to_string(),
            ]
        })
        .collect();
    table(&["NVR", "BUILD", "PACKAGE", "TAGS"], &rows)
}

fn summary_label(b: &BuildSummary) -> String {
    format!(
        "{} (build {}, {})",
        b.nvr.as_deref().unwrap_or("-"),
        b.id,
        b.state
    )
}

/// The lineage as one tree from the oldest ancestor: each generation one
/// level deeper, the build asked about marked, its descendants below it.
fn lineage_tree(l: &Lineage) -> String {
    let mut s = String::new();
    // The API lists ancestors parent first; the tree starts at the base.
    let chain: Vec<&BuildSummary> = l.ancestors.iter().rev().collect();
    let mut indent = String::new();
    for (i, b) in chain.iter().chain(std::iter::once(&&l.build)).enumerate() {
        let branch = if i == 0 { "" } else { "└── " };
        s.push_str(&format!("{indent}{branch}{}", summary_label(b)));
        if b.id == l.build.id {
            s.push_str("  ◀ this build");
        }
        s.push('\n');
        if i > 0 {
            indent.push_str("    ");
        }
    }
    children_tree(&mut s, &l.children, &indent);
    s
}

fn children_tree(s: &mut String, nodes: &[LineageNode], indent: &str) {
    for (i, node) in nodes.iter().enumerate() {
        let last = i + 1 == nodes.len();
        let (branch, more) = if last {
            ("└── ", "    ")
        } else {
            ("├── ", "│   ")
        };
        s.push_str(&format!("{indent}{branch}{}\n", summary_label(&node.build)));
        children_tree(s, &node.children, &format!("{indent}{more}"));
    }
}

fn update_answer(a: &PackageUpdateAnswer) -> String {
    let mut s = if a.duplicate {
        format!("event {} already recorded (duplicate)\n", a.event.id)
    } else {
        format!("event {} created\n", a.event.id)
    };
    s.push_str(&format!("state: {}\n", a.event.state));
    if let Some(m) = &a.event.message {
        s.push_str(&format!("message: {m}\n"));
    }
    s
}

fn planned_line(p: &PlannedImage) -> String {
    let name = p.nvr.as_deref().unwrap_or(&p.repository);
    let why = if p.reasons.is_empty() {
        String::new()
    } else {
        format!(" — {}", p.reasons.join("; "))
    };
    format!("  {name} (build {}){why}\n", p.build_id)
}

fn plan_text(plan: &PlanView) -> String {
    let mut s = String::new();
    if plan.batches.is_empty() {
        s.push_str("nothing to rebuild\n");
    }
    for (i, batch) in plan.batches.iter().enumerate() {
        s.push_str(&format!("batch {i}:\n"));
        for p in batch {
            s.push_str(&planned_line(p));
        }
    }
    if !plan.skipped.is_empty() {
        s.push_str("skipped:\n");
        for p in &plan.skipped {
            let name = p.nvr.as_deref().unwrap_or(&p.repository);
            let mut why = vec![p.skipped.clone().unwrap_or_else(|| "skipped".into())];
            if !p.reasons.is_empty() {
                why.push(format!("would be rebuilt: {}", p.reasons.join("; ")));
            }
            s.push_str(&format!(
                "  {name} (build {}) — {}\n",
                p.build_id,
                why.join("; ")
            ));
        }
    }
    if !plan.no_effect.is_empty() {
        s.push_str("no effect (no image takes rebuilds and holds an older version):\n");
        for u in &plan.no_effect {
            s.push_str(&format!("  {u}\n"));
        }
    }
    for cycle in &plan.cycles {
        let ids: Vec<String> = cycle.iter().map(ToString::to_string).collect();
        s.push_str(&format!(
            "parent records loop: builds {}\n",
            ids.join(" → ")
        ));
    }
    s
}

/// The updates of a package event, or the build that started a parent one.
fn event_what(e: &RebuildEvent) -> String {
    match (e.trigger, e.trigger_build_id) {
        (RebuildTrigger::ParentBuild, Some(b)) => match e.replaced_build_id {
            Some(old) => format!("parent build {b} (replaces {old})"),
            None => format!("parent build {b}"),
        },
        _ => or_dash(&e.updates.join(",")).to_string(),
    }
}

fn events_table(events: &[RebuildEvent]) -> String {
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            vec![
                e.id.to_string(),
                e.trigger.to_string(),
                e.state.to_string(),
                event_what(e),
                e.created_at.clone(),
                e.message.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table(
        &["ID", "TRIGGER", "STATE", "UPDATES", "CREATED", "MESSAGE"],
        &rows,
    )
}

fn event_info(info: &RebuildEventInfo) -> String {
    let e = &info.event;
    let mut lines: Vec<(&str, String)> = vec![
        ("Event", e.id.to_string()),
        ("Trigger", e.trigger.to_string()),
        ("State", e.state.to_string()),
    ];
    match e.trigger {
        RebuildTrigger::ParentBuild => lines.push(("Parent", event_what(e))),
        _ => {
            let mut updates = e.updates.iter();
            lines.push((
                "Updates",
                updates.next().cloned().unwrap_or_else(|| "-".into()),
            ));
            lines.extend(updates.map(|u| ("", u.clone())));
        }
    }
    if let Some(repo) = &e.repo {
        lines.push(("Repo", repo.clone()));
    }
    lines.extend([
        ("Submitter", e.submitter.clone()),
        ("Message", e.message.clone().unwrap_or_else(|| "-".into())),
        ("Created", e.created_at.clone()),
        ("Updated", e.updated_at.clone()),
        ("Items", info.items.len().to_string()),
    ]);
    let mut s = String::new();
    for (k, v) in lines {
        let key = if k.is_empty() {
            String::new()
        } else {
            format!("{k}:")
        };
        s.push_str(&format!("{key:<11}{v}\n"));
    }
    for it in &info.items {
        let item = &it.item;
        let original = it.original_nvr.clone().unwrap_or_else(|| "-".into());
        let rebuild = match (item.build_id, &it.build_nvr) {
            (Some(b), Some(nvr)) => format!("{nvr} (build {b})"),
            (Some(b), None) => format!("build {b}"),
            (None, _) => "-".to_string(),
        };
        s.push_str(&format!(
            "  {} (item {}, batch {}): {original} (build {}) → {rebuild}\n",
            item.repository, item.id, item.depth, item.original_build_id
        ));
        let mut state = item.state.to_string();
        if let Some(into) = item.coalesced_into {
            state.push_str(&format!(" into item {into}"));
        }
        if let Some(bs) = it.build_state {
            state.push_str(&format!(", build {bs}"));
        }
        let attempts = match item.attempts {
            1 => "1 attempt".to_string(),
            n => format!("{n} attempts"),
        };
        s.push_str(&format!("    state:    {state}, {attempts}\n"));
        for (i, r) in item.reasons.iter().enumerate() {
            let key = if i == 0 { "because:" } else { "" };
            s.push_str(&format!("    {key:<10}{r}\n"));
        }
        if let Some(m) = &item.message {
            s.push_str(&format!("    message:  {m}\n"));
        }
    }
    s
}

/// Targets whose builds land on `tag` and that turn rebuilds on for it.
fn opted_in_targets(tag: &str, targets: &[Target]) -> Vec<String> {
    targets
        .iter()
        .filter(|t| t.autorebuild && t.dest_tag == tag)
        .map(|t| t.name.clone())
        .collect()
}

/// A tag takes rebuilds when it is opted in itself or a target sending its
/// builds there is: the column says which.
fn tags_table(tags: &[TagInfo], targets: &[Target]) -> String {
    let rows: Vec<Vec<String>> = tags
        .iter()
        .map(|t| {
            let by_targets = opted_in_targets(&t.name, targets);
            let state = match (t.autorebuild, by_targets.is_empty()) {
                (true, _) => "yes".to_string(),
                (false, true) => "no".to_string(),
                (false, false) => format!("yes (target {})", by_targets.join(", ")),
            };
            vec![t.name.clone(), state]
        })
        .collect();
    table(&["TAG", "AUTOREBUILD"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};
    use kiln_hub::api::protocol::RebuildItemInfo;
    use kiln_hub::model::{BuildState, RebuildItem, RebuildItemState};

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        hub: HubArgs,
        #[command(subcommand)]
        cmd: RebuildCommand,
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("kiln").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn images_with_takes_one_or_three_words() {
        let cli = parse(&["images-with", "openssl<3.0.9-2", "--tag", "f40", "--all"]).unwrap();
        let RebuildCommand::ImagesWith {
            query, tag, all, ..
        } = cli.cmd
        else {
            panic!("{:?}", cli.cmd)
        };
        assert_eq!(query, vec!["openssl<3.0.9-2"]);
        assert_eq!(tag.as_deref(), Some("f40"));
        assert!(all);
        let cli = parse(&["images-with", "openssl", "<", "3.0.9-2", "--json"]).unwrap();
        let RebuildCommand::ImagesWith { query, json, .. } = cli.cmd else {
            panic!("{:?}", cli.cmd)
        };
        assert!(json);
        assert_eq!(
            PackageQuery::parse(&query.join(" ")),
            PackageQuery::parse("openssl<3.0.9-2")
        );
        assert!(parse(&["images-with"]).is_err());
    }

    #[test]
    fn updates_must_be_nevras() {
        use clap::error::ErrorKind;
        let cli = parse(&[
            "package-update",
            "openssl-1:3.0.9-2.fc40.x86_64",
            "zlib-ng-2.1.7-2.fc40.x86_64",
            "--repo",
            "updates",
        ])
        .unwrap();
        let RebuildCommand::PackageUpdate { packages, repo, .. } = cli.cmd else {
            panic!("{:?}", cli.cmd)
        };
        assert_eq!(packages.len(), 2);
        assert_eq!(repo.as_deref(), Some("updates"));
        for args in [
            &["package-update", "openssl"][..],
            &["rebuild-plan", "openssl-3.0.9"][..],
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::ValueValidation, "{args:?}: {err}");
            assert!(
                err.to_string()
                    .contains("NAME-[EPOCH:]VERSION-RELEASE.ARCH"),
                "{err}"
            );
        }
        let err = parse(&["rebuild-plan"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn events_states_and_edit_tag_values() {
        let cli = parse(&["events", "--state", "no-effect", "--limit", "5"]).unwrap();
        let RebuildCommand::Events { state, limit, .. } = cli.cmd else {
            panic!("{:?}", cli.cmd)
        };
        assert_eq!((state.as_deref(), limit), (Some("no-effect"), Some(5)));
        assert!(parse(&["events", "--state", "done"]).is_err());

        let cli = parse(&["edit-tag", "f40-candidate", "--autorebuild", "true"]).unwrap();
        assert!(matches!(
            cli.cmd,
            RebuildCommand::EditTag { autorebuild: true, ref tag } if tag == "f40-candidate"
        ));
        let cli = parse(&["edit-tag", "t", "--autorebuild", "false"]).unwrap();
        assert!(matches!(
            cli.cmd,
            RebuildCommand::EditTag {
                autorebuild: false,
                ..
            }
        ));
        assert!(parse(&["edit-tag", "t"]).is_err());
        assert!(parse(&["edit-tag", "t", "--autorebuild"]).is_err());
        assert!(parse(&["edit-tag", "t", "--autorebuild", "maybe"]).is_err());
    }

    #[test]
    fn images_line_up_and_none_is_explained() {
        let found = vec![
            ImageMatch {
                build_id: 3,
                nvr: "base-container-40-1".into(),
                tags: vec!["f40".into(), "f40-candidate".into()],
                package: "openssl-1:3.0.9-1.fc40.x86_64".into(),
            },
            ImageMatch {
                build_id: 12,
                nvr: "httpd-container-2.4-7".into(),
                tags: vec![],
                package: "openssl-1:3.0.8-1.fc40.x86_64".into(),
            },
        ];
        assert_eq!(
            images_table(&found),
            "NVR                    BUILD  PACKAGE                        TAGS\n\
             base-container-40-1    3      openssl-1:3.0.9-1.fc40.x86_64  f40,f40-candidate\n\
             httpd-container-2.4-7  12     openssl-1:3.0.8-1.fc40.x86_64  -\n"
        );
        let q = ImagesQuery {
            package: "openssl<3.0.9-2".into(),
            tag: Some("f40".into()),
            all: None,
            source: None,
        };
        assert_eq!(
            no_images(&q),
            "no images hold openssl<3.0.9-2 on tag f40 (latest images on each tag; --all for every build)"
        );
        let q = ImagesQuery {
            package: "bash".into(),
            tag: None,
            all: Some(true),
            source: None,
        };
        assert_eq!(no_images(&q), "no images hold bash");
        let q = ImagesQuery {
            source: Some(true),
            ..q
        };
        assert_eq!(no_images(&q), "no images hold packages built from bash");
    }

    fn summary(id: i64, nvr: &str, state: BuildState) -> BuildSummary {
        BuildSummary {
            id,
            nvr: Some(nvr.into()),
            state,
            parent_build_id: None,
            manifest_digest: None,
            completed_at: None,
        }
    }

    fn leaf(b: BuildSummary) -> LineageNode {
        LineageNode {
            build: b,
            children: vec![],
        }
    }

    #[test]
    fn a_lineage_is_one_tree_from_the_base() {
        let l = Lineage {
            build: summary(5, "httpd-container-1-1", BuildState::Complete),
            // Parent first, as the API lists them.
            ancestors: vec![
                summary(2, "base-container-40-1", BuildState::Complete),
                summary(1, "fedora-40-1", BuildState::Complete),
            ],
            children: vec![
                LineageNode {
                    build: summary(7, "php-container-1-1", BuildState::Complete),
                    children: vec![leaf(summary(9, "app-1-1", BuildState::Failed))],
                },
                leaf(BuildSummary {
                    nvr: None,
                    ..summary(8, "", BuildState::Building)
                }),
            ],
        };
        assert_eq!(
            lineage_tree(&l),
            "fedora-40-1 (build 1, complete)\n\
             └── base-container-40-1 (build 2, complete)\n    \
                 └── httpd-container-1-1 (build 5, complete)  ◀ this build\n        \
                     ├── php-container-1-1 (build 7, complete)\n        \
                     │   └── app-1-1 (build 9, failed)\n        \
                     └── - (build 8, building)\n"
        );
    }

    #[test]
    fn a_lineage_without_ancestors_starts_at_the_build() {
        let l = Lineage {
            build: summary(1, "base-40-1", BuildState::Complete),
            ancestors: vec![],
            children: vec![
                leaf(summary(2, "a-1-1", BuildState::Complete)),
                leaf(summary(3, "b-1-1", BuildState::Complete)),
            ],
        };
        assert_eq!(
            lineage_tree(&l),
            "base-40-1 (build 1, complete)  ◀ this build\n\
             ├── a-1-1 (build 2, complete)\n\
             └── b-1-1 (build 3, complete)\n"
        );
    }

    fn event(id: i64, trigger: RebuildTrigger, state: RebuildEventState) -> RebuildEvent {
        RebuildEvent {
            id,
            trigger,
            state,
            updates: vec![],
            repo: None,
            trigger_build_id: None,
            replaced_build_id: None,
            submitter: "admin".into(),
            message: None,
            created_at: "2025-01-01T00:00:00Z".into(),
            updated_at: "2025-01-01T00:00:01Z".into(),
        }
    }

    #[test]
    fn package_update_answers() {
        let mut e = event(4, RebuildTrigger::PackageUpdate, RebuildEventState::Pending);
        let a = PackageUpdateAnswer {
            event: e.clone(),
            duplicate: false,
        };
        assert_eq!(update_answer(&a), "event 4 created\nstate: pending\n");
        e.state = RebuildEventState::Running;
        e.message = Some("1 image to rebuild".into());
        let a = PackageUpdateAnswer {
            event: e,
            duplicate: true,
        };
        assert_eq!(
            update_answer(&a),
            "event 4 already recorded (duplicate)\nstate: running\nmessage: 1 image to rebuild\n"
        );
    }

    fn planned(id: i64, nvr: Option<&str>, reasons: &[&str]) -> PlannedImage {
        PlannedImage {
            build_id: id,
            nvr: nvr.map(Into::into),
            repository: format!("fedora/image{id}"),
            tags: vec!["f40".into()],
            parent_build_id: None,
            depth: 0,
            reasons: reasons.iter().map(|r| r.to_string()).collect(),
            skipped: None,
        }
    }

    #[test]
    fn plans_list_batches_skips_and_no_effect() {
        let plan = PlanView {
            batches: vec![
                vec![planned(
                    1,
                    Some("base-40-1"),
                    &[
                        "directly affected by openssl-3.0.9-2.fc40.x86_64 (has openssl-3.0.9-1.fc40.x86_64)",
                    ],
                )],
                vec![planned(
                    2,
                    None,
                    &[
                        "parent fedora/image1 rebuilt (build 1)",
                        "directly affected by x",
                    ],
                )],
            ],
            skipped: vec![PlannedImage {
                skipped: Some("autorebuild is off for this image".into()),
                ..planned(
                    3,
                    Some("tool-1-1"),
                    &["parent fedora/image1 rebuilt (build 1)"],
                )
            }],
            no_effect: vec!["bash-5.2.26-3.fc40.x86_64".into()],
            cycles: vec![vec![7, 8]],
        };
        assert_eq!(
            plan_text(&plan),
            "batch 0:\n  \
               base-40-1 (build 1) — directly affected by openssl-3.0.9-2.fc40.x86_64 (has openssl-3.0.9-1.fc40.x86_64)\n\
             batch 1:\n  \
               fedora/image2 (build 2) — parent fedora/image1 rebuilt (build 1); directly affected by x\n\
             skipped:\n  \
               tool-1-1 (build 3) — autorebuild is off for this image; would be rebuilt: parent fedora/image1 rebuilt (build 1)\n\
             no effect (no image takes rebuilds and holds an older version):\n  \
               bash-5.2.26-3.fc40.x86_64\n\
             parent records loop: builds 7 → 8\n"
        );
        assert_eq!(plan_text(&PlanView::default()), "nothing to rebuild\n");
    }

    #[test]
    fn events_table_shows_updates_or_the_parent_build() {
        let mut a = event(
            2,
            RebuildTrigger::PackageUpdate,
            RebuildEventState::Complete,
        );
        a.updates = vec![
            "openssl-3.0.9-2.fc40.x86_64".into(),
            "zlib-1-2.x86_64".into(),
        ];
        a.message = Some("2 images rebuilt".into());
        let mut b = event(3, RebuildTrigger::ParentBuild, RebuildEventState::Pending);
        b.trigger_build_id = Some(40);
        b.replaced_build_id = Some(31);
        assert_eq!(
            events_table(&[b, a]),
            "ID  TRIGGER         STATE     UPDATES                                      CREATED               MESSAGE\n\
             3   parent-build    pending   parent build 40 (replaces 31)                2025-01-01T00:00:00Z  -\n\
             2   package-update  complete  openssl-3.0.9-2.fc40.x86_64,zlib-1-2.x86_64  2025-01-01T00:00:00Z  2 images rebuilt\n"
        );
    }

    fn item(id: i64, state: RebuildItemState) -> RebuildItem {
        RebuildItem {
            id,
            event_id: 2,
            original_build_id: 10,
            repository: "fedora/base".into(),
            depth: 0,
            parent_item_id: None,
            reasons: vec![],
            expect: vec![],
            state,
            build_id: None,
            attempts: 0,
            coalesced_into: None,
            message: None,
            created_at: "2025-01-01T00:00:00Z".into(),
            updated_at: "2025-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn event_info_shows_each_item() {
        let mut e = event(2, RebuildTrigger::PackageUpdate, RebuildEventState::Failed);
        e.updates = vec![
            "openssl-3.0.9-2.fc40.x86_64".into(),
            "zlib-1-2.x86_64".into(),
        ];
        e.repo = Some("f40-updates".into());
        e.message = Some("1 rebuilt, 1 failed".into());
        let done = RebuildItem {
            build_id: Some(11),
            attempts: 1,
            reasons: vec![
                "directly affected by openssl-3.0.9-2.fc40.x86_64 (has openssl-3.0.9-1.fc40.x86_64)"
                    .into(),
                "directly affected by zlib-1-2.x86_64 (has zlib-1-1.x86_64)".into(),
            ],
            message: Some("rebuilt as base-40-2 (build 11)".into()),
            ..item(5, RebuildItemState::Complete)
        };
        let failed = RebuildItem {
            repository: "fedora/httpd".into(),
            original_build_id: 12,
            depth: 1,
            parent_item_id: Some(5),
            build_id: Some(14),
            attempts: 2,
            message: Some("build 14 failed: exit 1".into()),
            ..item(6, RebuildItemState::Failed)
        };
        let waiting = item(7, RebuildItemState::Coalesced);
        let info = RebuildEventInfo {
            event: e,
            items: vec![
                RebuildItemInfo {
                    item: done,
                    original_nvr: Some("base-40-1".into()),
                    build_nvr: Some("base-40-2".into()),
                    build_state: Some(BuildState::Complete),
                },
                RebuildItemInfo {
                    item: failed,
                    original_nvr: Some("httpd-2.4-1".into()),
                    build_nvr: None,
                    build_state: Some(BuildState::Failed),
                },
                RebuildItemInfo {
                    item: RebuildItem {
                        coalesced_into: Some(99),
                        ..waiting
                    },
                    original_nvr: None,
                    build_nvr: None,
                    build_state: None,
                },
            ],
        };
        assert_eq!(
            event_info(&info),
            "Event:     2\n\
             Trigger:   package-update\n\
             State:     failed\n\
             Updates:   openssl-3.0.9-2.fc40.x86_64\n           \
                        zlib-1-2.x86_64\n\
             Repo:      f40-updates\n\
             Submitter: admin\n\
             Message:   1 rebuilt, 1 failed\n\
             Created:   2025-01-01T00:00:00Z\n\
             Updated:   2025-01-01T00:00:01Z\n\
             Items:     3\n  \
               fedora/base (item 5, batch 0): base-40-1 (build 10) → base-40-2 (build 11)\n    \
                 state:    complete, build complete, 1 attempt\n    \
                 because:  directly affected by openssl-3.0.9-2.fc40.x86_64 (has openssl-3.0.9-1.fc40.x86_64)\n              \
                           directly affected by zlib-1-2.x86_64 (has zlib-1-1.x86_64)\n    \
                 message:  rebuilt as base-40-2 (build 11)\n  \
               fedora/httpd (item 6, batch 1): httpd-2.4-1 (build 12) → build 14\n    \
                 state:    failed, build failed, 2 attempts\n    \
                 message:  build 14 failed: exit 1\n  \
               fedora/base (item 7, batch 0): - (build 10) → -\n    \
                 state:    coalesced into item 99, 0 attempts\n"
        );
    }

    #[test]
    fn a_parent_build_event_names_the_builds() {
        let mut e = event(3, RebuildTrigger::ParentBuild, RebuildEventState::Running);
        e.trigger_build_id = Some(40);
        e.replaced_build_id = Some(31);
        let text = event_info(&RebuildEventInfo {
            event: e,
            items: vec![],
        });
        assert!(
            text.contains("Parent:    parent build 40 (replaces 31)\n"),
            "{text}"
        );
        assert!(!text.contains("Updates"), "{text}");
    }

    #[test]
    fn tags_say_who_turned_rebuilds_on() {
        let tags = vec![
            TagInfo {
                name: "f40".into(),
                autorebuild: true,
            },
            TagInfo {
                name: "f40-candidate".into(),
                autorebuild: false,
            },
            TagInfo {
                name: "f41".into(),
                autorebuild: false,
            },
        ];
        let target = |name: &str, dest: &str, autorebuild: bool| Target {
            name: name.into(),
            allowed_parents: vec![],
            repos: vec![],
            dest_tag: dest.into(),
            registry: "r:1".into(),
            autorebuild,
        };
        let targets = vec![
            target("f40-container", "f40-candidate", true),
            target("f41-container", "f41", false),
        ];
        assert_eq!(
            tags_table(&tags, &targets),
            "TAG            AUTOREBUILD\n\
             f40            yes\n\
             f40-candidate  yes (target f40-container)\n\
             f41            no\n"
        );
        assert_eq!(
            opted_in_targets("f40-candidate", &targets),
            vec!["f40-container"]
        );
    }
}
