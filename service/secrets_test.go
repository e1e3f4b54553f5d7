package service_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/ear"
	"github.com/vigil-attest/vigil/server"
	"github.com/vigil-attest/vigil/service"
	"github.com/vigil-attest/vigil/store"
	"github.com/vigil-attest/vigil/store/seal"
	"github.com/vigil-attest/vigil/store/sqlstore"
	"github.com/vigil-attest/vigil/store/storetest"
	"github.com/vigil-attest/vigil/token"
	"github.com/vigil-attest/vigil/token/tokentest"
)

// openService opens a service on db in a fresh data directory, keyed
// with key ("" for the data directory's key file).
func openService(t *testing.T, db *storetest.DB, key string, log *slog.Logger) (*service.Service, error) {
	t.Helper()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s, err := service.Open(context.Background(), service.Config{
		Listen: "127.0.0.1:0", DataDir: t.TempDir(), DB: db.DSN, InsecureHTTP: true,
		SecretsKey: key, Logger: log,
	})
	if err == nil {
		t.Cleanup(func() { s.Close() })
	}
	return s, err
}

func mustService(t *testing.T, db *storetest.DB, key string, log *slog.Logger) *service.Service {
	t.Helper()
	s, err := openService(t, db, key, log)
	if err != nil {
		t.Fatalf("service.Open: %v", err)
	}
	return s
}

// keyMaterial is every private key the store holds, as the service uses
// it, in the forms a database reader could look for: the CA's PEM and
// PKCS#8 DER, each EC key's raw scalar, the nonce key's bytes; each also
// in hex and base64.
func keyMaterial(t *testing.T, st store.Store) map[string][]byte {
	t.Helper()
	ctx := context.Background()
	none := func() ([]byte, error) { return nil, fmt.Errorf("the secret should exist") }
	m := map[string][]byte{"PEM label": []byte("PRIVATE KEY")}
	ec := func(name string, der []byte) {
		m[name+" PKCS#8"] = der
		k, err := x509.ParsePKCS8PrivateKey(der)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		d, err := k.(*ecdsa.PrivateKey).Bytes()
		if err != nil {
			t.Fatal(err)
		}
		m[name+" scalar"] = d
	}
	caPEM, err := st.Secret(ctx, token.CASecret, none)
	if err != nil {
		t.Fatalf("CA secret: %v", err)
	}
	m["CA PEM"] = caPEM
	for rest := caPEM; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type == "PRIVATE KEY" {
			ec("CA key", b.Bytes)
		}
	}
	keys, err := st.SigningKeys(ctx, time.Now())
	if err != nil || len(keys) == 0 {
		t.Fatalf("signing keys: %d, %v", len(keys), err)
	}
	for _, k := range keys {
		ec("signing key "+k.KID, k.KeyDER)
	}
	nk, err := st.Secret(ctx, server.NonceKeyName, none)
	if err != nil {
		t.Fatalf("nonce key: %v", err)
	}
	m["nonce key"] = nk
	for name, b := range m {
		if name == "PEM label" {
			continue
		}
		m[name+" (hex)"] = []byte(hex.EncodeToString(b))
		m[name+" (base64)"] = []byte(base64.StdEncoding.EncodeToString(b))
		m[name+" (base64url)"] = []byte(base64.RawURLEncoding.EncodeToString(b))
	}
	return m
}

// dumpRows reads every column of every row of every table of the store's
// database, as a database reader with SELECT rights would.
func dumpRows(t *testing.T, st store.Store) []byte {
	t.Helper()
	ctx := context.Background()
	s := st.(*sqlstore.Store)
	q := `SELECT name FROM sqlite_master WHERE type = 'table'`
	if s.Dialect() == sqlstore.Postgres {
		q = `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()`
	}
	tables := queryStrings(t, s.DB(), q)
	if len(tables) < 6 {
		t.Fatalf("found only tables %v", tables)
	}
	var out bytes.Buffer
	for _, table := range tables {
		rows, err := s.DB().QueryContext(ctx, `SELECT * FROM `+table)
		if err != nil {
			t.Fatalf("dump %s: %v", table, err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for _, v := range vals {
				switch v := v.(type) {
				case []byte:
					out.Write(v)
				case string:
					out.WriteString(v)
				default:
					fmt.Fprint(&out, v)
				}
				out.WriteByte(0)
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
	}
	return out.Bytes()
}

func queryStrings(t *testing.T, db *sql.DB, q string, args ...any) []string {
	t.Helper()
	rows, err := db.Query(q, args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

// assertNoKeyBytes fails when any key material appears in the rows of the
// database or, for SQLite, anywhere in its files (free pages, the WAL).
func assertNoKeyBytes(t *testing.T, db *storetest.DB, st store.Store, material map[string][]byte) {
	t.Helper()
	hay := map[string][]byte{"the rows": dumpRows(t, st)}
	if db.Name == "sqlite" {
		path := strings.TrimPrefix(db.DSN, "sqlite://")
		for _, f := range []string{path, path + "-wal"} {
			if b, err := os.ReadFile(f); err == nil {
				hay["file "+filepath.Base(f)] = b
			}
		}
	}
	for where, h := range hay {
		for name, needle := range material {
			if bytes.Contains(h, needle) {
				t.Errorf("%s hold the %s", where, name)
			}
		}
	}
}

// TestSecretsAtRest: what a database reader sees of a running service's
// keys. The CA key, the signing key and the nonce key are in the
// database only sealed: no table, and no byte of the SQLite files, holds
// them in any common encoding.
func TestSecretsAtRest(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *storetest.DB) {
		s := mustService(t, db, db.SecretsKey, nil)
		if err := s.Issuer.Rotate(context.Background()); err != nil {
			t.Fatal(err)
		}
		m := keyMaterial(t, s.Store)
		if len(m) < 20 {
			t.Fatalf("only %d needles", len(m))
		}
		assertNoKeyBytes(t, db, s.Store, m)
		raw := s.Store.(*sqlstore.Store).DB()
		if n := queryStrings(t, raw, `SELECT COUNT(*) FROM secrets WHERE sealed <> 1`); n[0] != "0" {
			t.Errorf("%s secrets rows are not sealed", n[0])
		}
		if n := queryStrings(t, raw, `SELECT COUNT(*) FROM signing_keys WHERE sealed = 1`); n[0] != "2" {
			t.Errorf("%s sealed signing keys, want 2", n[0])
		}
		if ids := queryStrings(t, raw, `SELECT key_id FROM seal_keys`); len(ids) != 1 || ids[0] != db.Options.SecretsKey.ID() {
			t.Errorf("seal_keys = %v, want [%s]", ids, db.Options.SecretsKey.ID())
		}
	})
}

// TestSecretsReplicas: replicas share the key by configuration. One with
// the key signs session reports that verify under the CA the first one
// made; one with another key, or with none, refuses to start with
// wrong-key, and mints nothing.
func TestSecretsReplicas(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *storetest.DB) {
		ctx := context.Background()
		a := mustService(t, db, db.SecretsKey, nil)
		b := mustService(t, db, "  "+strings.ToUpper(db.SecretsKey)+"\n", nil)
		if !a.Issuer.CA().Equal(b.Issuer.CA()) {
			t.Fatal("two replicas with one key have two CAs")
		}
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(a.Issuer.CAPEM())
		tok, err := b.Issuer.Issue(ctx, &ear.Claims{AgentID: "replica-b", Nonce: []byte("0123456789abcdef"), Level: 1, Status: "affirming"})
		if err != nil {
			t.Fatal(err)
		}
		if v, err := ear.Verify(tok, roots, time.Now()); err != nil || v.Claims.AgentID != "replica-b" {
			t.Fatalf("replica B's session report under replica A's CA: %v", err)
		}
		na, _ := a.Store.Secret(ctx, server.NonceKeyName, nil)
		nb, _ := b.Store.Secret(ctx, server.NonceKeyName, nil)
		if len(na) != 32 || !bytes.Equal(na, nb) {
			t.Fatal("the replicas' nonce keys differ")
		}
		before := dumpRows(t, a.Store)

		_, other, _ := seal.Generate()
		_, err = openService(t, db, other, nil)
		wantSealCode(t, "a replica with another key", err, seal.WrongKey)
		if !strings.Contains(err.Error(), "sealed under key ["+db.Options.SecretsKey.ID()+"]") {
			t.Errorf("the error does not name the database's key: %v", err)
		}

		// No key configured: the data directory's key is made, refused,
		// and removed again, so that it cannot mislead a later start.
		data := t.TempDir()
		_, err = service.Open(ctx, service.Config{Listen: "127.0.0.1:0", DataDir: data, DB: db.DSN, InsecureHTTP: true, Logger: slog.New(slog.DiscardHandler)})
		wantSealCode(t, "a replica with a fresh key file", err, seal.WrongKey)
		if _, err := os.Stat(filepath.Join(data, service.DefaultSecretsKeyFile)); !os.IsNotExist(err) {
			t.Errorf("the refused key file was left behind: %v", err)
		}
		_, err = openService(t, db, "not a key", nil)
		wantSealCode(t, "a malformed key", err, seal.BadKey)
		if !bytes.Equal(before, dumpRows(t, a.Store)) {
			t.Error("a refused replica changed the database")
		}
	})
}

func wantSealCode(t *testing.T, what string, err error, c seal.Code) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error, want %s", what, c)
	}
	if got := seal.Of(err); got != c {
		t.Fatalf("%s: code %q, want %q: %v", what, got, c, err)
	}
}

// TestSecretsMovedRow: a database writer who copies one row's ciphertext
// into another (the CA into the nonce key, one signing key over another)
// gets the service to refuse the row, not to use it.
func TestSecretsMovedRow(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *storetest.DB) {
		ctx := context.Background()
		s := mustService(t, db, db.SecretsKey, nil)
		if err := s.Issuer.Rotate(ctx); err != nil {
			t.Fatal(err)
		}
		kids := queryStrings(t, s.Store.(*sqlstore.Store).DB(), `SELECT kid FROM signing_keys ORDER BY kid`)
		s.Close()
		raw := db.Open(t).DB()
		exec(t, raw, `UPDATE signing_keys SET key_der = (SELECT key_der FROM signing_keys WHERE kid = '`+kids[0]+`') WHERE kid = '`+kids[1]+`'`)
		_, err := db.Open(t).SigningKeys(ctx, time.Now())
		wantSealCode(t, "a signing key moved over another", err, seal.NotAuthentic)

		exec(t, raw, `UPDATE secrets SET value = (SELECT value FROM secrets WHERE name = 'ca') WHERE name = 'nonce-key'`)
		_, err = db.Open(t).Secret(ctx, server.NonceKeyName, nil)
		wantSealCode(t, "the CA moved over the nonce key", err, seal.NotAuthentic)
		_, err = openService(t, db, db.SecretsKey, nil)
		if seal.Of(err) != seal.NotAuthentic {
			t.Fatalf("service.Open on a database with a moved row: %v, want %s", err, seal.NotAuthentic)
		}
	})
}

func exec(t *testing.T, db *sql.DB, q string) {
	t.Helper()
	if _, err := db.Exec(q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// syncBuffer is a log sink for several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestSecretsLegacyMigration: a database an older Vigil wrote (schema
// version 1, the CA, a signing key and the nonce key in plaintext) is
// encrypted in place by the first start with a key, which says so in the
// log; the service keeps its CA and signing key, and no plaintext is left
// in the rows or (SQLite) the files. A plaintext row planted afterwards
// is refused.
func TestSecretsLegacyMigration(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *storetest.DB) {
		ctx := context.Background()
		// What an older binary left: its issuer's CA and key, its nonce key.
		legacy := tokentest.NewKeyStore()
		iss, err := token.NewIssuer(ctx, legacy, token.Options{Issuer: "legacy"})
		if err != nil {
			t.Fatal(err)
		}
		caPEM, _ := legacy.Secret(ctx, token.CASecret, nil)
		nonceKey := make([]byte, 32)
		rand.Read(nonceKey)
		sk := legacy.Keys()[0]
		writeLegacyDB(t, db, map[string][]byte{token.CASecret: caPEM, server.NonceKeyName: nonceKey}, sk)
		if db.Name == "sqlite" {
			// The scan after the migration means something only if the
			// plaintext was in the file before it.
			if b, _ := os.ReadFile(strings.TrimPrefix(db.DSN, "sqlite://")); !bytes.Contains(b, caPEM) {
				t.Fatal("the legacy database file does not hold the plaintext CA")
			}
		}

		var logs syncBuffer
		s := mustService(t, db, db.SecretsKey, slog.New(slog.NewTextHandler(&logs, nil)))
		if !strings.Contains(logs.String(), "encrypted plaintext secrets in place") ||
			!strings.Contains(logs.String(), "secrets=2 signing_keys=1") {
			t.Errorf("the log does not report the migration:\n%s", logs.String())
		}
		if !s.Issuer.CA().Equal(iss.CA()) {
			t.Fatal("the migrated service has another CA")
		}
		m := keyMaterial(t, s.Store)
		if nk := m["nonce key"]; !bytes.Equal(nk, nonceKey) {
			t.Fatal("the migrated nonce key differs")
		}
		if !bytes.Contains(must(s.Issuer.JWKS()), []byte(sk.KID)) {
			t.Error("the legacy signing key is not published after the migration")
		}
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(iss.CAPEM())
		tok, err := s.Issuer.Issue(ctx, &ear.Claims{AgentID: "after", Nonce: []byte("0123456789abcdef"), Level: 1, Status: "affirming"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ear.Verify(tok, roots, time.Now()); err != nil {
			t.Fatalf("a report after the migration under the legacy CA: %v", err)
		}
		assertNoKeyBytes(t, db, s.Store, m)
		s.Close()

		logs = syncBuffer{}
		mustService(t, db, db.SecretsKey, slog.New(slog.NewTextHandler(&logs, nil))).Close()
		if strings.Contains(logs.String(), "in place") {
			t.Errorf("a second start migrated again:\n%s", logs.String())
		}

		// A database writer plants a plaintext CA of their own.
		raw := db.Open(t).DB()
		exec(t, raw, `INSERT INTO secrets (name, value, created_at) VALUES ('planted', 'x', 0)`)
		_, err = openService(t, db, db.SecretsKey, nil)
		wantSealCode(t, "a plaintext row in a sealed database", err, seal.Plaintext)
	})
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// writeLegacyDB writes db as the first release did: migration 0001 only,
// and the secrets and the signing key in plaintext.
func writeLegacyDB(t *testing.T, db *storetest.DB, secrets map[string][]byte, k store.SigningKey) {
	t.Helper()
	d := sqlstore.SQLite
	driver, dsn := "sqlite", strings.TrimPrefix(db.DSN, "sqlite://")
	if db.Name == "postgres" {
		d, driver, dsn = sqlstore.Postgres, "pgx", db.DSN
	}
	ms, err := sqlstore.Migrations(d)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	ph := func(q string) string {
		if d != sqlstore.Postgres {
			return q
		}
		for i := 1; strings.Contains(q, "?"); i++ {
			q = strings.Replace(q, "?", fmt.Sprintf("$%d", i), 1)
		}
		return q
	}
	exec(t, raw, ms[0].SQL)
	exec(t, raw, `CREATE TABLE schema_migrations (version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`)
	exec(t, raw, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (1, 'init', 0)`)
	for name, v := range secrets {
		if _, err := raw.Exec(ph(`INSERT INTO secrets (name, value, created_at) VALUES (?, ?, ?)`), name, v, time.Now().UnixNano()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := raw.Exec(ph(`INSERT INTO signing_keys (kid, cert_der, key_der, created_at, retire_at, not_after) VALUES (?, ?, ?, ?, ?, ?)`),
		k.KID, k.CertDER, k.KeyDER, k.CreatedAt.UnixNano(), k.RetireAt.UnixNano(), k.NotAfter.UnixNano()); err != nil {
		t.Fatal(err)
	}
}
