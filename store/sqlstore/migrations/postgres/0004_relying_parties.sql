-- 0004_relying_parties: relying parties' scoped credentials. The bearer
-- token is never stored, only its SHA-256; scopes are a comma-separated,
-- sorted list of 'verify' and 'feed'.
CREATE TABLE relying_parties (
	name       TEXT   NOT NULL PRIMARY KEY,
	token_hash BYTEA  NOT NULL UNIQUE,
	scopes     TEXT   NOT NULL,
	created_at BIGINT NOT NULL
);
