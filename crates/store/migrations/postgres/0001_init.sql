-- Baton's schema on PostgreSQL, version 1 (the same tables as SQLite's). Timestamps are milliseconds on the server clock; lists and maps
-- are JSON text; states are the names the core crate gives them.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE registration_tokens (
    id         BIGSERIAL PRIMARY KEY,
    hash       TEXT NOT NULL UNIQUE,
    labels     TEXT NOT NULL,
    pool       TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    max_uses   BIGINT,
    uses       BIGINT NOT NULL,
    revoked    BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE runners (
    id                  BIGSERIAL PRIMARY KEY,
    name                TEXT NOT NULL,
    labels              TEXT NOT NULL,
    pool                TEXT NOT NULL,
    capacity            BIGINT NOT NULL,
    ephemeral           BOOLEAN NOT NULL,
    state               TEXT NOT NULL,
    reported_free_slots BIGINT NOT NULL,
    session_id          BIGINT,
    credential_hash     TEXT UNIQUE,
    created_at          BIGINT NOT NULL,
    last_seen_at        BIGINT NOT NULL
);
CREATE UNIQUE INDEX runners_live_name ON runners (name) WHERE state <> 'gone';
CREATE INDEX runners_offers ON runners (state, reported_free_slots);
CREATE INDEX runners_pool ON runners (pool, state);

CREATE TABLE jit_configs (
    hash       TEXT PRIMARY KEY,
    runner_id  BIGINT NOT NULL REFERENCES runners (id),
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    created_at BIGINT NOT NULL
);

CREATE TABLE sessions (
    id         BIGSERIAL PRIMARY KEY,
    runner_id  BIGINT NOT NULL REFERENCES runners (id),
    state      TEXT NOT NULL,
    opened_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_open ON sessions (state, expires_at);

-- A workflow run. `secrets` is NULL once the run completed; `state` is the planner's JSON.
CREATE TABLE runs (
    id               BIGSERIAL PRIMARY KEY,
    name             TEXT NOT NULL,
    file_name        TEXT NOT NULL,
    workflow         TEXT NOT NULL,
    inputs           TEXT NOT NULL,
    secrets          TEXT,
    options          TEXT NOT NULL,
    state            TEXT NOT NULL,
    cancel_requested BOOLEAN NOT NULL,
    conclusion       TEXT,
    created_at       BIGINT NOT NULL,
    completed_at     BIGINT
);

CREATE TABLE jobs (
    id               BIGSERIAL PRIMARY KEY,
    name             TEXT NOT NULL,
    labels           TEXT NOT NULL,
    spec             TEXT NOT NULL,
    state            TEXT NOT NULL,
    conclusion       TEXT,
    reason           TEXT,
    max_attempts     BIGINT NOT NULL,
    attempt          BIGINT NOT NULL,
    epoch            BIGINT NOT NULL,
    cancel_requested BOOLEAN NOT NULL,
    created_at       BIGINT NOT NULL,
    completed_at     BIGINT,
    run_id           BIGINT REFERENCES runs (id)
);

CREATE TABLE attempts (
    job_id          BIGINT NOT NULL REFERENCES jobs (id),
    number          BIGINT NOT NULL,
    state           TEXT NOT NULL,
    runner_id       BIGINT REFERENCES runners (id),
    epoch           BIGINT,
    queued_at       BIGINT NOT NULL,
    offered_at      BIGINT,
    accept_deadline BIGINT,
    started_at      BIGINT,
    lease_deadline  BIGINT,
    ended_at        BIGINT,
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
    id         BIGSERIAL PRIMARY KEY,
    runner_id  BIGINT NOT NULL REFERENCES runners (id),
    kind       TEXT NOT NULL,
    job_id     BIGINT,
    attempt    BIGINT,
    epoch      BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX messages_runner ON messages (runner_id, id);

CREATE TABLE log_chunks (
    job_id  BIGINT NOT NULL,
    attempt BIGINT NOT NULL,
    seq     BIGINT NOT NULL,
    at      BIGINT NOT NULL,
    data    TEXT NOT NULL,
    PRIMARY KEY (job_id, attempt, seq)
);

CREATE TABLE events (
    seq       BIGSERIAL PRIMARY KEY,
    at        BIGINT NOT NULL,
    kind      TEXT NOT NULL,
    job_id    BIGINT,
    attempt   BIGINT,
    runner_id BIGINT,
    data      TEXT NOT NULL
);

-- Webhook endpoints; `cursor` is the newest event already turned into deliveries.
CREATE TABLE webhooks (
    id         BIGSERIAL PRIMARY KEY,
    url        TEXT NOT NULL,
    events     TEXT NOT NULL,
    secrets    TEXT NOT NULL,
    ordered    BOOLEAN NOT NULL,
    cursor     BIGINT NOT NULL,
    removed    BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE webhook_deliveries (
    id              BIGSERIAL PRIMARY KEY,
    webhook_id      BIGINT NOT NULL REFERENCES webhooks (id),
    event_seq       BIGINT NOT NULL,
    message_id      TEXT NOT NULL,
    event           TEXT NOT NULL,
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        BIGINT NOT NULL,
    response_code   BIGINT,
    error           TEXT,
    latency_ms      BIGINT,
    next_attempt_at BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    completed_at    BIGINT
);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (webhook_id, status, id);
