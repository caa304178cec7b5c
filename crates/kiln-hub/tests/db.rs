//! The database against both engines: every test below runs once on SQLite
//! (a temporary file) and once on PostgreSQL (a database of its own, created
//! for the test and dropped after it).
//!
//! PostgreSQL comes from `KILN_TEST_POSTGRES_URL` (a URL whose role may
//! create databases) or, when unset, from `scripts/postgres-test-db.sh`,
//! which starts Debian's cluster and prints the URL (needs root).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::Arc;

use kiln_hub::db::{BuildFilter, BuildResult, Db, DbError, ManualClock, NewBuild};
use kiln_hub::domain::nvr::ImageIdentity;
use kiln_hub::model::{
    BuildState, Component, Package, PackageKind, RepoSpec, TagAction, Target, TaskState, User,
};
use sqlx::Connection;

const START: i64 = 1_714_564_800;
const LEASE: i64 = 30;

struct TestDb {
    db: Db,
    clock: Arc<ManualClock>,
    url: String,
    _dir: Option<tempfile::TempDir>,
    _drop_db: Option<DropDatabase>,
}

/// Drops a test's PostgreSQL database when the test ends, passed or failed
/// (Drop runs while a panic unwinds), so failed runs leave nothing behind.
struct DropDatabase {
    admin: String,
    name: String,
}

impl Drop for DropDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // A thread of its own: the test's runtime may be gone or busy.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&admin).await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await?;
                conn.close().await
            })
            .map_err(|e| e.to_string())
        })
        .join();
        if let Ok(Err(e)) | Err(e) = dropped.map_err(|_| "panicked".to_string()) {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}

impl TestDb {
    async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("hub.db").display());
        let clock = Arc::new(ManualClock::new(START));
        let db = Db::open_with_clock(&url, clock.clone()).await.unwrap();
        TestDb {
            db,
            clock,
            url,
            _dir: Some(dir),
            _drop_db: None,
        }
    }

    async fn postgres() -> TestDb {
        let admin = postgres_admin_url();
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).unwrap();
        let name = format!("kiln_t_{}", hex::encode(bytes));
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("connecting to {admin}: {e}"));
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        let url = match admin.rsplit_once('/') {
            Some((base, _db)) => format!("{base}/{name}"),
            None => panic!("postgres URL without a database: {admin}"),
        };
        let clock = Arc::new(ManualClock::new(START));
        let db = Db::open_with_clock(&url, clock.clone()).await.unwrap();
        TestDb {
            db,
            clock,
            url,
            _dir: None,
            _drop_db: Some(DropDatabase { admin, name }),
        }
    }

    /// Closes and opens the database again, as a restarted hub would.
    async fn reopen(&mut self) {
        self.db.close().await;
        self.db = Db::open_with_clock(&self.url, self.clock.clone())
            .await
            .unwrap();
    }

    async fn finish(self) {
        // Connections closed first; the database itself goes with `_drop_db`.
        self.db.close().await;
    }
}

fn postgres_admin_url() -> String {
    if let Ok(url) = std::env::var("KILN_TEST_POSTGRES_URL") {
        return url;
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/postgres-test-db.sh"
    );
    let out = std::process::Command::new("bash")
        .arg(script)
        .output()
        .unwrap_or_else(|e| panic!("running {script}: {e}"));
    assert!(
        out.status.success(),
        "{script} failed (set KILN_TEST_POSTGRES_URL to use another server):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The URL is the last line; anything before it is a server's chatter.
    let stdout = String::from_utf8(out.stdout).unwrap();
    stdout
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with("postgres://"))
        .unwrap_or_else(|| panic!("{script} printed no postgres:// URL:\n{stdout}"))
        .to_string()
}

/// Runs `$name(&TestDb)` on each engine as `$name::sqlite` and `$name::postgres`.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let mut t = super::TestDb::sqlite().await;
                super::$name(&mut t).await;
                t.finish().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let mut t = super::TestDb::postgres().await;
                super::$name(&mut t).await;
                t.finish().await;
            }
        }
    )*};
}

on_both!(
    builds_are_created_listed_and_filtered,
    nvr_uniqueness_under_concurrency,
    release_bump,
    isolated_release_and_scratch_nvrs,
    concurrent_workers_claim_each_task_once,
    lease_expiry_retries_then_fails,
    heartbeat_by_the_wrong_worker_is_refused,
    cancel_stops_queued_and_running_builds,
    state_changes_are_checked,
    tags_and_their_history,
    parent_build_is_found_by_manifest_digest,
    which_builds_contain_a_package,
    events_since_an_id,
    restart_keeps_everything,
    components_targets_users_tokens,
    rebuild_events_items_and_the_content_index,
);

async fn seed(db: &Db) {
    db.put_user(&User {
        name: "alice".into(),
        admin: false,
    })
    .await
    .unwrap();
    db.put_component(&Component {
        name: "httpd".into(),
        git_url: "file:///srv/git/httpd".into(),
        owners: vec!["alice".into()],
    })
    .await
    .unwrap();
    db.put_target(&Target {
        name: "f40".into(),
        allowed_parents: vec!["127.0.0.1:5000/base".into()],
        repos: vec![RepoSpec {
            name: "updates".into(),
            baseurl: "http://127.0.0.1:8080/repo".into(),
            gpgcheck: false,
        }],
        dest_tag: "f40-candidate".into(),
        registry: "127.0.0.1:5000".into(),
        autorebuild: true,
    })
    .await
    .unwrap();
}

fn request(scratch: bool) -> NewBuild {
    NewBuild {
        component: "httpd".into(),
        source_url: "file:///srv/git/httpd".into(),
        source_ref: "main".into(),
        target: "f40".into(),
        owner: "alice".into(),
        scratch,
        isolated: false,
        release_override: None,
        max_attempts: 3,
        no_cache: false,
        parent_pin: None,
        rebuild_item_id: None,
    }
}

fn identity(version: &str, release: Option<&str>) -> ImageIdentity {
    ImageIdentity {
        component: "httpd-container".into(),
        repository: "fedora/httpd".into(),
        version: version.into(),
        release: release.map(String::from),
    }
}

fn rpm(name: &str, version: &str) -> Package {
    Package {
        kind: PackageKind::Rpm,
        name: name.into(),
        epoch: Some(1),
        version: version.into(),
        release: "1.fc40".into(),
        arch: "x86_64".into(),
        source: Some(format!("{name}-{version}-1.fc40.src.rpm")),
        license: Some("MIT".into()),
        signing_key: Some("a15b79cc".into()),
    }
}

fn result(digest: &str, packages: Vec<Package>) -> BuildResult {
    BuildResult {
        manifest_digest: digest.into(),
        config_digest: format!("{digest}-config"),
        image_size: 1234,
        layers: vec!["sha256:l1".into(), "sha256:l2".into()],
        tags: vec!["127.0.0.1:5000/fedora/httpd:2.4-1".into()],
        packages,
    }
}

/// Submits a build, claims it as `worker`, gives it an NVR and completes it.
async fn complete_one(
    db: &Db,
    version: &str,
    digest: &str,
    packages: Vec<Package>,
) -> kiln_hub::model::Build {
    let (build, _) = db.create_build(&request(false)).await.unwrap();
    let claim = db.claim_task("w-complete", LEASE).await.unwrap().unwrap();
    assert_eq!(claim.build.id, build.id);
    db.assign_nvr(build.id, &identity(version, None))
        .await
        .unwrap();
    db.complete_build(claim.task.id, "w-complete", &result(digest, packages))
        .await
        .unwrap()
}

async fn builds_are_created_listed_and_filtered(t: &mut TestDb) {
    let db = &t.db;
    seed(db).await;
    let (b1, task) = db.create_build(&request(false)).await.unwrap();
    assert_eq!(b1.state, BuildState::Queued);
    assert_eq!(b1.created_at, "2024-05-01T12:00:00Z");
    assert_eq!(
        (task.build_id, task.state, task.attempts, task.max_attempts),
        (b1.id, TaskState::Free, 0, 3)
    );
    let mut other = request(true);
    other.owner = "bob".into();
    let (b2, _) = db.create_build(&other).await.unwrap();
    db.assign_nvr(b1.id, &identity("2.4", Some("7")))
        .await
        .unwrap();
    db.set_commit(b1.id, "0123abcd").await.unwrap();

    let got = db.get_build(b1.id).await.unwrap();
    assert_eq!(got.commit.as_deref(), Some("0123abcd"));
    assert_eq!(
        got.nvr.as_ref().unwrap().to_string(),
        "httpd-container-2.4-7"
    );
    assert_eq!(
        db.get_build_by_nvr("httpd-container-2.4-7")
            .await
            .unwrap()
            .id,
        b1.id
    );

    let all = db.list_builds(&BuildFilter::default()).await.unwrap();
    assert_eq!(all.iter().map(|b| b.id).collect::<Vec<_>>(), [b2.id, b1.id]);
    let by = |f: BuildFilter| async move {
        db.list_builds(&f)
            .await
            .unwrap()
            .iter()
            .map(|b| b.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        by(BuildFilter {
            owner: Some("bob".into()),
            ..Default::default()
        })
        .await,
        [b2.id]
    );
    assert_eq!(
        by(BuildFilter {
            scratch: Some(false),
            ..Default::default()
        })
        .await,
        [b1.id]
    );
    assert_eq!(
        by(BuildFilter {
            nvr_prefix: Some("httpd-container-2.".into()),
            ..Default::default()
        })
        .await,
        [b1.id]
    );
    assert_eq!(
        by(BuildFilter {
            nvr_prefix: Some("httpd-container-3".into()),
            ..Default::default()
        })
        .await,
        Vec::<i64>::new()
    );
    // `%` and `_` are not wildcards
    assert_eq!(
        by(BuildFilter {
            nvr_prefix: Some("httpd%".into()),
            ..Default::default()
        })
        .await,
        Vec::<i64>::new()
    );
    assert_eq!(
        by(BuildFilter {
            state: Some(BuildState::Queued),
            component: Some("httpd".into()),
            ..Default::default()
        })
        .await,
        [b2.id, b1.id]
    );
    assert_eq!(
        by(BuildFilter {
            before_id: Some(b2.id),
            limit: Some(1),
            ..Default::default()
        })
        .await,
        [b1.id]
    );

    let mut unknown = request(false);
    unknown.target = "nope".into();
    assert!(matches!(
        db.create_build(&unknown).await,
        Err(DbError::NotFound { what: "target", .. })
    ));
    let mut bad = request(true);
    bad.isolated = true;
    assert!(matches!(
        db.create_build(&bad).await,
        Err(DbError::Flags(_))
    ));
    assert!(matches!(
        db.get_build(9999).await,
        Err(DbError::NotFound { what: "build", .. })
    ));
}

async fn nvr_uniqueness_under_concurrency(t: &mut TestDb) {
    let db = &t.db;
    seed(db).await;
    for round in 0..4 {
        let version = format!("1.{round}");
        let (a, _) = db.create_build(&request(false)).await.unwrap();
        let (b, _) = db.create_build(&request(false)).await.unwrap();
        // Same explicit release: exactly one wins.
        let race = |id: i64, v: String| {
            let db = db.clone();
            tokio::spawn(async move { db.assign_nvr(id, &identity(&v, Some("1"))).await })
        };
        let (ra, rb) = tokio::join!(race(a.id, version.clone()), race(b.id, version.clone()));
        let results = [ra.unwrap(), rb.unwrap()];
        let wins = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: {results:?}");
        let loser = results.iter().find_map(|r| r.as_ref().err()).unwrap();
        let winner_id = if results[0].is_ok() { a.id } else { b.id };
        match loser {
            DbError::DuplicateNvr { nvr, existing } => {
                assert_eq!(nvr.to_string(), format!("httpd-container-{version}-1"));
                assert_eq!(*existing, Some(winner_id));
            }
            other => panic!("round {round}: {other:?}"),
        }

        // No release label: both get one, and different ones.
        let (c, _) = db.create_build(&request(false)).await.unwrap();
        let (d, _) = db.create_build(&request(false)).await.unwrap();
        let bump = |id: i64, v: String| {
            let db = db.clone();
            tokio::spawn(async move { db.assign_nvr(id, &identity(&v, None)).await })
        };
        let (rc, rd) = tokio::join!(bump(c.id, version.clone()), bump(d.id, version.clone()));
        let releases: BTreeSet<String> = [rc.unwrap().unwrap(), rd.unwrap().unwrap()]
            .into_iter()
            .map(|n| n.release)
            .collect();
        assert_eq!(
            releases,
            BTreeSet::from(["2".to_string(), "3".to_string()]),
            "round {round}"
        );
    }
}

async fn release_bump(t: &mut TestDb) {
    let db = &t.db;
    seed(db).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (b, _) = db.create_build(&request(false)).await.unwrap();
        ids.push(b.id);
    }
    let n1 = db.assign_nvr(ids[0], &identity("2.4", None)).await.unwrap();
    let n2 = db
        .assign_nvr(ids[1], &identity("2.4", Some("5.fc40")))
        .await
        .unwrap();
    let n3 = db.assign_nvr(ids[2], &identity("2.4", None)).await.unwrap();
    assert_eq!(
        (
            n1.release.as_str(),
            n2.release.as_str(),
            n3.release.as_str()
        ),
        ("1", "5.fc40", "6.fc40")
    );
    // another version starts again at 1
    let (b, _) = db.create_build(&request(false)).await.unwrap();
    assert_eq!(
        db.assign_nvr(b.id, &identity("2.5", None))
            .await
            .unwrap()
            .release,
        "1"
    );
    // asking again (a retried build) keeps the NVR it has
    assert_eq!(
        db.assign_nvr(ids[0], &identity("2.4", None)).await.unwrap(),
        n1
    );
    // a failed build gives its NVR back
    let claim = db.claim_task("w", LEASE).await.unwrap().unwrap();
    assert_eq!(claim.build.id, ids[0]);
    db.fail_build(claim.task.id, "w", "RUN exited 1")
        .await
        .unwrap();
    let (again, _) = db.create_build(&request(false)).await.unwrap();
    assert_eq!(
        db.assign_nvr(again.id, &identity("2.4", Some("1")))
            .await
            .unwrap(),
        n1
    );
    // and the failed build's NVR can no longer change
    assert!(matches!(
        db.assign_nvr(ids[0], &identity("2.4", None)).await,
        Err(DbError::BuildState { .. })
    ));
}

async fn isolated_release_and_scratch_nvrs(t: &mut TestDb) {
    let db = &t.db;
    seed(db).await;
    let (b, _) = db.create_build(&request(false)).await.unwrap();
    db.assign_nvr(b.id, &identity("2.4", Some("1")))
        .await
        .unwrap();

    let mut iso = request(false);
    iso.isolated = true;
    iso.release_override = Some("1".into());
    let (i1, _) = db.create_build(&iso).await.unwrap();
    // the override wins over the label, and must be free
    let err = db
        .assign_nvr(i1.id, &identity("2.4", Some("9")))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DbError::DuplicateNvr { existing: Some(id), .. } if id == b.id),
        "{err}"
    );
    iso.release_override = Some("1.1".into());
    let (i2, _) = db.create_build(&iso).await.unwrap();
    assert_eq!(
        db.assign_nvr(i2.id, &identity("2.4", Some("9")))
            .await
            .unwrap()
            .release,
        "1.1"
    );

    // scratch builds may repeat an NVR
    for _ in 0..2 {
        let (s, _) = db.create_build(&request(true)).await.unwrap();
        assert_eq!(
            db.assign_nvr(s.id, &identity("2.4", Some("1")))
                .await
                .unwrap()
                .release,
            "1"
        );
    }
    // and a scratch build does not take a release from real ones
    let (s, _) = db.create_build(&request(true)).await.unwrap();
    db.assign_nvr(s.id, &identity("3.0", Some("4")))
        .await
        .unwrap();
    let (r, _) = db.create_build(&request(false)).await.unwrap();
    assert_eq!(
        db.assign_nvr(r.id, &identity("3.0", None))
            .await
            .unwrap()
            .release,
        "1"
    );
    // by NVR, the real build is found before scratch ones
    assert_eq!(
        db.get_build_by_nvr("httpd-container-2.4-1")
            .await
            .unwrap()
            .id,
        b.id
    );
}

async fn concurrent_workers_claim_each_task_once(t: &mut TestDb) {
    let db = &t.db;
    seed(db).await;
    let mut build_ids = BTreeSet::new();
    for _ in 0..24 {
        build_ids.insert(db.create_build(&request(true)).await.unwrap().0.id);
    }
    let worker = |name: &'static str| {
        let db = db.clone();
        tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(c) = db.claim_task(name, LEASE).await.unwrap() {
                assert_eq!(c.task.worker.as_deref(), Some(name));
                assert_eq!(c.task.state, TaskState::Claimed);
                assert_eq!(c.build.state, BuildState::Building);
                got.push((c.task.id, c.build.id));
            }
            got
        })
    };
    let (a, b) = tokio::join!(worker("w1"), worker("w2"));
    let (a, b) = (a.unwrap(), b.unwrap());
    let tasks: Vec<i64> = a.iter().chain(&b).map(|(t, _)| *t).collect();
    let unique: BTreeSet<i64> = tasks.iter().copied().collect();
    assert_eq!(tasks.len(), 24, "w1 {a:?} w2 {b:?}");
    assert_eq!(unique.len(), 24, "a task was claimed twice");
    let claimed_builds: BTreeSet<i64> = a.iter().chain(&b).map(|(_, b)| *b).collect();
    assert_eq!(claimed_builds, build_ids);
    assert!(db.claim_task("w3", LEASE).await.unwrap().is_none());
}

async fn lease_expiry_retries_then_fails(t: &mut TestDb) {
    let db = &t.db;
    seed(db).await;
    let mut req = request(false);
    req.max_attempts = 2;
    let (build, _) = db.create_build(&req).await.unwrap();
    let first = db.claim_task("w1", LEASE).await.unwrap().unwrap();
    assert_eq!(first.task.lease_until, Some(START + LEASE));

    // not yet expired
    t.clock.advance(LEASE);
    assert!(db.reap_expired().await.unwrap().is_empty());
    t.clock.advance(1);
    let reaped = db.reap_expired().await.unwrap();
    assert_eq!(reaped.len(), 1);
    assert_eq!(
        (
            reaped[0].build_state,
            reaped[0].task.attempts,
            reaped[0].task.state
        ),
        (BuildState::Queued, 1, TaskState::Free)
    );
    assert_eq!(reaped[0].worker.as_deref(), Some("w1"));
    assert_eq!(
        db.get_build(build.id).await.unwrap().state,
        BuildState::Queued
    );
    // the old holder finds out
    assert!(matches!(
        db.heartbeat(first.task.id, "w1", LEASE).await,
        Err(DbError::LeaseNotHeld { .. })
    ));
    assert!(matches!(
        db.complete_build(first.task.id, "w1", &result("sha256:x", vec![]))
            .await,
        Err(DbError::LeaseNotHeld { .. })
    ));

    let second = db.claim_task("w2", LEASE).await.unwrap().unwrap();
    assert_eq!((second.task.id, second.build.id), (first.task.id, build.id));
    t.clock.advance(LEASE + 1);
    let reaped = db.reap_expired().await.unwrap();
    assert_eq!(
        (
            reaped[0].build_state,
            reaped[0].task.attempts,
            reaped[0].task.state
        ),
        (BuildState::Failed, 2, TaskState::Failed)
    );
    let failed = db.get_build(build.id).await.unwrap();
    assert_eq!(failed.state, BuildState::Failed);
    let reason = failed.reason.unwrap();
    assert!(
        reason.contains("w2") && reason.contains("2 attempts"),
        "{reason}"
    );
    assert!(db.claim_task("w3", LEASE).await.unwrap().is_none());
    assert!(db.reap_expired().await.unwrap().is_empty());
}

async fn heartbeat_by_the_wrong_worker_is_refused(t: &mut TestDb) {
    let db = &t.db;
    seed(db).await;
    db.create_build(&request(false)).await.unwrap();
    let claim = db.claim_task("w1", LEASE).await.unwrap().unwrap();
    match db.heartbeat(claim.task.id, "w2", LEASE).await {
        Err(DbError::LeaseNotHeld {
            holder,
            state,
            worker,
            ..
        }) => {
            assert_eq!(
                (holder.as_deref(), state, worker.as_str()),
                (Some("w1"), TaskState::Claimed, "w2")
            );
        }
        other => panic!("{other:?}"),
    }
    // the holder keeps the task alive past its first deadline
    for _ in 0..3 {
        t.clock.advance(LEASE - 5);
        let task = db.heartbeat(claim.task.id, "w1", LEASE).await.unwrap();
        assert_eq!(task.lease_until, Some(db.now() + LEASE));
        assert!(db.reap_expired().await.unwrap().is_empty());
    }
    assert!(matches!(
        db.fail_build(claim.task.id, "w2", "no").await,
        Err(DbError::LeaseNotHeld { .. })
    ));
    assert!(matches!(
        db.heartbeat(9999, "w1", LEASE).await,
        Err(DbError::NotFound { what: "task", .. })
    ));
}

async fn cancel_stops_queued_and_running_builds(t: &mut TestDb) {
    let db = &t.db;
    seed(db).await;
    let (queued, task) = db.create_build(&request(false)).await.unwrap();
    let canceled = db.cancel_build(queued.id, "not needed").await.unwrap();
    assert_eq!(
        (canceled.state, canceled.reason.as_deref()),
        (BuildState::Canceled, Some("not needed"))
    );
    assert!(canceled.completed_at.is_some());
    assert_eq!(
        db.get_task(task.id).await.unwrap().state,
        TaskState::Canceled
    );
    assert!(db.claim_task("w1", LEASE).await.unwrap().is_none());

    let (running, _) = db.create_build(&request(false)).await.unwrap();
    let claim = db.claim_task("w1", LEASE).await.unwrap().unwrap();
    assert_eq!(claim.build.id, running.id);
    db.cancel_build(running.id, "canceled by alice")
        .await
        .unwrap();
    match db.heartbeat(claim.task.id, "w1", LEASE).await {
        Err(DbError::LeaseNotHeld { state, .. }) => assert_eq!(state, TaskState::Canceled),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        db.complete_build(claim.task.id, "w1", &result("sha256:c", vec![]))
            .await,
        Err(DbError::LeaseNotHeld { .. })
    ));
    assert_eq!(
        db.get_build(running.id).await.unwrap().state,
        BuildState::Canceled
    );
    // nothing left to reap, and a second cancel is refused
    t.clock.advance(LEASE * 3);
    assert!(db.reap_expired().await.unwrap().is_empty());
    assert!(matches!(
        db.cancel_build(running.id, "again").await,
        Err(DbError::State { .. })
    ));
}

async fn state_changes_are_checked(t: &mut TestDb) {
    let db = &t.db;
    seed(db).await;
    let done = complete_one(db, "1", "sha256:done", vec![]).await;
    assert_eq!(done.state, BuildState::Complete);
    assert!(done.started_at.is_some() && done.completed_at.is_some());
    match db.cancel_build(done.id, "late").await {
        Err(DbError::State { build_id, source }) => {
            assert_eq!(
                (build_id, source.from, source.to),
                (done.id, BuildState::Complete, BuildState::Canceled)
            );
        }
        other => panic!("{other:?}"),
    }
    // a finished task cannot be finished again
    let task = db.tasks_of_build(done.id).await.unwrap().remove(0);
    assert_eq!(task.state, TaskState::Done);
    assert!(matches!(
        db.fail_build(task.id, "w-complete", "x").await,
        Err(DbError::LeaseNotHeld {
            state: TaskState::Done,
            ..
        })
    ));
    // enqueueing is for queued builds without an open task
    assert!(matches!(
        db.enqueue_task(done.id, 1).await,
        Err(DbError::BuildState { .. })
    ));
    let (q, _) = db.create_build(&request(false)).await.unwrap();
    assert!(matches!(
        db.enqueue_task(q.id, 1).await,
        Err(DbError::AlreadyExists { .. })
    ));
}

async fn tags_and_their_history(t: &mut TestDb) {
    let db = &t.db;
    seed(db).await;
    let b = complete_one(db, "1", "sha256:t1", vec![]).await;
    // completion tagged it into the target's destination tag
    let tagged = db.list_tagged("f40-candidate").await.unwrap();
    assert_eq!(tagged.iter().map(|x| x.id).collect::<Vec<_>>(), [b.id]);

    db.create_tag("f40-stable").await.unwrap();
    assert!(matches!(
        db.create_tag("f40-stable").await,
        Err(DbError::AlreadyExists { .. })
    ));
    db.tag_build("f40-stable", b.id, "admin").await.unwrap();
    assert!(matches!(
        db.tag_build("f40-stable", b.id, "admin").await,
        Err(DbError::AlreadyTagged { .. })
    ));
    t.clock.advance(60);
    db.untag_build("f40-stable", b.id, "alice").await.unwrap();
    assert!(matches!(
        db.untag_build("f40-stable", b.id, "alice").await,
        Err(DbError::NotTagged { .. })
    ));
    assert!(db.list_tagged("f40-stable").await.unwrap().is_empty());
    db.tag_build("f40-stable", b.id, "admin").await.unwrap();

    let history = db.tag_history(Some("f40-stable")).await.unwrap();
    let summary: Vec<_> = history
        .iter()
        .map(|e| (e.action, e.user.as_str(), e.build_id))
        .collect();
    assert_eq!(
        summary,
        [
            (TagAction::Tag, "admin", b.id),
            (TagAction::Untag, "alice", b.id),
            (TagAction::Tag, "admin", b.id)
        ]
    );
    assert_eq!(history[1].at, "2024-05-01T12:01:00Z");
    assert_eq!(db.tag_history(None).await.unwrap().len(), 4);
    assert_eq!(
        db.list_tags().await.unwrap(),
        ["f40-candidate", "f40-stable"]
    );

    let (q, _) = db.create_build(&request(false)).await.unwrap();
    assert!(matches!(
        db.tag_build("f40-stable", q.id, "admin").await,
        Err(DbError::BuildState {
            state: BuildState::Queued,
            ..
        })
    ));
    assert!(matches!(
        db.tag_build("nope", b.id, "admin").await,
        Err(DbError::NotFound { what: "tag", .. })
    ));
    assert!(matches!(
        db.list_tagged("nope").await,
        Err(DbError::NotFound { .. })
    ));
    // scratch builds are not tagged on completion
    db.create_build(&request(true)).await.unwrap();
    let c = db.claim_task("w", LEASE).await.unwrap().unwrap();
    let c = if c.build.scratch {
        c
    } else {
        db.claim_task("w", LEASE).await.unwrap().unwrap()
    };
    db.complete_build(c.task.id, "w", &result("sha256:s", vec![]))
        .await
        .unwrap();
    assert_eq!(db.list_tagged("f40-candidate").await.unwrap().len(), 1);
}

async fn parent_build_is_found_by_manifest_digest(t: &mut TestDb) {
    let db = &t.db;
    seed(db).await;
    let base = complete_one(db, "1", "sha256:base", vec![]).await;

    let (child, _) = db.create_build(&request(false)).await.unwrap();
    let claim = db.claim_task("w", LEASE).await.unwrap().unwrap();
    assert_eq!(claim.build.id, child.id);
    let parent = db
        .set_parent(
            child.id,
            "127.0.0.1:5000/base/fedora:40",
            Some("sha256:base"),
        )
        .await
        .unwrap();
    assert_eq!(parent, Some(base.id));
    let done = db
        .complete_build(claim.task.id, "w", &result("sha256:child", vec![]))
        .await
        .unwrap();
    assert_eq!(done.parent_build_id, Some(base.id));
    assert_eq!(
        done.parent_ref.as_deref(),
        Some("127.0.0.1:5000/base/fedora:40")
    );
    assert_eq!(done.parent_digest.as_deref(), Some("sha256:base"));

    // a parent kiln did not build
    let (other, _) = db.create_build(&request(false)).await.unwrap();
    assert_eq!(
        db.set_parent(other.id, "quay.io/x/y", Some("sha256:elsewhere"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        db.set_parent(other.id, "scratch", None).await.unwrap(),
        None
    );
    assert!(matches!(
        db.set_parent(9999, "x", None).await,
        Err(DbError::NotFound { .. })
    ));
}

async fn which_builds_contain_a_package(t: &mut TestDb) {
    let db = &t.db;
    seed(db).await;
    let a = complete_one(
        db,
        "1",
        "sha256:a",
        vec![rpm("bash", "5.2"), rpm("openssl", "3.1")],
    )
    .await;
    let mut deb = rpm("bash", "5.2.15-2+b2");
    deb.kind = PackageKind::Deb;
    deb.epoch = None;
    deb.signing_key = None;
    let b = complete_one(db, "2", "sha256:b", vec![deb.clone()]).await;

    let hits = db.builds_with_package("bash").await.unwrap();
    assert_eq!(
        hits.iter().map(|h| h.build_id).collect::<Vec<_>>(),
        [b.id, a.id]
    );
    assert_eq!(hits[0].package, deb);
    assert_eq!(hits[1].package, rpm("bash", "5.2"));
    assert_eq!(
        hits[1].nvr.as_ref().unwrap().to_string(),
        "httpd-container-1-1"
    );
    assert_eq!(db.builds_with_package("openssl").await.unwrap().len(), 1);
    assert!(db.builds_with_package("zsh").await.unwrap().is_empty());

    let full = db.get_build(a.id).await.unwrap();
    assert_eq!(
        full.packages,
        vec![rpm("bash", "5.2"), rpm("openssl", "3.1")]
    );
    assert_eq!(full.layers, ["sha256:l1", "sha256:l2"]);
    assert_eq!(
        (full.image_size, full.config_digest.as_deref()),
        (Some(1234), Some("sha256:a-config"))
    );
}

async fn events_since_an_id(t: &mut TestDb) {
    let db = &t.db;
    seed(db).await;
    let start = db.last_event_id().await.unwrap();
    let (b, _) = db.create_build(&request(false)).await.unwrap();
    let claim = db.claim_task("w", LEASE).await.unwrap().unwrap();
    db.fail_build(claim.task.id, "w", "broken Dockerfile")
        .await
        .unwrap();
    let custom = db
        .append_event("compose.created", None, &serde_json::json!({"id": 1}))
        .await
        .unwrap();

    let events = db.events_since(start, 100).await.unwrap();
    let kinds: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e.kind.as_str(),
                e.payload
                    .get("state")
                    .and_then(|s| s.as_str())
                    .map(String::from),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("build.state", Some("queued".to_string())),
            ("build.state", Some("building".to_string())),
            ("build.state", Some("failed".to_string())),
            ("compose.created", None),
        ]
    );
    assert!(events.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(events[2].build_id, Some(b.id));
    assert_eq!(events[2].payload["reason"], "broken Dockerfile");
    assert_eq!(events[3].id, custom);
    // following from the middle, and with a limit
    let tail = db.events_since(events[1].id, 100).await.unwrap();
    assert_eq!(
        tail.iter().map(|e| e.id).collect::<Vec<_>>(),
        [events[2].id, custom]
    );
    assert_eq!(db.events_since(start, 1).await.unwrap().len(), 1);
    assert!(db.events_since(custom, 100).await.unwrap().is_empty());
    assert_eq!(db.last_event_id().await.unwrap(), custom);
}

async fn restart_keeps_everything(t: &mut TestDb) {
    seed(&t.db).await;
    let done = complete_one(&t.db, "1", "sha256:r", vec![rpm("bash", "5.2")]).await;
    let (queued, _) = t.db.create_build(&request(false)).await.unwrap();
    let (running, _) = t.db.create_build(&request(false)).await.unwrap();
    let claim = t.db.claim_task("w1", LEASE).await.unwrap().unwrap();
    assert_eq!(claim.build.id, queued.id);
    t.db.assign_nvr(queued.id, &identity("1", None))
        .await
        .unwrap();
    let token = t.db.create_token("alice", "cli").await.unwrap();
    let last_event = t.db.last_event_id().await.unwrap();

    t.reopen().await;
    let db = &t.db;
    assert_eq!(db.get_build(done.id).await.unwrap(), done);
    assert_eq!(
        db.get_build(queued.id).await.unwrap().state,
        BuildState::Building
    );
    assert_eq!(db.last_event_id().await.unwrap(), last_event);
    assert_eq!(
        db.user_for_token(&token).await.unwrap().unwrap().name,
        "alice"
    );
    assert_eq!(db.list_tagged("f40-candidate").await.unwrap().len(), 1);
    // the running build's worker carries on with its lease
    db.heartbeat(claim.task.id, "w1", LEASE).await.unwrap();
    // the queued one is still claimable, and NVRs stay unique
    let next = db.claim_task("w2", LEASE).await.unwrap().unwrap();
    assert_eq!(next.build.id, running.id);
    assert!(matches!(
        db.assign_nvr(running.id, &identity("1", Some("2"))).await,
        Err(DbError::DuplicateNvr { .. })
    ));
    assert_eq!(
        db.assign_nvr(running.id, &identity("1", None))
            .await
            .unwrap()
            .release,
        "3"
    );
    // opening an already migrated database again is fine
    t.reopen().await;
    assert_eq!(
        t.db.list_builds(&BuildFilter::default())
            .await
            .unwrap()
            .len(),
        3
    );
}

async fn components_targets_users_tokens(t: &mut TestDb) {
    let db = &t.db;
    seed(db).await;
    let mut c = db.get_component("httpd").await.unwrap();
    c.owners.push("bob".into());
    db.put_component(&c).await.unwrap();
    assert_eq!(
        db.get_component("httpd").await.unwrap().owners,
        ["alice", "bob"]
    );
    db.put_component(&Component {
        name: "nginx".into(),
        git_url: "file:///srv/git/nginx".into(),
        owners: vec![],
    })
    .await
    .unwrap();
    assert_eq!(db.list_components().await.unwrap().len(), 2);
    db.delete_component("nginx").await.unwrap();
    assert!(matches!(
        db.get_component("nginx").await,
        Err(DbError::NotFound {
            what: "component",
            ..
        })
    ));
    assert!(matches!(
        db.delete_component("nginx").await,
        Err(DbError::NotFound { .. })
    ));

    let mut target = db.get_target("f40").await.unwrap();
    assert_eq!(target.repos[0].baseurl, "http://127.0.0.1:8080/repo");
    target.allowed_parents.push("127.0.0.1:5000/other".into());
    target.dest_tag = "f40-updates".into();
    db.put_target(&target).await.unwrap();
    assert_eq!(db.list_targets().await.unwrap(), [target]);
    assert!(
        db.list_tags()
            .await
            .unwrap()
            .contains(&"f40-updates".to_string())
    );
    db.delete_target("f40").await.unwrap();
    assert!(matches!(
        db.get_target("f40").await,
        Err(DbError::NotFound { .. })
    ));

    db.put_user(&User {
        name: "root".into(),
        admin: true,
    })
    .await
    .unwrap();
    assert!(db.get_user("root").await.unwrap().admin);
    assert_eq!(db.list_users().await.unwrap().len(), 2);
    let token = db.create_token("root", "ci").await.unwrap();
    assert!(token.starts_with("kiln_") && token.len() == 5 + 64);
    let other = db.create_token("root", "laptop").await.unwrap();
    assert_ne!(token, other);
    assert_eq!(
        db.user_for_token(&token).await.unwrap(),
        Some(User {
            name: "root".into(),
            admin: true
        })
    );
    assert_eq!(db.user_for_token("kiln_nope").await.unwrap(), None);
    assert!(db.revoke_token(&token).await.unwrap());
    assert!(!db.revoke_token(&token).await.unwrap());
    assert_eq!(db.user_for_token(&token).await.unwrap(), None);
    assert!(db.user_for_token(&other).await.unwrap().is_some());
    assert!(matches!(
        db.create_token("ghost", "x").await,
        Err(DbError::NotFound { what: "user", .. })
    ));
}

async fn rebuild_events_items_and_the_content_index(t: &mut TestDb) {
    use kiln_hub::db::NewRebuildEvent;
    use kiln_hub::domain::cascade::{NewItem, ParentLink};
    use kiln_hub::model::{RebuildEventState, RebuildItemState, RebuildTrigger};

    let db = &t.db;
    seed(db).await;
    let mut libs = rpm("openssl-libs", "3.1");
    libs.source = Some("openssl-3.1-1.fc40.src.rpm".into());
    let first = complete_one(db, "1", "sha256:a", vec![libs.clone()]).await;
    let second = complete_one(db, "2", "sha256:b", vec![libs.clone(), rpm("bash", "5.2")]).await;

    // The content index: latest per name on the opted-in tag, packages by
    // binary or source name.
    assert_eq!(db.autorebuild_tags().await.unwrap(), ["f40-candidate"]);
    let latest = db.latest_tagged(None).await.unwrap();
    assert_eq!(latest.len(), 1, "{latest:?}");
    assert_eq!(latest[0].build_id, second.id);
    assert_eq!(latest[0].repository, "httpd-container");
    let by_source = db.packages_named(None, &["openssl".into()]).await.unwrap();
    assert_eq!(by_source[&second.id], vec![libs.clone()]);
    assert!(
        !by_source.contains_key(&first.id),
        "not the latest: {by_source:?}"
    );
    let nodes = db.autorebuild_images(&["bash".into()]).await.unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].packages, vec![rpm("bash", "5.2")]);
    let nodes = db.autorebuild_images(&["openssl".into()]).await.unwrap();
    assert_eq!(
        nodes.iter().map(|n| n.build_id).collect::<Vec<_>>(),
        [second.id],
        "only the latest build of a name is an image"
    );
    assert_eq!(
        db.replaced_build(&second).await.unwrap(),
        Some((first.id, "f40-candidate".to_string()))
    );
    assert!(db.children_of(first.id).await.unwrap().is_empty());
    // A newer build without the package: no image holds it any more, even
    // though older builds of the same name do.
    let third = complete_one(db, "3", "sha256:c", vec![rpm("bash", "5.3")]).await;
    assert!(
        db.autorebuild_images(&["openssl".into()])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(db.latest_tagged(None).await.unwrap()[0].build_id, third.id);
    assert_eq!(
        db.replaced_build(&third).await.unwrap(),
        Some((second.id, "f40-candidate".to_string()))
    );
    db.set_tag_autorebuild("other", true).await.unwrap();
    let tags = db.list_tag_info().await.unwrap();
    assert!(tags.iter().any(|t| t.name == "other" && t.autorebuild));

    // Events are recorded once per key.
    let new_event = |key: &str| NewRebuildEvent {
        trigger: RebuildTrigger::PackageUpdate,
        updates: vec!["bash-5.3-1.x86_64".into()],
        repo: None,
        trigger_build_id: None,
        replaced_build_id: None,
        submitter: "alice".into(),
        dedup_key: key.into(),
    };
    let (ev, created) = db.create_rebuild_event(&new_event("k1")).await.unwrap();
    assert!(created);
    assert_eq!(ev.state, RebuildEventState::Pending);
    let (again, created) = db.create_rebuild_event(&new_event("k1")).await.unwrap();
    assert!(!created);
    assert_eq!(again.id, ev.id);

    // Admission turns the plan into linked items, once.
    let waiting = |parent| NewItem {
        original_build_id: second.id,
        repository: "httpd-container".into(),
        depth: 0,
        parent,
        reasons: vec!["directly affected".into()],
        expect: vec!["bash-5.3-1.x86_64".into()],
        state: RebuildItemState::Waiting,
        coalesced_into: None,
        message: None,
    };
    let items = [waiting(ParentLink::None), waiting(ParentLink::New(0))];
    assert!(
        db.admit_rebuild_event(ev.id, &items, &[], RebuildEventState::Running, "2 images")
            .await
            .unwrap()
    );
    assert!(
        !db.admit_rebuild_event(ev.id, &items, &[], RebuildEventState::Running, "again")
            .await
            .unwrap()
    );
    let stored = db.rebuild_items(ev.id).await.unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[1].parent_item_id, Some(stored[0].id));
    assert_eq!(stored[0].expect, ["bash-5.3-1.x86_64"]);

    // A second event coalesced into the first's waiting item.
    let (ev2, _) = db.create_rebuild_event(&new_event("k2")).await.unwrap();
    let coalesced = NewItem {
        state: RebuildItemState::Coalesced,
        coalesced_into: Some(stored[1].id),
        ..waiting(ParentLink::None)
    };
    let more = kiln_hub::domain::cascade::Coalesce {
        item_id: stored[1].id,
        reasons: vec!["also this".into()],
        expect: vec!["zlib-2-1.x86_64".into()],
    };
    assert!(
        db.admit_rebuild_event(
            ev2.id,
            &[coalesced],
            &[more],
            RebuildEventState::Running,
            "1"
        )
        .await
        .unwrap()
    );
    let target_item = db.get_rebuild_item(stored[1].id).await.unwrap();
    assert_eq!(target_item.expect, ["bash-5.3-1.x86_64", "zlib-2-1.x86_64"]);

    // Starting is compare-and-set, with the build in the same transaction.
    let mut req = request(false);
    req.no_cache = true;
    req.parent_pin = Some("127.0.0.1:5000/base@sha256:p".into());
    let build = db
        .start_rebuild_item(stored[0].id, RebuildItemState::Waiting, None, &req)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(build.rebuild_item_id, Some(stored[0].id));
    assert!(build.no_cache);
    assert_eq!(build.parent_pin, req.parent_pin);
    assert!(
        db.start_rebuild_item(stored[0].id, RebuildItemState::Waiting, None, &req)
            .await
            .unwrap()
            .is_none()
    );
    let started = db.get_rebuild_item(stored[0].id).await.unwrap();
    assert_eq!(
        (started.state, started.attempts, started.build_id),
        (RebuildItemState::Building, 1, Some(build.id))
    );
    // A retry names the failed attempt's build.
    let retry = db
        .start_rebuild_item(
            stored[0].id,
            RebuildItemState::Building,
            Some(build.id),
            &req,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(db.get_rebuild_item(stored[0].id).await.unwrap().attempts, 2);

    // Finishing an item finishes what was coalesced into it.
    assert!(
        db.finish_rebuild_item(stored[0].id, RebuildItemState::Complete, Some("done"))
            .await
            .unwrap()
    );
    assert!(
        !db.finish_rebuild_item(stored[0].id, RebuildItemState::Failed, None)
            .await
            .unwrap()
    );
    assert!(
        db.finish_rebuild_item(stored[1].id, RebuildItemState::Held, Some("parent failed"))
            .await
            .unwrap()
    );
    let mirrored = db.rebuild_items(ev2.id).await.unwrap();
    assert_eq!(mirrored[0].state, RebuildItemState::Held);
    assert!(db.unfinished_rebuild_items().await.unwrap().is_empty());
    assert!(
        db.finish_rebuild_event(ev.id, RebuildEventState::Failed, "1 rebuilt, 1 held back")
            .await
            .unwrap()
    );
    let failed = db
        .list_rebuild_events(Some(RebuildEventState::Failed), 10)
        .await
        .unwrap();
    assert_eq!(failed.iter().map(|e| e.id).collect::<Vec<_>>(), [ev.id]);
    assert_eq!(
        db.rebuild_events_in(RebuildEventState::Running)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        db.get_rebuild_event(ev.id)
            .await
            .unwrap()
            .message
            .as_deref(),
        Some("1 rebuilt, 1 held back")
    );
    assert!(retry.id > build.id);

    // The watcher's snapshot and its event commit together, once.
    let url = "http://127.0.0.1:1/repo";
    assert_eq!(
        db.autorebuild_repos().await.unwrap(),
        ["http://127.0.0.1:8080/repo"]
    );
    assert!(db.repo_snapshot(url).await.unwrap().is_none());
    let mut watched = new_event("repo:x:1");
    watched.trigger = RebuildTrigger::RepoWatch;
    watched.repo = Some(url.into());
    let (e, created) = db
        .record_repo_poll(url, Some("{\"a\":1}"), None, Some(&watched))
        .await
        .unwrap()
        .unwrap();
    assert!(created);
    assert_eq!(e.repo.as_deref(), Some(url));
    assert_eq!(
        db.repo_snapshot(url).await.unwrap().as_deref(),
        Some("{\"a\":1}")
    );
    let (_, created) = db
        .record_repo_poll(url, Some("{}"), None, Some(&watched))
        .await
        .unwrap()
        .unwrap();
    assert!(!created);
    assert!(
        db.record_repo_poll(url, None, Some("HTTP 500"), None)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(db.repo_snapshot(url).await.unwrap().as_deref(), Some("{}"));
}
