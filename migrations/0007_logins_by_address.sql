-- The address block (an IPv4 address, an IPv6 /64) each login came from, so the QR quota's
-- reserved slice can tell a returning address from a new one by an index. Older IPv4 rows
-- already name their block; older IPv6 rows stay unknown until that address logs in again.
ALTER TABLE logins ADD COLUMN bucket VARCHAR(45) NOT NULL DEFAULT '';
UPDATE logins SET bucket = ip WHERE ip NOT LIKE '%:%';
CREATE INDEX logins_by_bucket ON logins (bucket, at);
