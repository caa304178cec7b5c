//! The package repository watcher: polls the repositories of targets that
//! take automatic rebuilds and turns new package versions into events.
//!
//! The snapshot of what a repository held and the event for what changed
//! are stored in one transaction: a hub killed between two polls neither
//! loses an update nor reports it twice (the event's key is the set of
//! updated versions).

use std::sync::Arc;
use std::time::Duration;

use crate::api::server::Hub;
use crate::db::NewRebuildEvent;
use crate::model::RebuildTrigger;
use crate::repowatch::{self, PollOutcome, RepoSnapshot};

/// How long one repository's poll may take (a large primary over a slow
/// link included).
const POLL_TIMEOUT: Duration = Duration::from_secs(600);

/// The user events of the watcher are recorded as submitted by.
pub const WATCHER_USER: &str = "kiln-repo-watcher";

/// Polls every `hub.config.repo_poll_secs` (never when 0).
pub fn spawn_repo_watcher(hub: Arc<Hub>) -> Option<tokio::task::JoinHandle<()>> {
    let every = hub.config.repo_poll_secs;
    if every == 0 {
        return None;
    }
    let http = match crate::client::http_client() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "the package repository watcher cannot start");
            return None;
        }
    };
    Some(tokio::spawn(async move {
        loop {
            match hub.db.autorebuild_repos().await {
                Ok(urls) => {
                    for url in urls {
                        poll_one(&hub, &http, &url).await;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "listing the repositories to watch"),
            }
            tokio::time::sleep(Duration::from_secs(every)).await;
        }
    }))
}

async fn poll_one(hub: &Hub, http: &reqwest::Client, url: &str) {
    let previous: Option<RepoSnapshot> = match hub.db.repo_snapshot(url).await {
        Ok(Some(text)) => serde_json::from_str(&text).ok(),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(repo = url, error = %e, "reading the repository's snapshot");
            return;
        }
    };
    // The client has no read timeout: a stalled server must not stop the
    // watcher from polling the other repositories.
    let polled = tokio::time::timeout(POLL_TIMEOUT, repowatch::poll(http, url, previous.as_ref()))
        .await
        .unwrap_or_else(|_| {
            Err(repowatch::RepoError::Interrupted {
                url: url.to_string(),
                reason: format!("no answer within {} s", POLL_TIMEOUT.as_secs()),
            })
        });
    let recorded = match polled {
        Ok(PollOutcome::Unchanged) => return,
        Ok(PollOutcome::Baseline(snapshot)) => {
            tracing::info!(repo = url, "watching the package repository");
            record(hub, url, &snapshot, None).await
        }
        Ok(PollOutcome::Changed { snapshot, updates }) => {
            let event = (!updates.is_empty()).then(|| NewRebuildEvent {
                trigger: RebuildTrigger::RepoWatch,
                updates: updates.iter().map(ToString::to_string).collect(),
                repo: Some(url.to_string()),
                trigger_build_id: None,
                replaced_build_id: None,
                submitter: WATCHER_USER.to_string(),
                // Keyed by the updates, not the metadata: a mirror that
                // flaps back and forth reports the same versions again.
                dedup_key: super::updates_key(&updates),
            });
            record(hub, url, &snapshot, event.as_ref()).await
        }
        Err(e) => {
            tracing::warn!(repo = url, error = %e, "polling the package repository");
            hub.db
                .record_repo_poll(url, None, Some(&e.to_string()), None)
                .await
                .map(|_| ())
        }
    };
    if let Err(e) = recorded {
        tracing::warn!(repo = url, error = %e, "recording the repository poll");
    }
}

async fn record(
    hub: &Hub,
    url: &str,
    snapshot: &RepoSnapshot,
    event: Option<&NewRebuildEvent>,
) -> Result<(), crate::db::DbError> {
    let text = crate::db::to_json("repository snapshot", snapshot)?;
    if let Some((ev, true)) = hub
        .db
        .record_repo_poll(url, Some(&text), None, event)
        .await?
    {
        tracing::info!(
            repo = url,
            event = ev.id,
            "new package versions: {}",
            ev.updates.join(", ")
        );
        hub.wake.notify_one();
    }
    Ok(())
}
