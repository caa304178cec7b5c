//! The content index and automatic rebuilds over HTTP: which images hold a
//! package, lineages, package-update events, dry-run plans, rebuild events,
//! and the tags' opt-in.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post, put};

use crate::api::protocol::{
    BuildSummary, ImageMatch, ImagesQuery, Lineage, LineageNode, PackageUpdate,
    PackageUpdateAnswer, PlanView, PlannedImage, RebuildEventFilter, RebuildEventInfo,
    RebuildItemInfo, RebuildPlanRequest, TagSettings,
};
use crate::api::server::{ApiErr, ApiResult, Hub, admin, ensure_tag, find_build, user};
use crate::db::NewRebuildEvent;
use crate::domain::planner::Plan;
use crate::domain::rpmver::{Evr, Nevra, PackageQuery};
use crate::model::{Build, PackageKind, RebuildEvent, RebuildEventState, RebuildTrigger, TagInfo};
use crate::rebuild::{self, RebuildError};

/// Builds a lineage shows at most (a runaway tree is cut there).
const LINEAGE_LIMIT: usize = 10_000;

pub(crate) fn routes() -> Router<Arc<Hub>> {
    Router::new()
        .route("/api/v1/images", get(images_with))
        .route("/api/v1/builds/{id}/lineage", get(lineage))
        .route("/api/v1/package-updates", post(package_update))
        .route("/api/v1/rebuild-plan", post(rebuild_plan))
        .route("/api/v1/rebuild-events", get(list_events))
        .route("/api/v1/rebuild-events/{id}", get(event_info))
        .route("/api/v1/tags", get(list_tags))
        .route("/api/v1/tags/{tag}", put(put_tag))
}

fn invalid(message: impl Into<String>) -> ApiErr {
    ApiErr::new(StatusCode::BAD_REQUEST, "invalid", message)
}

impl From<RebuildError> for ApiErr {
    fn from(e: RebuildError) -> ApiErr {
        match e {
            RebuildError::Db(e) => e.into(),
            other => {
                tracing::error!(error = %other, "rebuild planning failed");
                ApiErr::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    other.to_string(),
                )
            }
        }
    }
}

/// Parses `name-[E:]V-R.arch` updates; an empty list or a bad one is the
/// caller's mistake.
fn parse_updates(packages: &[String]) -> ApiResult<Vec<Nevra>> {
    if packages.is_empty() {
        return Err(invalid(
            "no packages: give NAME-[EPOCH:]VERSION-RELEASE.ARCH",
        ));
    }
    packages
        .iter()
        .map(|p| {
            Nevra::parse(p.trim()).map_err(|e| {
                invalid(format!(
                    "package {p:?}: {e} (NAME-[EPOCH:]VERSION-RELEASE.ARCH)"
                ))
            })
        })
        .collect()
}

fn summary(b: &Build) -> BuildSummary {
    BuildSummary {
        id: b.id,
        nvr: b.nvr.as_ref().map(ToString::to_string),
        state: b.state,
        parent_build_id: b.parent_build_id,
        manifest_digest: b.manifest_digest.clone(),
        completed_at: b.completed_at.clone(),
    }
}

async fn images_with(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Query(q): Query<ImagesQuery>,
) -> ApiResult<Json<Vec<ImageMatch>>> {
    user(&hub, &headers).await?;
    let query = PackageQuery::parse(q.package.trim())
        .map_err(|e| invalid(format!("package query {:?}: {e}", q.package)))?;
    let by_source = q.source.unwrap_or(false);
    let matches = |p: &crate::model::Package| {
        let name = if by_source {
            crate::db::builds::source_name(p)
        } else {
            Some(p.name.clone())
        };
        let evr = Evr::new(p.epoch, &p.version, Some(&p.release));
        p.kind == PackageKind::Rpm
            && name.as_deref() == Some(query.name.as_str())
            && query.constraint.as_ref().is_none_or(|c| c.matches(&evr))
    };
    let tags: Option<Vec<String>> = q.tag.clone().filter(|t| !t.is_empty()).map(|t| vec![t]);
    let latest = hub.db.latest_tagged(tags.as_deref()).await?;
    let mut tags_of: HashMap<i64, Vec<String>> = HashMap::new();
    let mut nvr_of: HashMap<i64, String> = HashMap::new();
    for image in &latest {
        tags_of
            .entry(image.build_id)
            .or_default()
            .push(image.tag.clone());
        nvr_of.insert(image.build_id, image.nvr.clone());
    }
    let mut found = Vec::new();
    if q.all.unwrap_or(false) {
        let in_tag: Option<HashSet<i64>> = match &q.tag {
            Some(t) if !t.is_empty() => Some(
                hub.db
                    .list_tagged(t)
                    .await?
                    .into_iter()
                    .map(|b| b.id)
                    .collect(),
            ),
            _ => None,
        };
        let hits = if by_source {
            hub.db.builds_with_source_package(&query.name).await?
        } else {
            hub.db.builds_with_package(&query.name).await?
        };
        for hit in hits {
            if matches(&hit.package) && in_tag.as_ref().is_none_or(|s| s.contains(&hit.build_id)) {
                found.push(ImageMatch {
                    build_id: hit.build_id,
                    nvr: hit.nvr.map(|n| n.to_string()).unwrap_or_default(),
                    tags: tags_of.get(&hit.build_id).cloned().unwrap_or_default(),
                    package: package_text(&hit.package),
                });
            }
        }
    } else {
        let packages = hub
            .db
            .packages_named(tags.as_deref(), std::slice::from_ref(&query.name))
            .await?;
        for (build_id, pkgs) in packages {
            for p in pkgs.iter().filter(|p| matches(p)) {
                found.push(ImageMatch {
                    build_id,
                    nvr: nvr_of.get(&build_id).cloned().unwrap_or_default(),
                    tags: tags_of.get(&build_id).cloned().unwrap_or_default(),
                    package: package_text(p),
                });
            }
        }
    }
    for m in &mut found {
        m.tags.sort();
    }
    found.sort_by(|a, b| (&a.nvr, a.build_id, &a.package).cmp(&(&b.nvr, b.build_id, &b.package)));
    Ok(Json(found))
}

fn package_text(p: &crate::model::Package) -> String {
    format!(
        "{}-{}.{}",
        p.name,
        Evr::new(p.epoch, &p.version, Some(&p.release)),
        p.arch
    )
}

async fn lineage(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Lineage>> {
    user(&hub, &headers).await?;
    let build = find_build(&hub, &id).await?;
    let mut seen: HashSet<i64> = HashSet::from([build.id]);
    let mut ancestors = Vec::new();
    let mut next = build.parent_build_id;
    while let Some(p) = next {
        if !seen.insert(p) || ancestors.len() >= LINEAGE_LIMIT {
            break;
        }
        let parent = hub.db.get_build(p).await?;
        next = parent.parent_build_id;
        ancestors.push(summary(&parent));
    }
    // Every descendant (depth-first), then assembled into a tree.
    let mut found: Vec<(Option<i64>, BuildSummary)> = Vec::new();
    let mut frontier = vec![build.id];
    while let Some(parent) = frontier.pop() {
        for child in hub.db.children_of(parent).await? {
            if found.len() >= LINEAGE_LIMIT || !seen.insert(child) {
                continue;
            }
            let b = hub.db.get_build(child).await?;
            found.push((Some(parent), summary(&b)));
            frontier.push(child);
        }
    }
    let mut by_parent: BTreeMap<i64, Vec<BuildSummary>> = BTreeMap::new();
    for (parent, b) in found {
        if let Some(p) = parent {
            by_parent.entry(p).or_default().push(b);
        }
    }
    fn tree(id: i64, by_parent: &mut BTreeMap<i64, Vec<BuildSummary>>) -> Vec<LineageNode> {
        let kids = by_parent.remove(&id).unwrap_or_default();
        kids.into_iter()
            .map(|b| {
                let children = tree(b.id, by_parent);
                LineageNode { build: b, children }
            })
            .collect()
    }
    let children = tree(build.id, &mut by_parent);
    Ok(Json(Lineage {
        build: summary(&build),
        ancestors,
        children,
    }))
}

async fn package_update(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Json(req): Json<PackageUpdate>,
) -> ApiResult<(StatusCode, Json<PackageUpdateAnswer>)> {
    let u = admin(&hub, &headers, "report package updates").await?;
    let updates = parse_updates(&req.packages)?;
    let mut texts: Vec<String> = updates.iter().map(ToString::to_string).collect();
    texts.sort();
    texts.dedup();
    let (event, created) = hub
        .db
        .create_rebuild_event(&NewRebuildEvent {
            trigger: RebuildTrigger::PackageUpdate,
            updates: texts,
            repo: req.repo.clone().filter(|r| !r.is_empty()),
            trigger_build_id: None,
            replaced_build_id: None,
            submitter: u.name,
            dedup_key: rebuild::updates_key(&updates),
        })
        .await?;
    if created {
        hub.wake.notify_one();
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(PackageUpdateAnswer {
            event,
            duplicate: !created,
        }),
    ))
}

async fn rebuild_plan(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Json(req): Json<RebuildPlanRequest>,
) -> ApiResult<Json<PlanView>> {
    user(&hub, &headers).await?;
    let updates = parse_updates(&req.packages)?;
    let plan = rebuild::plan_updates(&hub, &updates).await?;
    Ok(Json(plan_view(&hub, plan).await?))
}

async fn plan_view(hub: &Hub, plan: Plan) -> ApiResult<PlanView> {
    let nvrs: HashMap<i64, String> = hub
        .db
        .latest_tagged(None)
        .await?
        .into_iter()
        .map(|i| (i.build_id, i.nvr))
        .collect();
    let nvr = |id: i64| nvrs.get(&id).cloned();
    let reasons = |r: &[crate::domain::planner::RebuildReason]| {
        r.iter().map(ToString::to_string).collect::<Vec<_>>()
    };
    Ok(PlanView {
        batches: plan
            .batches
            .iter()
            .map(|batch| {
                batch
                    .iter()
                    .map(|r| PlannedImage {
                        build_id: r.build_id,
                        nvr: nvr(r.build_id),
                        repository: r.repository.clone(),
                        tags: r.tags.clone(),
                        parent_build_id: r.parent_build_id,
                        depth: r.depth,
                        reasons: reasons(&r.reasons),
                        skipped: None,
                    })
                    .collect()
            })
            .collect(),
        skipped: plan
            .skipped
            .iter()
            .map(|s| PlannedImage {
                build_id: s.build_id,
                nvr: nvr(s.build_id),
                repository: s.repository.clone(),
                tags: s.tags.clone(),
                parent_build_id: s.parent_build_id,
                depth: 0,
                reasons: reasons(&s.reasons),
                skipped: Some(s.skipped.to_string()),
            })
            .collect(),
        no_effect: plan.no_effect.iter().map(ToString::to_string).collect(),
        cycles: plan.cycles,
    })
}

async fn list_events(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Query(f): Query<RebuildEventFilter>,
) -> ApiResult<Json<Vec<RebuildEvent>>> {
    user(&hub, &headers).await?;
    let state = match f.state.as_deref() {
        None | Some("") => None,
        Some(s) => Some(s.parse::<RebuildEventState>().map_err(|_| {
            let names: Vec<&str> = RebuildEventState::ALL.iter().map(|s| s.as_str()).collect();
            invalid(format!("unknown state {s:?}: {}", names.join(", ")))
        })?),
    };
    Ok(Json(
        hub.db
            .list_rebuild_events(state, f.limit.unwrap_or(50).min(1000))
            .await?,
    ))
}

async fn event_info(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> ApiResult<Json<RebuildEventInfo>> {
    user(&hub, &headers).await?;
    let event = hub.db.get_rebuild_event(id).await?;
    let mut items = Vec::new();
    for item in hub.db.rebuild_items(id).await? {
        let original_nvr = hub
            .db
            .get_build(item.original_build_id)
            .await?
            .nvr
            .map(|n| n.to_string());
        let build = match item.build_id {
            Some(b) => Some(hub.db.get_build(b).await?),
            None => None,
        };
        items.push(RebuildItemInfo {
            original_nvr,
            build_nvr: build
                .as_ref()
                .and_then(|b| b.nvr.as_ref().map(ToString::to_string)),
            build_state: build.as_ref().map(|b| b.state),
            item,
        });
    }
    Ok(Json(RebuildEventInfo { event, items }))
}

async fn list_tags(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
) -> ApiResult<Json<Vec<TagInfo>>> {
    user(&hub, &headers).await?;
    Ok(Json(hub.db.list_tag_info().await?))
}

async fn put_tag(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Path(tag): Path<String>,
    Json(settings): Json<TagSettings>,
) -> ApiResult<Json<TagInfo>> {
    admin(&hub, &headers, &format!("configure tag {tag}")).await?;
    ensure_tag(&hub, &tag).await?;
    hub.db
        .set_tag_autorebuild(&tag, settings.autorebuild)
        .await?;
    Ok(Json(TagInfo {
        name: tag,
        autorebuild: settings.autorebuild,
    }))
}
