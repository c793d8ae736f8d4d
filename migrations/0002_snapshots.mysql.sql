-- Snapshots of live login attempts (see the SQLite file for the meaning of each column).
-- Ids are compared byte by byte: poll ids and scenes are case-sensitive base64.
CREATE TABLE attempt_snapshots (
    poll VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL PRIMARY KEY,
    app VARCHAR(32) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    scene VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    expires_at BIGINT NOT NULL,
    version BIGINT NOT NULL,
    live BIGINT NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX attempt_snapshots_expiry ON attempt_snapshots (expires_at);
CREATE INDEX attempt_snapshots_scene ON attempt_snapshots (app, scene);
