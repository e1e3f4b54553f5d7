package sqlstore

import (
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/vigil-attest/vigil/store"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// ErrSchemaNewer: the database was migrated by a newer binary.
var ErrSchemaNewer = errors.New("sqlstore: database schema is newer than this binary")

// fail wraps err from operation op. The store's own sentinels pass
// through; constraint and data errors (the caller's fault) stay plain;
// everything else the database or driver returns (I/O, connection,
// closed pool, lock timeout, context deadline) wraps store.ErrUnavailable.
func (s *Store) fail(op string, err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrExists),
		errors.Is(err, store.ErrNonceUsed), errors.Is(err, store.ErrUnavailable),
		errors.Is(err, store.ErrStatusChanged), errors.Is(err, store.ErrNotApproved),
		errors.Is(err, store.ErrEKInUse), errors.Is(err, store.ErrEnrollLimit):
		return fmt.Errorf("sqlstore: %s: %w", op, err)
	case callerFault(err):
		return fmt.Errorf("sqlstore: %s: %w", op, err)
	}
	return fmt.Errorf("sqlstore: %s: %w: %w", op, store.ErrUnavailable, err)
}

// isUnique reports a unique or primary-key violation.
func isUnique(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "23505"
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}

// ekIndex is the unique index holding one EK to one activated agent ID
// (migration 0003); SQLite names its column instead.
const (
	ekIndex       = "agents_ek_once"
	ekIndexSQLite = "agents.ek_hash"
)

// isUniqueEK reports a violation of the one-EK-one-ID index.
func isUniqueEK(err error) bool {
	if !isUnique(err) {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.ConstraintName == ekIndex
	}
	return strings.Contains(err.Error(), ekIndexSQLite)
}

// isBusy reports SQLite's SQLITE_BUSY (another connection's lock).
func isBusy(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_BUSY
}

// callerFault reports an error in the data the caller gave (a constraint
// violation, a value the column cannot hold), which retrying cannot fix.
func callerFault(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// Class 22: data exception; class 23: integrity constraint.
		return len(pe.Code) == 5 && (pe.Code[:2] == "22" || pe.Code[:2] == "23")
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_CONSTRAINT, sqlite3.SQLITE_TOOBIG, sqlite3.SQLITE_MISMATCH, sqlite3.SQLITE_RANGE:
			return true
		}
	}
	return false
}
