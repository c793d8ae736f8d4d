-- As 0008_signing_keys.sql, with the key id compared byte by byte (kids are base64url:
-- case matters).
CREATE TABLE signing_keys (
    kid VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL PRIMARY KEY,
    alg VARCHAR(16) NOT NULL,
    generation BIGINT NOT NULL,
    public_jwk TEXT NOT NULL,
    private_sealed TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    signs_from BIGINT NOT NULL,
    UNIQUE (alg, generation)
);
