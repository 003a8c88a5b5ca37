-- Which process reserved a container (host:pid:random), so that a restarted server can tell at
-- once that a creation it did not finish was cut short by a crash.
ALTER TABLE containers ADD COLUMN owner TEXT;
