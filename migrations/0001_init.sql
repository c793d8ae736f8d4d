-- Users, their WeChat identities, and revoked tokens. Portable SQL: SQLite, PostgreSQL and
-- MySQL/MariaDB run this same file (integers are BIGINT everywhere so the Any driver
-- decodes them alike).
CREATE TABLE users (
    id VARCHAR(36) NOT NULL PRIMARY KEY,
    phone VARCHAR(20) NULL UNIQUE,
    created_at BIGINT NOT NULL
);
CREATE TABLE wechat_identities (
    app_id VARCHAR(64) NOT NULL,
    openid VARCHAR(128) NOT NULL,
    user_id VARCHAR(36) NOT NULL,
    unionid VARCHAR(128) NULL,
    subscribed BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (app_id, openid),
    UNIQUE (user_id, app_id),
    FOREIGN KEY (user_id) REFERENCES users (id)
);
CREATE TABLE revoked_tokens (
    jti VARCHAR(64) NOT NULL PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
