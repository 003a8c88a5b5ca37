-- Initial schema. Times are UTC seconds since the Unix epoch (BIGINT), identical on both backends.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE consumers (
    key        TEXT PRIMARY KEY,
    secret     TEXT NOT NULL,
    name       TEXT,
    enabled    BOOLEAN NOT NULL DEFAULT TRUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE users (
    id           BIGSERIAL PRIMARY KEY,
    consumer_key TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    name         TEXT,
    email        TEXT,
    first_seen   BIGINT NOT NULL,
    last_seen    BIGINT NOT NULL,
    UNIQUE (consumer_key, user_id)
);

CREATE TABLE sessions (
    id               BIGSERIAL PRIMARY KEY,
    at               BIGINT NOT NULL,
    user_id          BIGINT,
    consumer_key     TEXT NOT NULL,
    context_id       TEXT,
    resource_link_id TEXT,
    roles            TEXT,
    remote_addr      TEXT,
    pool             TEXT,
    outcome          TEXT NOT NULL,
    container_id     BIGINT
);
CREATE INDEX sessions_at ON sessions (at);
CREATE INDEX sessions_user ON sessions (user_id, at);
CREATE INDEX sessions_context ON sessions (context_id, at);

CREATE TABLE nonces (
    consumer_key TEXT NOT NULL,
    nonce        TEXT NOT NULL,
    ts           BIGINT NOT NULL,
    PRIMARY KEY (consumer_key, nonce)
);
CREATE INDEX nonces_ts ON nonces (ts);

-- A learner's files. Created with a container; at claim it becomes the user's for that pool, for good.
CREATE TABLE volumes (
    name       TEXT PRIMARY KEY,
    pool       TEXT NOT NULL,
    host       TEXT NOT NULL,
    user_id    BIGINT,
    created_at BIGINT NOT NULL,
    claimed_at BIGINT
);
CREATE UNIQUE INDEX volumes_pool_user ON volumes (pool, user_id) WHERE user_id IS NOT NULL;

-- States: creating, warming, ready, assigned, stopped, removed, failed.
CREATE TABLE containers (
    id            BIGSERIAL PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    pool          TEXT NOT NULL,
    host          TEXT NOT NULL,
    docker_id     TEXT,
    port          BIGINT,
    token         TEXT NOT NULL,
    volume        TEXT NOT NULL,
    state         TEXT NOT NULL,
    user_id       BIGINT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    ready_at      BIGINT,
    assigned_at   BIGINT,
    last_activity BIGINT,
    error         TEXT
);
CREATE UNIQUE INDEX containers_pool_user ON containers (pool, user_id)
    WHERE user_id IS NOT NULL AND state NOT IN ('removed', 'failed');
CREATE INDEX containers_pool_state ON containers (pool, state);
CREATE INDEX containers_user ON containers (user_id);

CREATE TABLE events (
    id      BIGSERIAL PRIMARY KEY,
    at      BIGINT NOT NULL,
    level   TEXT NOT NULL,
    kind    TEXT NOT NULL,
    actor   TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX events_at ON events (at);
