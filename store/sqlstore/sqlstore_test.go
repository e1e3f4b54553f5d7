package sqlstore_test

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/store"
	"github.com/vigil-attest/vigil/store/sqlstore"
	"github.com/vigil-attest/vigil/store/storetest"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestConformance(t *testing.T) {
	for _, b := range storetest.Backends {
		t.Run(b.Name, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) store.Store { return b.New(t).Open(t) })
		})
	}
}

func TestReplicas(t *testing.T) {
	for _, b := range storetest.Backends {
		t.Run(b.Name, func(t *testing.T) {
			storetest.RunReplicas(t, func(t *testing.T) (store.Store, store.Store) {
				db := b.New(t)
				return db.Open(t), db.Open(t)
			})
		})
	}
}

func TestOpenDSN(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	for _, tc := range []struct {
		dsn  string
		file string // the SQLite file made, "" when Open fails
	}{
		{"sqlite://" + filepath.Join(dir, "abs.db"), filepath.Join(dir, "abs.db")},
		{"sqlite://rel.db", filepath.Join(dir, "rel.db")},
		{"sqlite://sub/../noext", filepath.Join(dir, "noext")},
		{"plain.db", filepath.Join(dir, "plain.db")},
		{filepath.Join(dir, "with space?.db"), filepath.Join(dir, "with space?.db")},
		{"plain.sqlite", ""},
		{"mysql://x/y", ""},
		{"sqlite://", ""},
		{"sqlite://:memory:", ""},
		{"", ""},
	} {
		t.Run(tc.dsn, func(t *testing.T) {
			s, err := sqlstore.Open(ctxT(t), tc.dsn, sqlstore.Options{})
			if tc.file == "" {
				if err == nil {
					s.Close()
					t.Fatalf("Open(%q) succeeded", tc.dsn)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open(%q): %v", tc.dsn, err)
			}
			defer s.Close()
			if s.Dialect() != sqlstore.SQLite {
				t.Fatalf("dialect %s", s.Dialect())
			}
			fi, err := os.Stat(tc.file)
			if err != nil {
				t.Fatalf("no database at %s: %v", tc.file, err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Fatalf("%s has mode %v, want 0600 (it holds private keys)", tc.file, fi.Mode().Perm())
			}
			var mode string
			if err := s.DB().QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
				t.Fatalf("journal_mode %q, %v; want wal", mode, err)
			}
		})
	}
}

// TestMigrations: both dialects have the same migrations, Open records
// them once, and a second Open applies nothing.
func TestMigrations(t *testing.T) {
	lite, err := sqlstore.Migrations(sqlstore.SQLite)
	if err != nil {
		t.Fatal(err)
	}
	pg, err := sqlstore.Migrations(sqlstore.Postgres)
	if err != nil {
		t.Fatal(err)
	}
	if len(lite) == 0 || len(lite) != len(pg) {
		t.Fatalf("%d SQLite migrations, %d PostgreSQL", len(lite), len(pg))
	}
	for i := range lite {
		if lite[i].Version != pg[i].Version || lite[i].Name != pg[i].Name {
			t.Fatalf("migration %d: %04d_%s (SQLite) against %04d_%s (PostgreSQL)", i, lite[i].Version, lite[i].Name, pg[i].Version, pg[i].Name)
		}
	}
	storetest.EachDB(t, func(t *testing.T, db *storetest.DB) {
		s := db.Open(t)
		s.Close()
		s = db.Open(t)
		v, err := s.SchemaVersion(ctxT(t))
		if err != nil || v != len(lite) {
			t.Fatalf("SchemaVersion = %d, %v; want %d", v, err, len(lite))
		}
		var n int
		if err := s.DB().QueryRow("SELECT COUNT(*) FROM schema_migrations").Scan(&n); err != nil || n != len(lite) {
			t.Fatalf("schema_migrations has %d rows, %v; want %d", n, err, len(lite))
		}
	})
}

// TestSchemaNewer: a database migrated by a newer binary is refused.
func TestSchemaNewer(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *storetest.DB) {
		s := db.Open(t)
		q := "INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, 'future', 0)"
		if _, err := s.DB().Exec(q); err != nil {
			t.Fatal(err)
		}
		s.Close()
		s2, err := sqlstore.Open(ctxT(t), db.DSN, db.Options)
		if err == nil {
			s2.Close()
			t.Fatal("Open of a newer schema succeeded")
		}
		if !errors.Is(err, sqlstore.ErrSchemaNewer) || !strings.Contains(err.Error(), "9999") {
			t.Fatalf("Open of a newer schema: %v; want ErrSchemaNewer naming version 9999", err)
		}
	})
}

// TestConcurrentOpen: replicas opening one fresh database at once migrate
// it once (a second migration would fail: its CREATE TABLEs are not IF
// NOT EXISTS) and all start.
func TestConcurrentOpen(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *storetest.DB) {
		for round := range 3 {
			if round > 0 {
				db = storetest.Backends[map[string]int{"sqlite": 0, "postgres": 1}[db.Name]].New(t)
			}
			const n = 4
			var wg sync.WaitGroup
			stores := make([]*sqlstore.Store, n)
			errs := make([]error, n)
			start := make(chan struct{})
			for i := range n {
				wg.Go(func() {
					<-start
					stores[i], errs[i] = sqlstore.Open(ctxT(t), db.DSN, db.Options)
				})
			}
			close(start)
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("round %d: Open %d: %v", round, i, err)
				}
				defer stores[i].Close()
			}
			var rows int
			if err := stores[0].DB().QueryRow("SELECT COUNT(*) FROM schema_migrations").Scan(&rows); err != nil {
				t.Fatal(err)
			}
			ms, _ := sqlstore.Migrations(stores[0].Dialect())
			if rows != len(ms) {
				t.Fatalf("round %d: schema_migrations has %d rows, want %d", round, rows, len(ms))
			}
		}
	})
}

// TestDurable: what one handle wrote, a new handle reads after the first
// is closed.
func TestDurable(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *storetest.DB) {
		ctx := ctxT(t)
		s := db.Open(t)
		if err := s.CreateAgent(ctx, &store.Agent{ID: "h", Enclave: "software", Status: store.Approved, KeyPEM: "k"}, store.EnrollLimits{}); err != nil {
			t.Fatal(err)
		}
		r := &store.Result{AgentID: "h", Level: 2, Status: "affirming", Token: "tok"}
		if err := s.SaveResult(ctx, r, []byte("state")); err != nil {
			t.Fatal(err)
		}
		if err := s.UseNonce(ctx, []byte("nonce"), "h", time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		sec, err := s.Secret(ctx, "k", func() ([]byte, error) { return []byte("secret"), nil })
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}

		s = db.Open(t)
		a, err := s.GetAgent(ctx, "h")
		if err != nil || a.Last == nil || a.Last.Level != 2 || string(a.State) != "state" {
			t.Fatalf("after reopening: %+v, %v", a, err)
		}
		rs, err := s.Results(ctx, "h", 10)
		if err != nil || len(rs) != 1 || rs[0].ID != r.ID || rs[0].Token != "tok" {
			t.Fatalf("after reopening: results %+v, %v", rs, err)
		}
		if err := s.UseNonce(ctx, []byte("nonce"), "h", time.Now().Add(time.Hour)); !errors.Is(err, store.ErrNonceUsed) {
			t.Fatalf("nonce after reopening: %v, want ErrNonceUsed", err)
		}
		sec2, err := s.Secret(ctx, "k", func() ([]byte, error) { return []byte("other"), nil })
		if err != nil || string(sec2) != string(sec) {
			t.Fatalf("secret after reopening %q, %v; want %q", sec2, err, sec)
		}
	})
}

// TestUnavailable: a database that cannot be reached or fails under the
// store gives ErrUnavailable, never a panic.
func TestUnavailable(t *testing.T) {
	t.Run("postgres nothing listening", func(t *testing.T) {
		start := time.Now()
		_, err := sqlstore.Open(ctxT(t), "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=5", sqlstore.Options{})
		if !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("Open(port 1): %v, want ErrUnavailable", err)
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("Open(port 1) took %v", time.Since(start))
		}
	})
	t.Run("sqlite directory missing", func(t *testing.T) {
		_, err := sqlstore.Open(ctxT(t), filepath.Join(t.TempDir(), "no", "such", "dir", "v.db"), sqlstore.Options{})
		if !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("Open(missing directory): %v, want ErrUnavailable", err)
		}
	})
	t.Run("sqlite not a database", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "garbage.db")
		if err := os.WriteFile(p, []byte(strings.Repeat("not a database file ", 500)), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := sqlstore.Open(ctxT(t), p, sqlstore.Options{})
		if !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("Open(garbage): %v, want ErrUnavailable", err)
		}
	})
	t.Run("sqlite locked", func(t *testing.T) {
		// Another process holds the write lock past the busy timeout.
		db := storetest.NewSQLite(t)
		db.Options.BusyTimeout = 100 * time.Millisecond
		s := db.Open(t)
		other := db.Open(t)
		ctx := ctxT(t)
		if err := s.CreateAgent(ctx, &store.Agent{ID: "h", Enclave: "software", Status: store.Approved}, store.EnrollLimits{}); err != nil {
			t.Fatal(err)
		}
		conn, err := other.DB().Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.ExecContext(ctx, "BEGIN EXCLUSIVE"); err != nil {
			t.Fatal(err)
		}
		defer conn.ExecContext(ctx, "ROLLBACK")
		err = s.SaveResult(ctx, &store.Result{AgentID: "h", Level: 1, Status: "warning"}, nil)
		if !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("SaveResult under another's lock: %v, want ErrUnavailable", err)
		}
		err = s.UseNonce(ctx, []byte("n"), "h", time.Now())
		if !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("UseNonce under another's lock: %v, want ErrUnavailable", err)
		}
	})
	t.Run("postgres schema dropped", func(t *testing.T) {
		db := storetest.NewPostgres(t)
		s := db.Open(t)
		admin := db.Open(t)
		ctx := ctxT(t)
		if _, err := admin.DB().ExecContext(ctx, "DROP SCHEMA "+db.Options.Schema+" CASCADE; CREATE SCHEMA "+db.Options.Schema); err != nil {
			t.Fatal(err)
		}
		_, err := s.GetAgent(ctx, "h")
		if !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("GetAgent with its tables gone: %v, want ErrUnavailable", err)
		}
		if err := s.Ping(ctx); !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("Ping with its tables gone: %v, want ErrUnavailable", err)
		}
	})
}

// killChildEnv tells the test binary it is TestKillDurability's writer.
const killChildEnv = "VIGIL_SQLSTORE_KILL_CHILD_DSN"

// TestKillDurability: a process writing results is killed (SIGKILL)
// mid-load; every result it acknowledged is in the database afterwards.
func TestKillDurability(t *testing.T) {
	if dsn := os.Getenv(killChildEnv); dsn != "" {
		killChild(t, dsn)
		return
	}
	storetest.EachDB(t, func(t *testing.T, db *storetest.DB) {
		ctx := ctxT(t)
		s := db.Open(t)
		if err := s.CreateAgent(ctx, &store.Agent{ID: "h", Enclave: "software", Status: store.Approved}, store.EnrollLimits{}); err != nil {
			t.Fatal(err)
		}
		s.Close()

		cmd := exec.Command(os.Args[0], "-test.run=^TestKillDurability$", "-test.count=1")
		cmd.Env = append(os.Environ(), killChildEnv+"="+db.DSN)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		acked := map[int64]bool{}
		sc := bufio.NewScanner(out)
		for sc.Scan() && len(acked) < 500 {
			if id, ok := strings.CutPrefix(sc.Text(), "ack "); ok {
				n, err := strconv.ParseInt(id, 10, 64)
				if err != nil {
					t.Fatalf("child said %q", sc.Text())
				}
				acked[n] = true
			}
		}
		// Kill it while its writers are busy, then read what it said
		// it had written before dying.
		_ = cmd.Process.Kill()
		for sc.Scan() {
			if id, ok := strings.CutPrefix(sc.Text(), "ack "); ok {
				n, _ := strconv.ParseInt(id, 10, 64)
				acked[n] = true
			}
		}
		_ = cmd.Wait()
		if len(acked) < 500 {
			t.Fatalf("child acknowledged only %d results", len(acked))
		}

		s = db.Open(t)
		rs, err := s.Results(ctx, "h", sqlstore.MaxLimit)
		if err != nil {
			t.Fatal(err)
		}
		stored := rs // the child writes at most 1000 = MaxLimit
		have := map[int64]bool{}
		for _, r := range stored {
			have[r.ID] = true
		}
		for id := range acked {
			if !have[id] {
				t.Fatalf("acknowledged result %d is gone after the kill (%d acknowledged, %d stored)", id, len(acked), len(stored))
			}
		}
		t.Logf("%d acknowledged, %d stored", len(acked), len(stored))
	})
}

// killChild writes results from four goroutines, printing each ID once
// SaveResult returned, until killed (or 20 seconds pass).
func killChild(t *testing.T, dsn string) {
	s, err := sqlstore.Open(context.Background(), dsn, sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	deadline := time.Now().Add(20 * time.Second)
	for range 4 {
		wg.Go(func() {
			for n := 0; n < 250 && time.Now().Before(deadline); n++ {
				r := &store.Result{AgentID: "h", Level: 1, Status: "warning", Token: "t"}
				if err := s.SaveResult(context.Background(), r, []byte("state")); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				fmt.Fprintf(os.Stdout, "ack %d\n", r.ID)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	// Stay alive, writing nothing, until the parent kills us.
	time.Sleep(time.Until(deadline))
}

// TestPostgresRequiredInCI: without VIGIL_TEST_POSTGRES the PostgreSQL
// tests skip, except under CI=true, where they fail.
func TestPostgresRequiredInCI(t *testing.T) {
	for _, tc := range []struct {
		ci     string
		fail   bool
		output string
	}{
		{"", false, "SKIP"},
		{"false", false, "SKIP"},
		{"true", true, "CI=true"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestConformance$/^postgres$/^Ping$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), storetest.PostgresEnv+"=", "CI="+tc.ci)
		out, err := cmd.CombinedOutput()
		if (err != nil) != tc.fail || !strings.Contains(string(out), tc.output) {
			t.Fatalf("CI=%q without %s: exit %v, want failure %v, output containing %q:\n%s", tc.ci, storetest.PostgresEnv, err, tc.fail, tc.output, out)
		}
	}
}

// TestSaveResultAtomic: when the result's INSERT fails after the agent's
// UPDATE ran, the UPDATE is rolled back: Last and State stay as they were.
func TestSaveResultAtomic(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *storetest.DB) {
		ctx := ctxT(t)
		s := db.Open(t)
		// A trigger refuses results of level 99.
		trigger := `CREATE TRIGGER refuse99 BEFORE INSERT ON results FOR EACH ROW WHEN (NEW.level = 99)
			BEGIN SELECT RAISE(ABORT, 'level 99 refused'); END`
		if s.Dialect() == sqlstore.Postgres {
			trigger = `CREATE FUNCTION refuse99() RETURNS trigger LANGUAGE plpgsql AS $$
				BEGIN RAISE EXCEPTION 'level 99 refused'; END $$;
				CREATE TRIGGER refuse99 BEFORE INSERT ON results FOR EACH ROW WHEN (NEW.level = 99) EXECUTE FUNCTION refuse99()`
		}
		if _, err := s.DB().ExecContext(ctx, trigger); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateAgent(ctx, &store.Agent{ID: "h", Enclave: "software", Status: store.Approved}, store.EnrollLimits{}); err != nil {
			t.Fatal(err)
		}
		ok := &store.Result{AgentID: "h", Level: 2, Status: "affirming", Time: time.Unix(1000, 0)}
		if err := s.SaveResult(ctx, ok, []byte("good state")); err != nil {
			t.Fatal(err)
		}
		bad := &store.Result{AgentID: "h", Level: 99, Status: "warning"}
		err := s.SaveResult(ctx, bad, []byte("bad state"))
		if err == nil || !strings.Contains(err.Error(), "level 99 refused") {
			t.Fatalf("SaveResult(level 99): %v, want the trigger's refusal", err)
		}
		if bad.ID != 0 {
			t.Fatalf("failed SaveResult set ID %d", bad.ID)
		}
		a, err := s.GetAgent(ctx, "h")
		if err != nil {
			t.Fatal(err)
		}
		if a.Last == nil || a.Last.Level != 2 || !a.Last.Time.Equal(ok.Time) || string(a.State) != "good state" {
			t.Fatalf("after a failed SaveResult: Last %+v, State %q; want level 2 and good state", a.Last, a.State)
		}
	})
}

// TestMigrateSharedEKs: a database of migration 0001 where one EK already
// holds several activated IDs migrates: those agents are marked EKShared
// (they keep their IDs), and the next ID of that EK is refused.
func TestMigrateSharedEKs(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *storetest.DB) {
		ctx := ctxT(t)
		d := sqlstore.Dialect(db.Name)
		ms, err := sqlstore.Migrations(d)
		if err != nil {
			t.Fatal(err)
		}
		driver, dsn := "pgx", db.DSN
		if d == sqlstore.SQLite {
			driver, dsn = "sqlite", strings.TrimPrefix(db.DSN, "sqlite://")
		}
		raw, err := sql.Open(driver, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		q := func(s string) string {
			if d == sqlstore.Postgres {
				for i := 1; strings.Contains(s, "?"); i++ {
					s = strings.Replace(s, "?", "$"+strconv.Itoa(i), 1)
				}
			}
			return s
		}
		for _, stmt := range []string{
			`CREATE TABLE schema_migrations (version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`,
			ms[0].SQL,
			`INSERT INTO schema_migrations VALUES (1, 'init', 0)`,
		} {
			if _, err := raw.ExecContext(ctx, stmt); err != nil {
				t.Fatal(err)
			}
		}
		for _, a := range []struct{ id, status, ek string }{
			{"old-1", "approved", "ek-dup"}, {"old-2", "revoked", "ek-dup"}, {"old-3", "activating", "ek-dup"},
			{"solo", "approved", "ek-solo"},
		} {
			if _, err := raw.ExecContext(ctx, q(`INSERT INTO agents (id, enclave, status, ek_hash, created_at, updated_at) VALUES (?, 'tpm', ?, ?, 1, 1)`),
				a.id, a.status, a.ek); err != nil {
				t.Fatal(err)
			}
		}
		s := db.Open(t)
		for id, shared := range map[string]bool{"old-1": true, "old-2": true, "old-3": false, "solo": false} {
			a, err := s.GetAgent(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if a.EKShared != shared {
				t.Fatalf("%s: EKShared %v after migrating, want %v", id, a.EKShared, shared)
			}
		}
		// old-1 and old-2 are shared, so the EK's one exclusive ID may
		// still go to old-3.
		if err := s.SetStatus(ctx, "old-3", store.StatusChange{From: store.Activating, To: store.Pending}); err != nil {
			t.Fatalf("activating old-3: %v", err)
		}
		next := &store.Agent{ID: "new", Enclave: "tpm", Status: store.Approved, EKHash: "ek-solo"}
		if err := s.CreateAgent(ctx, next, store.EnrollLimits{}); !errors.Is(err, store.ErrEKInUse) {
			t.Fatalf("a second ID of ek-solo after migrating: %v, want ErrEKInUse", err)
		}
	})
}
