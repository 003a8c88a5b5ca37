-- Who may run moocctl's mutating commands, and the trail of every mutation.

CREATE TABLE admins (
    identity   TEXT PRIMARY KEY,
    name       TEXT,
    role       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL
);

CREATE TABLE audit (
    id      BIGSERIAL PRIMARY KEY,
    at      BIGINT NOT NULL,
    actor   TEXT NOT NULL,
    command TEXT NOT NULL,
    outcome TEXT NOT NULL
);
CREATE INDEX audit_at ON audit (at);

CREATE INDEX users_last_seen ON users (last_seen);
CREATE INDEX events_kind ON events (kind, id);
