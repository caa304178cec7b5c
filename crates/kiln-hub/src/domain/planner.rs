//! The rebuild planner: given the latest image builds on the tags that take
//! automatic rebuilds, and a set of updated packages, which images to rebuild
//! and in what order.
//!
//! Rules:
//!
//! - An image is *directly affected* by an update when it holds an older
//!   version ([`Evr::cmp_full`]) of the package, matched by binary name, or by
//!   source package name (the name of its source RPM, so an update of `foo`
//!   reaches `foo-libs`). For a source match the source RPM's version-release
//!   is compared. Arches must agree, with `noarch` on either side and `src`
//!   updates matching any arch ([`arch_applies`]). Debian packages are not
//!   considered: RPM version rules do not apply to them.
//! - Every image built on top of a planned image (its `parent_build_id`) is
//!   planned too, down the whole lineage, in a later batch: depth = 1 + the
//!   depth of its planned parent, so an image comes after all of its planned
//!   ancestors, and an image that is both directly affected and a descendant
//!   is planned once, at the later depth.
//! - An image with `autorebuild: false` is skipped, and so is everything
//!   below it that the plan would reach: a child rebuilt on top of the old
//!   parent would keep the parent's old packages. Skips are recorded with
//!   their reason, never dropped.
//! - A loop in the parent records (corrupt data) is detected; the images in
//!   or below it are skipped with the loop named.
//! - A base image rebuilt by hand ([`ImageGraph::plan_below`]): every image
//!   built on the old build is planned the same way, its direct children at
//!   depth 0 (their new parent is already built) and their descendants
//!   below them, with the same skips. The old build itself is not planned,
//!   and it need not be in the graph (it is usually no longer the latest on
//!   its tag).
//!
//! Both kinds of plan share one walk from the initially hit images down.
//! [`still_older`] applies the same matching rules to the package list of a
//! freshly rebuilt image, to check that the rebuild picked the updates up.
//!
//! Planning is a lookup in indexes built once by [`ImageGraph::new`]
//! (package name → packages of images, parent build id → children), then a
//! walk over the affected part of the graph only.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use super::rpmver::{Evr, Nevra, PackageQuery, arch_applies, rpmvercmp};
use crate::model::{Package, PackageKind};

/// One image as the planner sees it: the latest build of a component on a
/// tag that takes automatic rebuilds.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageNode {
    pub build_id: i64,
    pub component: String,
    pub repository: String,
    pub tag: String,
    pub packages: Vec<Package>,
    /// The kiln build its final stage was built FROM.
    pub parent_build_id: Option<i64>,
    /// `autorebuild` of the component's `container.yaml`.
    pub autorebuild: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    /// The same build listed twice (latest on two tags) must describe the
    /// same image.
    #[error("build {build_id} is listed twice with different {field}: {first:?} and {second:?}")]
    Conflict {
        build_id: i64,
        field: &'static str,
        first: String,
        second: String,
    },
}

/// Why an image is in a plan.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RebuildReason {
    /// It holds `installed` (`name-[E:]V-R`, with `from SRPM` for a match by
    /// source package), older than `update`.
    DirectlyAffected { update: Nevra, installed: String },
    /// Its parent image is rebuilt in an earlier batch of the same plan.
    ParentRebuilt {
        parent_build_id: i64,
        parent_repository: String,
    },
    /// Its parent was rebuilt by hand; `parent_build_id` is the new build,
    /// to rebuild on.
    NewParentBuild {
        parent_build_id: i64,
        parent_repository: String,
    },
}

impl fmt::Display for RebuildReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RebuildReason::DirectlyAffected { update, installed } => {
                write!(f, "directly affected by {update} (has {installed})")
            }
            RebuildReason::ParentRebuilt {
                parent_build_id,
                parent_repository,
            } => write!(
                f,
                "parent {parent_repository} rebuilt (build {parent_build_id})"
            ),
            RebuildReason::NewParentBuild {
                parent_build_id,
                parent_repository,
            } => write!(
                f,
                "parent {parent_repository} was rebuilt by hand (build {parent_build_id})"
            ),
        }
    }
}

/// Why an image that would be rebuilt is not.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// `autorebuild: false`.
    AutorebuildOff,
    /// Its parent would be rebuilt but is skipped itself.
    ParentHeldBack {
        parent_build_id: i64,
        parent_repository: String,
    },
    /// Its parent records loop; `cycle` lists the builds of the loop, each
    /// followed by its parent, starting at the lowest id.
    ParentCycle { cycle: Vec<i64> },
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::AutorebuildOff => f.write_str("autorebuild is off for this image"),
            SkipReason::ParentHeldBack {
                parent_build_id,
                parent_repository,
            } => write!(
                f,
                "parent {parent_repository} (build {parent_build_id}) is not rebuilt"
            ),
            SkipReason::ParentCycle { cycle } => {
                f.write_str("the parent records loop: builds ")?;
                for id in cycle {
                    write!(f, "{id} → ")?;
                }
                match cycle.first() {
                    Some(first) => write!(f, "{first}")?,
                    None => f.write_str("?")?,
                }
                f.write_str(" (corrupt parent build ids)")
            }
        }
    }
}

/// One image to rebuild.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRebuild {
    pub build_id: i64,
    pub component: String,
    pub repository: String,
    /// The tags on which this build is the latest (usually one).
    pub tags: Vec<String>,
    pub parent_build_id: Option<i64>,
    /// The batch: 0 for images with no planned parent.
    pub depth: usize,
    /// Sorted, without duplicates.
    pub reasons: Vec<RebuildReason>,
}

/// An image the plan reaches but does not rebuild.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedRebuild {
    pub build_id: i64,
    pub component: String,
    pub repository: String,
    pub tags: Vec<String>,
    pub parent_build_id: Option<i64>,
    /// Why it would have been rebuilt (may be empty when only an ancestor
    /// was affected and that ancestor was skipped).
    pub reasons: Vec<RebuildReason>,
    pub skipped: SkipReason,
}

/// Rebuilds in batches: every image of batch `n` waits for its parent in an
/// earlier batch. Each image appears at most once, in a batch or skipped.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub batches: Vec<Vec<PlannedRebuild>>,
    /// Sorted by build id.
    pub skipped: Vec<SkippedRebuild>,
    /// Loops found in the parent records of the images reached, each as in
    /// [`SkipReason::ParentCycle`].
    pub cycles: Vec<Vec<i64>>,
    /// Updates no image holds an older version of (sorted).
    pub no_effect: Vec<Nevra>,
}

impl Plan {
    /// No rebuild to do (there may still be skips to report).
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    pub fn rebuilds(&self) -> impl Iterator<Item = &PlannedRebuild> {
        self.batches.iter().flatten()
    }

    /// One plan for the events of both: an image planned by either is planned
    /// once, after its parent if that is planned; an image skipped by either
    /// stays skipped (its subtree is skipped in that plan too). Merging the
    /// plans of two update sets made from the same graph gives the plan of
    /// their union.
    pub fn merge(self, other: Plan) -> Plan {
        let mut entries: BTreeMap<i64, Entry> = BTreeMap::new();
        let mut cycles = BTreeSet::new();
        let mut no_effect = BTreeSet::new();
        for plan in [self, other] {
            let planned = plan
                .batches
                .into_iter()
                .flatten()
                .map(|r| (r.build_id, r.image(), r.reasons, None));
            let skipped = plan
                .skipped
                .into_iter()
                .map(|s| (s.build_id, s.image(), s.reasons, Some(s.skipped)));
            for (build_id, image, reasons, skip) in planned.chain(skipped) {
                let entry = entries.entry(build_id).or_insert_with(|| Entry {
                    image: image.clone(),
                    reasons: BTreeSet::new(),
                    skip: None,
                });
                entry.image.tags.extend(image.tags);
                entry.reasons.extend(reasons);
                if entry.skip.is_none() {
                    entry.skip = skip;
                }
            }
            cycles.extend(plan.cycles);
            no_effect.extend(plan.no_effect);
        }
        assemble(entries, cycles, no_effect)
    }
}

impl PlannedRebuild {
    fn image(&self) -> Image {
        Image {
            component: self.component.clone(),
            repository: self.repository.clone(),
            tags: self.tags.clone(),
            parent_build_id: self.parent_build_id,
        }
    }
}

impl SkippedRebuild {
    fn image(&self) -> Image {
        Image {
            component: self.component.clone(),
            repository: self.repository.clone(),
            tags: self.tags.clone(),
            parent_build_id: self.parent_build_id,
        }
    }
}

#[derive(Debug, Clone)]
struct Image {
    component: String,
    repository: String,
    tags: Vec<String>,
    parent_build_id: Option<i64>,
}

/// An image reached by a plan, before depths and parent reasons are known.
struct Entry {
    image: Image,
    reasons: BTreeSet<RebuildReason>,
    /// `None`: to be rebuilt.
    skip: Option<SkipReason>,
}

enum Depth {
    Known(usize),
    Walking,
    Looped(Vec<i64>),
}

/// Turns the decided entries into a plan: depth from the chain of planned
/// parents, "parent rebuilt" reasons from the planned parent, batches.
fn assemble(
    mut entries: BTreeMap<i64, Entry>,
    mut cycles: BTreeSet<Vec<i64>>,
    no_effect: BTreeSet<Nevra>,
) -> Plan {
    let planned_parent = |entries: &BTreeMap<i64, Entry>, id: i64| {
        entries[&id]
            .image
            .parent_build_id
            .filter(|p| entries.get(p).is_some_and(|e| e.skip.is_none()))
    };

    // Plans built from a graph never loop here (loops are skipped before);
    // merged plans from inconsistent graphs might, so this still terminates.
    let mut depths: HashMap<i64, Depth> = HashMap::new();
    let planned: Vec<i64> = entries
        .iter()
        .filter(|(_, e)| e.skip.is_none())
        .map(|(id, _)| *id)
        .collect();
    for &start in &planned {
        let mut chain = Vec::new();
        let mut cur = start;
        let outcome = loop {
            match depths.get(&cur) {
                Some(Depth::Known(d)) => break Ok(d + 1),
                Some(Depth::Looped(cycle)) => break Err(cycle.clone()),
                Some(Depth::Walking) => {
                    let at = chain.iter().position(|&c| c == cur).unwrap_or(0);
                    break Err(canonical_cycle(chain[at..].to_vec()));
                }
                None => {}
            }
            depths.insert(cur, Depth::Walking);
            chain.push(cur);
            match planned_parent(&entries, cur) {
                Some(parent) => cur = parent,
                None => break Ok(0),
            }
        };
        match outcome {
            Ok(base) => {
                // `chain` runs child → parent; the last one sits at `base`.
                for (i, &c) in chain.iter().rev().enumerate() {
                    depths.insert(c, Depth::Known(base + i));
                }
            }
            Err(cycle) => {
                cycles.insert(cycle.clone());
                for &c in &chain {
                    depths.insert(c, Depth::Looped(cycle.clone()));
                }
            }
        }
    }
    for (id, depth) in &depths {
        if let (Depth::Looped(cycle), Some(e)) = (depth, entries.get_mut(id)) {
            e.skip.get_or_insert(SkipReason::ParentCycle {
                cycle: cycle.clone(),
            });
        }
    }

    // "Parent rebuilt" is a fact of this plan, not of the inputs: recompute.
    let parent_reasons: Vec<(i64, Option<RebuildReason>)> = entries
        .keys()
        .map(|&id| {
            let reason = planned_parent(&entries, id).map(|p| RebuildReason::ParentRebuilt {
                parent_build_id: p,
                parent_repository: entries[&p].image.repository.clone(),
            });
            (id, reason)
        })
        .collect();
    for (id, reason) in parent_reasons {
        if let Some(e) = entries.get_mut(&id) {
            e.reasons
                .retain(|r| !matches!(r, RebuildReason::ParentRebuilt { .. }));
            e.reasons.extend(reason);
        }
    }

    let mut used: BTreeSet<&Nevra> = BTreeSet::new();
    for e in entries.values() {
        for r in &e.reasons {
            if let RebuildReason::DirectlyAffected { update, .. } = r {
                used.insert(update);
            }
        }
    }
    let no_effect: Vec<Nevra> = no_effect
        .iter()
        .filter(|u| !used.contains(u))
        .cloned()
        .collect();

    let mut plan = Plan {
        cycles: cycles.into_iter().collect(),
        no_effect,
        ..Plan::default()
    };
    for (build_id, e) in entries {
        let mut tags = e.image.tags;
        tags.sort();
        tags.dedup();
        let reasons: Vec<RebuildReason> = e.reasons.into_iter().collect();
        match e.skip {
            Some(skipped) => plan.skipped.push(SkippedRebuild {
                build_id,
                component: e.image.component,
                repository: e.image.repository,
                tags,
                parent_build_id: e.image.parent_build_id,
                reasons,
                skipped,
            }),
            None => {
                let depth = match depths.get(&build_id) {
                    Some(Depth::Known(d)) => *d,
                    _ => 0,
                };
                if plan.batches.len() <= depth {
                    plan.batches.resize_with(depth + 1, Vec::new);
                }
                plan.batches[depth].push(PlannedRebuild {
                    build_id,
                    component: e.image.component,
                    repository: e.image.repository,
                    tags,
                    parent_build_id: e.image.parent_build_id,
                    depth,
                    reasons,
                });
            }
        }
    }
    plan
}

/// A loop of build ids, rotated to start at the lowest so that the same
/// loop found from different places compares equal.
fn canonical_cycle(mut cycle: Vec<i64>) -> Vec<i64> {
    if let Some(min_at) = cycle
        .iter()
        .enumerate()
        .min_by_key(|(_, id)| **id)
        .map(|(i, _)| i)
    {
        cycle.rotate_left(min_at);
    }
    cycle
}

/// Strings seen many times (names, arches, versions) stored once.
#[derive(Debug, Default)]
struct Interner {
    ids: HashMap<String, u32>,
    strings: Vec<String>,
}

impl Interner {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.strings.len() as u32;
        self.strings.push(s.to_string());
        self.ids.insert(s.to_string(), id);
        id
    }

    fn get(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }

    fn str(&self, id: u32) -> &str {
        &self.strings[id as usize]
    }
}

/// An RPM inside an image, by interned parts.
#[derive(Debug)]
struct PackageEntry {
    node: u32,
    name: u32,
    arch: u32,
    epoch: Option<u32>,
    version: u32,
    release: u32,
    /// Index into `ImageGraph::sources`.
    source: Option<u32>,
}

#[derive(Debug)]
struct SourceRpm {
    file: String,
    name: u32,
    version: u32,
    release: u32,
}

#[derive(Debug)]
struct GraphNode {
    build_id: i64,
    component: String,
    repository: String,
    tags: Vec<String>,
    parent_build_id: Option<i64>,
    autorebuild: bool,
    /// The parent's node, when the parent build is in the graph.
    parent: Option<u32>,
}

/// The images that take automatic rebuilds, indexed for planning. Build it
/// once from the database and plan many times.
#[derive(Debug, Default)]
pub struct ImageGraph {
    nodes: Vec<GraphNode>,
    by_build: HashMap<i64, u32>,
    packages: Vec<PackageEntry>,
    sources: Vec<SourceRpm>,
    source_files: HashMap<String, Option<u32>>,
    /// Binary and source package names.
    names: Interner,
    /// Arches, versions, releases.
    strings: Interner,
    /// Name id → packages of that binary name.
    by_binary: Vec<Vec<u32>>,
    /// Name id → packages built from a source package of that name.
    by_source: Vec<Vec<u32>>,
    /// Parent build id → the images built on it, whether or not the parent
    /// itself is in the graph: a parent rebuilt by hand is usually not.
    children: HashMap<i64, Vec<u32>>,
}

/// An image holding a package that answers a [`PackageQuery`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageMatch {
    pub build_id: i64,
    pub installed: Nevra,
}

impl ImageGraph {
    /// Indexes the images. A build listed on several tags becomes one image
    /// with all those tags (its packages are read from the first listing);
    /// a parent build that is not listed (not the latest on any tag that
    /// takes rebuilds) leaves the image without a parent in the graph.
    pub fn new(images: impl IntoIterator<Item = ImageNode>) -> Result<ImageGraph, GraphError> {
        let mut graph = ImageGraph::default();
        for image in images {
            graph.add(image)?;
        }
        for i in 0..graph.nodes.len() {
            let Some(parent_build_id) = graph.nodes[i].parent_build_id else {
                continue;
            };
            graph.nodes[i].parent = graph.by_build.get(&parent_build_id).copied();
            graph
                .children
                .entry(parent_build_id)
                .or_default()
                .push(i as u32);
        }
        Ok(graph)
    }

    /// The images whose parent is `parent_build_id`.
    fn children_of(&self, parent_build_id: i64) -> &[u32] {
        self.children
            .get(&parent_build_id)
            .map_or(&[], Vec::as_slice)
    }

    fn add(&mut self, image: ImageNode) -> Result<(), GraphError> {
        if let Some(&existing) = self.by_build.get(&image.build_id) {
            let node = &mut self.nodes[existing as usize];
            let conflict = |field, first: String, second: String| GraphError::Conflict {
                build_id: image.build_id,
                field,
                first,
                second,
            };
            if node.component != image.component {
                return Err(conflict(
                    "component",
                    node.component.clone(),
                    image.component,
                ));
            }
            if node.repository != image.repository {
                return Err(conflict(
                    "repository",
                    node.repository.clone(),
                    image.repository,
                ));
            }
            if node.parent_build_id != image.parent_build_id {
                let show = |p: Option<i64>| p.map_or("none".to_string(), |p| p.to_string());
                return Err(conflict(
                    "parent build",
                    show(node.parent_build_id),
                    show(image.parent_build_id),
                ));
            }
            // Opted out anywhere means opted out: the safe side.
            node.autorebuild &= image.autorebuild;
            if !node.tags.contains(&image.tag) {
                node.tags.push(image.tag);
            }
            return Ok(());
        }

        let node = self.nodes.len() as u32;
        self.by_build.insert(image.build_id, node);
        self.add_packages(node, &image.packages);
        self.nodes.push(GraphNode {
            build_id: image.build_id,
            component: image.component,
            repository: image.repository,
            tags: vec![image.tag],
            parent_build_id: image.parent_build_id,
            autorebuild: image.autorebuild,
            parent: None,
        });
        Ok(())
    }

    /// Indexes the RPMs of image `node` by binary and source package name.
    fn add_packages(&mut self, node: u32, packages: &[Package]) {
        for package in packages {
            if package.kind != PackageKind::Rpm {
                continue;
            }
            let name = self.name_id(&package.name);
            let source = package.source.as_deref().and_then(|s| self.source_id(s));
            let index = self.packages.len() as u32;
            self.packages.push(PackageEntry {
                node,
                name,
                arch: self.strings.intern(&package.arch),
                epoch: package.epoch,
                version: self.strings.intern(&package.version),
                release: self.strings.intern(&package.release),
                source,
            });
            self.by_binary[name as usize].push(index);
            if let Some(source) = source {
                let source_name = self.sources[source as usize].name;
                self.by_source[source_name as usize].push(index);
            }
        }
    }

    fn name_id(&mut self, name: &str) -> u32 {
        let id = self.names.intern(name);
        if self.by_binary.len() <= id as usize {
            self.by_binary.resize_with(id as usize + 1, Vec::new);
            self.by_source.resize_with(id as usize + 1, Vec::new);
        }
        id
    }

    /// The parsed source RPM, once per file name; `None` when the name is
    /// not `name-version-release.src.rpm` (the package is then matched by
    /// binary name only).
    fn source_id(&mut self, file: &str) -> Option<u32> {
        if let Some(&id) = self.source_files.get(file) {
            return id;
        }
        let id = match Nevra::parse(file) {
            Ok(nevra) => {
                let source = SourceRpm {
                    file: file.to_string(),
                    name: self.name_id(&nevra.name),
                    version: self.strings.intern(&nevra.evr.version),
                    release: self
                        .strings
                        .intern(nevra.evr.release.as_deref().unwrap_or("")),
                };
                self.sources.push(source);
                Some(self.sources.len() as u32 - 1)
            }
            Err(_) => None,
        };
        self.source_files.insert(file.to_string(), id);
        id
    }

    /// Number of images (builds).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The images holding a binary package that answers `query`
    /// (`openssl<3.0.9-2`), sorted by build id.
    pub fn images_with(&self, query: &PackageQuery) -> Vec<PackageMatch> {
        let Some(name) = self.names.get(&query.name) else {
            return Vec::new();
        };
        let mut found: Vec<PackageMatch> = self.by_binary[name as usize]
            .iter()
            .map(|&p| &self.packages[p as usize])
            .filter_map(|pkg| {
                let installed = self.nevra(pkg);
                let matches = query
                    .constraint
                    .as_ref()
                    .is_none_or(|c| c.matches(&installed.evr));
                matches.then(|| PackageMatch {
                    build_id: self.nodes[pkg.node as usize].build_id,
                    installed,
                })
            })
            .collect();
        found.sort_by(|a, b| (a.build_id, &a.installed).cmp(&(b.build_id, &b.installed)));
        found
    }

    fn nevra(&self, pkg: &PackageEntry) -> Nevra {
        Nevra {
            name: self.names.str(pkg.name).to_string(),
            evr: Evr::new(
                pkg.epoch,
                self.strings.str(pkg.version),
                Some(self.strings.str(pkg.release)),
            ),
            arch: self.strings.str(pkg.arch).to_string(),
        }
    }

    /// `name-[E:]V-R`, as the reasons show it.
    fn installed_text(&self, pkg: &PackageEntry) -> String {
        let evr = Evr::new(
            pkg.epoch,
            self.strings.str(pkg.version),
            Some(self.strings.str(pkg.release)),
        );
        format!("{}-{evr}", self.names.str(pkg.name))
    }

    /// Whether `epoch:version-release` is older than `update`, in rpm's
    /// package order ([`Evr::cmp_full`]), without building an `Evr`.
    fn older(&self, epoch: Option<u32>, version: u32, release: u32, update: &Evr) -> bool {
        epoch
            .unwrap_or(0)
            .cmp(&update.epoch.unwrap_or(0))
            .then_with(|| rpmvercmp(self.strings.str(version), &update.version))
            .then_with(|| {
                rpmvercmp(
                    self.strings.str(release),
                    update.release.as_deref().unwrap_or(""),
                )
            })
            .is_lt()
    }

    /// The images directly affected by `update`, with the reason for each.
    fn direct_hits(
        &self,
        update: &Nevra,
        hits: &mut HashMap<u32, BTreeSet<RebuildReason>>,
    ) -> bool {
        let Some(name) = self.names.get(&update.name) else {
            return false;
        };
        let mut hit = false;
        let mut record = |node: u32, installed: String| {
            hits.entry(node)
                .or_default()
                .insert(RebuildReason::DirectlyAffected {
                    update: update.clone(),
                    installed,
                });
            hit = true;
        };
        for &p in &self.by_binary[name as usize] {
            let pkg = &self.packages[p as usize];
            if arch_applies(&update.arch, self.strings.str(pkg.arch))
                && self.older(pkg.epoch, pkg.version, pkg.release, &update.evr)
            {
                record(pkg.node, self.installed_text(pkg));
            }
        }
        for &p in &self.by_source[name as usize] {
            let pkg = &self.packages[p as usize];
            // The binary named like its source was looked at above, by its own EVR.
            if pkg.name == name {
                continue;
            }
            let Some(source) = pkg.source.map(|s| &self.sources[s as usize]) else {
                continue;
            };
            if arch_applies(&update.arch, self.strings.str(pkg.arch))
                && self.older(pkg.epoch, source.version, source.release, &update.evr)
            {
                let installed = format!("{} from {}", self.installed_text(pkg), source.file);
                record(pkg.node, installed);
            }
        }
        hit
    }

    /// The plan for a set of updated packages (one event or several at once).
    pub fn plan(&self, updates: &[Nevra]) -> Plan {
        let mut hits: HashMap<u32, BTreeSet<RebuildReason>> = HashMap::new();
        let mut no_effect = BTreeSet::new();
        for update in updates {
            if !self.direct_hits(update, &mut hits) {
                no_effect.insert(update.clone());
            }
        }
        let (entries, cycles) = self.walk(hits);
        assemble(entries, cycles, no_effect)
    }

    /// The plan after a base image was rebuilt by hand: build
    /// `new_parent_build_id` of `parent_repository` replaced
    /// `old_parent_build_id`, so every image built on the old build is
    /// rebuilt on the new one, down the lineage. The old build is not in the
    /// plan, and need not be in the graph.
    pub fn plan_below(
        &self,
        old_parent_build_id: i64,
        new_parent_build_id: i64,
        parent_repository: &str,
    ) -> Plan {
        let reason = RebuildReason::NewParentBuild {
            parent_build_id: new_parent_build_id,
            parent_repository: parent_repository.to_string(),
        };
        let hits = self
            .children_of(old_parent_build_id)
            .iter()
            .map(|&c| (c, BTreeSet::from([reason.clone()])))
            .collect();
        let (mut entries, cycles) = self.walk(hits);
        // Reached again only through a loop in the parent records (its own
        // child); that loop is still reported on the images below it.
        entries.remove(&old_parent_build_id);
        assemble(entries, cycles, BTreeSet::new())
    }

    /// Everything at or below the initially hit images, each decided
    /// rebuild or skip, with the hits' reasons; loops found on the way.
    fn walk(
        &self,
        mut hits: HashMap<u32, BTreeSet<RebuildReason>>,
    ) -> (BTreeMap<i64, Entry>, BTreeSet<Vec<i64>>) {
        // Everything below a hit is reached; the visited marks keep a loop
        // in the parent records from being walked forever.
        let mut reached = vec![false; self.nodes.len()];
        let mut stack: Vec<u32> = hits.keys().copied().collect();
        for &n in &stack {
            reached[n as usize] = true;
        }
        while let Some(n) = stack.pop() {
            for &c in self.children_of(self.nodes[n as usize].build_id) {
                if !reached[c as usize] {
                    reached[c as usize] = true;
                    stack.push(c);
                }
            }
        }

        // Decide rebuild or skip top-down from the highest reached images.
        // The children of a reached image are all reached, so a walk from
        // the tops visits every reached image not in or below a loop.
        let mut skip: Vec<Option<Option<SkipReason>>> = vec![None; self.nodes.len()];
        let is_top =
            |n: usize| reached[n] && self.nodes[n].parent.is_none_or(|p| !reached[p as usize]);
        let mut stack: Vec<u32> = (0..self.nodes.len())
            .filter(|&n| is_top(n))
            .map(|n| n as u32)
            .collect();
        while let Some(n) = stack.pop() {
            let node = &self.nodes[n as usize];
            let parent_skipped = node
                .parent
                .and_then(|p| skip[p as usize].as_ref().map(|s| (p, s.is_some())));
            let decision = if !node.autorebuild {
                Some(SkipReason::AutorebuildOff)
            } else if let Some((p, true)) = parent_skipped {
                let parent = &self.nodes[p as usize];
                Some(SkipReason::ParentHeldBack {
                    parent_build_id: parent.build_id,
                    parent_repository: parent.repository.clone(),
                })
            } else {
                None
            };
            skip[n as usize] = Some(decision);
            stack.extend(self.children_of(node.build_id).iter().copied());
        }

        let mut cycles = BTreeSet::new();
        let mut looped: HashMap<u32, Vec<i64>> = HashMap::new();
        for n in 0..self.nodes.len() {
            if reached[n] && skip[n].is_none() {
                let cycle = self.cycle_above(n as u32, &mut looped);
                cycles.insert(cycle.clone());
                skip[n] = Some(Some(SkipReason::ParentCycle { cycle }));
            }
        }

        let mut entries = BTreeMap::new();
        for (n, decision) in skip.into_iter().enumerate() {
            let Some(decision) = decision else { continue };
            let node = &self.nodes[n];
            entries.insert(
                node.build_id,
                Entry {
                    image: Image {
                        component: node.component.clone(),
                        repository: node.repository.clone(),
                        tags: node.tags.clone(),
                        parent_build_id: node.parent_build_id,
                    },
                    reasons: hits.remove(&(n as u32)).unwrap_or_default(),
                    skip: decision,
                },
            );
        }
        (entries, cycles)
    }

    /// The loop of parents that `start` is in or below. Only called for
    /// reached images no top reaches, whose parents are all in the graph.
    fn cycle_above(&self, start: u32, known: &mut HashMap<u32, Vec<i64>>) -> Vec<i64> {
        let mut path: Vec<u32> = Vec::new();
        let mut cur = Some(start);
        let cycle = loop {
            let Some(n) = cur else {
                // Not expected: the walk left the graph. Report the path.
                break canonical_cycle(
                    path.iter()
                        .map(|&p| self.nodes[p as usize].build_id)
                        .collect(),
                );
            };
            if let Some(cycle) = known.get(&n) {
                break cycle.clone();
            }
            if let Some(at) = path.iter().position(|&p| p == n) {
                let ids = path[at..]
                    .iter()
                    .map(|&p| self.nodes[p as usize].build_id)
                    .collect();
                break canonical_cycle(ids);
            }
            path.push(n);
            cur = self.nodes[n as usize].parent;
        };
        for n in path {
            known.insert(n, cycle.clone());
        }
        cycle
    }
}

/// The updates a freshly rebuilt image still holds an older version of,
/// by the rules of planning: each with the installed package as the reasons
/// show it (`name-[E:]V-R`, or `name-[E:]V-R from SRPM` for a match by
/// source package). Sorted; empty when the rebuild picked every update up
/// or no longer holds the package.
pub fn still_older(packages: &[Package], updates: &[Nevra]) -> Vec<(Nevra, String)> {
    // The packages indexed as those of image 0, with no node: matching
    // reads the package indexes only.
    let mut graph = ImageGraph::default();
    graph.add_packages(0, packages);
    let mut hits = HashMap::new();
    for update in updates {
        graph.direct_hits(update, &mut hits);
    }
    hits.remove(&0)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|reason| match reason {
            RebuildReason::DirectlyAffected { update, installed } => Some((update, installed)),
            _ => None,
        })
        .collect()
}

/// The post-check of a rebuild, shared by the worker (before it pushes)
/// and the hub (when the rebuild completes): the failure reason when the
/// image's `packages` still hold an older version of an update in `expect`
/// (`name-[E:]V-R.arch`; entries that do not parse are not checked), None
/// when it holds them all.
pub fn missing_updates_reason(packages: &[Package], expect: &[String]) -> Option<String> {
    let expect: Vec<Nevra> = expect.iter().filter_map(|u| Nevra::parse(u).ok()).collect();
    let old = still_older(packages, &expect);
    if old.is_empty() {
        return None;
    }
    let list: Vec<String> = old
        .iter()
        .map(|(update, installed)| format!("{installed} (wanted {update})"))
        .collect();
    Some(format!(
        "the rebuilt image still holds an older version: {}; is the update in the target's repositories?",
        list.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, evr: &str, arch: &str, srpm: Option<&str>) -> Package {
        let evr = Evr::parse(evr).unwrap();
        Package {
            kind: PackageKind::Rpm,
            name: name.to_string(),
            epoch: evr.epoch,
            version: evr.version,
            release: evr.release.unwrap(),
            arch: arch.to_string(),
            source: srpm.map(str::to_string),
            license: None,
            signing_key: None,
        }
    }

    /// A binary package built from a source package of the same name.
    fn rpm(name: &str, evr: &str) -> Package {
        let e = Evr::parse(evr).unwrap();
        let srpm = format!("{name}-{}-{}.src.rpm", e.version, e.release.unwrap());
        pkg(name, evr, "x86_64", Some(&srpm))
    }

    fn image(
        build_id: i64,
        repository: &str,
        parent: Option<i64>,
        packages: Vec<Package>,
    ) -> ImageNode {
        ImageNode {
            build_id,
            component: repository.replace('/', "-"),
            repository: repository.to_string(),
            tag: "f40-containers".to_string(),
            packages,
            parent_build_id: parent,
            autorebuild: true,
        }
    }

    fn opted_out(mut node: ImageNode) -> ImageNode {
        node.autorebuild = false;
        node
    }

    fn nevra(s: &str) -> Nevra {
        Nevra::parse(s).unwrap()
    }

    fn graph(nodes: Vec<ImageNode>) -> ImageGraph {
        ImageGraph::new(nodes).unwrap()
    }

    fn plan(graph: &ImageGraph, updates: &[&str]) -> Plan {
        let updates: Vec<Nevra> = updates.iter().map(|u| nevra(u)).collect();
        graph.plan(&updates)
    }

    /// Build ids per batch.
    fn shape(plan: &Plan) -> Vec<Vec<i64>> {
        plan.batches
            .iter()
            .map(|b| b.iter().map(|r| r.build_id).collect())
            .collect()
    }

    fn reasons(plan: &Plan, build_id: i64) -> Vec<String> {
        let rebuild = plan
            .rebuilds()
            .find(|r| r.build_id == build_id)
            .unwrap_or_else(|| panic!("build {build_id} not planned: {plan:#?}"));
        rebuild.reasons.iter().map(ToString::to_string).collect()
    }

    fn skips(plan: &Plan) -> Vec<(i64, String)> {
        plan.skipped
            .iter()
            .map(|s| (s.build_id, s.skipped.to_string()))
            .collect()
    }

    /// Base B (foo, glibc) ← L1 (adds bar) ← L2; U unrelated. Image package
    /// lists include the parent's packages, as `rpm -qa` in the image would.
    fn stack() -> ImageGraph {
        let base = vec![rpm("foo", "1.0-1"), rpm("glibc", "2.39-1")];
        let l1 = [base.clone(), vec![rpm("bar", "1.0-1")]].concat();
        graph(vec![
            image(1, "bench/base", None, base),
            image(2, "bench/l1", Some(1), l1.clone()),
            image(3, "bench/l2", Some(2), l1),
            image(4, "bench/unrelated", None, vec![rpm("glibc", "2.39-1")]),
        ])
    }

    #[test]
    fn planner_direct_hit_then_descendants_in_depth_order() {
        let g = stack();
        let p = plan(&g, &["foo-1.1-1.x86_64"]);
        assert_eq!(shape(&p), vec![vec![1], vec![2], vec![3]]);
        assert_eq!(
            reasons(&p, 1),
            ["directly affected by foo-1.1-1.x86_64 (has foo-1.0-1)"]
        );
        assert_eq!(
            reasons(&p, 2),
            [
                "directly affected by foo-1.1-1.x86_64 (has foo-1.0-1)",
                "parent bench/base rebuilt (build 1)",
            ]
        );
        assert!(reasons(&p, 3).contains(&"parent bench/l1 rebuilt (build 2)".to_string()));
        let depths: Vec<usize> = p.rebuilds().map(|r| r.depth).collect();
        assert_eq!(depths, [0, 1, 2]);
        assert!(p.skipped.is_empty() && p.cycles.is_empty() && p.no_effect.is_empty());

        // bar is only in L1's own layer: the base is untouched.
        let p = plan(&g, &["bar-1.1-1.x86_64"]);
        assert_eq!(shape(&p), vec![vec![2], vec![3]]);
    }

    #[test]
    fn planner_skips_equal_and_newer_versions() {
        let g = graph(vec![
            image(1, "r/same", None, vec![rpm("foo", "1.1-1")]),
            image(2, "r/newer-version", None, vec![rpm("foo", "1.2-1")]),
            image(3, "r/newer-release", None, vec![rpm("foo", "1.1-2")]),
            image(4, "r/higher-epoch", None, vec![rpm("foo", "1:0.5-1")]),
            image(5, "r/older-release", None, vec![rpm("foo", "1.1-0.9")]),
            image(6, "r/prerelease", None, vec![rpm("foo", "1.1~rc2-1")]),
            image(7, "r/zero-epoch", None, vec![rpm("foo", "0:1.1-1")]),
        ]);
        let p = plan(&g, &["foo-1.1-1.x86_64"]);
        assert_eq!(shape(&p), vec![vec![5, 6]]);

        let p = plan(&g, &["foo-0.9-1.x86_64"]);
        assert!(p.is_empty(), "{p:#?}");
        assert_eq!(p.no_effect, [nevra("foo-0.9-1.x86_64")]);
        // An epoch on the update outranks any version.
        let p = plan(&g, &["foo-2:0.1-1.x86_64"]);
        assert_eq!(shape(&p), vec![vec![1, 2, 3, 4, 5, 6, 7]]);
    }

    #[test]
    fn planner_matches_binary_and_source_package_names() {
        let g = graph(vec![
            image(
                1,
                "r/libs",
                None,
                vec![pkg(
                    "foo-libs",
                    "1.0-1",
                    "x86_64",
                    Some("foo-1.0-1.src.rpm"),
                )],
            ),
            image(2, "r/main", None, vec![rpm("foo", "1.0-1")]),
            image(
                3,
                "r/both",
                None,
                vec![
                    rpm("foo", "1.0-1"),
                    pkg("foo-libs", "1.0-1", "x86_64", Some("foo-1.0-1.src.rpm")),
                ],
            ),
            image(
                4,
                "r/no-source",
                None,
                vec![pkg("foo-libs", "1.0-1", "x86_64", None)],
            ),
            image(
                5,
                "r/bad-source",
                None,
                vec![pkg("foo-libs", "1.0-1", "x86_64", Some("not a file name"))],
            ),
        ]);
        // The source package (or its main binary) reaches every subpackage.
        for update in ["foo-1.1-1.x86_64", "foo-1.1-1.src"] {
            let p = plan(&g, &[update]);
            assert_eq!(shape(&p), vec![vec![1, 2, 3]], "{update}");
            assert_eq!(
                reasons(&p, 1),
                [format!(
                    "directly affected by {update} (has foo-libs-1.0-1 from foo-1.0-1.src.rpm)"
                )]
            );
            // foo itself is matched once, by its binary name.
            assert_eq!(
                reasons(&p, 3),
                [
                    format!("directly affected by {update} (has foo-1.0-1)"),
                    format!(
                        "directly affected by {update} (has foo-libs-1.0-1 from foo-1.0-1.src.rpm)"
                    ),
                ]
            );
        }
        // A subpackage update reaches that subpackage only, source known or not.
        let p = plan(&g, &["foo-libs-1.1-1.x86_64"]);
        assert_eq!(shape(&p), vec![vec![1, 3, 4, 5]]);
        assert!(plan(&g, &["foo-devel-1.1-1.x86_64"]).is_empty());
    }

    #[test]
    fn planner_source_match_compares_the_source_version() {
        // A subpackage with its own Version: the source's version decides.
        let g = graph(vec![image(
            1,
            "r/odd",
            None,
            vec![pkg(
                "foo-compat",
                "0.1-1",
                "x86_64",
                Some("foo-2.0-1.src.rpm"),
            )],
        )]);
        assert!(plan(&g, &["foo-1.5-1.x86_64"]).is_empty());
        assert_eq!(shape(&plan(&g, &["foo-2.0-2.x86_64"])), vec![vec![1]]);
    }

    #[test]
    fn planner_arch_must_match_with_noarch_and_src_matching_any() {
        let g = graph(vec![
            image(1, "r/x86", None, vec![pkg("foo", "1.0-1", "x86_64", None)]),
            image(2, "r/i686", None, vec![pkg("foo", "1.0-1", "i686", None)]),
            image(
                3,
                "r/noarch",
                None,
                vec![pkg("foo", "1.0-1", "noarch", None)],
            ),
            image(4, "r/arm", None, vec![pkg("foo", "1.0-1", "aarch64", None)]),
            image(
                5,
                "r/arm-sub",
                None,
                vec![pkg(
                    "foo-libs",
                    "1.0-1",
                    "aarch64",
                    Some("foo-1.0-1.src.rpm"),
                )],
            ),
        ]);
        assert_eq!(shape(&plan(&g, &["foo-1.1-1.x86_64"])), vec![vec![1, 3]]);
        assert_eq!(
            shape(&plan(&g, &["foo-1.1-1.aarch64"])),
            vec![vec![3, 4, 5]]
        );
        assert_eq!(
            shape(&plan(&g, &["foo-1.1-1.noarch"])),
            vec![vec![1, 2, 3, 4, 5]]
        );
        assert_eq!(
            shape(&plan(&g, &["foo-1.1-1.src"])),
            vec![vec![1, 2, 3, 4, 5]]
        );
    }

    #[test]
    fn planner_puts_a_child_after_all_its_planned_ancestors() {
        // B holds foo; P on top of B does not (it removed it); C on top of P
        // installs foo again; D is a second child of B. C is directly
        // affected but must wait for P, which waits for B.
        let g = graph(vec![
            image(10, "r/c", Some(11), vec![rpm("foo", "1.0-1")]),
            image(11, "r/p", Some(12), vec![rpm("glibc", "2.39-1")]),
            image(12, "r/b", None, vec![rpm("foo", "1.0-1")]),
            image(13, "r/d", Some(12), vec![rpm("foo", "1.0-1")]),
            image(14, "r/e", Some(10), vec![rpm("foo", "1.0-1")]),
        ]);
        let p = plan(&g, &["foo-1.1-1.x86_64"]);
        assert_eq!(shape(&p), vec![vec![12], vec![11, 13], vec![10], vec![14]]);
        assert_eq!(reasons(&p, 11), ["parent r/b rebuilt (build 12)"]);
        assert_eq!(
            reasons(&p, 10),
            [
                "directly affected by foo-1.1-1.x86_64 (has foo-1.0-1)",
                "parent r/p rebuilt (build 11)",
            ]
        );
        // Each image once, whatever the number of ways it is reached.
        assert_eq!(p.rebuilds().count(), 5);
    }

    #[test]
    fn planner_joins_one_build_listed_on_several_tags() {
        let mut on_other_tag = image(1, "r/base", None, vec![rpm("foo", "1.0-1")]);
        on_other_tag.tag = "f41-containers".to_string();
        let g = graph(vec![
            image(1, "r/base", None, vec![rpm("foo", "1.0-1")]),
            on_other_tag,
            image(2, "r/child", Some(1), vec![rpm("foo", "1.0-1")]),
        ]);
        assert_eq!(g.len(), 2);
        let p = plan(&g, &["foo-1.1-1.x86_64"]);
        assert_eq!(shape(&p), vec![vec![1], vec![2]]);
        assert_eq!(p.batches[0][0].tags, ["f40-containers", "f41-containers"]);

        let mut conflicting = image(1, "r/base", Some(7), vec![]);
        conflicting.tag = "f41-containers".to_string();
        let err = ImageGraph::new(vec![image(1, "r/base", None, vec![]), conflicting]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "build 1 is listed twice with different parent build: \"none\" and \"7\""
        );
    }

    #[test]
    fn planner_skips_opted_out_images_with_their_subtrees() {
        let foo = || vec![rpm("foo", "1.0-1")];
        let g = graph(vec![
            image(1, "r/base", None, foo()),
            opted_out(image(2, "r/frozen", Some(1), foo())),
            image(3, "r/under-frozen", Some(2), foo()),
            image(4, "r/deeper", Some(3), foo()),
            image(5, "r/sibling", Some(1), foo()),
            // An opted-out image the plan does not need to rebuild holds
            // nothing back: its affected child is rebuilt on it as it is.
            opted_out(image(6, "r/other-base", None, vec![])),
            image(7, "r/on-other-base", Some(6), foo()),
        ]);
        let p = plan(&g, &["foo-1.1-1.x86_64"]);
        assert_eq!(shape(&p), vec![vec![1, 7], vec![5]]);
        assert_eq!(
            skips(&p),
            [
                (2, "autorebuild is off for this image".to_string()),
                (3, "parent r/frozen (build 2) is not rebuilt".to_string()),
                (
                    4,
                    "parent r/under-frozen (build 3) is not rebuilt".to_string()
                ),
            ]
        );
        // What the skipped images would have been rebuilt for is kept.
        let frozen = &p.skipped[0];
        let frozen_reasons: Vec<String> = frozen.reasons.iter().map(ToString::to_string).collect();
        assert_eq!(
            frozen_reasons,
            [
                "directly affected by foo-1.1-1.x86_64 (has foo-1.0-1)",
                "parent r/base rebuilt (build 1)",
            ]
        );

        // A directly affected opted-out top image is skipped with its subtree.
        let g = graph(vec![
            opted_out(image(1, "r/frozen-base", None, foo())),
            image(2, "r/child", Some(1), foo()),
        ]);
        let p = plan(&g, &["foo-1.1-1.x86_64"]);
        assert!(p.is_empty());
        assert_eq!(
            skips(&p),
            [
                (1, "autorebuild is off for this image".to_string()),
                (
                    2,
                    "parent r/frozen-base (build 1) is not rebuilt".to_string()
                ),
            ]
        );
        assert!(p.no_effect.is_empty(), "the update did reach images");
    }

    #[test]
    fn planner_unknown_package_gives_an_empty_plan() {
        let g = stack();
        let p = plan(&g, &["nosuch-1.0-1.x86_64"]);
        assert!(p.is_empty() && p.skipped.is_empty());
        assert_eq!(p.no_effect, [nevra("nosuch-1.0-1.x86_64")]);
        assert_eq!(
            ImageGraph::default()
                .plan(&[nevra("foo-1-1.noarch")])
                .no_effect
                .len(),
            1
        );
        assert!(plan(&g, &[]).is_empty());
    }

    #[test]
    fn planner_repeated_update_changes_nothing() {
        let g = stack();
        let once = plan(&g, &["foo-1.1-1.x86_64"]);
        let twice = plan(&g, &["foo-1.1-1.x86_64", "foo-1.1-1.x86_64"]);
        assert_eq!(once, twice);
        assert_eq!(once.clone().merge(once.clone()), once);
    }

    #[test]
    fn planner_ignores_debian_packages() {
        let mut deb = rpm("foo", "1.0-1");
        deb.kind = PackageKind::Deb;
        let g = graph(vec![image(1, "r/debian", None, vec![deb])]);
        assert!(plan(&g, &["foo-1.1-1.x86_64"]).is_empty());
    }

    /// A graph touching every rule at once, for the merge tests.
    fn mixed() -> ImageGraph {
        let base = vec![rpm("foo", "1.0-1"), rpm("glibc", "2.39-1")];
        let with = |extra: &[Package]| [base.clone(), extra.to_vec()].concat();
        graph(vec![
            image(1, "m/base", None, base.clone()),
            image(2, "m/app", Some(1), with(&[rpm("bar", "1.0-1")])),
            image(3, "m/app-child", Some(2), with(&[rpm("bar", "1.0-1")])),
            opted_out(image(4, "m/frozen", None, with(&[rpm("baz", "1.0-1")]))),
            image(5, "m/on-frozen", Some(4), with(&[rpm("bar", "1.0-1")])),
            image(6, "m/solo", None, vec![rpm("bar", "1.0-1")]),
            image(7, "m/loop-a", Some(8), vec![rpm("bar", "1.0-1")]),
            image(8, "m/loop-b", Some(7), vec![]),
        ])
    }

    #[test]
    fn planner_merge_equals_planning_the_union() {
        let g = mixed();
        let events: &[&[&str]] = &[
            &["foo-1.1-1.x86_64"],
            &["bar-1.1-1.x86_64"],
            &["baz-1.1-1.x86_64"],
            &["glibc-2.40-1.x86_64", "nosuch-1-1.x86_64"],
            &["foo-1.1-1.x86_64", "bar-1.1-1.x86_64"],
        ];
        for a in events {
            for b in events {
                let joint: Vec<&str> = a.iter().chain(b.iter()).copied().collect();
                let merged = plan(&g, a).merge(plan(&g, b));
                assert_eq!(merged, plan(&g, &joint), "{a:?} + {b:?}");
            }
        }
        assert_eq!(
            Plan::default().merge(plan(&g, events[0])),
            plan(&g, events[0])
        );
    }

    #[test]
    fn planner_merge_of_overlapping_events_plans_each_image_once() {
        let g = mixed();
        // foo reaches 1, 2, 3; bar reaches 2, 3 directly and 6: 2 and 3 are
        // planned once, after the base, with both reasons.
        let merged = plan(&g, &["foo-1.1-1.x86_64"]).merge(plan(&g, &["bar-1.1-1.x86_64"]));
        assert_eq!(shape(&merged), vec![vec![1, 6], vec![2], vec![3]]);
        let r2 = reasons(&merged, 2);
        assert!(r2.iter().any(|r| r.contains("foo-1.1-1")), "{r2:?}");
        assert!(r2.iter().any(|r| r.contains("bar-1.1-1")), "{r2:?}");
        assert!(r2.contains(&"parent m/base rebuilt (build 1)".to_string()));
        // bar alone would rebuild 5 on top of the frozen base; together with
        // foo, which the frozen base holds back, 5 is skipped.
        assert!(
            plan(&g, &["bar-1.1-1.x86_64"])
                .rebuilds()
                .any(|r| r.build_id == 5)
        );
        let with_foo = plan(&g, &["foo-1.1-1.x86_64"]).merge(plan(&g, &["bar-1.1-1.x86_64"]));
        assert!(with_foo.skipped.iter().any(|s| s.build_id == 5));
    }

    #[test]
    fn planner_detects_parent_cycles() {
        let foo = || vec![rpm("foo", "1.0-1")];
        let g = graph(vec![
            image(1, "c/a", Some(2), foo()),
            image(2, "c/b", Some(1), vec![]),
            image(3, "c/below-loop", Some(2), foo()),
            image(4, "c/fine", None, foo()),
            image(5, "c/self", Some(5), foo()),
            // A loop the updates do not reach is not reported.
            image(6, "c/x", Some(7), vec![]),
            image(7, "c/y", Some(6), vec![]),
        ]);
        let p = plan(&g, &["foo-1.1-1.x86_64"]);
        assert_eq!(shape(&p), vec![vec![4]]);
        assert_eq!(p.cycles, vec![vec![1, 2], vec![5]]);
        assert_eq!(
            skips(&p),
            [
                (
                    1,
                    "the parent records loop: builds 1 → 2 → 1 (corrupt parent build ids)"
                        .to_string()
                ),
                (
                    2,
                    "the parent records loop: builds 1 → 2 → 1 (corrupt parent build ids)"
                        .to_string()
                ),
                (
                    3,
                    "the parent records loop: builds 1 → 2 → 1 (corrupt parent build ids)"
                        .to_string()
                ),
                (
                    5,
                    "the parent records loop: builds 5 → 5 (corrupt parent build ids)".to_string()
                ),
            ]
        );
        // The loop survives merging, and merging terminates.
        let merged = p.clone().merge(plan(&g, &["nosuch-1-1.x86_64"]));
        assert_eq!(merged.cycles, p.cycles);
        assert_eq!(shape(&merged), vec![vec![4]]);
    }

    #[test]
    fn merge_breaks_loops_between_plans_of_inconsistent_graphs() {
        // Two snapshots disagreeing on parents: 1 on 2 in one, 2 on 1 in the other.
        let a = graph(vec![
            image(1, "i/a", Some(2), vec![rpm("foo", "1.0-1")]),
            image(2, "i/b", None, vec![]),
        ]);
        let b = graph(vec![
            image(1, "i/a", None, vec![]),
            image(2, "i/b", Some(1), vec![rpm("bar", "1.0-1")]),
        ]);
        let merged = plan(&a, &["foo-2-1.x86_64"]).merge(plan(&b, &["bar-2-1.x86_64"]));
        assert!(merged.is_empty(), "{merged:#?}");
        assert_eq!(merged.cycles, vec![vec![1, 2]]);
        assert_eq!(merged.skipped.len(), 2);
    }

    #[test]
    fn images_with_answers_version_queries() {
        let g = graph(vec![
            image(1, "q/a", None, vec![rpm("openssl", "3.0.9-1")]),
            image(2, "q/b", None, vec![rpm("openssl", "3.0.9-2")]),
            image(3, "q/c", None, vec![rpm("openssl", "1:3.0.1-1")]),
            image(4, "q/d", None, vec![rpm("zlib", "1.3-1")]),
        ]);
        let ids = |q: &str| -> Vec<i64> {
            g.images_with(&PackageQuery::parse(q).unwrap())
                .iter()
                .map(|m| m.build_id)
                .collect()
        };
        assert_eq!(ids("openssl<3.0.9-2"), [1]);
        assert_eq!(ids("openssl"), [1, 2, 3]);
        assert_eq!(ids("openssl>=1:0"), [3]);
        assert_eq!(ids("openssl=3.0.9"), [1, 2]);
        assert!(ids("nosuch").is_empty());
        let m = &g.images_with(&PackageQuery::parse("openssl>1:0").unwrap())[0];
        assert_eq!(m.installed.to_string(), "openssl-1:3.0.1-1.x86_64");
    }

    /// Old base 1 (rebuilt by hand as 100) ← A (2) ← A1 (4), A2 (5);
    /// B (3) ← B1 (6); an unrelated image 7 with its child 8.
    fn lineage(base: Option<ImageNode>) -> ImageGraph {
        let foo = || vec![rpm("foo", "1.0-1")];
        let mut nodes = vec![
            image(2, "l/a", Some(1), foo()),
            image(3, "l/b", Some(1), foo()),
            image(4, "l/a1", Some(2), foo()),
            image(5, "l/a2", Some(2), foo()),
            image(6, "l/b1", Some(3), foo()),
            image(7, "l/other", None, foo()),
            image(8, "l/other-child", Some(7), foo()),
        ];
        nodes.extend(base);
        graph(nodes)
    }

    #[test]
    fn plan_below_rebuilds_the_lineage_of_a_hand_rebuilt_parent() {
        for base in [Some(image(1, "l/base", None, vec![])), None] {
            let in_graph = base.is_some();
            let g = lineage(base);
            let p = g.plan_below(1, 100, "l/base");
            assert_eq!(shape(&p), vec![vec![2, 3], vec![4, 5, 6]], "{in_graph}");
            let depths: Vec<(i64, usize)> = p.rebuilds().map(|r| (r.build_id, r.depth)).collect();
            assert_eq!(depths, [(2, 0), (3, 0), (4, 1), (5, 1), (6, 1)]);
            assert_eq!(
                reasons(&p, 2),
                ["parent l/base was rebuilt by hand (build 100)"]
            );
            assert_eq!(reasons(&p, 4), ["parent l/a rebuilt (build 2)"]);
            assert_eq!(reasons(&p, 6), ["parent l/b rebuilt (build 3)"]);
            assert!(p.skipped.is_empty() && p.cycles.is_empty() && p.no_effect.is_empty());
            // The hand-made reason is kept by merging, which recomputes
            // only the "parent rebuilt" reasons.
            assert_eq!(p.clone().merge(Plan::default()), p);
        }
    }

    #[test]
    fn plan_below_skips_an_opted_out_child_with_its_subtree() {
        let foo = || vec![rpm("foo", "1.0-1")];
        let g = graph(vec![
            image(1, "l/base", None, foo()),
            opted_out(image(2, "l/frozen", Some(1), foo())),
            image(3, "l/under-frozen", Some(2), foo()),
            image(4, "l/sibling", Some(1), foo()),
        ]);
        let p = g.plan_below(1, 100, "l/base");
        assert_eq!(shape(&p), vec![vec![4]]);
        assert_eq!(
            skips(&p),
            [
                (2, "autorebuild is off for this image".to_string()),
                (3, "parent l/frozen (build 2) is not rebuilt".to_string()),
            ]
        );
        assert_eq!(
            p.skipped[0].reasons,
            [RebuildReason::NewParentBuild {
                parent_build_id: 100,
                parent_repository: "l/base".to_string(),
            }]
        );
        // An opted-out old parent holds nothing back: it was rebuilt already.
        let g = graph(vec![
            opted_out(image(1, "l/base", None, foo())),
            image(2, "l/child", Some(1), foo()),
        ]);
        assert_eq!(shape(&g.plan_below(1, 100, "l/base")), vec![vec![2]]);
    }

    #[test]
    fn plan_below_a_parent_without_children_is_empty() {
        let g = lineage(Some(image(1, "l/base", None, vec![])));
        for (old, why) in [(6, "a leaf in the graph"), (999, "a build nobody knows")] {
            let p = g.plan_below(old, 1000, "l/x");
            assert!(p.is_empty(), "{why}: {p:#?}");
            assert!(p.skipped.is_empty() && p.cycles.is_empty(), "{why}");
        }
        assert!(ImageGraph::default().plan_below(1, 2, "l/x").is_empty());
    }

    #[test]
    fn plan_below_a_parent_in_a_loop_skips_and_leaves_the_parent_out() {
        let g = graph(vec![
            image(1, "c/a", Some(2), vec![]),
            image(2, "c/b", Some(1), vec![]),
            image(3, "c/c", Some(1), vec![]),
        ]);
        let p = g.plan_below(1, 100, "c/a");
        assert!(p.is_empty());
        assert_eq!(p.cycles, vec![vec![1, 2]]);
        let skipped: Vec<i64> = p.skipped.iter().map(|s| s.build_id).collect();
        assert_eq!(skipped, [2, 3]);
    }

    #[test]
    fn still_older_uses_the_planning_rules() {
        let packages = vec![
            rpm("foo", "1.0-1"),
            pkg("foo-libs", "1.0-1", "x86_64", Some("foo-1.0-1.src.rpm")),
            pkg("bar", "2.0-1", "aarch64", None),
            rpm("baz", "3.0-1"),
        ];
        let older = |updates: &[&str]| -> Vec<(String, String)> {
            let updates: Vec<Nevra> = updates.iter().map(|u| nevra(u)).collect();
            still_older(&packages, &updates)
                .into_iter()
                .map(|(u, installed)| (u.to_string(), installed))
                .collect()
        };
        let pair = |u: &str, i: &str| (u.to_string(), i.to_string());
        // Binary and source match, as the plan's reasons show them.
        assert_eq!(
            older(&["foo-1.1-1.x86_64"]),
            [
                pair("foo-1.1-1.x86_64", "foo-1.0-1"),
                pair("foo-1.1-1.x86_64", "foo-libs-1.0-1 from foo-1.0-1.src.rpm"),
            ]
        );
        assert_eq!(
            older(&["foo-libs-1.1-1.x86_64"]),
            [pair("foo-libs-1.1-1.x86_64", "foo-libs-1.0-1")]
        );
        // Picked up (equal) or newer than the update: nothing left.
        assert!(older(&["foo-1.0-1.x86_64", "baz-2.9-1.x86_64"]).is_empty());
        // Not in the image (any more).
        assert!(older(&["nosuch-1.0-1.x86_64"]).is_empty());
        assert!(still_older(&[], &[nevra("foo-1.1-1.x86_64")]).is_empty());
        // Arches must agree; noarch and src updates reach any arch.
        assert!(older(&["bar-2.1-1.x86_64"]).is_empty());
        assert_eq!(
            older(&["bar-2.1-1.aarch64", "baz-3.1-1.src"]),
            [
                pair("bar-2.1-1.aarch64", "bar-2.0-1"),
                pair("baz-3.1-1.src", "baz-3.0-1"),
            ]
        );
        // Debian packages are not compared.
        let mut deb = rpm("foo", "1.0-1");
        deb.kind = PackageKind::Deb;
        assert!(still_older(&[deb], &[nevra("foo-1.1-1.x86_64")]).is_empty());
    }

    #[test]
    fn the_missing_updates_reason_names_each_older_package() {
        let packages = vec![rpm("foo", "1.0-1"), rpm("baz", "3.0-1")];
        let expect =
            |updates: &[&str]| -> Vec<String> { updates.iter().map(|u| u.to_string()).collect() };
        assert_eq!(
            missing_updates_reason(
                &packages,
                &expect(&[
                    "foo-1.1-1.x86_64",
                    "baz-1:2.0-1.noarch",
                    "nosuch-1-1.noarch"
                ])
            )
            .as_deref(),
            // In still_older's order (sorted), not the expected updates'.
            Some(
                "the rebuilt image still holds an older version: baz-3.0-1 (wanted \
                 baz-1:2.0-1.noarch), foo-1.0-1 (wanted foo-1.1-1.x86_64); is the update in \
                 the target's repositories?"
            )
        );
        assert_eq!(
            missing_updates_reason(
                &packages,
                &expect(&["foo-1.0-1.x86_64", "baz-2.0-1.noarch"])
            ),
            None
        );
        assert_eq!(missing_updates_reason(&packages, &[]), None);
        // What does not parse is not checked (the hub stored it as given).
        assert_eq!(missing_updates_reason(&packages, &expect(&["foo"])), None);
    }

    /// The benchmark graph: 10 000 images in 7 levels (depth up to
    /// 6), 300 packages each, one package (`hot`) in the 20% of images that
    /// descend from 2 of the 10 bases. Prints the times; see them with
    /// `cargo nextest run -p kiln-hub --no-capture -E 'test(planner_synthetic)'`
    /// (this is a debug build: the benchmark measures release builds).
    #[test]
    fn planner_synthetic_graph_of_ten_thousand_images() {
        const LEVELS: [usize; 7] = [10, 40, 150, 600, 1800, 3400, 4000];
        let mut first_id = Vec::new();
        let mut next = 1i64;
        for size in LEVELS {
            first_id.push(next);
            next += size as i64;
        }
        let template: Vec<Package> = (0..300)
            .map(|i| {
                let srpm = format!("grp{}-1.{i}-1.src.rpm", i / 4);
                pkg(
                    &format!("pkg{i}"),
                    &format!("1.{i}-1"),
                    "x86_64",
                    Some(&srpm),
                )
            })
            .collect();
        let hot = rpm("hot", "1.0-1");
        let nodes = LEVELS.iter().enumerate().flat_map(|(level, &size)| {
            let (first_id, template, hot) = (first_id.clone(), template.clone(), hot.clone());
            (0..size).map(move |j| {
                // Every level's size is a multiple of 10, so j % 10 is the base.
                let parent =
                    (level > 0).then(|| first_id[level - 1] + (j % LEVELS[level - 1]) as i64);
                let mut packages = template.clone();
                if j % 10 < 2 {
                    packages[299] = hot.clone();
                }
                image(first_id[level] + j as i64, "syn/image", parent, packages)
            })
        });

        let started = std::time::Instant::now();
        let g = ImageGraph::new(nodes).unwrap();
        let indexed = started.elapsed();
        assert_eq!(g.len(), 10_000);

        let update = [nevra("hot-1.1-1.x86_64")];
        let started = std::time::Instant::now();
        let p = g.plan(&update);
        let planned = started.elapsed();
        println!(
            "synthetic graph: generated and indexed in {indexed:?}, planned in {planned:?} (debug build)"
        );

        let sizes: Vec<usize> = p.batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, LEVELS.map(|s| s / 5));
        assert_eq!(p.rebuilds().count(), 2_000);
        assert_eq!(shape(&p)[0], [1, 2]);
        for (depth, batch) in p.batches.iter().enumerate() {
            for r in batch {
                assert_eq!(r.depth, depth);
                let base = (r.build_id - first_id[depth]) % 10;
                assert!(base < 2, "build {} is not under a hot base", r.build_id);
            }
        }
        assert!(p.skipped.is_empty() && p.cycles.is_empty());

        // A source-package update reaching every image, through the index.
        let p = g.plan(&[nevra("grp0-1.2-1.src")]);
        assert_eq!(p.rebuilds().count(), 10_000);
        assert_eq!(p.batches.len(), 7);
    }
}
