-- 0001_init: the attestation service's tables (SQLite).
-- Times are INTEGER Unix nanoseconds (UTC) in both dialects, so that one
-- set of queries compares them the same way everywhere.

CREATE TABLE agents (
	id              TEXT    NOT NULL PRIMARY KEY,
	enclave         TEXT    NOT NULL,
	status          TEXT    NOT NULL CHECK (status IN ('activating', 'pending', 'approved', 'revoked')),
	status_reason   TEXT    NOT NULL DEFAULT '',
	ek_public       BLOB,
	ek_cert         BLOB,
	ek_hash         TEXT    NOT NULL DEFAULT '',
	ak_public       BLOB,
	key_pem         TEXT    NOT NULL DEFAULT '',
	activation_hash BLOB,
	created_at      INTEGER NOT NULL,
	updated_at      INTEGER NOT NULL,
	last_level      INTEGER,
	last_status     TEXT,
	last_time       INTEGER,
	state           BLOB
);
CREATE INDEX agents_status_id ON agents (status, id);

CREATE TABLE results (
	id            INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	agent_id      TEXT    NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
	time          INTEGER NOT NULL,
	level         INTEGER NOT NULL,
	status        TEXT    NOT NULL,
	failures      TEXT,
	policy_id     TEXT    NOT NULL DEFAULT '',
	policy_digest TEXT    NOT NULL DEFAULT '',
	token         TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX results_agent_id ON results (agent_id, id DESC);
CREATE INDEX results_time ON results (time);

CREATE TABLE nonces (
	hash     BLOB    NOT NULL PRIMARY KEY,
	agent_id TEXT    NOT NULL,
	expires  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX nonces_expires ON nonces (expires);

CREATE TABLE secrets (
	name       TEXT    NOT NULL PRIMARY KEY,
	value      BLOB    NOT NULL,
	created_at INTEGER NOT NULL
);

CREATE TABLE signing_keys (
	kid        TEXT    NOT NULL PRIMARY KEY,
	cert_der   BLOB    NOT NULL,
	key_der    BLOB    NOT NULL,
	created_at INTEGER NOT NULL,
	retire_at  INTEGER NOT NULL,
	not_after  INTEGER NOT NULL
);
