-- Indexes for the admin queries at scale: sessions of a learner named by their LMS id, and pool
-- status counting containers by state and host from the index alone.
CREATE INDEX users_user_id ON users (user_id);
DROP INDEX containers_pool_state;
CREATE INDEX containers_pool_state_host ON containers (pool, state, host);
