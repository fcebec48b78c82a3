-- Baton's schema, version 1. Timestamps are milliseconds on the server clock; lists and maps
-- are JSON text; states are the names the core crate gives them.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE registration_tokens (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    hash       TEXT NOT NULL UNIQUE,
    labels     TEXT NOT NULL,
    pool       TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    max_uses   INTEGER,
    uses       INTEGER NOT NULL,
    revoked    INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE runners (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    name                TEXT NOT NULL,
    labels              TEXT NOT NULL,
    pool                TEXT NOT NULL,
    capacity            INTEGER NOT NULL,
    ephemeral           INTEGER NOT NULL,
    state               TEXT NOT NULL,
    reported_free_slots INTEGER NOT NULL,
    session_id          INTEGER,
    credential_hash     TEXT UNIQUE,
    created_at          INTEGER NOT NULL,
    last_seen_at        INTEGER NOT NULL
);
CREATE UNIQUE INDEX runners_live_name ON runners (name) WHERE state <> 'gone';
CREATE INDEX runners_offers ON runners (state, reported_free_slots);
CREATE INDEX runners_pool ON runners (pool, state);

CREATE TABLE jit_configs (
    hash       TEXT PRIMARY KEY,
    runner_id  INTEGER NOT NULL REFERENCES runners (id),
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    created_at INTEGER NOT NULL
);

CREATE TABLE sessions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    runner_id  INTEGER NOT NULL REFERENCES runners (id),
    state      TEXT NOT NULL,
    opened_at  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX sessions_open ON sessions (state, expires_at);

-- A workflow run. `secrets` is NULL once the run completed; `state` is the planner's JSON.
CREATE TABLE runs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    name             TEXT NOT NULL,
    file_name        TEXT NOT NULL,
    workflow         TEXT NOT NULL,
    inputs           TEXT NOT NULL,
    secrets          TEXT,
    options          TEXT NOT NULL,
    state            TEXT NOT NULL,
    cancel_requested INTEGER NOT NULL,
    conclusion       TEXT,
    created_at       INTEGER NOT NULL,
    completed_at     INTEGER
);

CREATE TABLE jobs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    name             TEXT NOT NULL,
    labels           TEXT NOT NULL,
    spec             TEXT NOT NULL,
    state            TEXT NOT NULL,
    conclusion       TEXT,
    reason           TEXT,
    max_attempts     INTEGER NOT NULL,
    attempt          INTEGER NOT NULL,
    epoch            INTEGER NOT NULL,
    cancel_requested INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    completed_at     INTEGER,
    run_id           INTEGER REFERENCES runs (id)
);

CREATE TABLE attempts (
    job_id          INTEGER NOT NULL REFERENCES jobs (id),
    number          INTEGER NOT NULL,
    state           TEXT NOT NULL,
    runner_id       INTEGER REFERENCES runners (id),
    epoch           INTEGER,
    queued_at       INTEGER NOT NULL,
    offered_at      INTEGER,
    accept_deadline INTEGER,
    started_at      INTEGER,
    lease_deadline  INTEGER,
    ended_at        INTEGER,
    result          TEXT,
    outputs         TEXT NOT NULL,
    summary         TEXT,
    reason          TEXT,
    PRIMARY KEY (job_id, number)
);
CREATE INDEX attempts_queue ON attempts (state, queued_at, job_id);
CREATE INDEX attempts_runner ON attempts (runner_id, state);
CREATE INDEX attempts_offer_deadline ON attempts (state, accept_deadline);
CREATE INDEX attempts_lease_deadline ON attempts (state, lease_deadline);

CREATE TABLE messages (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    runner_id  INTEGER NOT NULL REFERENCES runners (id),
    kind       TEXT NOT NULL,
    job_id     INTEGER,
    attempt    INTEGER,
    epoch      INTEGER,
    created_at INTEGER NOT NULL
);
CREATE INDEX messages_runner ON messages (runner_id, id);

CREATE TABLE log_chunks (
    job_id  INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    seq     INTEGER NOT NULL,
    at      INTEGER NOT NULL,
    data    TEXT NOT NULL,
    PRIMARY KEY (job_id, attempt, seq)
);

CREATE TABLE events (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    at        INTEGER NOT NULL,
    kind      TEXT NOT NULL,
    job_id    INTEGER,
    attempt   INTEGER,
    runner_id INTEGER,
    data      TEXT NOT NULL
);

-- Webhook endpoints; `cursor` is the newest event already turned into deliveries.
CREATE TABLE webhooks (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    url        TEXT NOT NULL,
    events     TEXT NOT NULL,
    secrets    TEXT NOT NULL,
    ordered    INTEGER NOT NULL,
    cursor     INTEGER NOT NULL,
    removed    INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE webhook_deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id      INTEGER NOT NULL REFERENCES webhooks (id),
    event_seq       INTEGER NOT NULL,
    message_id      TEXT NOT NULL,
    event           TEXT NOT NULL,
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    response_code   INTEGER,
    error           TEXT,
    latency_ms      INTEGER,
    next_attempt_at INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    completed_at    INTEGER
);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (webhook_id, status, id);
