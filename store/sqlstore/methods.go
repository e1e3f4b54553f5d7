package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/vigil-attest/vigil/store"
)

// Limits on how many rows one call returns.
const (
	// DefaultLimit is the rows ListAgents and Results return when the
	// caller's limit is 0 (or negative).
	DefaultLimit = 100
	// MaxLimit is the most rows one call returns.
	MaxLimit = 1000
	// pruneBatch is how many results one Prune transaction deletes, so
	// that a large prune never holds SQLite's write lock for long.
	pruneBatch = 1000
)

func limit(n int) int {
	switch {
	case n <= 0:
		return DefaultLimit
	case n > MaxLimit:
		return MaxLimit
	}
	return n
}

func validStatus(s store.Status) bool {
	switch s {
	case store.Activating, store.Pending, store.Approved, store.Revoked:
		return true
	}
	return false
}

// ns is t as Unix nanoseconds, the stored form of every time.
func ns(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// fromNS is the inverse of ns, in UTC; 0 is the zero time.
func fromNS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.Unix(0, v).UTC()
}

// nullBytes stores an empty slice as NULL.
func nullBytes(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

const agentColumns = `id, enclave, status, status_reason, ek_public, ek_cert, ek_hash,
	ak_public, key_pem, activation_hash, created_at, updated_at,
	last_level, last_status, last_time, state`

type scanner interface{ Scan(dest ...any) error }

func scanAgent(r scanner) (*store.Agent, error) {
	var (
		a                   store.Agent
		status              string
		created, updated    int64
		lastLevel, lastTime sql.NullInt64
		lastStatus          sql.NullString
	)
	if err := r.Scan(&a.ID, &a.Enclave, &status, &a.StatusReason, &a.EKPublic, &a.EKCert, &a.EKHash,
		&a.AKPublic, &a.KeyPEM, &a.ActivationHash, &created, &updated,
		&lastLevel, &lastStatus, &lastTime, &a.State); err != nil {
		return nil, err
	}
	a.Status = store.Status(status)
	a.CreatedAt, a.UpdatedAt = fromNS(created), fromNS(updated)
	if lastLevel.Valid {
		a.Last = &store.Summary{Level: int(lastLevel.Int64), Status: lastStatus.String, Time: fromNS(lastTime.Int64)}
	}
	return &a, nil
}

// CreateAgent records a new agent; ErrExists when the ID is taken. A zero
// CreatedAt is set to now and a zero UpdatedAt to CreatedAt (in a). Last
// and State are not stored: SaveResult sets them.
func (s *Store) CreateAgent(ctx context.Context, a *store.Agent) error {
	if a == nil || a.ID == "" {
		return errors.New("sqlstore: create agent: empty agent ID")
	}
	if !validStatus(a.Status) {
		return fmt.Errorf("sqlstore: create agent %q: invalid status %q", a.ID, a.Status)
	}
	if a.CreatedAt.IsZero() {
		a.CreatedAt = time.Now().UTC()
	}
	if a.UpdatedAt.IsZero() {
		a.UpdatedAt = a.CreatedAt
	}
	_, err := s.wdb.ExecContext(ctx, s.q(`INSERT INTO agents (id, enclave, status, status_reason,
	ek_public, ek_cert, ek_hash, ak_public, key_pem, activation_hash, created_at, updated_at)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		a.ID, a.Enclave, string(a.Status), a.StatusReason,
		nullBytes(a.EKPublic), nullBytes(a.EKCert), a.EKHash, nullBytes(a.AKPublic), a.KeyPEM,
		nullBytes(a.ActivationHash), ns(a.CreatedAt), ns(a.UpdatedAt))
	if isUnique(err) {
		return fmt.Errorf("sqlstore: create agent %q: %w", a.ID, store.ErrExists)
	}
	if err != nil {
		return s.fail(fmt.Sprintf("create agent %q", a.ID), err)
	}
	return nil
}

// GetAgent returns an agent; ErrNotFound when unknown.
func (s *Store) GetAgent(ctx context.Context, id string) (*store.Agent, error) {
	a, err := scanAgent(s.rdb.QueryRowContext(ctx, s.q(`SELECT `+agentColumns+` FROM agents WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlstore: agent %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, s.fail(fmt.Sprintf("get agent %q", id), err)
	}
	return a, nil
}

// ListAgents lists agents in ID order: those with ID > o.After, in
// o.Status when set, at most o.Limit (0 means DefaultLimit, capped at
// MaxLimit).
func (s *Store) ListAgents(ctx context.Context, o store.ListOptions) ([]*store.Agent, error) {
	query := `SELECT ` + agentColumns + ` FROM agents WHERE id > ?`
	args := []any{o.After}
	if o.Status != "" {
		query += ` AND status = ?`
		args = append(args, string(o.Status))
	}
	query += ` ORDER BY id LIMIT ?`
	args = append(args, limit(o.Limit))
	rows, err := s.rdb.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, s.fail("list agents", err)
	}
	defer rows.Close()
	var as []*store.Agent
	for rows.Next() {
		a, err := scanAgent(rows)
		if err != nil {
			return nil, s.fail("list agents", err)
		}
		as = append(as, a)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail("list agents", err)
	}
	return as, nil
}

// SetStatus changes an agent's status and reason, and clears its
// ActivationHash unless the new status is Activating; ErrNotFound when
// unknown.
func (s *Store) SetStatus(ctx context.Context, id string, st store.Status, reason string) error {
	if !validStatus(st) {
		return fmt.Errorf("sqlstore: set status of %q: invalid status %q", id, st)
	}
	res, err := s.wdb.ExecContext(ctx, s.q(`UPDATE agents SET status = ?, status_reason = ?, updated_at = ?,
	activation_hash = CASE WHEN ? THEN activation_hash ELSE NULL END
	WHERE id = ?`), string(st), reason, time.Now().UnixNano(), st == store.Activating, id)
	if err != nil {
		return s.fail(fmt.Sprintf("set status of %q", id), err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return s.fail(fmt.Sprintf("set status of %q", id), err)
	}
	if n == 0 {
		return fmt.Errorf("sqlstore: set status of %q: %w", id, store.ErrNotFound)
	}
	return nil
}

// UseNonce records a nonce hash as used until expires; ErrNonceUsed when
// any handle on the database recorded it before (and Prune has not yet
// removed it: callers check the expiry themselves).
func (s *Store) UseNonce(ctx context.Context, hash []byte, agentID string, expires time.Time) error {
	if len(hash) == 0 {
		return errors.New("sqlstore: use nonce: empty hash")
	}
	_, err := s.wdb.ExecContext(ctx, s.q(`INSERT INTO nonces (hash, agent_id, expires) VALUES (?, ?, ?)`),
		hash, agentID, ns(expires))
	if isUnique(err) {
		return fmt.Errorf("sqlstore: use nonce of %q: %w", agentID, store.ErrNonceUsed)
	}
	if err != nil {
		return s.fail(fmt.Sprintf("use nonce of %q", agentID), err)
	}
	return nil
}

// SaveResult stores r, setting r.ID (and r.Time to now when zero), and in
// the same transaction sets the agent's Last summary and, when state is
// not nil, its State; ErrNotFound when the agent is unknown. r.Failures,
// when set, must be JSON.
func (s *Store) SaveResult(ctx context.Context, r *store.Result, state []byte) error {
	if r == nil || r.AgentID == "" {
		return errors.New("sqlstore: save result: no agent ID")
	}
	var failures any
	if r.Failures != nil {
		if !json.Valid(r.Failures) {
			return fmt.Errorf("sqlstore: save result of %q: failures are not JSON", r.AgentID)
		}
		failures = string(r.Failures)
	}
	t := r.Time
	if t.IsZero() {
		t = time.Now().UTC()
	}
	var st any
	if state != nil {
		st = state
	}
	var id int64
	if s.dialect == Postgres {
		// One statement, one round trip (not BEGIN, UPDATE, INSERT,
		// COMMIT): the UPDATE locks the agent's row before the INSERT, so
		// concurrent results of one agent are ordered as below, and the
		// statement is atomic on its own.
		err := s.wdb.QueryRowContext(ctx, `WITH a AS (UPDATE agents SET last_level = $1, last_status = $2, last_time = $3,
	state = CASE WHEN $4 THEN $5 ELSE state END WHERE id = $6 RETURNING id)
INSERT INTO results (agent_id, time, level, status, failures, policy_id, policy_digest, token)
	SELECT a.id, $3, $1, $2, $7, $8, $9, $10 FROM a RETURNING id`,
			r.Level, r.Status, ns(t), state != nil, st, r.AgentID, failures, r.PolicyID, r.PolicyDigest, r.Token).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlstore: save result of %q: %w", r.AgentID, store.ErrNotFound)
		}
		if err != nil {
			return s.fail(fmt.Sprintf("save result of %q", r.AgentID), err)
		}
		r.ID, r.Time = id, t
		return nil
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		// The agent's row first: on PostgreSQL its lock orders concurrent
		// results of one agent, so Last is always the highest ID's.
		res, err := tx.ExecContext(ctx, s.q(`UPDATE agents SET last_level = ?, last_status = ?, last_time = ?,
	state = CASE WHEN ? THEN ? ELSE state END WHERE id = ?`),
			r.Level, r.Status, ns(t), state != nil, st, r.AgentID)
		if err != nil {
			return s.fail(fmt.Sprintf("save result of %q", r.AgentID), err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return s.fail(fmt.Sprintf("save result of %q", r.AgentID), err)
		}
		if n == 0 {
			return fmt.Errorf("sqlstore: save result of %q: %w", r.AgentID, store.ErrNotFound)
		}
		err = tx.QueryRowContext(ctx, s.q(`INSERT INTO results (agent_id, time, level, status, failures, policy_id, policy_digest, token)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`),
			r.AgentID, ns(t), r.Level, r.Status, failures, r.PolicyID, r.PolicyDigest, r.Token).Scan(&id)
		if err != nil {
			return s.fail(fmt.Sprintf("save result of %q", r.AgentID), err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	r.ID, r.Time = id, t
	return nil
}

// Results returns an agent's latest results, newest first: at most limit
// (0 means DefaultLimit, capped at MaxLimit). An unknown agent has none.
func (s *Store) Results(ctx context.Context, agentID string, n int) ([]*store.Result, error) {
	rows, err := s.rdb.QueryContext(ctx, s.q(`SELECT id, agent_id, time, level, status, failures, policy_id, policy_digest, token
	FROM results WHERE agent_id = ? ORDER BY id DESC LIMIT ?`), agentID, limit(n))
	if err != nil {
		return nil, s.fail(fmt.Sprintf("results of %q", agentID), err)
	}
	defer rows.Close()
	var rs []*store.Result
	for rows.Next() {
		var (
			r        store.Result
			t        int64
			failures sql.NullString
		)
		if err := rows.Scan(&r.ID, &r.AgentID, &t, &r.Level, &r.Status, &failures, &r.PolicyID, &r.PolicyDigest, &r.Token); err != nil {
			return nil, s.fail(fmt.Sprintf("results of %q", agentID), err)
		}
		r.Time = fromNS(t)
		if failures.Valid {
			r.Failures = []byte(failures.String)
		}
		rs = append(rs, &r)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(fmt.Sprintf("results of %q", agentID), err)
	}
	return rs, nil
}

// Prune deletes results older than before, except each agent's latest,
// and nonces expired before now; it returns how many rows went. Rows go
// in batches of pruneBatch, one transaction each, so that a large prune
// never holds SQLite's write lock for long.
func (s *Store) Prune(ctx context.Context, before, now time.Time) (int64, error) {
	results, err := s.deleteBatches(ctx, "prune results", `DELETE FROM results WHERE id IN (
	SELECT r.id FROM results r WHERE r.time < ?
	AND r.id < (SELECT MAX(l.id) FROM results l WHERE l.agent_id = r.agent_id)
	LIMIT ?)`, ns(before))
	if err != nil {
		return results, err
	}
	nonces, err := s.deleteBatches(ctx, "prune nonces", `DELETE FROM nonces WHERE hash IN (
	SELECT hash FROM nonces WHERE expires < ? LIMIT ?)`, ns(now))
	return results + nonces, err
}

// deleteBatches runs query (whose last placeholder is the batch size)
// until it deletes less than a batch.
func (s *Store) deleteBatches(ctx context.Context, op, query string, arg any) (int64, error) {
	var total int64
	for {
		res, err := s.wdb.ExecContext(ctx, s.q(query), arg, pruneBatch)
		if err != nil {
			return total, s.fail(op, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, s.fail(op, err)
		}
		total += n
		if n < pruneBatch {
			return total, nil
		}
	}
}
