-- Asymmetric signing keys: every node signs with the same key, a restart keeps it. The
-- private part is sealed (AES-256-GCM under a key derived from token.secret). One row per
-- key; `generation` orders an algorithm's keys, and its uniqueness makes two nodes that
-- start at once agree on one first key (the loser of the insert uses the winner's).
CREATE TABLE signing_keys (
    kid VARCHAR(64) NOT NULL PRIMARY KEY,
    alg VARCHAR(16) NOT NULL,
    generation BIGINT NOT NULL,
    public_jwk TEXT NOT NULL,
    private_sealed TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    signs_from BIGINT NOT NULL,
    UNIQUE (alg, generation)
);
