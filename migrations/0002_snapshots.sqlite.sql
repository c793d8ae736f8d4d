-- Snapshots of live login attempts (storage.snapshots = "sqlite"), one row per attempt.
-- `data` is the compact binary snapshot; `version` orders writes (a newer row is never
-- overwritten by an older one); `live` = 0 marks an ended attempt kept until its expiry
-- so that no late write can bring it back.
CREATE TABLE attempt_snapshots (
    poll VARCHAR(64) NOT NULL PRIMARY KEY,
    app VARCHAR(32) NOT NULL,
    scene VARCHAR(64) NOT NULL,
    expires_at BIGINT NOT NULL,
    version BIGINT NOT NULL,
    live BIGINT NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX attempt_snapshots_expiry ON attempt_snapshots (expires_at);
CREATE INDEX attempt_snapshots_scene ON attempt_snapshots (app, scene);
