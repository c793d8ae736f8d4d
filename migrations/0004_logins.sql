-- Login audit: one row per token handed out, so a user can notice a login that was not theirs.
CREATE TABLE logins (
    user_id VARCHAR(36) NOT NULL,
    app VARCHAR(32) NOT NULL,
    how VARCHAR(8) NOT NULL,
    ip VARCHAR(45) NOT NULL,
    user_agent VARCHAR(256) NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX logins_by_user ON logins (user_id, at);
