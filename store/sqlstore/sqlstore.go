// Package sqlstore implements store.Store on database/sql, for two
// databases with one set of queries: embedded SQLite (pure Go,
// modernc.org/sqlite) and PostgreSQL (pgx). The dialects differ only in
// placeholders ($1 against ?), column types (BYTEA against BLOB, identity
// against AUTOINCREMENT) and in how a migration is serialised.
//
// # SQLite
//
// The database runs in WAL mode with synchronous=NORMAL, foreign keys on
// and a busy timeout. Writes go through one connection (one writer, as
// SQLite allows only one at a time anyway) whose transactions begin
// IMMEDIATE, so concurrent writers queue in Go instead of failing with
// SQLITE_BUSY; reads use a separate pool of read-only connections that
// WAL lets run beside the writer. In WAL mode, synchronous=NORMAL makes a
// committed transaction survive the process being killed (the commit is in
// the WAL file, in the kernel's page cache, before it is acknowledged);
// only a power loss or kernel crash can roll back the last transactions
// before a checkpoint. Options.SyncFull selects synchronous=FULL, which
// fsyncs the WAL at every commit and survives power loss too, at the cost
// of one fsync per write.
//
// # PostgreSQL
//
// Several replicas may share one database: migrations run under
// pg_advisory_xact_lock, so concurrent Opens migrate once, and single-use
// records (nonces, secrets) rely on primary keys, not on process state.
//
// # Errors
//
// Every error from the database itself (connection refused, closed pool,
// I/O error, lock timeout, context deadline) wraps store.ErrUnavailable;
// unique violations become store.ErrExists or store.ErrNonceUsed; invalid
// arguments are plain errors (the caller's fault).
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/vigil-attest/vigil/store"
	"github.com/vigil-attest/vigil/store/seal"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Dialect names the database a Store runs on.
type Dialect string

const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// Options tune Open; the zero value is ready to use.
type Options struct {
	// MaxConns caps the connections: PostgreSQL's pool (default 16), or
	// SQLite's read pool (default 4; writes always use one connection).
	MaxConns int
	// Schema (PostgreSQL) is created if missing and set as the
	// search_path of every connection; tests use one schema each.
	Schema string
	// BusyTimeout (SQLite) is how long a write waits for another
	// process's lock before failing with ErrUnavailable (default 5s).
	BusyTimeout time.Duration
	// SyncFull (SQLite) sets synchronous=FULL instead of NORMAL: every
	// commit is fsynced and survives power loss, not only a process kill.
	SyncFull bool
	// SecretsKey seals the secrets and the signing keys (see Secret).
	// Without it those methods fail with seal.NoKey; with it, Open fails
	// with seal.WrongKey when the database was sealed under another key,
	// and encrypts in place the plaintext rows of a database that never
	// was (an older binary's).
	SecretsKey *seal.Key
	// Logger reports what Open changed (rows encrypted in place);
	// default slog.Default().
	Logger *slog.Logger
}

// Store is a store.Store on SQLite or PostgreSQL.
type Store struct {
	dialect Dialect
	// rdb serves reads and wdb writes; the same pool on PostgreSQL.
	rdb, wdb *sql.DB
	// key seals the secrets (nil: they cannot be used); log is Options.Logger.
	key *seal.Key
	log *slog.Logger
	// secrets caches Secret values: once created they never change.
	secrets sync.Map
	// queries caches each query rebound to the dialect's placeholders.
	queries sync.Map
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) and migrates the database named by
// dsn: "sqlite:///abs/path.db", "sqlite://relative.db" or a file path
// ending in .db for SQLite; "postgres://…" or "postgresql://…" (any pgx
// connection string in URL form) for PostgreSQL. A database whose schema
// is newer than this binary is refused with ErrSchemaNewer. Errors
// reaching the database wrap store.ErrUnavailable.
func Open(ctx context.Context, dsn string, o Options) (*Store, error) {
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		return openPostgres(ctx, dsn, o)
	case strings.HasPrefix(dsn, "sqlite://"):
		return openSQLite(ctx, strings.TrimPrefix(dsn, "sqlite://"), o)
	case strings.HasSuffix(dsn, ".db") && !strings.Contains(dsn, "://"):
		return openSQLite(ctx, dsn, o)
	}
	return nil, fmt.Errorf("sqlstore: unsupported database %q: want sqlite:///path, a path ending in .db, or postgres://", redact(dsn))
}

// Dialect reports which database s runs on.
func (s *Store) Dialect() Dialect { return s.dialect }

// DB returns the pool s writes through, for tests and maintenance.
func (s *Store) DB() *sql.DB { return s.wdb }

func openSQLite(ctx context.Context, path string, o Options) (*Store, error) {
	if path == "" || path == ":memory:" || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("sqlstore: SQLite needs a file path, not %q", path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: SQLite path %q: %w", path, err)
	}
	// The database holds private keys: create it owner-only. SQLite gives
	// its -wal and -shm files the main file's mode.
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: open %s: %w: %w", abs, store.ErrUnavailable, err)
	}
	f.Close()

	busy := o.BusyTimeout
	if busy <= 0 {
		busy = 5 * time.Second
	}
	syncMode := "NORMAL"
	if o.SyncFull {
		syncMode = "FULL"
	}
	base := (&url.URL{Scheme: "file", Path: abs}).String()
	common := "_pragma=busy_timeout(" + strconv.FormatInt(busy.Milliseconds(), 10) + ")" +
		"&_pragma=foreign_keys(1)&_pragma=synchronous(" + syncMode + ")"
	wdb, err := sql.Open("sqlite", base+"?"+common+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("sqlstore: open %s: %w", abs, err)
	}
	if err := setWAL(ctx, wdb, busy); err != nil {
		wdb.Close()
		return nil, fmt.Errorf("sqlstore: open %s: %w", abs, err)
	}
	wdb.SetMaxOpenConns(1)
	wdb.SetMaxIdleConns(1)
	wdb.SetConnMaxIdleTime(0)
	wdb.SetConnMaxLifetime(0)
	s := &Store{dialect: SQLite, wdb: wdb, key: o.SecretsKey, log: logger(o)}
	if err := s.migrate(ctx); err != nil {
		wdb.Close()
		return nil, err
	}
	rdb, err := sql.Open("sqlite", base+"?"+common+"&_pragma=query_only(1)")
	if err != nil {
		wdb.Close()
		return nil, fmt.Errorf("sqlstore: open %s: %w", abs, err)
	}
	n := o.MaxConns
	if n <= 0 {
		n = 4
	}
	rdb.SetMaxOpenConns(n)
	rdb.SetMaxIdleConns(n)
	rdb.SetConnMaxIdleTime(0)
	s.rdb = rdb
	if err := s.Ping(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// setWAL switches the database file to WAL mode (a persistent setting).
// Connections opening a new file at once may find it mid-switch and get
// SQLITE_BUSY without SQLite waiting the busy timeout, so it retries for
// up to busy.
func setWAL(ctx context.Context, db *sql.DB, busy time.Duration) error {
	deadline := time.Now().Add(busy)
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		var mode string
		err := db.QueryRowContext(ctx, "PRAGMA journal_mode=WAL").Scan(&mode)
		if err == nil && strings.EqualFold(mode, "wal") {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("journal_mode is %q, not wal", mode)
		}
		if !isBusy(err) || time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("set WAL mode: %w: %w", store.ErrUnavailable, err)
		}
		time.Sleep(wait)
	}
}

func openPostgres(ctx context.Context, dsn string, o Options) (*Store, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: PostgreSQL DSN %q: %w", redact(dsn), err)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	if o.Schema != "" {
		cfg.RuntimeParams["search_path"] = o.Schema
	}
	db := stdlib.OpenDB(*cfg)
	n := o.MaxConns
	if n <= 0 {
		n = 16
	}
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	db.SetConnMaxIdleTime(5 * time.Minute)
	s := &Store{dialect: Postgres, rdb: db, wdb: db, key: o.SecretsKey, log: logger(o)}
	if o.Schema != "" {
		if _, err := db.ExecContext(ctx, "CREATE SCHEMA IF NOT EXISTS "+quoteIdent(o.Schema)); err != nil && !isUnique(err) {
			// Two replicas creating the schema at once may collide on the
			// catalog's unique index; the loser finds it made.
			db.Close()
			return nil, s.fail("create schema "+o.Schema, err)
		}
	}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

func logger(o Options) *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.Default()
}

// Close closes the database; later calls fail with ErrUnavailable.
func (s *Store) Close() error {
	err := s.wdb.Close()
	if s.rdb != s.wdb {
		err = errors.Join(err, s.rdb.Close())
	}
	if err != nil {
		return fmt.Errorf("sqlstore: close: %w", err)
	}
	return nil
}

// Ping checks that the database answers and holds the schema.
func (s *Store) Ping(ctx context.Context) error {
	var v int64
	if err := s.rdb.QueryRowContext(ctx, "SELECT COUNT(*) FROM schema_migrations").Scan(&v); err != nil {
		return s.fail("ping", err)
	}
	return nil
}

// q returns query with its ? placeholders rewritten for the dialect.
func (s *Store) q(query string) string {
	if s.dialect != Postgres {
		return query
	}
	if v, ok := s.queries.Load(query); ok {
		return v.(string)
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(query[i])
	}
	v := b.String()
	s.queries.Store(query, v)
	return v
}

// write runs fn in a write transaction and commits it.
func (s *Store) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return s.fail("begin", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return s.fail("commit", err)
	}
	return nil
}

// quoteIdent quotes a PostgreSQL identifier.
func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// redact hides a password in a DSN for error messages.
func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "(unparsable DSN)"
	}
	if u.User == nil {
		return dsn
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}
