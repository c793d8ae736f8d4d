-- MySQL/MariaDB compare VARCHAR case-insensitively by default, but openids, app ids and
-- token ids are case-sensitive: `oAbC` and `OABC` are two WeChat users. Compare bytes.
ALTER TABLE wechat_identities MODIFY app_id VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL;
ALTER TABLE wechat_identities MODIFY openid VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL;
ALTER TABLE wechat_identities MODIFY unionid VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL;
ALTER TABLE revoked_tokens MODIFY jti VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL;
