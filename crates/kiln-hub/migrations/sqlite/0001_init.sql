-- kiln hub schema, SQLite flavour. Kept column-for-column equal to
-- ../postgres/0001_init.sql: the code runs the same SQL on both.
-- Booleans are 0/1 integers and JSON is TEXT on both backends, because the
-- runtime-generic driver (sqlx::Any) carries neither BOOLEAN nor JSONB.
-- Times are RFC 3339 text (UTC); lease deadlines are unix seconds.

CREATE TABLE users (
    name        TEXT PRIMARY KEY,
    admin       INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL
);

-- Only the sha256 of a token is stored: a leaked database leaks no tokens.
CREATE TABLE tokens (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    token_sha256  TEXT NOT NULL UNIQUE,
    user_name     TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    description   TEXT NOT NULL,
    created_at    TEXT NOT NULL
);

CREATE TABLE components (
    name     TEXT PRIMARY KEY,
    git_url  TEXT NOT NULL,
    owners   TEXT NOT NULL            -- JSON array of user names
);

CREATE TABLE targets (
    name             TEXT PRIMARY KEY,
    allowed_parents  TEXT NOT NULL,   -- JSON array of registry/repo prefixes
    repos            TEXT NOT NULL,   -- JSON array of RepoSpec
    dest_tag         TEXT NOT NULL,
    registry         TEXT NOT NULL
);

CREATE TABLE tags (
    name        TEXT PRIMARY KEY,
    created_at  TEXT NOT NULL
);

CREATE TABLE builds (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    state             TEXT NOT NULL,
    component         TEXT NOT NULL,
    nvr_name          TEXT,
    nvr_version       TEXT,
    nvr_release       TEXT,
    nvr               TEXT,            -- "name-version-release", for lookups by NVR and prefix
    source_url        TEXT NOT NULL,
    source_ref        TEXT NOT NULL,
    commit_id         TEXT,
    target            TEXT NOT NULL,
    owner             TEXT NOT NULL,
    scratch           INTEGER NOT NULL,
    isolated          INTEGER NOT NULL,
    release_override  TEXT,
    parent_ref        TEXT,
    parent_digest     TEXT,
    parent_build_id   INTEGER REFERENCES builds(id),
    manifest_digest   TEXT,
    config_digest     TEXT,
    image_size        INTEGER,
    layers            TEXT NOT NULL,   -- JSON array of digests
    tags              TEXT NOT NULL,   -- JSON array of pushed references
    reason            TEXT,
    created_at        TEXT NOT NULL,
    started_at        TEXT,
    completed_at      TEXT
);

-- An NVR exists once among live non-scratch builds; failed and canceled
-- builds give theirs back (as koji lets a failed NVR be built again).
CREATE UNIQUE INDEX builds_nvr_unique ON builds (nvr_name, nvr_version, nvr_release)
    WHERE scratch = 0 AND nvr_name IS NOT NULL AND state IN ('queued', 'building', 'complete');
CREATE INDEX builds_state ON builds (state, id);
CREATE INDEX builds_component ON builds (component, id);
CREATE INDEX builds_owner ON builds (owner, id);
CREATE INDEX builds_nvr ON builds (nvr);
CREATE INDEX builds_name_version ON builds (nvr_name, nvr_version);
CREATE INDEX builds_manifest_digest ON builds (manifest_digest);

CREATE TABLE build_packages (
    build_id     INTEGER NOT NULL REFERENCES builds(id) ON DELETE CASCADE,
    kind         TEXT NOT NULL,
    name         TEXT NOT NULL,
    epoch        INTEGER,
    version      TEXT NOT NULL,
    release      TEXT NOT NULL,
    arch         TEXT NOT NULL,
    source       TEXT,
    license      TEXT,
    signing_key  TEXT
);
CREATE INDEX build_packages_name ON build_packages (name, build_id);
CREATE INDEX build_packages_build ON build_packages (build_id);

CREATE TABLE tag_builds (
    tag        TEXT NOT NULL REFERENCES tags(name) ON DELETE CASCADE,
    build_id   INTEGER NOT NULL REFERENCES builds(id),
    tagged_by  TEXT NOT NULL,
    tagged_at  TEXT NOT NULL,
    PRIMARY KEY (tag, build_id)
);

CREATE TABLE tag_history (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    tag        TEXT NOT NULL,
    build_id   INTEGER NOT NULL,
    action     TEXT NOT NULL,
    user_name  TEXT NOT NULL,
    at         TEXT NOT NULL
);
CREATE INDEX tag_history_tag ON tag_history (tag, id);
CREATE INDEX tag_history_build ON tag_history (build_id, id);

CREATE TABLE tasks (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    build_id      INTEGER NOT NULL REFERENCES builds(id),
    state         TEXT NOT NULL,
    worker        TEXT,
    lease_until   INTEGER,
    attempts      INTEGER NOT NULL,
    max_attempts  INTEGER NOT NULL,
    reason        TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX tasks_state ON tasks (state, id);
CREATE INDEX tasks_lease ON tasks (state, lease_until);
CREATE INDEX tasks_build ON tasks (build_id);

CREATE TABLE events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        TEXT NOT NULL,
    kind      TEXT NOT NULL,
    build_id  INTEGER,
    payload   TEXT NOT NULL            -- JSON
);
