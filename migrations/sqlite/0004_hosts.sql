-- Docker host health as the servers last saw it (for `moocctl pool status`).

CREATE TABLE hosts (
    name       TEXT PRIMARY KEY,
    up         BOOLEAN NOT NULL,
    error      TEXT,
    checked_at BIGINT NOT NULL,
    changed_at BIGINT NOT NULL
);
