-- 0001_init: the attestation service's tables (PostgreSQL).
-- Times are BIGINT Unix nanoseconds (UTC) in both dialects, so that one
-- set of queries compares them the same way everywhere.

CREATE TABLE agents (
	id              TEXT    NOT NULL PRIMARY KEY,
	enclave         TEXT    NOT NULL,
	status          TEXT    NOT NULL CHECK (status IN ('activating', 'pending', 'approved', 'revoked')),
	status_reason   TEXT    NOT NULL DEFAULT '',
	ek_public       BYTEA,
	ek_cert         BYTEA,
	ek_hash         TEXT    NOT NULL DEFAULT '',
	ak_public       BYTEA,
	key_pem         TEXT    NOT NULL DEFAULT '',
	activation_hash BYTEA,
	created_at      BIGINT NOT NULL,
	updated_at      BIGINT NOT NULL,
	last_level      BIGINT,
	last_status     TEXT,
	last_time       BIGINT,
	state           BYTEA
);
CREATE INDEX agents_status_id ON agents (status, id);

CREATE TABLE results (
	id            BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	agent_id      TEXT    NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
	time          BIGINT NOT NULL,
	level         BIGINT NOT NULL,
	status        TEXT    NOT NULL,
	failures      TEXT,
	policy_id     TEXT    NOT NULL DEFAULT '',
	policy_digest TEXT    NOT NULL DEFAULT '',
	token         TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX results_agent_id ON results (agent_id, id DESC);
CREATE INDEX results_time ON results (time);

CREATE TABLE nonces (
	hash     BYTEA    NOT NULL PRIMARY KEY,
	agent_id TEXT    NOT NULL,
	expires  BIGINT NOT NULL
);
CREATE INDEX nonces_expires ON nonces (expires);

CREATE TABLE secrets (
	name       TEXT    NOT NULL PRIMARY KEY,
	value      BYTEA    NOT NULL,
	created_at BIGINT NOT NULL
);

CREATE TABLE signing_keys (
	kid        TEXT    NOT NULL PRIMARY KEY,
	cert_der   BYTEA    NOT NULL,
	key_der    BYTEA    NOT NULL,
	created_at BIGINT NOT NULL,
	retire_at  BIGINT NOT NULL,
	not_after  BIGINT NOT NULL
);
