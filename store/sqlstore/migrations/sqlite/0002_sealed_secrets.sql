-- 0002_sealed_secrets: secrets at rest (SQLite). The secrets' values and
-- the signing keys' private keys are stored as store/seal envelopes;
-- sealed = 0 marks a row an older binary wrote in plaintext, which the
-- first start with a sealing key encrypts in place. seal_keys records the
-- key the database is sealed under (its ID and a sealed check value), so
-- that a replica configured with another key refuses to start.

ALTER TABLE secrets ADD COLUMN sealed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE signing_keys ADD COLUMN sealed INTEGER NOT NULL DEFAULT 0;

CREATE TABLE seal_keys (
	key_id      TEXT    NOT NULL PRIMARY KEY,
	check_value BLOB    NOT NULL,
	created_at  INTEGER NOT NULL
);
