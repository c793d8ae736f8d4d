-- The OpenID Connect provider's records, shared by every node through the database:
-- authorize requests (by their attempt), sessions, authorization codes and refresh
-- tokens. Every secret (poll id, continue id, session cookie, code, refresh token) is
-- stored only as its SHA-256 (hex); the single-use steps are conditional UPDATEs, so two
-- nodes presented the same code at once accept it once.
CREATE TABLE oidc_requests (
    poll_hash VARCHAR(64) NOT NULL PRIMARY KEY,
    client_id VARCHAR(128) NOT NULL,
    redirect_uri TEXT NOT NULL,
    scope TEXT NOT NULL,
    rp_state TEXT NOT NULL,
    nonce TEXT NOT NULL,
    code_challenge VARCHAR(128) NOT NULL,
    expires_at BIGINT NOT NULL,
    continue_hash VARCHAR(64) NULL UNIQUE,
    user_id VARCHAR(36) NULL,
    amr VARCHAR(64) NULL,
    auth_time BIGINT NULL,
    continue_expires_at BIGINT NULL,
    continued_at BIGINT NULL
);
CREATE TABLE oidc_sessions (
    sid VARCHAR(64) NOT NULL PRIMARY KEY,
    cookie_hash VARCHAR(64) NOT NULL UNIQUE,
    user_id VARCHAR(36) NOT NULL,
    amr VARCHAR(64) NOT NULL,
    auth_time BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    ended_at BIGINT NULL
);
CREATE TABLE oidc_codes (
    code_hash VARCHAR(64) NOT NULL PRIMARY KEY,
    client_id VARCHAR(128) NOT NULL,
    redirect_uri TEXT NOT NULL,
    scope TEXT NOT NULL,
    nonce TEXT NOT NULL,
    code_challenge VARCHAR(128) NOT NULL,
    user_id VARCHAR(36) NOT NULL,
    sid VARCHAR(64) NOT NULL,
    amr VARCHAR(64) NOT NULL,
    auth_time BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT NULL,
    replayed_at BIGINT NULL,
    access_jti VARCHAR(64) NULL,
    access_exp BIGINT NULL,
    family VARCHAR(64) NULL
);
CREATE TABLE oidc_refresh_tokens (
    token_hash VARCHAR(64) NOT NULL PRIMARY KEY,
    family VARCHAR(64) NOT NULL,
    client_id VARCHAR(128) NOT NULL,
    scope TEXT NOT NULL,
    user_id VARCHAR(36) NOT NULL,
    sid VARCHAR(64) NOT NULL,
    amr VARCHAR(64) NOT NULL,
    auth_time BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT NULL,
    revoked BIGINT NOT NULL
);
CREATE INDEX oidc_refresh_by_family ON oidc_refresh_tokens (family);
CREATE INDEX oidc_refresh_by_sid ON oidc_refresh_tokens (sid);
