-- Automatic rebuilds, SQLite flavour (kept column-for-column equal to
-- ../postgres/0002_rebuilds.sql).

-- Opt-in: a target (its dest_tag) or a tag takes automatic rebuilds.
ALTER TABLE targets ADD COLUMN autorebuild INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tags ADD COLUMN autorebuild INTEGER NOT NULL DEFAULT 0;

ALTER TABLE builds ADD COLUMN no_cache INTEGER NOT NULL DEFAULT 0;
ALTER TABLE builds ADD COLUMN parent_pin TEXT;
ALTER TABLE builds ADD COLUMN autorebuild INTEGER;      -- container.yaml; NULL = unset (on)
ALTER TABLE builds ADD COLUMN rebuild_item_id INTEGER;
CREATE INDEX builds_nvr_name ON builds (nvr_name, id);
CREATE INDEX builds_parent ON builds (parent_build_id);

-- The source package's name, so "everything built from openssl" is an
-- index lookup. Filled on insert; older rows are filled by the hub on open.
ALTER TABLE build_packages ADD COLUMN source_name TEXT;
CREATE INDEX build_packages_source_name ON build_packages (source_name, build_id);

CREATE TABLE rebuild_events (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    trigger_kind       TEXT NOT NULL,
    -- The same updates (or the same parent build) twice are one event.
    dedup_key          TEXT NOT NULL UNIQUE,
    state              TEXT NOT NULL,
    updates            TEXT NOT NULL,   -- JSON array of NEVRA strings
    repo               TEXT,
    trigger_build_id   INTEGER,
    replaced_build_id  INTEGER,
    submitter          TEXT NOT NULL,
    message            TEXT,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL
);
CREATE INDEX rebuild_events_state ON rebuild_events (state, id);

CREATE TABLE rebuild_items (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id           INTEGER NOT NULL REFERENCES rebuild_events(id),
    original_build_id  INTEGER NOT NULL,
    repository         TEXT NOT NULL,
    depth              INTEGER NOT NULL,
    parent_item_id     INTEGER,
    reasons            TEXT NOT NULL,   -- JSON array of sentences
    expect             TEXT NOT NULL,   -- JSON array of NEVRA strings
    state              TEXT NOT NULL,
    build_id           INTEGER,
    attempts           INTEGER NOT NULL DEFAULT 0,
    coalesced_into     INTEGER,
    message            TEXT,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL
);
CREATE INDEX rebuild_items_event ON rebuild_items (event_id, id);
CREATE INDEX rebuild_items_state ON rebuild_items (state, id);
CREATE INDEX rebuild_items_build ON rebuild_items (build_id);
CREATE INDEX rebuild_items_repository ON rebuild_items (repository, state);

-- What the watcher last saw of each package repository.
CREATE TABLE watched_repos (
    baseurl           TEXT PRIMARY KEY,
    snapshot          TEXT NOT NULL,    -- JSON RepoSnapshot
    checked_at        TEXT NOT NULL,
    error             TEXT
);
