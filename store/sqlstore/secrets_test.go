package sqlstore_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/store"
	"github.com/vigil-attest/vigil/store/seal"
	"github.com/vigil-attest/vigil/store/sqlstore"
	"github.com/vigil-attest/vigil/store/storetest"
)

// TestSecretsNeedKey: a store opened without a secrets key neither reads
// nor writes secrets; nothing reaches the database in plaintext.
func TestSecretsNeedKey(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *storetest.DB) {
		ctx := ctxT(t)
		o := db.Options
		o.SecretsKey = nil
		s, err := sqlstore.Open(ctx, db.DSN, o)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		created := false
		_, err = s.Secret(ctx, "ca", func() ([]byte, error) { created = true; return []byte("x"), nil })
		wantSeal(t, "Secret without a key", err, seal.NoKey)
		if created {
			t.Error("Secret without a key made the secret")
		}
		err = s.AddSigningKey(ctx, &store.SigningKey{KID: "k", CertDER: []byte{1}, KeyDER: []byte{2}, NotAfter: time.Now()})
		wantSeal(t, "AddSigningKey without a key", err, seal.NoKey)
		_, err = s.SigningKeys(ctx, time.Now())
		wantSeal(t, "SigningKeys without a key", err, seal.NoKey)
		var n int
		if err := s.DB().QueryRowContext(ctx, `SELECT (SELECT COUNT(*) FROM secrets) + (SELECT COUNT(*) FROM signing_keys)`).Scan(&n); err != nil || n != 0 {
			t.Errorf("%d rows written without a key (%v)", n, err)
		}
	})
}

// TestSecretsKeyRace: replicas with two different keys starting at once on
// a fresh database: the first to seal it wins, every replica with the
// other key fails with wrong-key, and none with the winning key does.
func TestSecretsKeyRace(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *storetest.DB) {
		other, _, _ := seal.Generate()
		keys := []*seal.Key{db.Options.SecretsKey, other}
		const n = 8
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				o := db.Options
				o.SecretsKey = keys[i%2]
				s, err := sqlstore.Open(context.Background(), db.DSN, o)
				if err == nil {
					s.Close()
				}
				errs[i] = err
			}()
		}
		wg.Wait()
		winner := -1
		for i, err := range errs {
			if err == nil {
				if winner >= 0 && winner != i%2 {
					t.Fatalf("replicas with both keys started: %v", errs)
				}
				winner = i % 2
			}
		}
		if winner < 0 {
			t.Fatalf("no replica started: %v", errs)
		}
		for i, err := range errs {
			if i%2 != winner {
				wantSeal(t, "the losing key", err, seal.WrongKey)
			} else if err != nil {
				t.Errorf("a replica with the winning key: %v", err)
			}
		}
	})
}

func wantSeal(t *testing.T, what string, err error, c seal.Code) {
	t.Helper()
	if got := seal.Of(err); got != c {
		t.Fatalf("%s: %v (code %q), want %q", what, err, got, c)
	}
}
