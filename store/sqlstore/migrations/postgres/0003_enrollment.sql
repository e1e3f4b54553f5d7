-- 0002_enrollment: enrollment cannot be squatted (PostgreSQL).
-- ek_shared: an operator let this agent's EK hold other agent IDs too.
-- enrolled_from: the client that enrolled it, for the per-source limit.
ALTER TABLE agents ADD COLUMN ek_shared BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE agents ADD COLUMN enrolled_from TEXT NOT NULL DEFAULT '';

-- EKs that already hold several activated IDs keep them (marked shared),
-- so that the unique index below can be built on an existing database.
UPDATE agents SET ek_shared = TRUE
WHERE ek_hash <> '' AND status <> 'activating' AND ek_hash IN (
	SELECT ek_hash FROM agents WHERE ek_hash <> '' AND status <> 'activating'
	GROUP BY ek_hash HAVING COUNT(*) > 1);

-- One EK, one activated agent ID (unless shared): the database refuses
-- the second, so replicas cannot race past it. Agents still activating
-- have not proven they hold the EK and take no part.
CREATE UNIQUE INDEX agents_ek_once ON agents (ek_hash)
	WHERE ek_hash <> '' AND status <> 'activating' AND NOT ek_shared;
CREATE INDEX agents_ek_hash ON agents (ek_hash);
CREATE INDEX agents_unfinished ON agents (enrolled_from)
	WHERE status IN ('activating', 'pending');
