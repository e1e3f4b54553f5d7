package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/vigil-attest/vigil/store"
	"github.com/vigil-attest/vigil/store/seal"
)

// Secrets at rest. The values of the secrets table (the CA, the nonce
// key) and the private keys of signing_keys are store/seal envelopes
// under Options.SecretsKey, sealed for their row ("secrets" and the name,
// "signing_keys" and the KID), so a database reader learns no key and a
// database writer cannot move a ciphertext to another row. Without a key
// the store refuses to read or write them (seal.NoKey): nothing is ever
// written in plaintext.
//
// The seal_keys table names the key the database is sealed under, with a
// check value sealed by it. The first Open with a key on a database that
// was never sealed records the key and encrypts the plaintext rows older
// binaries wrote, in the migration's transaction; every later Open must
// bring the same key (seal.WrongKey otherwise), and finds no plaintext
// row (seal.Plaintext otherwise: only a database never sealed is migrated,
// so a row planted in plaintext later is refused, not adopted).

const (
	tableSecrets     = "secrets"
	tableSigningKeys = "signing_keys"
	tableSealKeys    = "seal_keys"
	// checkValue is what seal_keys.check_value seals.
	checkValue = "vigil secrets key check"
)

// sealDatabase checks the key against the database, in the migration's
// transaction (which holds the write lock, or PostgreSQL's advisory
// lock, so that replicas opening at once seal once). It returns how many
// plaintext rows it encrypted in place.
func (s *Store) sealDatabase(ctx context.Context, tx *sql.Tx) (secrets, keys int, err error) {
	var ids []string
	var ours []byte
	rows, err := tx.QueryContext(ctx, `SELECT key_id, check_value FROM seal_keys ORDER BY key_id`)
	if err != nil {
		return 0, 0, s.fail("seal: read keys", err)
	}
	for rows.Next() {
		var id string
		var v []byte
		if err := rows.Scan(&id, &v); err != nil {
			rows.Close()
			return 0, 0, s.fail("seal: read keys", err)
		}
		ids = append(ids, id)
		if id == s.key.ID() {
			ours = v
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, 0, s.fail("seal: read keys", err)
	}
	if len(ids) > 0 {
		if ours == nil {
			return 0, 0, seal.Errorf(seal.WrongKey, "the database's secrets are sealed under key %s, and this service's secrets key is %s: every replica must be given the same key (the key file, or VIGIL_SECRETS_KEY)", ids, s.key.ID())
		}
		pt, err := s.key.Open(seal.Row(tableSealKeys, s.key.ID()), ours)
		if err != nil {
			return 0, 0, fmt.Errorf("sqlstore: the database's key record: %w", err)
		}
		if string(pt) != checkValue {
			return 0, 0, seal.Errorf(seal.NotAuthentic, "the database's key record holds an unexpected check value")
		}
		var n int64
		if err := tx.QueryRowContext(ctx, `SELECT (SELECT COUNT(*) FROM secrets WHERE sealed = 0) + (SELECT COUNT(*) FROM signing_keys WHERE sealed = 0)`).Scan(&n); err != nil {
			return 0, 0, s.fail("seal: count plaintext rows", err)
		}
		if n > 0 {
			return 0, 0, seal.Errorf(seal.Plaintext, "the database is sealed under key %s but %d secret rows are plaintext (written by an older binary after the upgrade, or planted): stop older replicas, and delete those rows", s.key.ID(), n)
		}
		return 0, 0, nil
	}
	// Never sealed: encrypt what older binaries wrote, then record the key.
	if secrets, err = s.sealRows(ctx, tx, tableSecrets, "name", "value"); err != nil {
		return 0, 0, err
	}
	if keys, err = s.sealRows(ctx, tx, tableSigningKeys, "kid", "key_der"); err != nil {
		return 0, 0, err
	}
	check, err := s.key.Seal(seal.Row(tableSealKeys, s.key.ID()), []byte(checkValue))
	if err != nil {
		return 0, 0, err
	}
	if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO seal_keys (key_id, check_value, created_at) VALUES (?, ?, ?)`),
		s.key.ID(), check, time.Now().UnixNano()); err != nil {
		return 0, 0, s.fail("seal: record key", err)
	}
	return secrets, keys, nil
}

// sealRows encrypts in place the plaintext rows of table (primary key pk,
// secret column col).
func (s *Store) sealRows(ctx context.Context, tx *sql.Tx, table, pk, col string) (int, error) {
	rows, err := tx.QueryContext(ctx, `SELECT `+pk+`, `+col+` FROM `+table+` WHERE sealed = 0`)
	if err != nil {
		return 0, s.fail("seal: read plaintext "+table, err)
	}
	type row struct {
		id string
		v  []byte
	}
	var rs []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.id, &r.v); err != nil {
			rows.Close()
			return 0, s.fail("seal: read plaintext "+table, err)
		}
		rs = append(rs, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, s.fail("seal: read plaintext "+table, err)
	}
	for _, r := range rs {
		env, err := s.key.Seal(seal.Row(table, r.id), r.v)
		if err != nil {
			return 0, fmt.Errorf("sqlstore: seal %s %q: %w", table, r.id, err)
		}
		clear(r.v)
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE `+table+` SET `+col+` = ?, sealed = 1 WHERE `+pk+` = ? AND sealed = 0`), env, r.id); err != nil {
			return 0, s.fail(fmt.Sprintf("seal: encrypt %s %q", table, r.id), err)
		}
	}
	return len(rs), nil
}

// needKey refuses secret operations on a store opened without a key.
func (s *Store) needKey(op string) error {
	if s.key == nil {
		return seal.Errorf(seal.NoKey, "sqlstore: %s: the store was opened without a secrets key (Options.SecretsKey); secrets are never stored in plaintext", op)
	}
	return nil
}

// openRow decrypts a secret column read from table's row id.
func (s *Store) openRow(table, id string, v []byte, sealed int64) ([]byte, error) {
	if sealed != 1 {
		return nil, seal.Errorf(seal.Plaintext, "sqlstore: %s %q is not sealed (sealed = %d)", table, id, sealed)
	}
	pt, err := s.key.Open(seal.Row(table, id), v)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: %s %q: %w", table, id, err)
	}
	return pt, nil
}

// Secret returns the named secret, creating it with create on first use:
// the first value inserted wins, and every caller (on any replica) gets
// it. Values are cached: a secret never changes once created. The value
// is stored sealed under the store's secrets key.
func (s *Store) Secret(ctx context.Context, name string, create func() ([]byte, error)) ([]byte, error) {
	if err := s.needKey(fmt.Sprintf("secret %q", name)); err != nil {
		return nil, err
	}
	if v, ok := s.secrets.Load(name); ok {
		return clone(v.([]byte)), nil
	}
	get := func() ([]byte, error) {
		var v []byte
		var sealed int64
		err := s.rdb.QueryRowContext(ctx, s.q(`SELECT value, sealed FROM secrets WHERE name = ?`), name).Scan(&v, &sealed)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, nil
		}
		if err != nil {
			return nil, s.fail(fmt.Sprintf("secret %q", name), err)
		}
		return s.openRow(tableSecrets, name, v, sealed)
	}
	v, err := get()
	if err != nil {
		return nil, err
	}
	if v == nil {
		nv, err := create()
		if err != nil {
			return nil, fmt.Errorf("sqlstore: create secret %q: %w", name, err)
		}
		if len(nv) == 0 {
			return nil, fmt.Errorf("sqlstore: create secret %q: empty value", name)
		}
		env, err := s.key.Seal(seal.Row(tableSecrets, name), nv)
		if err != nil {
			return nil, fmt.Errorf("sqlstore: create secret %q: %w", name, err)
		}
		if _, err := s.wdb.ExecContext(ctx, s.q(`INSERT INTO secrets (name, value, created_at, sealed) VALUES (?, ?, ?, 1) ON CONFLICT DO NOTHING`),
			name, env, time.Now().UnixNano()); err != nil {
			return nil, s.fail(fmt.Sprintf("create secret %q", name), err)
		}
		if v, err = get(); err != nil {
			return nil, err
		}
		if v == nil {
			return nil, fmt.Errorf("sqlstore: secret %q: %w: vanished after insert", name, store.ErrUnavailable)
		}
	}
	s.secrets.Store(name, clone(v))
	return v, nil
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// AddSigningKey stores a new signing key, its private key sealed;
// ErrExists when its KID is taken.
func (s *Store) AddSigningKey(ctx context.Context, k *store.SigningKey) error {
	if k == nil || k.KID == "" || len(k.CertDER) == 0 || len(k.KeyDER) == 0 || k.NotAfter.IsZero() {
		return errors.New("sqlstore: add signing key: KID, certificate, key and NotAfter are required")
	}
	if err := s.needKey(fmt.Sprintf("add signing key %q", k.KID)); err != nil {
		return err
	}
	if k.CreatedAt.IsZero() {
		k.CreatedAt = time.Now().UTC()
	}
	env, err := s.key.Seal(seal.Row(tableSigningKeys, k.KID), k.KeyDER)
	if err != nil {
		return fmt.Errorf("sqlstore: add signing key %q: %w", k.KID, err)
	}
	_, err = s.wdb.ExecContext(ctx, s.q(`INSERT INTO signing_keys (kid, cert_der, key_der, created_at, retire_at, not_after, sealed)
	VALUES (?, ?, ?, ?, ?, ?, 1)`), k.KID, k.CertDER, env, ns(k.CreatedAt), ns(k.RetireAt), ns(k.NotAfter))
	if isUnique(err) {
		return fmt.Errorf("sqlstore: add signing key %q: %w", k.KID, store.ErrExists)
	}
	if err != nil {
		return s.fail(fmt.Sprintf("add signing key %q", k.KID), err)
	}
	return nil
}

// SigningKeys returns the keys whose certificate has not expired at now
// (NotAfter >= now, as X.509 validity is inclusive), newest first. A key
// that does not open under the store's key fails the call: no key is
// used that this deployment did not seal.
func (s *Store) SigningKeys(ctx context.Context, now time.Time) ([]*store.SigningKey, error) {
	if err := s.needKey("signing keys"); err != nil {
		return nil, err
	}
	rows, err := s.rdb.QueryContext(ctx, s.q(`SELECT kid, cert_der, key_der, sealed, created_at, retire_at, not_after
	FROM signing_keys WHERE not_after >= ? ORDER BY created_at DESC, kid DESC LIMIT ?`), ns(now), MaxLimit)
	if err != nil {
		return nil, s.fail("signing keys", err)
	}
	defer rows.Close()
	var ks []*store.SigningKey
	for rows.Next() {
		var (
			k                                 store.SigningKey
			sealed, created, retire, notAfter int64
			env                               []byte
		)
		if err := rows.Scan(&k.KID, &k.CertDER, &env, &sealed, &created, &retire, &notAfter); err != nil {
			return nil, s.fail("signing keys", err)
		}
		if k.KeyDER, err = s.openRow(tableSigningKeys, k.KID, env, sealed); err != nil {
			return nil, err
		}
		k.CreatedAt, k.RetireAt, k.NotAfter = fromNS(created), fromNS(retire), fromNS(notAfter)
		ks = append(ks, &k)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail("signing keys", err)
	}
	return ks, nil
}
