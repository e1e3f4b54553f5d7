// Package storetest gives tests real stores and checks store.Store
// implementations. SQLite(t) and Postgres(t) open fresh, empty databases
// (a file in t.TempDir, a schema of its own) that are closed and dropped
// when the test ends, each with its own random secrets key that every
// handle on it shares; Each runs a test on both. Run and RunReplicas are
// the conformance suite every back end passes.
//
// PostgreSQL is found through the VIGIL_TEST_POSTGRES environment
// variable (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable).
// When it is unset, PostgreSQL tests are skipped, except under CI=true,
// where they fail.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/vigil-attest/vigil/store"
	"github.com/vigil-attest/vigil/store/seal"
	"github.com/vigil-attest/vigil/store/sqlstore"
)

// PostgresEnv names the environment variable holding the PostgreSQL DSN.
const PostgresEnv = "VIGIL_TEST_POSTGRES"

// DB is a fresh, empty test database that any number of handles (replicas,
// or one store reopened after a restart) may open.
type DB struct {
	// Name is "sqlite" or "postgres".
	Name string
	// DSN opens it with sqlstore.Open; a PostgreSQL DSN carries the
	// test's schema as search_path, so it works on its own too (for
	// example as a server's configuration).
	DSN string
	// Options are what Open passes to sqlstore.Open; their SecretsKey
	// is the database's own random key.
	Options sqlstore.Options
	// SecretsKey is that key as text (64 hex digits), for a service's
	// configuration.
	SecretsKey string
}

// NewSQLite makes an empty SQLite database file in t.TempDir().
func NewSQLite(t testing.TB) *DB {
	t.Helper()
	return withKey(t, &DB{Name: "sqlite", DSN: "sqlite://" + filepath.Join(t.TempDir(), "vigil.db")})
}

// withKey gives d a random secrets key.
func withKey(t testing.TB, d *DB) *DB {
	t.Helper()
	k, text, err := seal.Generate()
	if err != nil {
		t.Fatal(err)
	}
	d.Options.SecretsKey, d.SecretsKey = k, text
	return d
}

// NewPostgres makes an empty schema on the VIGIL_TEST_POSTGRES server,
// dropped when the test ends. It skips the test when the variable is
// unset, or fails it under CI=true.
func NewPostgres(t testing.TB) *DB {
	t.Helper()
	dsn := os.Getenv(PostgresEnv)
	if dsn == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set, and CI=true: the PostgreSQL tests must run", PostgresEnv)
		}
		t.Skipf("%s is not set: skipping the PostgreSQL tests", PostgresEnv)
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatalf("%s: %v", PostgresEnv, err)
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	schema := "vigil_test_" + hex.EncodeToString(rnd[:])
	admin := stdlib.OpenDB(*cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		admin.Close()
		t.Fatalf("create schema %s on %s: %v", schema, PostgresEnv, err)
	}
	t.Cleanup(func() {
		defer admin.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("%s is not a URL: %v", PostgresEnv, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return withKey(t, &DB{Name: "postgres", DSN: u.String(), Options: sqlstore.Options{Schema: schema}})
}

// Open opens a new handle on d, closed when the test ends.
func (d *DB) Open(t testing.TB) *sqlstore.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := sqlstore.Open(ctx, d.DSN, d.Options)
	if err != nil {
		t.Fatalf("open %s store: %v", d.Name, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// SQLite returns a store on a fresh SQLite database.
func SQLite(t testing.TB) *sqlstore.Store {
	t.Helper()
	return NewSQLite(t).Open(t)
}

// Postgres returns a store on a fresh PostgreSQL schema (see NewPostgres
// for when it skips).
func Postgres(t testing.TB) *sqlstore.Store {
	t.Helper()
	return NewPostgres(t).Open(t)
}

// Backends are the ways to make a fresh test database, by name.
var Backends = []struct {
	Name string
	New  func(testing.TB) *DB
}{
	{"sqlite", NewSQLite},
	{"postgres", NewPostgres},
}

// Each runs fn as one subtest per back end, each on a fresh store.
func Each(t *testing.T, fn func(t *testing.T, s store.Store)) {
	t.Helper()
	EachDB(t, func(t *testing.T, db *DB) { fn(t, db.Open(t)) })
}

// EachDB runs fn as one subtest per back end, each with a fresh database
// that fn opens as often as it likes.
func EachDB(t *testing.T, fn func(t *testing.T, db *DB)) {
	t.Helper()
	for _, b := range Backends {
		t.Run(b.Name, func(t *testing.T) { fn(t, b.New(t)) })
	}
}
