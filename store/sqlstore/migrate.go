package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strconv"
	"time"
)

// migrationFS holds migrations/<dialect>/NNNN_name.sql: both dialects have
// the same versions, applied in order.
//
//go:embed migrations
var migrationFS embed.FS

// Migration is one schema change.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

var migrationName = regexp.MustCompile(`^([0-9]{4})_([a-z0-9_]+)\.sql$`)

// Migrations returns the dialect's migrations in version order.
func Migrations(d Dialect) ([]Migration, error) {
	dir := path.Join("migrations", string(d))
	ents, err := fs.ReadDir(migrationFS, dir)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: migrations for %s: %w", d, err)
	}
	var ms []Migration
	for _, e := range ents {
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("sqlstore: migration %s/%s: name is not NNNN_name.sql", dir, e.Name())
		}
		v, _ := strconv.Atoi(m[1])
		b, err := fs.ReadFile(migrationFS, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("sqlstore: migration %s: %w", e.Name(), err)
		}
		ms = append(ms, Migration{Version: v, Name: m[2], SQL: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	for i, m := range ms {
		if m.Version != i+1 {
			return nil, fmt.Errorf("sqlstore: migrations for %s: version %d where %d was expected", d, m.Version, i+1)
		}
	}
	return ms, nil
}

// migrate applies the pending migrations in one transaction: the schema
// moves from one version to another or not at all. The transaction holds
// the database's write lock (SQLite, BEGIN IMMEDIATE) or an advisory lock
// on the schema (PostgreSQL), so replicas opening at once migrate once;
// the others wait and find nothing left to do.
func (s *Store) migrate(ctx context.Context) error {
	ms, err := Migrations(s.dialect)
	if err != nil {
		return err
	}
	var sealedSecrets, sealedKeys int
	if s.dialect == SQLite && s.key != nil {
		// Encrypting a plaintext row in place must not leave the old bytes
		// in the file's free space: secure_delete zeroes what an update
		// frees (the write pool has its one connection, so the setting
		// applies to the transaction below).
		if _, err := s.wdb.ExecContext(ctx, `PRAGMA secure_delete = ON`); err != nil {
			return s.fail("migrate: secure_delete", err)
		}
		defer s.wdb.ExecContext(context.WithoutCancel(ctx), `PRAGMA secure_delete = OFF`)
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		if s.dialect == Postgres {
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext('vigil.schema_migrations.' || COALESCE(current_schema(), '')))`); err != nil {
				return s.fail("migrate: lock", err)
			}
		}
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    INTEGER NOT NULL PRIMARY KEY,
	name       TEXT    NOT NULL,
	applied_at BIGINT  NOT NULL
)`); err != nil {
			return s.fail("migrate: create schema_migrations", err)
		}
		var cur sql.NullInt64
		if err := tx.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&cur); err != nil {
			return s.fail("migrate: read version", err)
		}
		if int(cur.Int64) > len(ms) {
			return fmt.Errorf("%w: database is at version %d, this binary knows up to %d; upgrade vigil", ErrSchemaNewer, cur.Int64, len(ms))
		}
		for _, m := range ms[cur.Int64:] {
			if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
				return s.fail(fmt.Sprintf("migrate: apply %04d_%s", m.Version, m.Name), err)
			}
			if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`),
				m.Version, m.Name, time.Now().UnixNano()); err != nil {
				return s.fail(fmt.Sprintf("migrate: record %04d_%s", m.Version, m.Name), err)
			}
		}
		if s.key == nil {
			return nil
		}
		sealedSecrets, sealedKeys, err = s.sealDatabase(ctx, tx)
		return err
	})
	if err != nil || sealedSecrets+sealedKeys == 0 {
		return err
	}
	if s.dialect == SQLite {
		// The plaintext pages went to the WAL before the update; after a
		// truncating checkpoint neither the WAL nor the file holds them.
		if _, err := s.wdb.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
			return s.fail("migrate: checkpoint", err)
		}
	}
	attrs := []any{"secrets", sealedSecrets, "signing_keys", sealedKeys, "key_id", s.key.ID(), "dialect", string(s.dialect)}
	if s.dialect == Postgres {
		attrs = append(attrs, "hint", "old row versions keep the plaintext until vacuumed: run VACUUM FULL secrets, signing_keys")
	}
	s.log.Warn("sqlstore: encrypted plaintext secrets in place under the secrets key", attrs...)
	return nil
}

// SchemaVersion returns the database's current migration version.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v sql.NullInt64
	if err := s.rdb.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, s.fail("schema version", err)
	}
	return int(v.Int64), nil
}
