-- "Starting your notebook" pages refresh to /lti/wait/<ticket> until the learner's container is
-- ready. A ticket is a short-lived random bearer of that one redirect.
CREATE TABLE wait_tickets (
    ticket       TEXT PRIMARY KEY,
    container_id BIGINT NOT NULL,
    user_id      BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX wait_tickets_expires ON wait_tickets (expires_at);
