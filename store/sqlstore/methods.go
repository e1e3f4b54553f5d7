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

const agentColumns = `id, enclave, status, status_reason, ek_public, ek_cert, ek_hash, ek_shared,
	ak_public, key_pem, activation_hash, enrolled_from, created_at, updated_at,
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
	if err := r.Scan(&a.ID, &a.Enclave, &status, &a.StatusReason, &a.EKPublic, &a.EKCert, &a.EKHash, &a.EKShared,
		&a.AKPublic, &a.KeyPEM, &a.ActivationHash, &a.EnrolledFrom, &created, &updated,
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

// unfinished is the SQL condition of an unfinished enrollment; the
// partial index agents_unfinished has the same one.
const unfinished = `status IN ('activating', 'pending')`

// enrollLock serialises bounded enrollments on PostgreSQL (one schema),
// so that two replicas cannot both count one below a limit and insert.
const enrollLock = `SELECT pg_advisory_xact_lock(hashtext('vigil.enroll.' || COALESCE(current_schema(), '')))`

// CreateAgent records a new agent: ErrExists when the ID is taken,
// ErrEKInUse when the agent is past activating and its EK holds another
// ID, ErrEnrollLimit (a *store.LimitError) when the agent is unfinished
// and lim is reached. A zero CreatedAt is set to now and a zero UpdatedAt
// to CreatedAt (in a). Last and State are not stored: SaveResult sets
// them. A bounded enrollment is one transaction that checks the ID, then
// counts, then inserts, under the database's write lock (SQLite) or an
// advisory lock (PostgreSQL): the limits hold across replicas.
func (s *Store) CreateAgent(ctx context.Context, a *store.Agent, lim store.EnrollLimits) error {
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
	op := fmt.Sprintf("create agent %q", a.ID)
	insert := func(ex interface {
		ExecContext(context.Context, string, ...any) (sql.Result, error)
	}) error {
		_, err := ex.ExecContext(ctx, s.q(`INSERT INTO agents (id, enclave, status, status_reason,
	ek_public, ek_cert, ek_hash, ek_shared, ak_public, key_pem, activation_hash, enrolled_from, created_at, updated_at)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
			a.ID, a.Enclave, string(a.Status), a.StatusReason,
			nullBytes(a.EKPublic), nullBytes(a.EKCert), a.EKHash, a.EKShared, nullBytes(a.AKPublic), a.KeyPEM,
			nullBytes(a.ActivationHash), a.EnrolledFrom, ns(a.CreatedAt), ns(a.UpdatedAt))
		switch {
		case isUniqueEK(err):
			return fmt.Errorf("sqlstore: %s: %w", op, store.ErrEKInUse)
		case isUnique(err):
			return fmt.Errorf("sqlstore: %s: %w", op, store.ErrExists)
		case err != nil:
			return s.fail(op, err)
		}
		return nil
	}
	if !a.Status.Unfinished() || (lim.PerSource <= 0 && lim.Total <= 0) {
		err := insert(s.wdb)
		if errors.Is(err, store.ErrEKInUse) {
			// Both indexes may refuse the row, in either order: a taken ID
			// is the answer that matters (the agent enrolling again).
			var n int
			if qerr := s.wdb.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM agents WHERE id = ?`), a.ID).Scan(&n); qerr == nil && n > 0 {
				return fmt.Errorf("sqlstore: %s: %w", op, store.ErrExists)
			}
		}
		return err
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		if s.dialect == Postgres {
			if _, err := tx.ExecContext(ctx, enrollLock); err != nil {
				return s.fail(op+": lock", err)
			}
		}
		count := func(query string, args ...any) (int, error) {
			var n int
			if err := tx.QueryRowContext(ctx, s.q(query), args...).Scan(&n); err != nil {
				return 0, s.fail(op+": count", err)
			}
			return n, nil
		}
		n, err := count(`SELECT COUNT(*) FROM agents WHERE id = ?`, a.ID)
		if err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("sqlstore: %s: %w", op, store.ErrExists)
		}
		if lim.PerSource > 0 {
			if n, err = count(`SELECT COUNT(*) FROM agents WHERE `+unfinished+` AND enrolled_from = ?`, a.EnrolledFrom); err != nil {
				return err
			}
			if n >= lim.PerSource {
				return fmt.Errorf("sqlstore: %s: %w", op, &store.LimitError{PerSource: true, Limit: lim.PerSource})
			}
		}
		if lim.Total > 0 {
			if n, err = count(`SELECT COUNT(*) FROM agents WHERE ` + unfinished); err != nil {
				return err
			}
			if n >= lim.Total {
				return fmt.Errorf("sqlstore: %s: %w", op, &store.LimitError{Limit: lim.Total})
			}
		}
		return insert(tx)
	})
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
// o.Status and with o.EKHash when set, at most o.Limit (0 means
// DefaultLimit, capped at MaxLimit).
func (s *Store) ListAgents(ctx context.Context, o store.ListOptions) ([]*store.Agent, error) {
	query := `SELECT ` + agentColumns + ` FROM agents WHERE id > ?`
	args := []any{o.After}
	if o.Status != "" {
		query += ` AND status = ?`
		args = append(args, string(o.Status))
	}
	if o.EKHash != "" {
		query += ` AND ek_hash = ?`
		args = append(args, o.EKHash)
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

// SetStatus changes an agent's status from c.From to c.To and its reason
// in one conditional UPDATE (compare-and-set: a concurrent change wins or
// loses as a whole, and an approve cannot undo a revoke), and clears its
// ActivationHash unless c.To is Activating. ErrNotFound when unknown,
// ErrStatusChanged when the status is not c.From, ErrEKInUse when the
// agent's EK holds another activated ID.
func (s *Store) SetStatus(ctx context.Context, id string, c store.StatusChange) error {
	if !validStatus(c.From) || !validStatus(c.To) {
		return fmt.Errorf("sqlstore: set status of %q: invalid status %q to %q", id, c.From, c.To)
	}
	if !store.CanChange(c.From, c.To) {
		return fmt.Errorf("sqlstore: set status of %q: %s to %s is not a permitted change", id, c.From, c.To)
	}
	at := c.At
	if at.IsZero() {
		at = time.Now()
	}
	op := fmt.Sprintf("set status of %q", id)
	res, err := s.wdb.ExecContext(ctx, s.q(`UPDATE agents SET status = ?, status_reason = ?, updated_at = ?,
	activation_hash = CASE WHEN ? THEN activation_hash ELSE NULL END
	WHERE id = ? AND status = ?`), string(c.To), c.Reason, ns(at), c.To == store.Activating, id, string(c.From))
	if isUniqueEK(err) {
		return fmt.Errorf("sqlstore: %s: %w", op, store.ErrEKInUse)
	}
	if err != nil {
		return s.fail(op, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return s.fail(op, err)
	}
	if n == 0 {
		return s.statusMiss(ctx, op, id, store.ErrStatusChanged)
	}
	return nil
}

// statusMiss explains a conditional write of agent id that matched no
// row: ErrNotFound when there is no such agent, otherwise a
// *store.StatusError of sentinel with the status found.
func (s *Store) statusMiss(ctx context.Context, op, id string, sentinel error) error {
	var st string
	err := s.wdb.QueryRowContext(ctx, s.q(`SELECT status FROM agents WHERE id = ?`), id).Scan(&st)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("sqlstore: %s: %w", op, store.ErrNotFound)
	}
	if err != nil {
		return s.fail(op, err)
	}
	return fmt.Errorf("sqlstore: %s: %w", op, &store.StatusError{AgentID: id, Status: store.Status(st), Err: sentinel})
}

// ExpireEnrollments deletes the unfinished enrollments e names (with
// their results, of which they should have none), in batches of
// pruneBatch; it returns how many agents went.
func (s *Store) ExpireEnrollments(ctx context.Context, e store.Expiry) (int64, error) {
	if e.Activating.IsZero() && e.Pending.IsZero() {
		return 0, nil
	}
	query := `DELETE FROM agents WHERE id IN (
	SELECT id FROM agents WHERE ((status = 'activating' AND updated_at < ?) OR (status = 'pending' AND updated_at < ?))`
	args := []any{ns(e.Activating), ns(e.Pending)}
	if e.ID != "" {
		query += ` AND id = ?`
		args = append(args, e.ID)
	}
	return s.deleteBatches(ctx, "expire enrollments", query+` LIMIT ?)`, args...)
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
// not nil, its State: all of it only while the agent is approved, which
// the agent's UPDATE itself checks (one CTE statement on PostgreSQL), so
// a revoke that commits first leaves nothing written (ErrNotApproved, a
// *store.StatusError), and one that comes later waits for the row lock.
// ErrNotFound when the agent is unknown. r.Failures, when set, must be
// JSON.
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
	state = CASE WHEN $4 THEN $5 ELSE state END WHERE id = $6 AND status = 'approved' RETURNING id)
INSERT INTO results (agent_id, time, level, status, failures, policy_id, policy_digest, token)
	SELECT a.id, $3, $1, $2, $7, $8, $9, $10 FROM a RETURNING id`,
			r.Level, r.Status, ns(t), state != nil, st, r.AgentID, failures, r.PolicyID, r.PolicyDigest, r.Token).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return s.statusMiss(ctx, fmt.Sprintf("save result of %q", r.AgentID), r.AgentID, store.ErrNotApproved)
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
	state = CASE WHEN ? THEN ? ELSE state END WHERE id = ? AND status = 'approved'`),
			r.Level, r.Status, ns(t), state != nil, st, r.AgentID)
		if err != nil {
			return s.fail(fmt.Sprintf("save result of %q", r.AgentID), err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return s.fail(fmt.Sprintf("save result of %q", r.AgentID), err)
		}
		if n == 0 {
			return errNoApprovedRow
		}
		err = tx.QueryRowContext(ctx, s.q(`INSERT INTO results (agent_id, time, level, status, failures, policy_id, policy_digest, token)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`),
			r.AgentID, ns(t), r.Level, r.Status, failures, r.PolicyID, r.PolicyDigest, r.Token).Scan(&id)
		if err != nil {
			return s.fail(fmt.Sprintf("save result of %q", r.AgentID), err)
		}
		return nil
	})
	if errors.Is(err, errNoApprovedRow) {
		// Explained after the rollback: SQLite's one write connection is
		// free again.
		return s.statusMiss(ctx, fmt.Sprintf("save result of %q", r.AgentID), r.AgentID, store.ErrNotApproved)
	}
	if err != nil {
		return err
	}
	r.ID, r.Time = id, t
	return nil
}

// errNoApprovedRow: SaveResult's UPDATE found no approved agent.
var errNoApprovedRow = errors.New("no approved agent row")

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

// deleteBatches runs query with args (its last placeholder, after them,
// is the batch size) until it deletes less than a batch.
func (s *Store) deleteBatches(ctx context.Context, op, query string, args ...any) (int64, error) {
	var total int64
	args = append(args, pruneBatch)
	for {
		res, err := s.wdb.ExecContext(ctx, s.q(query), args...)
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
