-- Pool sizes set by `moocctl pool resize` (NULL: the configured value), and leases that let one of
-- several servers run periodic work (culling, refills, pruning) at a time.

CREATE TABLE pools (
    name       TEXT PRIMARY KEY,
    warm       BIGINT,
    max        BIGINT,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL
);

CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE INDEX containers_host_state ON containers (host, state);
CREATE INDEX volumes_user ON volumes (user_id);
