package sqlstore_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/store"
	"github.com/vigil-attest/vigil/store/sqlstore"
	"github.com/vigil-attest/vigil/store/storetest"
)

// benchAgents is how many agents the benchmarks spread their writes over.
const benchAgents = 1000

// benchParallelism × GOMAXPROCS goroutines call the store at once, as
// the server's request handlers do.
const benchParallelism = 16

// eachBench runs fn on SQLite (synchronous=NORMAL, the default, and
// FULL) and PostgreSQL, each a fresh database with benchAgents agents.
func eachBench(b *testing.B, fn func(b *testing.B, s *sqlstore.Store)) {
	for _, tc := range []struct {
		name string
		db   func(testing.TB) *storetest.DB
	}{
		{"sqlite", storetest.NewSQLite},
		{"sqlite-syncfull", func(t testing.TB) *storetest.DB {
			db := storetest.NewSQLite(t)
			db.Options.SyncFull = true
			return db
		}},
		{"postgres", storetest.NewPostgres},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s := tc.db(b).Open(b)
			ctx := context.Background()
			for i := range benchAgents {
				if err := s.CreateAgent(ctx, &store.Agent{ID: benchID(i), Enclave: "tpm", Status: store.Approved, KeyPEM: strings.Repeat("k", 180)}, store.EnrollLimits{}); err != nil {
					b.Fatal(err)
				}
			}
			b.SetParallelism(benchParallelism)
			b.ResetTimer()
			fn(b, s)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
		})
	}
}

func benchID(i int) string { return fmt.Sprintf("agent-%05d", i%benchAgents) }

// BenchmarkSaveResult: a result with a token of a typical EAR's size
// and new replay state, from many goroutines at once.
func BenchmarkSaveResult(b *testing.B) {
	token := strings.Repeat("t", 900)
	state := []byte(strings.Repeat("s", 200))
	eachBench(b, func(b *testing.B, s *sqlstore.Store) {
		var n atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			ctx := context.Background()
			for pb.Next() {
				i := int(n.Add(1))
				r := &store.Result{AgentID: benchID(i), Time: time.Now(), Level: 2, Status: "affirming",
					Failures: []byte(`[{"claim":"vigil.kernel","reason":"lockdown_off"}]`), PolicyID: "default", PolicyDigest: "sha256:0123", Token: token}
				if err := s.SaveResult(ctx, r, state); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkUseNonce: fresh nonces, from many goroutines at once.
func BenchmarkUseNonce(b *testing.B) {
	eachBench(b, func(b *testing.B, s *sqlstore.Store) {
		var n atomic.Int64
		exp := time.Now().Add(time.Minute)
		b.RunParallel(func(pb *testing.PB) {
			ctx := context.Background()
			var buf [8]byte
			for pb.Next() {
				i := n.Add(1)
				binary.BigEndian.PutUint64(buf[:], uint64(i))
				h := sha256.Sum256(buf[:])
				if err := s.UseNonce(ctx, h[:], benchID(int(i)), exp); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkGetAgent: reads of agents with a last result and state.
func BenchmarkGetAgent(b *testing.B) {
	eachBench(b, func(b *testing.B, s *sqlstore.Store) {
		ctx := context.Background()
		for i := range benchAgents {
			if err := s.SaveResult(ctx, &store.Result{AgentID: benchID(i), Level: 2, Status: "affirming"}, make([]byte, 200)); err != nil {
				b.Fatal(err)
			}
		}
		b.ResetTimer()
		var n atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.GetAgent(ctx, benchID(int(n.Add(1)))); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
