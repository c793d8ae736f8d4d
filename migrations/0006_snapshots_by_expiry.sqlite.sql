-- SQLite only: the snapshot table keyed by (expires_at, poll), its rows stored in the key's
-- order (WITHOUT ROWID), with no other index. Before, every new attempt also wrote a page of
-- the poll-id index at a random place (poll ids are random), so a group commit of n new
-- attempts wrote about n index pages to the log. Expiries grow with time: new rows and
-- the updates of recent ones now land on the last pages of one tree, a purge removes its
-- first pages, a restore reads it in order. An attempt's expiry never changes, so the
-- engine always knows the full key of the row it updates.
CREATE TABLE attempt_snapshots_by_expiry (
    expires_at BIGINT NOT NULL,
    poll VARCHAR(64) NOT NULL,
    app VARCHAR(32) NOT NULL,
    scene VARCHAR(64) NOT NULL,
    version BIGINT NOT NULL,
    live BIGINT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (expires_at, poll)
) WITHOUT ROWID;
INSERT INTO attempt_snapshots_by_expiry (expires_at, poll, app, scene, version, live, data)
    SELECT expires_at, poll, app, scene, version, live, data FROM attempt_snapshots;
DROP TABLE attempt_snapshots;
ALTER TABLE attempt_snapshots_by_expiry RENAME TO attempt_snapshots;
