package storetest

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/store"
)

// The conformance tests of custody: status changes are compare-and-set,
// a result is saved only while its agent is approved, an EK holds one
// agent ID, unfinished enrollments are bounded and expire.

// wantStatusError fails unless err is want (ErrStatusChanged or
// ErrNotApproved) as a *store.StatusError naming status.
func wantStatusError(t *testing.T, what string, err, want error, status store.Status) {
	t.Helper()
	wantIs(t, what, err, want)
	var se *store.StatusError
	if !errors.As(err, &se) || se.Status != status {
		t.Fatalf("%s: %v; want a *store.StatusError with status %s", what, err, status)
	}
}

// wantLimit fails unless err is ErrEnrollLimit as a *store.LimitError.
func wantLimit(t *testing.T, what string, err error, perSource bool, limit int) {
	t.Helper()
	wantIs(t, what, err, store.ErrEnrollLimit)
	var le *store.LimitError
	if !errors.As(err, &le) || le.PerSource != perSource || le.Limit != limit {
		t.Fatalf("%s: %v; want a *store.LimitError{PerSource: %v, Limit: %d}", what, err, perSource, limit)
	}
}

// testSetStatusCAS: a change from a status the agent no longer has is
// refused and changes nothing; an approve that read "pending" before a
// revoke landed cannot undo it.
func testSetStatusCAS(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	if err := s.CreateAgent(ctx, agent("p", store.Pending), store.EnrollLimits{}); err != nil {
		t.Fatal(err)
	}
	err := s.SetStatus(ctx, "p", store.StatusChange{From: store.Approved, To: store.Revoked, Reason: "stale"})
	wantStatusError(t, "SetStatus(approved -> revoked) of a pending agent", err, store.ErrStatusChanged, store.Pending)
	if got := mustGet(t, s, "p"); got.Status != store.Pending || got.StatusReason != "test" {
		t.Fatalf("a refused change left %s (%q)", got.Status, got.StatusReason)
	}
	// The operator's approve read "pending"; a revoke lands first.
	read := mustGet(t, s, "p").Status
	mustSetStatus(t, s, "p", store.Pending, store.Revoked)
	err = s.SetStatus(ctx, "p", store.StatusChange{From: read, To: store.Approved, Reason: "late approve"})
	wantStatusError(t, "approve after a revoke", err, store.ErrStatusChanged, store.Revoked)
	if got := mustGet(t, s, "p"); got.Status != store.Revoked {
		t.Fatalf("approve after revoke left %s", got.Status)
	}
}

// raceStatus runs approvers (pending -> approved) against revokers (read
// the status, revoke from it, read again when it changed) over stores,
// and checks the agent ends revoked however they interleave.
func raceStatus(t *testing.T, stores ...store.Store) {
	ctx := ctxT(t)
	for round := range 10 {
		id := fmt.Sprintf("race-%d", round)
		if err := stores[0].CreateAgent(ctx, agent(id, store.Pending), store.EnrollLimits{}); err != nil {
			t.Fatal(err)
		}
		var approved, revoked atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range 8 {
			s := stores[i%len(stores)]
			wg.Go(func() {
				<-start
				if i%2 == 0 {
					err := s.SetStatus(ctx, id, store.StatusChange{From: store.Pending, To: store.Approved, Reason: "approve"})
					switch {
					case err == nil:
						approved.Add(1)
					case !errors.Is(err, store.ErrStatusChanged):
						t.Errorf("approve: %v", err)
					}
					return
				}
				for {
					a, err := s.GetAgent(ctx, id)
					if err != nil {
						t.Errorf("GetAgent: %v", err)
						return
					}
					if a.Status == store.Revoked {
						return
					}
					err = s.SetStatus(ctx, id, store.StatusChange{From: a.Status, To: store.Revoked, Reason: "revoke"})
					if err == nil {
						revoked.Add(1)
						return
					}
					if !errors.Is(err, store.ErrStatusChanged) {
						t.Errorf("revoke: %v", err)
						return
					}
				}
			})
		}
		close(start)
		wg.Wait()
		if got := mustGet(t, stores[len(stores)-1], id); got.Status != store.Revoked || got.StatusReason != "revoke" {
			t.Fatalf("round %d: agent ends %s (%q), want revoked", round, got.Status, got.StatusReason)
		}
		if approved.Load() > 1 || revoked.Load() != 1 {
			t.Fatalf("round %d: %d approves and %d revokes took effect; want at most 1 and exactly 1", round, approved.Load(), revoked.Load())
		}
	}
}

func testStatusRace(t *testing.T, s store.Store) { raceStatus(t, s) }

// testSaveResultNotApproved: an agent that is not approved gets no result,
// no Last and no State, and the error names its status.
func testSaveResultNotApproved(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	for _, st := range []store.Status{store.Activating, store.Pending, store.Revoked} {
		id := "not-" + string(st)
		if err := s.CreateAgent(ctx, agent(id, st), store.EnrollLimits{}); err != nil {
			t.Fatal(err)
		}
		r := result(id, 3, base)
		wantStatusError(t, "SaveResult of a "+string(st)+" agent", s.SaveResult(ctx, r, []byte("state")), store.ErrNotApproved, st)
		if r.ID != 0 {
			t.Fatalf("refused SaveResult set ID %d", r.ID)
		}
		noResults(t, s, id, 0)
	}
	// Approved, then revoked: the first result stays, the second is
	// refused and changes neither Last nor State.
	mustCreate(t, s, "h")
	mustSave(t, s, result("h", 2, base), []byte("before"))
	mustSetStatus(t, s, "h", store.Approved, store.Revoked)
	wantStatusError(t, "SaveResult after revoke", s.SaveResult(ctx, result("h", 4, base.Add(time.Minute)), []byte("after")), store.ErrNotApproved, store.Revoked)
	a := mustGet(t, s, "h")
	if a.Last == nil || a.Last.Level != 2 || string(a.State) != "before" {
		t.Fatalf("after a refused save: Last %+v, State %q; want level 2 and the state before", a.Last, a.State)
	}
	noResults(t, s, "h", 1)
}

// noResults fails unless agent id has n results (and, when n is 0, no
// Last and no State).
func noResults(t *testing.T, s store.Store, id string, n int) {
	t.Helper()
	rs, err := s.Results(ctxT(t), id, 100)
	if err != nil || len(rs) != n {
		t.Fatalf("%s: %d results, %v; want %d", id, len(rs), err, n)
	}
	if n == 0 {
		if a := mustGet(t, s, id); a.Last != nil || a.State != nil {
			t.Fatalf("%s: Last %+v, State %q; want none", id, a.Last, a.State)
		}
	}
}

// raceRevokeSave saves results from many goroutines over stores while a
// revoke lands: every save acknowledged is stored, every save begun after
// the revoke returned is refused, and nothing unacknowledged is stored.
func raceRevokeSave(t *testing.T, stores ...store.Store) {
	ctx := ctxT(t)
	mustCreate(t, stores[0], "victim")
	var revoked atomic.Bool
	var acked atomic.Int32
	var wg sync.WaitGroup
	for w := range 8 {
		s := stores[w%len(stores)]
		wg.Go(func() {
			for i := 0; ; i++ {
				after := revoked.Load()
				err := s.SaveResult(ctx, result("victim", 1, base.Add(time.Duration(w*10000+i))), []byte("s"))
				switch {
				case err == nil && after:
					t.Errorf("a save begun after the revoke returned was stored")
					return
				case err == nil:
					acked.Add(1)
				case errors.Is(err, store.ErrNotApproved):
					return
				default:
					t.Errorf("SaveResult: %v", err)
					return
				}
			}
		})
	}
	for acked.Load() < 20 && !t.Failed() {
		time.Sleep(time.Millisecond)
	}
	if err := stores[len(stores)-1].SetStatus(ctx, "victim", store.StatusChange{From: store.Approved, To: store.Revoked, Reason: "op"}); err != nil {
		t.Fatal(err)
	}
	revoked.Store(true)
	wg.Wait()
	rs, err := stores[0].Results(ctx, "victim", 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != int(acked.Load()) {
		t.Fatalf("%d results stored, %d acknowledged", len(rs), acked.Load())
	}
}

func testRevokeSaveRace(t *testing.T, s store.Store) { raceRevokeSave(t, s) }

// tpmAgent is an agent activating with the given EK, enrolled from src.
func tpmAgent(id, ek, src string) *store.Agent {
	a := agent(id, store.Activating)
	a.EKHash, a.EnrolledFrom = ek, src
	return a
}

// testEKOnce: an EK holds one agent ID once activated; agents still
// activating take no part; a revoked agent keeps its EK; EKShared lets an
// operator give one EK several IDs.
func testEKOnce(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	create := func(a *store.Agent) error { return s.CreateAgent(ctx, a, store.EnrollLimits{}) }
	// Two enrollments of one EK, both activating: both are recorded
	// (neither has proven it holds the EK).
	for _, id := range []string{"owner", "squatter"} {
		wantIs(t, "CreateAgent("+id+")", create(tpmAgent(id, "ek-x", "src")), nil)
	}
	mustSetStatus(t, s, "owner", store.Activating, store.Pending)
	err := s.SetStatus(ctx, "squatter", store.StatusChange{From: store.Activating, To: store.Approved})
	wantIs(t, "activating a second ID of one EK", err, store.ErrEKInUse)
	if got := mustGet(t, s, "squatter"); got.Status != store.Activating {
		t.Fatalf("refused activation left %s", got.Status)
	}
	other := agent("other", store.Approved)
	other.EKHash = "ek-x"
	wantIs(t, "CreateAgent(approved, EK held)", create(other), store.ErrEKInUse)
	// Revoked, the EK stays held: revoked hardware cannot come back under
	// another name.
	mustSetStatus(t, s, "owner", store.Pending, store.Revoked)
	err = s.SetStatus(ctx, "squatter", store.StatusChange{From: store.Activating, To: store.Pending})
	wantIs(t, "activating a second ID of a revoked EK", err, store.ErrEKInUse)
	// ListAgents finds an EK's agents.
	as, err := s.ListAgents(ctx, store.ListOptions{EKHash: "ek-x"})
	if err != nil || len(as) != 2 || as[0].ID != "owner" || as[1].ID != "squatter" {
		t.Fatalf("ListAgents(EKHash) = %v, %v; want owner and squatter", as, err)
	}
	// Shared EKs: an operator's choice, recorded per agent.
	for i := range 3 {
		a := agent(fmt.Sprintf("shared-%d", i), store.Approved)
		a.EKHash, a.EKShared = "ek-y", true
		wantIs(t, "CreateAgent(shared EK)", create(a), nil)
		if got := mustGet(t, s, a.ID); !got.EKShared || got.EnrolledFrom != "" {
			t.Fatalf("EKShared %v EnrolledFrom %q read back", got.EKShared, got.EnrolledFrom)
		}
	}
	excl := agent("exclusive", store.Approved)
	excl.EKHash = "ek-y"
	wantIs(t, "CreateAgent(the shared EK's one exclusive ID)", create(excl), nil)
	excl2 := agent("exclusive-2", store.Approved)
	excl2.EKHash = "ek-y"
	wantIs(t, "CreateAgent(a second exclusive ID)", create(excl2), store.ErrEKInUse)
	// An ID taken is told as such even when the EK is too.
	wantIs(t, "CreateAgent(taken ID, taken EK)", create(excl), store.ErrExists)
	// Agents with no EK (software) never collide.
	for i := range 3 {
		a := &store.Agent{ID: fmt.Sprintf("soft-%d", i), Enclave: "software", Status: store.Approved, KeyPEM: "k"}
		wantIs(t, "CreateAgent(software)", create(a), nil)
	}
}

// raceEK activates two IDs of one EK at once over stores: exactly one
// wins.
func raceEK(t *testing.T, stores ...store.Store) {
	ctx := ctxT(t)
	for round := range 10 {
		ek := fmt.Sprintf("ek-race-%d", round)
		ids := []string{ek + "-a", ek + "-b", ek + "-c", ek + "-d"}
		for _, id := range ids {
			if err := stores[0].CreateAgent(ctx, tpmAgent(id, ek, "src"), store.EnrollLimits{}); err != nil {
				t.Fatal(err)
			}
		}
		var won, inUse atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i, id := range ids {
			s := stores[i%len(stores)]
			wg.Go(func() {
				<-start
				switch err := s.SetStatus(ctx, id, store.StatusChange{From: store.Activating, To: store.Approved}); {
				case err == nil:
					won.Add(1)
				case errors.Is(err, store.ErrEKInUse):
					inUse.Add(1)
				default:
					t.Errorf("SetStatus(%s): %v", id, err)
				}
			})
		}
		close(start)
		wg.Wait()
		if won.Load() != 1 || inUse.Load() != int32(len(ids)-1) {
			t.Fatalf("round %d: %d activations won, %d refused; want 1 and %d", round, won.Load(), inUse.Load(), len(ids)-1)
		}
	}
}

func testEKRace(t *testing.T, s store.Store) { raceEK(t, s) }

// testEnrollLimits: unfinished enrollments are bounded per source and in
// total; finished agents neither count nor are refused; a taken ID is
// told before any limit.
func testEnrollLimits(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	lim := store.EnrollLimits{PerSource: 3, Total: 5}
	create := func(id, src string, st store.Status) error {
		a := tpmAgent(id, "ek-"+id, src)
		a.Status = st
		return s.CreateAgent(ctx, a, lim)
	}
	for i := range 3 {
		wantIs(t, "enrollment from a", create(fmt.Sprintf("a%d", i), "a", store.Activating), nil)
	}
	wantLimit(t, "fourth enrollment from a", create("a3", "a", store.Pending), true, 3)
	wantIs(t, "re-enrollment of a taken ID at the limit", create("a0", "a", store.Activating), store.ErrExists)
	wantIs(t, "first enrollment from b", create("b0", "b", store.Pending), nil)
	wantIs(t, "second enrollment from b", create("b1", "b", store.Activating), nil)
	wantLimit(t, "sixth unfinished enrollment", create("c0", "c", store.Activating), false, 5)
	// Finished agents are not bounded and do not count.
	wantIs(t, "approved agent from a", create("a-done", "a", store.Approved), nil)
	mustSetStatus(t, s, "a0", store.Activating, store.Approved)
	wantIs(t, "enrollment from a after one finished", create("a4", "a", store.Activating), nil)
	wantLimit(t, "and the next", create("a5", "a", store.Activating), true, 3)
	// No limits, no bound.
	wantIs(t, "unbounded", s.CreateAgent(ctx, tpmAgent("free", "ek-free", "a"), store.EnrollLimits{}), nil)
	for _, id := range []string{"a3", "c0", "a5"} {
		_, err := s.GetAgent(ctx, id)
		wantIs(t, "refused agent "+id, err, store.ErrNotFound)
	}
}

// raceEnrollLimits enrolls many agents from one source at once over
// stores: exactly the limit are recorded.
func raceEnrollLimits(t *testing.T, stores ...store.Store) {
	ctx := ctxT(t)
	const n, limit = 48, 7
	var ok, refused atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		s := stores[i%len(stores)]
		wg.Go(func() {
			<-start
			id := fmt.Sprintf("flood-%02d", i)
			switch err := s.CreateAgent(ctx, tpmAgent(id, "ek-"+id, "flooder"), store.EnrollLimits{PerSource: limit, Total: 1000}); {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, store.ErrEnrollLimit):
				refused.Add(1)
			default:
				t.Errorf("CreateAgent: %v", err)
			}
		})
	}
	close(start)
	wg.Wait()
	as, err := stores[0].ListAgents(ctx, store.ListOptions{Status: store.Activating})
	if err != nil {
		t.Fatal(err)
	}
	if ok.Load() != limit || refused.Load() != n-limit || len(as) != limit {
		t.Fatalf("%d enrollments at once, limit %d: %d recorded (%d stored), %d refused", n, limit, ok.Load(), len(as), refused.Load())
	}
}

func testEnrollLimitsRace(t *testing.T, s store.Store) { raceEnrollLimits(t, s) }

// testExpireEnrollments: activating and pending agents past their ages
// go; finished ones, younger ones and a status with a zero age stay; an
// expired ID can enroll again.
func testExpireEnrollments(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	old, young := base, base.Add(time.Hour)
	for _, a := range []struct {
		id string
		st store.Status
		at time.Time
	}{
		{"act-old", store.Activating, old},
		{"act-young", store.Activating, young},
		{"pend-old", store.Pending, old},
		{"pend-young", store.Pending, young},
		{"appr-old", store.Approved, old},
		{"rev-old", store.Revoked, old},
	} {
		ag := agent(a.id, a.st)
		ag.CreatedAt, ag.UpdatedAt = a.at, a.at
		if err := s.CreateAgent(ctx, ag, store.EnrollLimits{}); err != nil {
			t.Fatal(err)
		}
	}
	// The age counts from the last status change: activated late, an old
	// enrollment is young as pending.
	late := agent("pend-late", store.Activating)
	late.CreatedAt, late.UpdatedAt = old, old
	if err := s.CreateAgent(ctx, late, store.EnrollLimits{}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetStatus(ctx, "pend-late", store.StatusChange{From: store.Activating, To: store.Pending, At: young}); err != nil {
		t.Fatal(err)
	}
	cut := base.Add(30 * time.Minute)
	expire := func(e store.Expiry, want int64, gone ...string) {
		t.Helper()
		n, err := s.ExpireEnrollments(ctx, e)
		if err != nil || n != want {
			t.Fatalf("ExpireEnrollments(%+v) = %d, %v; want %d", e, n, err, want)
		}
		for _, id := range gone {
			_, err := s.GetAgent(ctx, id)
			wantIs(t, "expired "+id, err, store.ErrNotFound)
		}
	}
	// Expiry.Covers, the service's check of one agent, agrees with the
	// store's deletion.
	all, err := s.ListAgents(ctx, store.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	covered := map[string]bool{}
	for _, a := range all {
		covered[a.ID] = store.Expiry{Activating: cut, Pending: cut}.Covers(a)
	}
	if fmt.Sprint(covered) != "map[act-old:true act-young:false appr-old:false pend-late:false pend-old:true pend-young:false rev-old:false]" {
		t.Fatalf("Covers: %v", covered)
	}
	expire(store.Expiry{}, 0)
	expire(store.Expiry{ID: "act-young", Activating: cut}, 0)
	expire(store.Expiry{ID: "act-old", Activating: cut}, 1, "act-old")
	expire(store.Expiry{Activating: cut}, 0) // pending ones have no age here
	expire(store.Expiry{Activating: cut, Pending: cut}, 1, "pend-old")
	for _, id := range []string{"act-young", "pend-young", "pend-late", "appr-old", "rev-old"} {
		mustGet(t, s, id)
	}
	// Everything unfinished, at a later cut.
	expire(store.Expiry{Activating: young.Add(time.Second), Pending: young.Add(time.Second)}, 3, "act-young", "pend-young", "pend-late")
	mustGet(t, s, "appr-old")
	mustGet(t, s, "rev-old")
	wantIs(t, "enrolling an expired ID again", s.CreateAgent(ctx, agent("act-old", store.Activating), store.EnrollLimits{}), nil)
}

func testReplicaStatusRace(t *testing.T, a, b store.Store)       { raceStatus(t, a, b) }
func testReplicaRevokeSave(t *testing.T, a, b store.Store)       { raceRevokeSave(t, a, b) }
func testReplicaEKRace(t *testing.T, a, b store.Store)           { raceEK(t, a, b) }
func testReplicaEnrollLimitsRace(t *testing.T, a, b store.Store) { raceEnrollLimits(t, a, b) }
