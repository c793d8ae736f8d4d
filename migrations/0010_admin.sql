-- The admin API (docs/api.md "Admin API"): the append-only audit of operators' calls, and
-- each user's "every token issued before this is refused" mark (log out everywhere).
-- The service only ever INSERTs audit rows: it never updates or deletes one.
CREATE TABLE admin_audit (
    id VARCHAR(32) NOT NULL PRIMARY KEY,
    at BIGINT NOT NULL,
    key_name VARCHAR(64) NULL,
    action VARCHAR(32) NOT NULL,
    target VARCHAR(64) NULL,
    address VARCHAR(45) NOT NULL,
    outcome VARCHAR(32) NOT NULL
);
CREATE INDEX admin_audit_by_time ON admin_audit (at, id);
CREATE TABLE user_logouts (
    user_id VARCHAR(36) NOT NULL PRIMARY KEY,
    tokens_before BIGINT NOT NULL
);
