//! Decoding rows into model records. Stored enums and JSON that do not
//! decode are reported as corrupt with the row they came from.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{DbError, from_json};
use crate::model::{Build, Nvr, Package, RebuildEvent, RebuildItem, Task};

pub(crate) const BUILD_COLUMNS: &str = "id, state, component, nvr_name, nvr_version, nvr_release, \
    source_url, source_ref, commit_id, target, owner, scratch, isolated, release_override, \
    parent_ref, parent_digest, parent_build_id, manifest_digest, config_digest, image_size, \
    layers, tags, reason, created_at, started_at, completed_at, no_cache, parent_pin, \
    autorebuild, rebuild_item_id";

pub(crate) const TASK_COLUMNS: &str =
    "id, build_id, state, worker, lease_until, attempts, max_attempts, reason";

pub(crate) const PACKAGE_COLUMNS: &str =
    "kind, name, epoch, version, release, arch, source, license, signing_key";

pub(crate) const EVENT_COLUMNS: &str = "id, trigger_kind, state, updates, repo, trigger_build_id, \
    replaced_build_id, submitter, message, created_at, updated_at";

pub(crate) const ITEM_COLUMNS: &str = "id, event_id, original_build_id, repository, depth, parent_item_id, \
    reasons, expect, state, build_id, attempts, coalesced_into, message, created_at, updated_at";

fn parse<T: std::str::FromStr>(what: impl Into<String>, s: &str) -> Result<T, DbError>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e| DbError::corrupt(what, e))
}

fn u32_of(what: &str, v: i64) -> Result<u32, DbError> {
    u32::try_from(v).map_err(|_| DbError::corrupt(what, format!("{v} is out of range")))
}

/// Builds come back without packages; [`super::Db::get_build`] adds them.
pub(crate) fn build(row: &AnyRow) -> Result<Build, DbError> {
    let id: i64 = row.try_get("id")?;
    let what = |field: &str| format!("build {id} {field}");
    let nvr = match (
        row.try_get::<Option<String>, _>("nvr_name")?,
        row.try_get::<Option<String>, _>("nvr_version")?,
        row.try_get::<Option<String>, _>("nvr_release")?,
    ) {
        (Some(name), Some(version), Some(release)) => Some(Nvr {
            name,
            version,
            release,
        }),
        _ => None,
    };
    let state: String = row.try_get("state")?;
    let layers: String = row.try_get("layers")?;
    let tags: String = row.try_get("tags")?;
    Ok(Build {
        id,
        state: parse(what("state"), &state)?,
        component: row.try_get("component")?,
        nvr,
        source_url: row.try_get("source_url")?,
        source_ref: row.try_get("source_ref")?,
        commit: row.try_get("commit_id")?,
        target: row.try_get("target")?,
        owner: row.try_get("owner")?,
        scratch: row.try_get::<i64, _>("scratch")? != 0,
        isolated: row.try_get::<i64, _>("isolated")? != 0,
        release_override: row.try_get("release_override")?,
        parent_ref: row.try_get("parent_ref")?,
        parent_digest: row.try_get("parent_digest")?,
        parent_build_id: row.try_get("parent_build_id")?,
        manifest_digest: row.try_get("manifest_digest")?,
        config_digest: row.try_get("config_digest")?,
        image_size: row.try_get("image_size")?,
        layers: from_json(&what("layers"), &layers)?,
        tags: from_json(&what("tags"), &tags)?,
        packages: Vec::new(),
        reason: row.try_get("reason")?,
        no_cache: row.try_get::<i64, _>("no_cache")? != 0,
        parent_pin: row.try_get("parent_pin")?,
        autorebuild: row
            .try_get::<Option<i64>, _>("autorebuild")?
            .map(|v| v != 0),
        rebuild_item_id: row.try_get("rebuild_item_id")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        completed_at: row.try_get("completed_at")?,
    })
}

pub(crate) fn task(row: &AnyRow) -> Result<Task, DbError> {
    let id: i64 = row.try_get("id")?;
    let what = |field: &str| format!("task {id} {field}");
    let state: String = row.try_get("state")?;
    Ok(Task {
        id,
        build_id: row.try_get("build_id")?,
        state: parse(what("state"), &state)?,
        worker: row.try_get("worker")?,
        lease_until: row.try_get("lease_until")?,
        attempts: u32_of(&what("attempts"), row.try_get("attempts")?)?,
        max_attempts: u32_of(&what("max_attempts"), row.try_get("max_attempts")?)?,
        reason: row.try_get("reason")?,
    })
}

pub(crate) fn package(row: &AnyRow, build_id: i64) -> Result<Package, DbError> {
    let kind: String = row.try_get("kind")?;
    let epoch = row
        .try_get::<Option<i64>, _>("epoch")?
        .map(|e| u32_of(&format!("build {build_id} package epoch"), e))
        .transpose()?;
    Ok(Package {
        kind: parse(format!("build {build_id} package kind"), &kind)?,
        name: row.try_get("name")?,
        epoch,
        version: row.try_get("version")?,
        release: row.try_get("release")?,
        arch: row.try_get("arch")?,
        source: row.try_get("source")?,
        license: row.try_get("license")?,
        signing_key: row.try_get("signing_key")?,
    })
}

pub(crate) fn rebuild_event(row: &AnyRow) -> Result<RebuildEvent, DbError> {
    let id: i64 = row.try_get("id")?;
    let what = |f: &str| format!("rebuild event {id} {f}");
    let trigger: String = row.try_get("trigger_kind")?;
    let state: String = row.try_get("state")?;
    let updates: String = row.try_get("updates")?;
    Ok(RebuildEvent {
        id,
        trigger: parse(what("trigger"), &trigger)?,
        state: parse(what("state"), &state)?,
        updates: from_json(&what("updates"), &updates)?,
        repo: row.try_get("repo")?,
        trigger_build_id: row.try_get("trigger_build_id")?,
        replaced_build_id: row.try_get("replaced_build_id")?,
        submitter: row.try_get("submitter")?,
        message: row.try_get("message")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub(crate) fn rebuild_item(row: &AnyRow) -> Result<RebuildItem, DbError> {
    let id: i64 = row.try_get("id")?;
    let what = |f: &str| format!("rebuild item {id} {f}");
    let state: String = row.try_get("state")?;
    let reasons: String = row.try_get("reasons")?;
    let expect: String = row.try_get("expect")?;
    Ok(RebuildItem {
        id,
        event_id: row.try_get("event_id")?,
        original_build_id: row.try_get("original_build_id")?,
        repository: row.try_get("repository")?,
        depth: u32_of(&what("depth"), row.try_get("depth")?)?,
        parent_item_id: row.try_get("parent_item_id")?,
        reasons: from_json(&what("reasons"), &reasons)?,
        expect: from_json(&what("expect"), &expect)?,
        state: parse(what("state"), &state)?,
        build_id: row.try_get("build_id")?,
        attempts: u32_of(&what("attempts"), row.try_get("attempts")?)?,
        coalesced_into: row.try_get("coalesced_into")?,
        message: row.try_get("message")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}
