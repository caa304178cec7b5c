//! The rebuild planner's benchmark (run by `bench/rebuild-plan`, which
//! explains the figures): a synthetic image graph, planned in memory, through
//! the database as the coordinator plans, and from a package-update event on
//! the HTTP API to the first rebuild queued.
//!
//! The graph is generated from a fixed seed, so every run plans the same
//! images: a forest of IMAGES images (depth 0..=5) holding PACKAGES RPMs
//! each, from a pool of about 10 x PACKAGES binary packages built from
//! shared source packages; `libbench` is held by exactly SHARE % of the
//! images, at an old version.
//!
//! One summary line on stdout, details on stderr; exits non-zero only when
//! something fails (the hub, a request, a plan of the wrong size).

use std::collections::HashSet;
use std::error::Error;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_hub::api::logs::LogStore;
use kiln_hub::api::server::{Hub, HubConfig, router};
use kiln_hub::db::{BuildFilter, Db, NewRebuildEvent};
use kiln_hub::domain::cascade::{self, ActiveItem, Admission};
use kiln_hub::domain::planner::{ImageGraph, ImageNode, Plan};
use kiln_hub::domain::rpmver::Nevra;
use kiln_hub::model::{
    BuildState, Package, PackageKind, RebuildEventState, RebuildItemState, RebuildTrigger,
};
use kiln_hub::rebuild::{plan_event, plan_updates, spawn_rebuilder, updates_key};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteSynchronous};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

const TAG: &str = "f40-candidate";
const TARGET: &str = "f40";
const REGISTRY: &str = "registry.bench.invalid";
const OWNER: &str = "bench";
const SIGNING_KEY: &str = "a15b79cc";
const CREATED: &str = "2024-05-01T10:00:00Z";
const MAX_DEPTH: usize = 5;
/// Images at depth 1..=MAX_DEPTH, in per cent of the non-root images.
const DEPTH_WEIGHTS: [usize; MAX_DEPTH] = [30, 28, 20, 14, 8];
const LIBBENCH_OLD: (&str, &str) = ("1.2.3", "1.fc40");
const PLAN_TARGET: Duration = Duration::from_millis(50);
const EVENT_TARGET: Duration = Duration::from_secs(1);
/// How long the hub may take to queue a rebuild before the run fails.
const EVENT_TIMEOUT: Duration = Duration::from_secs(120);
/// Rows per multi-row INSERT while loading the database.
const PACKAGE_ROWS_PER_INSERT: usize = 1000;
const BUILD_ROWS_PER_INSERT: usize = 400;
/// Images per transaction while loading packages.
const IMAGES_PER_TX: usize = 250;

fn err(msg: impl Into<String>) -> Box<dyn Error + Send + Sync> {
    msg.into().into()
}

fn log(line: impl AsRef<str>) {
    eprintln!("{}", line.as_ref());
}

// ---------------------------------------------------------------- settings

struct Settings {
    images: usize,
    packages: usize,
    share: usize,
    roots: usize,
    plan_runs: usize,
    db_runs: usize,
    event_runs: usize,
    seed: u64,
    work_root: PathBuf,
    keep_work: bool,
}

fn env_number(name: &str, default: usize) -> Res<usize> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map_err(|_| err(format!("{name}={v:?} is not a number"))),
        _ => Ok(default),
    }
}

impl Settings {
    fn from_env() -> Res<Settings> {
        let images = env_number("IMAGES", 10_000)?;
        let packages = env_number("PACKAGES", 300)?;
        let share = env_number("SHARE", 20)?;
        let roots = env_number("ROOTS", (images / 50).max(1))?;
        if images < roots + MAX_DEPTH || roots == 0 {
            return Err(err(format!(
                "IMAGES ({images}) must be at least ROOTS ({roots}, > 0) + {MAX_DEPTH}, to populate every depth"
            )));
        }
        if packages < 20 {
            return Err(err("PACKAGES must be at least 20"));
        }
        if share == 0 || share > 100 {
            return Err(err("SHARE must be a percentage in 1..=100"));
        }
        let work_root = std::env::var_os("WORK_ROOT")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        Ok(Settings {
            images,
            packages,
            share,
            roots,
            plan_runs: env_number("PLAN_RUNS", 20)?.max(1),
            db_runs: env_number("DB_RUNS", 10)?.max(1),
            event_runs: env_number("EVENT_RUNS", 3)?.max(1),
            seed: env_number("SEED", 0x6b69_6c6e)? as u64,
            work_root,
            keep_work: std::env::var("KEEP_WORK").is_ok_and(|v| v == "1"),
        })
    }
}

// ---------------------------------------------------------------- generator

/// xorshift64*: deterministic, good enough to spread a synthetic graph.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn hex(&mut self, chars: usize) -> String {
        let mut s = String::with_capacity(chars + 16);
        while s.len() < chars {
            s.push_str(&format!("{:016x}", self.next()));
        }
        s.truncate(chars);
        s
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

struct Version {
    epoch: Option<u32>,
    version: String,
    release: String,
    /// The source RPM's file name.
    srpm: String,
}

struct Source {
    name: String,
    /// Oldest first.
    versions: Vec<Version>,
    binaries: Vec<u32>,
}

struct Binary {
    name: String,
    source: u32,
    arch: &'static str,
    license: &'static str,
}

/// The packages images are made of. `libbench` is the last binary, outside
/// the random picks.
struct PackagePool {
    sources: Vec<Source>,
    binaries: Vec<Binary>,
    /// Binaries `0..picks` are picked at random.
    picks: usize,
    libbench: u32,
}

const SYLLABLES: [&str; 40] = [
    "ac", "al", "ba", "bz", "ca", "cr", "de", "do", "el", "ex", "fa", "fi", "ga", "gl", "hu", "ja",
    "ke", "li", "lz", "ma", "mo", "ne", "nu", "op", "pa", "pe", "qu", "re", "ru", "sa", "sy", "ta",
    "tz", "ur", "va", "wo", "xz", "ya", "ze", "zs",
];
const LICENSES: [&str; 6] = [
    "MIT",
    "GPL-2.0-or-later",
    "LGPL-2.1-or-later",
    "Apache-2.0",
    "BSD-3-Clause",
    "GPL-3.0-or-later AND LGPL-3.0-or-later",
];
/// Subpackage suffixes, each with the chance a source has one, and whether
/// it is noarch.
const SUBPACKAGES: [(&str, usize, bool); 5] = [
    ("-libs", 50, false),
    ("-common", 30, true),
    ("-tools", 20, false),
    ("-data", 15, true),
    ("-devel", 10, false),
];

impl PackagePool {
    fn generate(rng: &mut Rng, binaries_wanted: usize) -> PackagePool {
        let mut pool = PackagePool {
            sources: Vec::new(),
            binaries: Vec::new(),
            picks: 0,
            libbench: 0,
        };
        let mut names: HashSet<String> = HashSet::new();
        while pool.binaries.len() < binaries_wanted {
            let mut name = String::new();
            if rng.chance(25) {
                name.push_str("lib");
            }
            for _ in 0..2 + rng.below(2) {
                name.push_str(SYLLABLES[rng.below(SYLLABLES.len())]);
            }
            if !names.insert(name.clone()) {
                continue;
            }
            let epoch = rng.chance(8).then(|| 1 + rng.below(2) as u32);
            let (mut major, mut minor, mut patch) = (rng.below(10), rng.below(20), rng.below(30));
            let mut release = 1 + rng.below(4);
            let dist = if rng.chance(30) { "fc39" } else { "fc40" };
            let mut versions = Vec::new();
            for _ in 0..1 + rng.below(3) {
                let version = format!("{major}.{minor}.{patch}");
                let release_text = format!("{release}.{dist}");
                versions.push(Version {
                    epoch,
                    srpm: format!("{name}-{version}-{release_text}.src.rpm"),
                    version,
                    release: release_text,
                });
                match rng.below(3) {
                    0 => release += 1,
                    1 => (patch, release) = (patch + 1, 1),
                    _ => (minor, patch, release) = (minor + 1, 0, 1),
                }
                if rng.chance(5) {
                    (major, minor, patch) = (major + 1, 0, 0);
                }
            }
            let source = pool.sources.len() as u32;
            let all_noarch = rng.chance(20);
            let license = LICENSES[rng.below(LICENSES.len())];
            let mut binaries = Vec::new();
            let mut add = |pool: &mut PackagePool, name: String, noarch: bool| {
                binaries.push(pool.binaries.len() as u32);
                pool.binaries.push(Binary {
                    name,
                    source,
                    arch: if noarch || all_noarch {
                        "noarch"
                    } else {
                        "x86_64"
                    },
                    license,
                });
            };
            add(&mut pool, name.clone(), false);
            for (suffix, chance, noarch) in SUBPACKAGES {
                if rng.chance(chance) {
                    add(&mut pool, format!("{name}{suffix}"), noarch);
                }
            }
            if rng.chance(10) {
                add(&mut pool, format!("python3-{name}"), true);
            }
            pool.sources.push(Source {
                name,
                versions,
                binaries,
            });
        }
        pool.picks = pool.binaries.len();
        let (version, release) = LIBBENCH_OLD;
        pool.libbench = pool.binaries.len() as u32;
        pool.binaries.push(Binary {
            name: "libbench".into(),
            source: pool.sources.len() as u32,
            arch: "x86_64",
            license: "MIT",
        });
        pool.sources.push(Source {
            name: "libbench".into(),
            versions: vec![Version {
                epoch: None,
                version: version.into(),
                release: release.into(),
                srpm: format!("libbench-{version}-{release}.src.rpm"),
            }],
            binaries: vec![pool.libbench],
        });
        pool
    }

    fn version(&self, binary: u32, version: u8) -> (&Binary, &Source, &Version) {
        let b = &self.binaries[binary as usize];
        let s = &self.sources[b.source as usize];
        (b, s, &s.versions[usize::from(version)])
    }

    fn package(&self, binary: u32, version: u8) -> Package {
        let (b, _, v) = self.version(binary, version);
        Package {
            kind: PackageKind::Rpm,
            name: b.name.clone(),
            epoch: v.epoch,
            version: v.version.clone(),
            release: v.release.clone(),
            arch: b.arch.to_string(),
            source: Some(v.srpm.clone()),
            license: Some(b.license.to_string()),
            signing_key: Some(SIGNING_KEY.to_string()),
        }
    }
}

struct Image {
    parent: Option<u32>,
    depth: usize,
    /// (binary, version index), sorted by binary.
    packages: Vec<(u32, u8)>,
    holds_libbench: bool,
    commit: String,
    manifest_digest: String,
    config_digest: String,
    size: i64,
}

struct Graph {
    pool: PackagePool,
    images: Vec<Image>,
    /// Images where libbench comes in (it is not in their parent).
    libbench_tops: usize,
    /// Packages a child's layer removes of its parent's, and installs of
    /// its own.
    own: usize,
}

impl Graph {
    fn generate(s: &Settings) -> Graph {
        let mut rng = Rng::new(s.seed);
        let pool = PackagePool::generate(&mut rng, 10 * s.packages);

        // The forest: roots, then each depth's images on random parents one
        // level up, so parents come first (smaller build ids, as in life).
        let rest = s.images - s.roots;
        let mut per_depth: Vec<usize> = DEPTH_WEIGHTS
            .iter()
            .map(|w| (rest * w / 100).max(1))
            .collect();
        let assigned: usize = per_depth.iter().sum();
        per_depth[0] = (per_depth[0] + rest).saturating_sub(assigned).max(1);
        let mut parents: Vec<Option<u32>> = vec![None; s.roots];
        let mut depth: Vec<usize> = vec![0; s.roots];
        let mut level: Vec<u32> = (0..s.roots as u32).collect();
        for (d, &count) in per_depth.iter().enumerate() {
            let mut next = Vec::with_capacity(count);
            for _ in 0..count {
                if parents.len() == s.images {
                    break;
                }
                next.push(parents.len() as u32);
                parents.push(Some(level[rng.below(level.len())]));
                depth.push(d + 1);
            }
            level = next;
        }
        let n = parents.len();

        // libbench: whole subtrees (a child keeps its parent's packages),
        // brought in by some roots and then at random places, until exactly
        // SHARE % of the images hold it.
        let mut children: Vec<Vec<u32>> = vec![Vec::new(); n];
        for (i, p) in parents.iter().enumerate() {
            if let Some(p) = p {
                children[*p as usize].push(i as u32);
            }
        }
        let mut holds = vec![false; n];
        let mut top = vec![false; n];
        let mut remaining = s.images * s.share / 100;
        let mut candidates: Vec<u32> = (0..s.roots as u32).filter(|_| rng.chance(10)).collect();
        let mut everyone: Vec<u32> = (0..n as u32).collect();
        rng.shuffle(&mut everyone);
        candidates.extend(everyone);
        for c in candidates {
            if remaining == 0 {
                break;
            }
            if holds[c as usize] {
                continue;
            }
            let mut subtree = vec![c];
            let mut i = 0;
            while i < subtree.len() {
                subtree.extend(children[subtree[i] as usize].iter().copied());
                i += 1;
            }
            let uncovered = subtree.iter().filter(|&&x| !holds[x as usize]).count();
            if uncovered <= remaining {
                remaining -= uncovered;
                for x in subtree {
                    // Subtrees already holding it now inherit it from here.
                    top[x as usize] = false;
                    holds[x as usize] = true;
                }
                top[c as usize] = true;
            }
        }

        let own = (s.packages / 15).max(1);
        let mut images: Vec<Image> = Vec::with_capacity(n);
        let mut present = vec![false; pool.binaries.len()];
        for i in 0..n {
            let mut packages: Vec<(u32, u8)> = match parents[i] {
                None => {
                    // A root holding libbench brings it in.
                    let want = s.packages - usize::from(top[i]);
                    let mut list = Vec::with_capacity(s.packages);
                    while list.len() < want {
                        let b = rng.below(pool.picks) as u32;
                        let source = &pool.sources[pool.binaries[b as usize].source as usize];
                        let v = rng.below(source.versions.len()) as u8;
                        // Subpackages of one source tend to come together.
                        for &sub in &source.binaries {
                            if list.len() < want
                                && !present[sub as usize]
                                && (sub == b || rng.chance(40))
                            {
                                present[sub as usize] = true;
                                list.push((sub, v));
                            }
                        }
                    }
                    list
                }
                Some(p) => {
                    let mut list = images[p as usize].packages.clone();
                    // The child's layer removes a few, updates a few and
                    // installs its own; libbench stays.
                    for _ in 0..own {
                        loop {
                            let at = rng.below(list.len());
                            if list[at].0 != pool.libbench {
                                list.swap_remove(at);
                                break;
                            }
                        }
                    }
                    for (b, v) in &mut list {
                        let count = pool.sources[pool.binaries[*b as usize].source as usize]
                            .versions
                            .len();
                        if usize::from(*v) + 1 < count && rng.chance(5) {
                            *v += 1;
                        }
                    }
                    for &(b, _) in &list {
                        present[b as usize] = true;
                    }
                    let want = s.packages - usize::from(top[i]);
                    while list.len() < want {
                        let b = rng.below(pool.picks) as u32;
                        if !present[b as usize] {
                            present[b as usize] = true;
                            let source = &pool.sources[pool.binaries[b as usize].source as usize];
                            list.push((b, (source.versions.len() - 1) as u8));
                        }
                    }
                    list
                }
            };
            for &(b, _) in &packages {
                present[b as usize] = false;
            }
            if top[i] {
                packages.push((pool.libbench, 0));
            }
            packages.sort_unstable();
            images.push(Image {
                parent: parents[i],
                depth: depth[i],
                packages,
                holds_libbench: holds[i],
                commit: rng.hex(40),
                manifest_digest: format!("sha256:{}", rng.hex(64)),
                config_digest: format!("sha256:{}", rng.hex(64)),
                size: 50_000_000 + rng.below(800_000_000) as i64,
            });
        }
        Graph {
            pool,
            libbench_tops: top.iter().filter(|&&t| t).count(),
            images,
            own,
        }
    }

    fn build_id(i: usize) -> i64 {
        i as i64 + 1
    }

    fn repository(i: usize) -> String {
        format!("bench/img{i:05}")
    }

    fn component(i: usize) -> String {
        format!("img{i:05}-container")
    }

    fn node(&self, i: usize) -> ImageNode {
        let image = &self.images[i];
        ImageNode {
            build_id: Graph::build_id(i),
            component: Graph::component(i),
            repository: Graph::repository(i),
            tag: TAG.to_string(),
            packages: image
                .packages
                .iter()
                .map(|&(b, v)| self.pool.package(b, v))
                .collect(),
            parent_build_id: image.parent.map(|p| Graph::build_id(p as usize)),
            autorebuild: true,
        }
    }

    fn holders(&self) -> usize {
        self.images.iter().filter(|i| i.holds_libbench).count()
    }

    fn depths(&self) -> Vec<usize> {
        let mut d = vec![0; MAX_DEPTH + 1];
        for i in &self.images {
            d[i.depth] += 1;
        }
        d
    }
}

// ---------------------------------------------------------------- figures

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    let m = d.as_secs_f64() * 1000.0;
    if m >= 10_000.0 {
        format!("{:.1} s", m / 1000.0)
    } else if m >= 100.0 {
        format!("{m:.0} ms")
    } else if m >= 1.0 {
        format!("{m:.1} ms")
    } else {
        format!("{m:.3} ms")
    }
}

fn ratio(d: Duration, target: Duration) -> f64 {
    d.as_secs_f64() / target.as_secs_f64()
}

fn spread(v: &[Duration]) -> String {
    let min = v.iter().min().copied().unwrap_or_default();
    let max = v.iter().max().copied().unwrap_or_default();
    format!(
        "median {}, min {}, max {}",
        ms(median(v.to_vec())),
        ms(min),
        ms(max)
    )
}

fn describe(plan: &Plan) -> String {
    let sizes: Vec<String> = plan.batches.iter().map(|b| b.len().to_string()).collect();
    format!(
        "{} images in {} batches ({}), {} skipped, {} cycles",
        plan.rebuilds().count(),
        plan.batches.len(),
        sizes.join(" + "),
        plan.skipped.len(),
        plan.cycles.len()
    )
}

/// A plan must rebuild exactly the holders of libbench, or the figures
/// measure something else.
fn check_plan(plan: &Plan, g: &Graph, what: &str) -> Res<()> {
    let planned = plan.rebuilds().count();
    if planned != g.holders() || !plan.skipped.is_empty() || !plan.no_effect.is_empty() {
        return Err(err(format!(
            "{what}: expected {} images planned, got {}",
            g.holders(),
            describe(plan)
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------- phases

struct PureResult {
    graph: Duration,
    plans: Vec<Duration>,
    plan: String,
}

fn pure_phase(g: &Graph, s: &Settings, update: &Nevra) -> Res<PureResult> {
    log(format!(
        "== planning in memory: ImageGraph::new over {} images with all their packages, then plan(&[{update}]) x {}",
        g.images.len(),
        s.plan_runs
    ));
    // What turning the generator's packages into ImageNodes costs, to tell
    // it apart from the graph's own indexing.
    let t = Instant::now();
    let mut count = 0usize;
    for i in 0..g.images.len() {
        count += std::hint::black_box(g.node(i)).packages.len();
    }
    let materialize = t.elapsed();
    let t = Instant::now();
    let graph = ImageGraph::new((0..g.images.len()).map(|i| g.node(i)))?;
    let graph_time = t.elapsed();
    log(format!(
        "  graph: {} images, {count} package entries, built in {} (of which ~{} making the ImageNodes)",
        graph.len(),
        ms(graph_time),
        ms(materialize)
    ));
    let first = graph.plan(std::slice::from_ref(update));
    check_plan(&first, g, "in-memory plan")?;
    let mut plans = Vec::with_capacity(s.plan_runs);
    for _ in 0..s.plan_runs {
        let t = Instant::now();
        let plan = std::hint::black_box(graph.plan(std::slice::from_ref(update)));
        plans.push(t.elapsed());
        drop(plan);
    }
    log(format!("  plan: {}", describe(&first)));
    log(format!(
        "  plan time over {} runs: {}",
        s.plan_runs,
        spread(&plans)
    ));
    Ok(PureResult {
        graph: graph_time,
        plans,
        plan: describe(&first),
    })
}

/// `(?, ?, …), …`: `rows` rows of `cols` placeholders. Anonymous ones:
/// SQLite looks a numbered one's name up by a linear scan, which makes
/// binding a statement of thousands of `$N` quadratic.
fn values(rows: usize, cols: usize) -> String {
    let row = format!("({})", vec!["?"; cols].join(", "));
    vec![row; rows].join(", ")
}

const BUILD_INSERT: &str = "INSERT INTO builds (id, state, component, nvr_name, nvr_version, \
    nvr_release, nvr, source_url, source_ref, commit_id, target, owner, scratch, isolated, \
    parent_ref, parent_digest, parent_build_id, manifest_digest, config_digest, image_size, \
    layers, tags, created_at, started_at, completed_at) VALUES ";
const BUILD_COLS: usize = 25;
const PACKAGE_INSERT: &str = "INSERT INTO build_packages (build_id, kind, name, epoch, version, \
    release, arch, source, license, signing_key, source_name) VALUES ";
const PACKAGE_COLS: usize = 11;

/// Loads the graph with plain multi-row INSERTs on a connection of its
/// own (synchronous off: it is setup), as the hub would have recorded it:
/// complete builds tagged into the target's destination tag, with their
/// packages.
async fn load_database(url: &str, g: &Graph) -> Res<(u64, u64)> {
    let options: SqliteConnectOptions = url.parse()?;
    let mut conn: SqliteConnection = options
        .synchronous(SqliteSynchronous::Off)
        .busy_timeout(Duration::from_secs(30))
        .connect()
        .await?;

    let mut tx = conn.begin().await?;
    sqlx::query("INSERT INTO tags (name, created_at) VALUES ($1, $2)")
        .bind(TAG)
        .bind(CREATED)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO targets (name, allowed_parents, repos, dest_tag, registry, autorebuild) \
         VALUES ($1, '[]', '[]', $2, $3, 1)",
    )
    .bind(TARGET)
    .bind(TAG)
    .bind(REGISTRY)
    .execute(&mut *tx)
    .await?;
    for chunk in (0..g.images.len())
        .collect::<Vec<_>>()
        .chunks(BUILD_ROWS_PER_INSERT)
    {
        let sql = format!(
            "INSERT INTO components (name, git_url, owners) VALUES {}",
            vec![format!("(?, ?, '[\"{OWNER}\"]')"); chunk.len()].join(", ")
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for &i in chunk {
            q = q.bind(Graph::component(i)).bind(format!(
                "https://src.bench.invalid/containers/img{i:05}.git"
            ));
        }
        q.execute(&mut *tx).await?;

        let sql = format!("{BUILD_INSERT}{}", values(chunk.len(), BUILD_COLS));
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for &i in chunk {
            let image = &g.images[i];
            let repo = Graph::repository(i);
            let (parent_ref, parent_digest) = match image.parent {
                Some(p) => (
                    format!("{REGISTRY}/{}:latest", Graph::repository(p as usize)),
                    Some(g.images[p as usize].manifest_digest.clone()),
                ),
                None => ("registry.fedoraproject.org/fedora:40".to_string(), None),
            };
            let layers: Vec<String> = (0..=image.depth)
                .map(|l| format!("sha256:{:064x}", (i as u128) << 8 | l as u128))
                .collect();
            let tags = [
                format!("{REGISTRY}/{repo}:1.0-1"),
                format!("{REGISTRY}/{repo}:1.0"),
                format!("{REGISTRY}/{repo}:latest"),
            ];
            q = q
                .bind(Graph::build_id(i))
                .bind("complete")
                .bind(Graph::component(i))
                .bind(repo.clone())
                .bind("1.0")
                .bind("1")
                .bind(format!("{repo}-1.0-1"))
                .bind(format!(
                    "https://src.bench.invalid/containers/img{i:05}.git"
                ))
                .bind("main")
                .bind(image.commit.as_str())
                .bind(TARGET)
                .bind(OWNER)
                .bind(0_i64)
                .bind(0_i64)
                .bind(parent_ref)
                .bind(parent_digest)
                .bind(image.parent.map(|p| Graph::build_id(p as usize)))
                .bind(image.manifest_digest.as_str())
                .bind(image.config_digest.as_str())
                .bind(image.size)
                .bind(serde_json::to_string(&layers)?)
                .bind(serde_json::to_string(&tags)?)
                .bind(CREATED)
                .bind(CREATED)
                .bind(CREATED);
        }
        q.execute(&mut *tx).await?;

        let sql = format!(
            "INSERT INTO tag_builds (tag, build_id, tagged_by, tagged_at) VALUES {}",
            values(chunk.len(), 4)
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for &i in chunk {
            q = q
                .bind(TAG)
                .bind(Graph::build_id(i))
                .bind(OWNER)
                .bind(CREATED);
        }
        q.execute(&mut *tx).await?;
    }
    tx.commit().await?;

    // Building the package indexes once at the end is much faster than
    // keeping them up to date over millions of inserts in random name
    // order. They are made again from their own definitions, so the schema
    // ends as migrated.
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, sql FROM sqlite_master \
         WHERE type = 'index' AND tbl_name = 'build_packages' AND sql IS NOT NULL",
    )
    .fetch_all(&mut conn)
    .await?;
    for (name, _) in &indexes {
        sqlx::query(AssertSqlSafe(format!("DROP INDEX \"{name}\"")))
            .execute(&mut conn)
            .await?;
    }

    let full: Arc<str> = format!(
        "{PACKAGE_INSERT}{}",
        values(PACKAGE_ROWS_PER_INSERT, PACKAGE_COLS)
    )
    .into();
    let mut rows_total = 0u64;
    for images in (0..g.images.len())
        .collect::<Vec<_>>()
        .chunks(IMAGES_PER_TX)
    {
        let rows: Vec<(usize, u32, u8)> = images
            .iter()
            .flat_map(|&i| g.images[i].packages.iter().map(move |&(b, v)| (i, b, v)))
            .collect();
        let mut tx = conn.begin().await?;
        for chunk in rows.chunks(PACKAGE_ROWS_PER_INSERT) {
            let sql: Arc<str> = if chunk.len() == PACKAGE_ROWS_PER_INSERT {
                full.clone()
            } else {
                format!("{PACKAGE_INSERT}{}", values(chunk.len(), PACKAGE_COLS)).into()
            };
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for &(i, b, v) in chunk {
                let (bin, source, ver) = g.pool.version(b, v);
                q = q
                    .bind(Graph::build_id(i))
                    .bind("rpm")
                    .bind(bin.name.as_str())
                    .bind(ver.epoch.map(i64::from))
                    .bind(ver.version.as_str())
                    .bind(ver.release.as_str())
                    .bind(bin.arch)
                    .bind(ver.srpm.as_str())
                    .bind(bin.license)
                    .bind(SIGNING_KEY)
                    .bind(source.name.as_str());
            }
            q.execute(&mut *tx).await?;
        }
        rows_total += rows.len() as u64;
        tx.commit().await?;
    }
    for (_, sql) in indexes {
        sqlx::query(AssertSqlSafe(sql)).execute(&mut conn).await?;
    }
    sqlx::query("ANALYZE").execute(&mut conn).await?;
    conn.close().await?;
    Ok((g.images.len() as u64, rows_total))
}

/// Times `plan_updates` and, one by one, the steps it is made of; returns
/// the plan_updates times.
async fn db_phase(
    hub: &Hub,
    url: &str,
    g: &Graph,
    s: &Settings,
    update: &Nevra,
) -> Res<Vec<Duration>> {
    log(format!(
        "== planning from the database: rebuild::plan_updates(&[{update}]) x {} (the coordinator's path: reads the latest images on the opted-in tags and only the packages named)",
        s.db_runs
    ));
    let updates = std::slice::from_ref(update);
    let first = plan_updates(hub, updates).await?;
    check_plan(&first, g, "plan_updates")?;
    let mut plans = Vec::with_capacity(s.db_runs);
    for _ in 0..s.db_runs {
        let t = Instant::now();
        let plan = plan_updates(hub, updates).await?;
        plans.push(t.elapsed());
        std::hint::black_box(plan);
    }
    log(format!("  plan: {}", describe(&first)));
    log(format!(
        "  plan_updates over {} runs: {}",
        s.db_runs,
        spread(&plans)
    ));

    // The same steps one by one, to show where the time goes.
    let names = vec![update.name.clone()];
    let mut parts: Vec<(&'static str, Vec<Duration>)> = vec![
        ("autorebuild_tags", Vec::new()),
        ("latest_reaching", Vec::new()),
        ("packages_named", Vec::new()),
        ("ImageGraph::new", Vec::new()),
        ("plan", Vec::new()),
    ];
    for _ in 0..s.db_runs {
        let t = Instant::now();
        let tags = hub.db.autorebuild_tags().await?;
        parts[0].1.push(t.elapsed());
        let t = Instant::now();
        let images = hub.db.latest_reaching(Some(&tags), &names).await?;
        parts[1].1.push(t.elapsed());
        let t = Instant::now();
        let mut packages = hub.db.packages_named(Some(&tags), &names).await?;
        parts[2].1.push(t.elapsed());
        let t = Instant::now();
        let graph = ImageGraph::new(images.into_iter().map(|i| ImageNode {
            build_id: i.build_id,
            component: i.component,
            repository: i.repository,
            tag: i.tag,
            packages: packages.remove(&i.build_id).unwrap_or_default(),
            parent_build_id: i.parent_build_id,
            autorebuild: i.autorebuild.unwrap_or(true),
        }))?;
        parts[3].1.push(t.elapsed());
        let t = Instant::now();
        std::hint::black_box(graph.plan(updates));
        parts[4].1.push(t.elapsed());
    }
    log(format!(
        "  its steps one by one (medians): {}",
        parts
            .into_iter()
            .map(|(n, v)| format!("{n} {}", ms(median(v))))
            .collect::<Vec<_>>()
            .join(", ")
    ));

    // The two SELECTs of those steps (their text copied from
    // db/rebuilds.rs) on a plain sqlx SQLite connection, without sqlx::Any
    // and the hub's row decoding: what SQLite itself costs, and what
    // handing the rows over costs.
    let mut conn: SqliteConnection = url.parse::<SqliteConnectOptions>()?.connect().await?;
    let latest = "SELECT tb.tag, b.id, b.nvr_name, b.nvr, b.component, b.parent_build_id, \
        b.autorebuild FROM tag_builds tb JOIN builds b ON b.id = tb.build_id \
        WHERE b.state = 'complete' AND b.nvr_name IS NOT NULL AND tb.tag IN (?)";
    let named = "SELECT build_id, kind, name, epoch, version, release, arch, source, license, \
        signing_key FROM build_packages WHERE name IN (?) OR source_name IN (?)";
    let mut raw: Vec<(String, Vec<Duration>)> = Vec::new();
    for (what, sql, binds) in [
        ("latest_tagged's", latest, 1),
        ("packages_named's", named, 2),
    ] {
        for (how, text) in [
            ("fetch_all", sql.to_string()),
            ("count(*)", format!("SELECT count(*) FROM ({sql})")),
        ] {
            let mut times = Vec::with_capacity(s.db_runs);
            for _ in 0..s.db_runs {
                let mut q = sqlx::query(AssertSqlSafe(text.clone()));
                for _ in 0..binds {
                    q = q.bind(if binds == 1 {
                        TAG
                    } else {
                        update.name.as_str()
                    });
                }
                let t = Instant::now();
                std::hint::black_box(q.fetch_all(&mut conn).await?);
                times.push(t.elapsed());
            }
            raw.push((format!("{what} {how}"), times));
        }
    }
    conn.close().await?;
    log(format!(
        "  their SELECTs on a plain sqlx SQLite connection (no sqlx::Any; medians): {}",
        raw.into_iter()
            .map(|(n, v)| format!("{n} {}", ms(median(v))))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(plans)
}

struct EventRun {
    post: Duration,
    first: Duration,
    batch: Option<Duration>,
    queued: usize,
    message: String,
}

async fn newest_build_id(hub: &Hub) -> Res<i64> {
    let newest = hub
        .db
        .list_builds(&BuildFilter {
            limit: Some(1),
            ..BuildFilter::default()
        })
        .await?;
    Ok(newest.first().map_or(0, |b| b.id))
}

async fn queued_after(hub: &Hub, after: i64) -> Res<Vec<i64>> {
    let queued = hub
        .db
        .list_builds(&BuildFilter {
            state: Some(BuildState::Queued),
            limit: Some(1_000_000),
            ..BuildFilter::default()
        })
        .await?;
    Ok(queued
        .iter()
        .map(|b| b.id)
        .filter(|&id| id > after)
        .collect())
}

/// One package-update event through the HTTP API, timed until the first
/// rebuild it causes is queued; then (untimed) until its whole first batch
/// is; then its rebuilds are canceled and the event left to fail, so that
/// the next run starts from the same state (a rebuild under way would
/// defer the next event).
async fn event_run(
    hub: &Arc<Hub>,
    http: &reqwest::Client,
    base: &str,
    update: &str,
    first_batch: usize,
) -> Res<EventRun> {
    let before = newest_build_id(hub).await?;
    let queued_url = format!("{base}/api/v1/builds?state=queued&limit=1");
    let t0 = Instant::now();
    let resp = http
        .post(format!("{base}/api/v1/package-updates"))
        .json(&serde_json::json!({ "packages": [update] }))
        .send()
        .await?;
    let post = t0.elapsed();
    let status = resp.status();
    let body: serde_json::Value = resp.json().await?;
    if status != reqwest::StatusCode::CREATED {
        return Err(err(format!(
            "POST /api/v1/package-updates {update}: {status} {body}"
        )));
    }
    let event_id = body["event"]["id"]
        .as_i64()
        .ok_or_else(|| err(format!("no event id in {body}")))?;
    let first = loop {
        let resp = http.get(&queued_url).send().await?;
        if !resp.status().is_success() {
            return Err(err(format!("GET {queued_url}: {}", resp.status())));
        }
        let builds: serde_json::Value = resp.json().await?;
        let newest = builds
            .as_array()
            .and_then(|a| a.first())
            .and_then(|b| b["id"].as_i64());
        if newest.is_some_and(|id| id > before) {
            break t0.elapsed();
        }
        if t0.elapsed() > EVENT_TIMEOUT {
            let ev = hub.db.get_rebuild_event(event_id).await?;
            return Err(err(format!(
                "no rebuild queued {} s after the event ({update}); event {event_id} is {:?}: {}",
                EVENT_TIMEOUT.as_secs(),
                ev.state,
                ev.message.unwrap_or_default()
            )));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    // The rest of the first batch, polled less eagerly so as not to slow it.
    let mut batch = None;
    while t0.elapsed() < EVENT_TIMEOUT {
        if queued_after(hub, before).await?.len() >= first_batch {
            batch = Some(t0.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let message = hub
        .db
        .get_rebuild_event(event_id)
        .await?
        .message
        .unwrap_or_default();

    // Untimed: cancel what it queued and wait for the event to end.
    let mut canceled = 0usize;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        for id in queued_after(hub, before).await? {
            hub.db.cancel_build(id, "canceled by the benchmark").await?;
            canceled += 1;
        }
        hub.wake.notify_one();
        let ev = hub.db.get_rebuild_event(event_id).await?;
        if !matches!(
            ev.state,
            RebuildEventState::Pending | RebuildEventState::Running
        ) {
            break;
        }
        if Instant::now() > deadline {
            return Err(err(format!(
                "event {event_id} still {:?} 600 s after its rebuilds were canceled",
                ev.state
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(EventRun {
        post,
        first,
        batch,
        queued: canceled,
        message,
    })
}

/// The steps the coordinator takes from a new event to its first rebuild
/// queued (rebuild::pass: admit_event, then advance_items up to the first
/// submit), replayed one by one with the coordinator stopped, to show where
/// the event figure goes. Leaves the event running with one build queued.
async fn replay_coordinator(hub: &Hub, update: &str) -> Res<Vec<(String, Duration)>> {
    let nevra = Nevra::parse(update)?;
    let mut steps: Vec<(String, Duration)> = Vec::new();
    let t = Instant::now();
    let (ev, _) = hub
        .db
        .create_rebuild_event(&NewRebuildEvent {
            trigger: RebuildTrigger::PackageUpdate,
            updates: vec![nevra.to_string()],
            repo: None,
            trigger_build_id: None,
            replaced_build_id: None,
            submitter: "admin".into(),
            dedup_key: updates_key(std::slice::from_ref(&nevra)),
        })
        .await?;
    steps.push(("record the event (the POST)".into(), t.elapsed()));
    let t = Instant::now();
    hub.db.rebuild_events_in(RebuildEventState::Pending).await?;
    steps.push(("read the pending events".into(), t.elapsed()));
    let t = Instant::now();
    let plan = plan_event(hub, &ev).await?;
    steps.push(("plan_event".into(), t.elapsed()));
    let t = Instant::now();
    let active: std::collections::HashMap<String, ActiveItem> = hub
        .db
        .unfinished_rebuild_items()
        .await?
        .into_iter()
        .filter(|i| i.event_id != ev.id)
        .map(|i| {
            (
                i.repository.clone(),
                ActiveItem {
                    item_id: i.id,
                    event_id: i.event_id,
                    state: i.state,
                    build_id: i.build_id,
                },
            )
        })
        .collect();
    steps.push(("unfinished items of other events".into(), t.elapsed()));
    let t = Instant::now();
    let admission = cascade::admit(&plan, &active);
    steps.push(("cascade::admit".into(), t.elapsed()));
    let Admission::Admit {
        new_items,
        coalesce,
        state,
        message,
    } = admission
    else {
        return Err(err("the replayed event was deferred"));
    };
    let t = Instant::now();
    hub.db
        .admit_rebuild_event(ev.id, &new_items, &coalesce, state, &message)
        .await?;
    steps.push((
        format!("admit_rebuild_event ({} items)", new_items.len()),
        t.elapsed(),
    ));
    let t = Instant::now();
    let items = hub.db.unfinished_rebuild_items().await?;
    steps.push((
        format!("unfinished items again ({})", items.len()),
        t.elapsed(),
    ));
    let first = items
        .iter()
        .find(|i| i.event_id == ev.id && i.parent_item_id.is_none())
        .ok_or_else(|| err("no item without a parent"))?;
    let t = Instant::now();
    let original = hub.db.get_build(first.original_build_id).await?;
    hub.db.get_rebuild_event(first.event_id).await?;
    steps.push((
        "get_build of the image (with its packages) + its event".into(),
        t.elapsed(),
    ));
    let t = Instant::now();
    let request =
        kiln_hub::rebuild::rebuild_request(&original, first.id, None, hub.config.max_attempts);
    hub.db
        .start_rebuild_item(first.id, RebuildItemState::Waiting, None, &request)
        .await?
        .ok_or_else(|| err("the first item was not started"))?;
    steps.push(("start_rebuild_item (build queued)".into(), t.elapsed()));
    Ok(steps)
}

// ---------------------------------------------------------------- main

#[tokio::main]
async fn main() {
    match run().await {
        Ok(line) => println!("{line}"),
        Err(e) => {
            log(format!("rebuild-plan bench: FAILED: {e}"));
            std::process::exit(1);
        }
    }
}

async fn run() -> Res<String> {
    let s = Settings::from_env()?;
    let t = Instant::now();
    let g = Graph::generate(&s);
    let depths = g.depths();
    log(format!(
        "== graph: {} images (seed {:#x}) generated in {}; per depth 0..={MAX_DEPTH}: {}",
        g.images.len(),
        s.seed,
        ms(t.elapsed()),
        depths
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" / ")
    ));
    log(format!(
        "  {} packages each, from {} binary RPMs of {} source RPMs; a child keeps its parent's packages but {} (some updated) and installs {} of its own",
        s.packages,
        g.pool.picks,
        g.pool.sources.len() - 1,
        g.own,
        g.own
    ));
    log(format!(
        "  libbench-{}-{}.x86_64 held by {} images ({} %), brought in by {} of them (the others inherit it)",
        LIBBENCH_OLD.0,
        LIBBENCH_OLD.1,
        g.holders(),
        s.share,
        g.libbench_tops
    ));
    for (i, image) in g.images.iter().enumerate() {
        let distinct = image.packages.windows(2).all(|w| w[0].0 != w[1].0);
        if image.packages.len() != s.packages || !distinct {
            return Err(err(format!(
                "the generator gave image {i} {} packages ({}), not {} distinct ones",
                image.packages.len(),
                if distinct { "distinct" } else { "some twice" },
                s.packages
            )));
        }
    }
    if g.holders() != s.images * s.share / 100 {
        return Err(err(format!(
            "the generator gave libbench to {} images, not {}",
            g.holders(),
            s.images * s.share / 100
        )));
    }

    let update = Nevra::parse("libbench-1.2.4-1.fc40.x86_64")?;
    let pure = pure_phase(&g, &s, &update)?;

    // The database, on a real disk (bench/rebuild-plan puts it under .cache/).
    std::fs::create_dir_all(&s.work_root)?;
    let work = tempfile::Builder::new()
        .prefix("run.")
        .tempdir_in(&s.work_root)?;
    let dir = work.path().to_path_buf();
    let url = format!("sqlite://{}?mode=rwc", dir.join("hub.db").display());
    log(format!(
        "== loading the database {} (untimed setup)",
        dir.join("hub.db").display()
    ));
    let db = Db::open(&url).await?;
    let t = Instant::now();
    let (builds, rows) = load_database(&url, &g).await?;
    let load = t.elapsed();
    let db_bytes = std::fs::metadata(dir.join("hub.db"))?.len()
        + std::fs::metadata(dir.join("hub.db-wal")).map_or(0, |m| m.len());
    log(format!(
        "  {builds} complete builds tagged into {TAG} (target {TARGET}, autorebuild on), {rows} package rows: loaded in {} ({} MB on disk)",
        ms(load),
        db_bytes / 1_000_000
    ));
    let logs = LogStore::open(&dir.join("logs"))?;
    let config = HubConfig {
        repo_poll_secs: 0,
        ..HubConfig::default()
    };
    let hub = Arc::new(Hub::new(db, logs, config));
    let db_plans = db_phase(&hub, &url, &g, &s, &update).await?;

    log(format!(
        "== package-update event -> first rebuild queued: {} runs through the HTTP API (hub in this process: router on 127.0.0.1 and the rebuild coordinator; queued builds polled every 5 ms)",
        s.event_runs
    ));
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server_hub = hub.clone();
    let server = tokio::spawn(async move { axum::serve(listener, router(server_hub)).await });
    let coordinator = spawn_rebuilder(hub.clone());
    let http = reqwest::Client::new();
    let first_batch = {
        let plan = plan_updates(&hub, std::slice::from_ref(&update)).await?;
        plan.batches.first().map_or(0, Vec::len)
    };
    let mut runs = Vec::with_capacity(s.event_runs);
    for r in 0..s.event_runs {
        // Let the coordinator settle into its idle wait first.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let update = format!("libbench-1.2.{}-1.fc40.x86_64", 4 + r);
        let run = event_run(&hub, &http, &base, &update, first_batch).await?;
        log(format!(
            "  run {}: {update}: POST answered in {}, first rebuild queued after {}, whole first batch ({first_batch}) after {}; event: {}; {} rebuilds canceled afterwards",
            r + 1,
            ms(run.post),
            ms(run.first),
            run.batch.map_or("(timed out)".to_string(), ms),
            run.message,
            run.queued
        ));
        runs.push(run);
    }
    coordinator.abort();
    server.abort();
    let _ = coordinator.await;
    let _ = server.await;
    let steps = replay_coordinator(
        &hub,
        &format!("libbench-1.2.{}-1.fc40.x86_64", 4 + s.event_runs),
    )
    .await?;
    log(format!(
        "  the coordinator's steps to the first rebuild queued, replayed once (coordinator stopped), {} in all:",
        ms(steps.iter().map(|(_, d)| *d).sum())
    ));
    for (what, d) in &steps {
        log(format!("    {:>9}  {what}", ms(*d)));
    }
    let event_first = median(runs.iter().map(|r| r.first).collect());
    let event_post = median(runs.iter().map(|r| r.post).collect());

    if s.keep_work {
        log(format!("work directory kept: {}", work.keep().display()));
    }

    let plan = median(pure.plans.clone());
    let plan_db = median(db_plans);
    log(format!(
        "(kiln-hub {}; {} cores; SQLite; load average {})",
        env!("CARGO_PKG_VERSION"),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    ));
    Ok(format!(
        "rebuild-plan bench: {} images x {} packages, libbench in {} % | plan in memory {} ({:.2}x of 50 ms; graph built in {}) | plan from the database {} ({:.2}x of 50 ms) | event->first queued {} ({:.2}x of 1 s; POST {}) | plan: {}",
        s.images,
        s.packages,
        s.share,
        ms(plan),
        ratio(plan, PLAN_TARGET),
        ms(pure.graph),
        ms(plan_db),
        ratio(plan_db, PLAN_TARGET),
        ms(event_first),
        ratio(event_first, EVENT_TARGET),
        ms(event_post),
        pure.plan
    ))
}
