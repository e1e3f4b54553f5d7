package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/store"
)

// Run checks that the stores open makes (each a fresh, empty database)
// implement store.Store: every method, its errors and its edges. The
// subtests run in parallel, each on its own store.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"CreateGetAgent", testCreateGet},
		{"CreateAgentExists", testCreateExists},
		{"CreateAgentInvalid", testCreateInvalid},
		{"GetAgentNotFound", testGetNotFound},
		{"SetStatus", testSetStatus},
		{"SetStatusCAS", testSetStatusCAS},
		{"StatusRace", testStatusRace},
		{"UseNonce", testUseNonce},
		{"UseNonceRace", testUseNonceRace},
		{"SaveResult", testSaveResult},
		{"SaveResultUnknownAgent", testSaveResultUnknown},
		{"SaveResultInvalid", testSaveResultInvalid},
		{"SaveResultNotApproved", testSaveResultNotApproved},
		{"RevokeSaveRace", testRevokeSaveRace},
		{"EKOnce", testEKOnce},
		{"EKRace", testEKRace},
		{"EnrollLimits", testEnrollLimits},
		{"EnrollLimitsRace", testEnrollLimitsRace},
		{"ExpireEnrollments", testExpireEnrollments},
		{"Results", testResults},
		{"ListAgents", testListAgents},
		{"ListAgentsLimits", testListAgentsLimits},
		{"Prune", testPrune},
		{"Secret", testSecret},
		{"SecretRace", testSecretRace},
		{"SigningKeys", testSigningKeys},
		{"RelyingParties", testRelyingParties},
		{"ConcurrentSaveResult", testConcurrentSaveResult},
		{"Ping", testPing},
		{"ContextDone", testContextDone},
		{"Closed", testClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, open(t))
		})
	}
}

// RunReplicas checks two handles on one database (two replicas of the
// service): what one writes the other reads, a nonce is single-use across
// both, they agree on secrets, concurrent writes through both lose
// nothing, and the compare-and-set status, the approved-only save, the
// one-EK-one-ID index and the enrollment limits hold across both. open returns two handles on a fresh, empty database.
func RunReplicas(t *testing.T, open func(t *testing.T) (a, b store.Store)) {
	tests := []struct {
		name string
		fn   func(t *testing.T, a, b store.Store)
	}{
		{"Visible", testReplicaVisible},
		{"NonceSingleUse", testReplicaNonce},
		{"SecretRace", testReplicaSecret},
		{"ConcurrentSaveResult", testReplicaSaveResult},
		{"StatusRace", testReplicaStatusRace},
		{"RevokeSaveRace", testReplicaRevokeSave},
		{"EKRace", testReplicaEKRace},
		{"EnrollLimitsRace", testReplicaEnrollLimitsRace},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a, b := open(t)
			tc.fn(t, a, b)
		})
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// base is a fixed, sub-microsecond time: stores keep nanoseconds.
var base = time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)

func agent(id string, st store.Status) *store.Agent {
	return &store.Agent{
		ID:             id,
		Enclave:        "tpm",
		Status:         st,
		StatusReason:   "test",
		EKPublic:       []byte("ek-public-" + id),
		EKCert:         []byte{0x30, 0x82, 0x00, 0x01, 0xff},
		EKHash:         "ek-hash-" + id,
		AKPublic:       []byte("ak-public-" + id),
		KeyPEM:         "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
		ActivationHash: []byte{1, 2, 3, 4},
		CreatedAt:      base,
		UpdatedAt:      base,
	}
}

func mustCreate(t *testing.T, s store.Store, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if err := s.CreateAgent(ctxT(t), agent(id, store.Approved), store.EnrollLimits{}); err != nil {
			t.Fatalf("CreateAgent(%q): %v", id, err)
		}
	}
}

func result(id string, level int, at time.Time) *store.Result {
	return &store.Result{
		AgentID:      id,
		Time:         at,
		Level:        level,
		Status:       "affirming",
		Failures:     []byte(`[{"claim":"vigil.boot","reason":"x"}]`),
		PolicyID:     "default",
		PolicyDigest: "sha256:00",
		Token:        fmt.Sprintf("token-%s-%d", id, at.UnixNano()),
	}
}

func mustSave(t *testing.T, s store.Store, r *store.Result, state []byte) {
	t.Helper()
	if err := s.SaveResult(ctxT(t), r, state); err != nil {
		t.Fatalf("SaveResult(%q): %v", r.AgentID, err)
	}
}

func mustGet(t *testing.T, s store.Store, id string) *store.Agent {
	t.Helper()
	a, err := s.GetAgent(ctxT(t), id)
	if err != nil {
		t.Fatalf("GetAgent(%q): %v", id, err)
	}
	return a
}

// wantIs fails unless errors.Is(err, want) (want nil: err is nil).
func wantIs(t *testing.T, what string, err, want error) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("%s: %v, want no error", what, err)
		}
		return
	}
	if !errors.Is(err, want) {
		t.Fatalf("%s: %v, want %v", what, err, want)
	}
}

// wantCallerError fails unless err is an error that is none of the
// store's sentinels: the caller's fault, not the database's.
func wantCallerError(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error", what)
	}
	for _, e := range []error{store.ErrNotFound, store.ErrExists, store.ErrNonceUsed, store.ErrUnavailable,
		store.ErrStatusChanged, store.ErrNotApproved, store.ErrEKInUse, store.ErrEnrollLimit} {
		if errors.Is(err, e) {
			t.Fatalf("%s: %v; want an invalid-argument error, not %v", what, err, e)
		}
	}
}

func sameAgent(t *testing.T, got, want *store.Agent) {
	t.Helper()
	if got.ID != want.ID || got.Enclave != want.Enclave || got.Status != want.Status ||
		got.StatusReason != want.StatusReason || !bytes.Equal(got.EKPublic, want.EKPublic) ||
		!bytes.Equal(got.EKCert, want.EKCert) || got.EKHash != want.EKHash ||
		!bytes.Equal(got.AKPublic, want.AKPublic) || got.KeyPEM != want.KeyPEM ||
		!bytes.Equal(got.ActivationHash, want.ActivationHash) ||
		!got.CreatedAt.Equal(want.CreatedAt) || !got.UpdatedAt.Equal(want.UpdatedAt) {
		t.Fatalf("agent\n got %+v\nwant %+v", got, want)
	}
}

func testCreateGet(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	tpm := agent("host-1", store.Activating)
	soft := &store.Agent{ID: "soft-1", Enclave: "software", Status: store.Pending, KeyPEM: "pem", CreatedAt: base, UpdatedAt: base.Add(time.Second)}
	for _, a := range []*store.Agent{tpm, soft} {
		if err := s.CreateAgent(ctx, a, store.EnrollLimits{}); err != nil {
			t.Fatalf("CreateAgent(%q): %v", a.ID, err)
		}
		got := mustGet(t, s, a.ID)
		sameAgent(t, got, a)
		if got.Last != nil || got.State != nil {
			t.Fatalf("new agent %q has Last %+v, State %q; want none", a.ID, got.Last, got.State)
		}
	}
	// A zero CreatedAt is set by the store.
	now := &store.Agent{ID: "now", Enclave: "software", Status: store.Pending}
	before := time.Now()
	if err := s.CreateAgent(ctx, now, store.EnrollLimits{}); err != nil {
		t.Fatal(err)
	}
	got := mustGet(t, s, "now")
	if got.CreatedAt.Before(before.Add(-time.Second)) || got.CreatedAt.After(time.Now().Add(time.Second)) {
		t.Fatalf("CreatedAt %v, want about %v", got.CreatedAt, before)
	}
}

func testCreateExists(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	first := agent("dup", store.Approved)
	if err := s.CreateAgent(ctx, first, store.EnrollLimits{}); err != nil {
		t.Fatal(err)
	}
	second := agent("dup", store.Pending)
	second.AKPublic = []byte("another AK")
	wantIs(t, "CreateAgent twice", s.CreateAgent(ctx, second, store.EnrollLimits{}), store.ErrExists)
	sameAgent(t, mustGet(t, s, "dup"), first)
}

func testCreateInvalid(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	for _, tc := range []struct {
		name string
		a    *store.Agent
	}{
		{"empty ID", &store.Agent{Enclave: "tpm", Status: store.Pending}},
		{"no status", &store.Agent{ID: "a", Enclave: "tpm"}},
		{"unknown status", &store.Agent{ID: "b", Enclave: "tpm", Status: "trusted"}},
	} {
		wantCallerError(t, tc.name, s.CreateAgent(ctx, tc.a, store.EnrollLimits{}))
	}
	as, err := s.ListAgents(ctx, store.ListOptions{})
	if err != nil || len(as) != 0 {
		t.Fatalf("after invalid creates: %d agents, %v; want none", len(as), err)
	}
}

func testGetNotFound(t *testing.T, s store.Store) {
	mustCreate(t, s, "known")
	for _, id := range []string{"unknown", "", "KNOWN", "known "} {
		_, err := s.GetAgent(ctxT(t), id)
		wantIs(t, fmt.Sprintf("GetAgent(%q)", id), err, store.ErrNotFound)
	}
}

func testSetStatus(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	at := base.Add(time.Hour)
	for _, tc := range []struct {
		name     string
		from, to store.Status
		keepHash bool
	}{
		{"activate", store.Activating, store.Pending, false},
		{"approve directly", store.Activating, store.Approved, false},
		{"stay activating", store.Activating, store.Activating, true},
		{"approve", store.Pending, store.Approved, false},
		{"revoke pending", store.Pending, store.Revoked, false},
		{"revoke", store.Approved, store.Revoked, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := agent(tc.name, tc.from)
			if err := s.CreateAgent(ctx, a, store.EnrollLimits{}); err != nil {
				t.Fatal(err)
			}
			if err := s.SetStatus(ctx, a.ID, store.StatusChange{From: tc.from, To: tc.to, Reason: "operator alice", At: at}); err != nil {
				t.Fatalf("SetStatus: %v", err)
			}
			got := mustGet(t, s, a.ID)
			if got.Status != tc.to || got.StatusReason != "operator alice" {
				t.Fatalf("status %q (%q), want %q (operator alice)", got.Status, got.StatusReason, tc.to)
			}
			if tc.keepHash != (len(got.ActivationHash) > 0) {
				t.Fatalf("ActivationHash %x after %s -> %s; keep=%v", got.ActivationHash, tc.from, tc.to, tc.keepHash)
			}
			if !got.UpdatedAt.Equal(at) {
				t.Fatalf("UpdatedAt %v, want the change's time %v", got.UpdatedAt, at)
			}
			if !got.CreatedAt.Equal(a.CreatedAt) {
				t.Fatalf("CreatedAt changed: %v", got.CreatedAt)
			}
		})
	}
	// A zero At is now.
	mustCreate(t, s, "now")
	before := time.Now()
	if err := s.SetStatus(ctx, "now", store.StatusChange{From: store.Approved, To: store.Revoked}); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, s, "now").UpdatedAt; got.Before(before.Add(-time.Second)) || got.After(time.Now().Add(time.Second)) {
		t.Fatalf("UpdatedAt %v, want about %v", got, before)
	}
	wantIs(t, "SetStatus(unknown)", s.SetStatus(ctx, "unknown", store.StatusChange{From: store.Pending, To: store.Approved}), store.ErrNotFound)
	mustCreate(t, s, "x")
	// Refused changes, the caller's fault, change nothing: invalid
	// statuses, and changes outside the allow-list (nothing leaves
	// revoked, nothing goes back to pending or activating).
	for _, c := range []store.StatusChange{
		{From: store.Approved, To: "trusted"},
		{From: "", To: store.Approved},
		{From: store.Approved, To: store.Pending},
		{From: store.Approved, To: store.Activating},
		{From: store.Approved, To: store.Approved},
		{From: store.Pending, To: store.Activating},
	} {
		wantCallerError(t, fmt.Sprintf("SetStatus(%s -> %s)", c.From, c.To), s.SetStatus(ctx, "x", c))
	}
	if got := mustGet(t, s, "x"); got.Status != store.Approved {
		t.Fatalf("a refused SetStatus changed the status to %q", got.Status)
	}
	mustSetStatus(t, s, "x", store.Approved, store.Revoked)
	for _, to := range []store.Status{store.Approved, store.Pending, store.Activating, store.Revoked} {
		wantCallerError(t, "SetStatus(revoked -> "+string(to)+")", s.SetStatus(ctx, "x", store.StatusChange{From: store.Revoked, To: to}))
	}
	if got := mustGet(t, s, "x"); got.Status != store.Revoked {
		t.Fatalf("revoked agent is now %q", got.Status)
	}
}

func mustSetStatus(t *testing.T, s store.Store, id string, from, to store.Status) {
	t.Helper()
	if err := s.SetStatus(ctxT(t), id, store.StatusChange{From: from, To: to, Reason: "test"}); err != nil {
		t.Fatalf("SetStatus(%q, %s -> %s): %v", id, from, to, err)
	}
}

func testUseNonce(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	exp := time.Now().Add(time.Minute)
	n1, n2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	for _, tc := range []struct {
		name  string
		hash  []byte
		agent string
		want  error
	}{
		{"first use", n1, "a", nil},
		{"replay", n1, "a", store.ErrNonceUsed},
		{"replay by another agent", n1, "b", store.ErrNonceUsed},
		{"another nonce", n2, "a", nil},
		{"another nonce replayed", n2, "b", store.ErrNonceUsed},
		{"prefix of a used one", n1[:31], "a", nil},
	} {
		wantIs(t, tc.name, s.UseNonce(ctx, tc.hash, tc.agent, exp), tc.want)
	}
	wantCallerError(t, "empty nonce", s.UseNonce(ctx, nil, "a", exp))
}

func testUseNonceRace(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	const n = 16
	var ok, used atomic.Int32
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			err := s.UseNonce(ctx, []byte("the one nonce"), "a", time.Now().Add(time.Minute))
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, store.ErrNonceUsed):
				used.Add(1)
			default:
				t.Errorf("UseNonce: %v", err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 || used.Load() != n-1 {
		t.Fatalf("%d goroutines: %d accepted, %d refused; want 1 and %d", n, ok.Load(), used.Load(), n-1)
	}
}

func testSaveResult(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustCreate(t, s, "a", "b")
	r1 := result("a", 2, base)
	mustSave(t, s, r1, []byte("state-1"))
	if r1.ID == 0 {
		t.Fatal("SaveResult did not set ID")
	}
	a := mustGet(t, s, "a")
	if a.Last == nil || a.Last.Level != 2 || a.Last.Status != "affirming" || !a.Last.Time.Equal(base) {
		t.Fatalf("Last %+v, want level 2 affirming at %v", a.Last, base)
	}
	if string(a.State) != "state-1" {
		t.Fatalf("State %q, want state-1", a.State)
	}

	// A nil state keeps the last one; Last follows the newest result.
	r2 := result("a", 0, base.Add(time.Minute))
	r2.Status, r2.Failures = "contraindicated", []byte(`[]`)
	mustSave(t, s, r2, nil)
	if r2.ID <= r1.ID {
		t.Fatalf("IDs %d then %d, want increasing", r1.ID, r2.ID)
	}
	a = mustGet(t, s, "a")
	if a.Last.Level != 0 || a.Last.Status != "contraindicated" || !a.Last.Time.Equal(r2.Time) {
		t.Fatalf("Last %+v after second result", a.Last)
	}
	if string(a.State) != "state-1" {
		t.Fatalf("State %q after a nil state, want state-1 kept", a.State)
	}
	r3 := result("a", 3, base.Add(2*time.Minute))
	r3.Failures = nil
	mustSave(t, s, r3, []byte("state-3"))
	if a = mustGet(t, s, "a"); string(a.State) != "state-3" || a.Last.Level != 3 {
		t.Fatalf("State %q Last %+v, want state-3 at level 3", a.State, a.Last)
	}
	// The other agent is untouched.
	if b := mustGet(t, s, "b"); b.Last != nil || b.State != nil {
		t.Fatalf("agent b changed: %+v", b)
	}
	// Results round-trip every field.
	rs, err := s.Results(ctx, "a", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 3 {
		t.Fatalf("%d results, want 3", len(rs))
	}
	for i, want := range []*store.Result{r3, r2, r1} {
		got := rs[i]
		if got.ID != want.ID || got.AgentID != want.AgentID || !got.Time.Equal(want.Time) ||
			got.Level != want.Level || got.Status != want.Status || !bytes.Equal(got.Failures, want.Failures) ||
			got.PolicyID != want.PolicyID || got.PolicyDigest != want.PolicyDigest || got.Token != want.Token {
			t.Fatalf("result %d\n got %+v\nwant %+v", i, got, want)
		}
	}
	// A zero time is set to now.
	r4 := result("b", 1, time.Time{})
	mustSave(t, s, r4, nil)
	if time.Since(r4.Time) > time.Minute || r4.Time.After(time.Now().Add(time.Second)) {
		t.Fatalf("zero Time saved as %v, want now", r4.Time)
	}
}

func testSaveResultUnknown(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	r := result("ghost", 2, base)
	wantIs(t, "SaveResult(unknown agent)", s.SaveResult(ctx, r, []byte("s")), store.ErrNotFound)
	if r.ID != 0 {
		t.Fatalf("failed SaveResult set ID %d", r.ID)
	}
	rs, err := s.Results(ctx, "ghost", 10)
	if err != nil || len(rs) != 0 {
		t.Fatalf("Results(ghost) = %d, %v; want none", len(rs), err)
	}
	// Enrolling the ID later finds no stray rows.
	mustCreate(t, s, "ghost")
	if a := mustGet(t, s, "ghost"); a.Last != nil || a.State != nil {
		t.Fatalf("agent enrolled after a failed SaveResult has %+v", a)
	}
}

func testSaveResultInvalid(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustCreate(t, s, "a")
	bad := result("a", 1, base)
	bad.Failures = []byte(`[{"claim":`)
	wantCallerError(t, "failures not JSON", s.SaveResult(ctx, bad, []byte("state")))
	wantCallerError(t, "no agent ID", s.SaveResult(ctx, result("", 1, base), nil))
	// Nothing of the refused result was written: not the row, not Last,
	// not the state.
	a := mustGet(t, s, "a")
	if a.Last != nil || a.State != nil {
		t.Fatalf("refused SaveResult changed the agent: %+v", a)
	}
	if rs, _ := s.Results(ctx, "a", 10); len(rs) != 0 {
		t.Fatalf("refused SaveResult stored %d results", len(rs))
	}
}

func testResults(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustCreate(t, s, "a", "b")
	var ids []int64
	for i := range 120 {
		// Times go backwards: order is by ID (save order), not time.
		r := result("a", i%5, base.Add(-time.Duration(i)*time.Second))
		mustSave(t, s, r, nil)
		ids = append(ids, r.ID)
		if i%10 == 0 {
			mustSave(t, s, result("b", 1, base), nil)
		}
	}
	for _, tc := range []struct {
		limit, want int
	}{
		{1, 1}, {5, 5}, {120, 120}, {500, 120}, {0, 100}, {-1, 100},
	} {
		rs, err := s.Results(ctx, "a", tc.limit)
		if err != nil {
			t.Fatalf("Results(limit %d): %v", tc.limit, err)
		}
		if len(rs) != tc.want {
			t.Fatalf("Results(limit %d): %d rows, want %d", tc.limit, len(rs), tc.want)
		}
		for i, r := range rs {
			if want := ids[len(ids)-1-i]; r.ID != want || r.AgentID != "a" {
				t.Fatalf("Results(limit %d)[%d] = %d of %q, want %d of a (newest first)", tc.limit, i, r.ID, r.AgentID, want)
			}
		}
	}
	if rs, err := s.Results(ctx, "nobody", 10); err != nil || len(rs) != 0 {
		t.Fatalf("Results(nobody) = %d, %v; want none", len(rs), err)
	}
}

func testListAgents(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	var all []string
	statuses := []store.Status{store.Activating, store.Pending, store.Approved, store.Revoked}
	count := map[store.Status]int{}
	for i := range 37 {
		id := fmt.Sprintf("host-%03d", (i*17)%37) // created out of order
		st := statuses[i%4]
		if err := s.CreateAgent(ctx, agent(id, st), store.EnrollLimits{}); err != nil {
			t.Fatal(err)
		}
		all = append(all, id)
		count[st]++
	}
	sort.Strings(all)

	// Paging with the cursor visits every agent once, in ID order.
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		as, err := s.ListAgents(ctx, store.ListOptions{After: after, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(as) > 10 {
			t.Fatalf("page of %d, limit 10", len(as))
		}
		if len(as) == 0 {
			if pages != 4 {
				t.Fatalf("%d pages of 10 for 37 agents", pages)
			}
			break
		}
		for _, a := range as {
			got = append(got, a.ID)
		}
		after = as[len(as)-1].ID
	}
	if fmt.Sprint(got) != fmt.Sprint(all) {
		t.Fatalf("paged IDs\n got %v\nwant %v", got, all)
	}

	for _, st := range statuses {
		as, err := s.ListAgents(ctx, store.ListOptions{Status: st})
		if err != nil {
			t.Fatal(err)
		}
		if len(as) != count[st] {
			t.Fatalf("status %s: %d agents, want %d", st, len(as), count[st])
		}
		for i, a := range as {
			if a.Status != st || (i > 0 && as[i-1].ID >= a.ID) {
				t.Fatalf("status %s: agent %d is %q (%s)", st, i, a.ID, a.Status)
			}
		}
	}
	// Status and cursor together.
	as, err := s.ListAgents(ctx, store.ListOptions{Status: store.Approved, After: "host-020", Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range as {
		if a.Status != store.Approved || a.ID <= "host-020" {
			t.Fatalf("status+cursor listed %q (%s)", a.ID, a.Status)
		}
	}
	if len(as) != 3 {
		t.Fatalf("status+cursor: %d agents, want 3", len(as))
	}
	// Agents listed carry their Last summary (of approved agents only).
	if a := mustGet(t, s, all[0]); a.Status != store.Approved {
		mustSetStatus(t, s, all[0], a.Status, store.Approved)
	}
	mustSave(t, s, result(all[0], 4, base), nil)
	as, err = s.ListAgents(ctx, store.ListOptions{Limit: 1})
	if err != nil || len(as) != 1 || as[0].Last == nil || as[0].Last.Level != 4 {
		t.Fatalf("ListAgents(limit 1) = %+v, %v; want %s with Last level 4", as, err, all[0])
	}
	if as, err := s.ListAgents(ctx, store.ListOptions{After: all[len(all)-1]}); err != nil || len(as) != 0 {
		t.Fatalf("after the last ID: %d agents, %v", len(as), err)
	}
}

func testListAgentsLimits(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	const n = 1010
	// Eight writers, so that PostgreSQL's per-commit latency overlaps.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				if err := s.CreateAgent(ctx, &store.Agent{ID: fmt.Sprintf("a%05d", i), Enclave: "software", Status: store.Approved}, store.EnrollLimits{}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, tc := range []struct{ limit, want int }{
		{0, 100}, {-5, 100}, {1, 1}, {999, 999}, {1000, 1000}, {1001, 1000}, {1 << 30, 1000},
	} {
		as, err := s.ListAgents(ctx, store.ListOptions{Limit: tc.limit})
		if err != nil {
			t.Fatal(err)
		}
		if len(as) != tc.want {
			t.Fatalf("limit %d: %d agents, want %d", tc.limit, len(as), tc.want)
		}
	}
}

func testPrune(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustCreate(t, s, "busy", "quiet", "fresh")
	var busy []*store.Result
	for i := range 5 {
		r := result("busy", i, base.Add(time.Duration(i)*time.Hour))
		mustSave(t, s, r, nil)
		busy = append(busy, r)
	}
	quiet := result("quiet", 1, base.Add(-24*time.Hour)) // old, but its latest
	mustSave(t, s, quiet, nil)
	quietOld := result("quiet", 1, base.Add(-48*time.Hour)) // saved last, so latest, older time
	mustSave(t, s, quietOld, nil)
	mustSave(t, s, result("fresh", 2, base.Add(10*time.Hour)), nil)

	now := base.Add(time.Hour)
	wantIs(t, "UseNonce expired", s.UseNonce(ctx, []byte("expired"), "busy", now.Add(-time.Second)), nil)
	wantIs(t, "UseNonce live", s.UseNonce(ctx, []byte("live"), "busy", now.Add(time.Minute)), nil)

	// Before hour 3: busy loses hours 0-2, quiet loses its first result
	// (not its latest, though older), fresh keeps its one.
	n, err := s.Prune(ctx, base.Add(3*time.Hour), now)
	if err != nil {
		t.Fatal(err)
	}
	if n != 3+1+1 {
		t.Fatalf("Prune removed %d rows, want 5 (3 + 1 results, 1 nonce)", n)
	}
	for _, tc := range []struct {
		agent string
		want  []int64
	}{
		{"busy", []int64{busy[4].ID, busy[3].ID}},
		{"quiet", []int64{quietOld.ID}},
		{"fresh", nil},
	} {
		rs, err := s.Results(ctx, tc.agent, 100)
		if err != nil {
			t.Fatal(err)
		}
		var ids []int64
		for _, r := range rs {
			ids = append(ids, r.ID)
		}
		if tc.want != nil && fmt.Sprint(ids) != fmt.Sprint(tc.want) {
			t.Fatalf("%s keeps %v, want %v", tc.agent, ids, tc.want)
		}
		if len(ids) == 0 {
			t.Fatalf("%s lost its latest result", tc.agent)
		}
	}
	// Pruning everything still keeps each agent's latest.
	n, err = s.Prune(ctx, base.Add(1000*time.Hour), now)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("second Prune removed %d rows, want 1", n)
	}
	for _, id := range []string{"busy", "quiet", "fresh"} {
		if rs, _ := s.Results(ctx, id, 100); len(rs) != 1 {
			t.Fatalf("%s has %d results after pruning all, want its latest", id, len(rs))
		}
	}
	// The expired nonce is gone, the live one is still used.
	wantIs(t, "expired nonce after prune", s.UseNonce(ctx, []byte("expired"), "busy", now.Add(time.Minute)), nil)
	wantIs(t, "live nonce after prune", s.UseNonce(ctx, []byte("live"), "busy", now.Add(time.Minute)), store.ErrNonceUsed)
	// Prune is idempotent.
	if n, err := s.Prune(ctx, base.Add(1000*time.Hour), now); err != nil || n != 0 {
		t.Fatalf("third Prune = %d, %v; want 0", n, err)
	}
}

func testSecret(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	calls := 0
	mk := func(v string) func() ([]byte, error) {
		return func() ([]byte, error) { calls++; return []byte(v), nil }
	}
	v, err := s.Secret(ctx, "nonce-key", mk("first"))
	if err != nil || string(v) != "first" {
		t.Fatalf("Secret = %q, %v; want first", v, err)
	}
	v[0] = 'X' // the caller's copy
	v, err = s.Secret(ctx, "nonce-key", mk("second"))
	if err != nil || string(v) != "first" {
		t.Fatalf("Secret again = %q, %v; want first", v, err)
	}
	if calls != 1 {
		t.Fatalf("create called %d times, want 1", calls)
	}
	v, err = s.Secret(ctx, "webhook-key", mk("other"))
	if err != nil || string(v) != "other" {
		t.Fatalf("Secret(webhook-key) = %q, %v; want other", v, err)
	}
	boom := errors.New("no entropy")
	_, err = s.Secret(ctx, "failing", func() ([]byte, error) { return nil, boom })
	wantIs(t, "Secret with a failing create", err, boom)
	v, err = s.Secret(ctx, "failing", mk("later"))
	if err != nil || string(v) != "later" {
		t.Fatalf("Secret after a failed create = %q, %v; want later", v, err)
	}
}

func raceSecret(t *testing.T, stores ...store.Store) {
	ctx := ctxT(t)
	const n = 8
	vals := make([][]byte, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			v, err := stores[i%len(stores)].Secret(ctx, "raced", func() ([]byte, error) {
				return fmt.Appendf(nil, "value-%d", i), nil
			})
			if err != nil {
				t.Errorf("Secret: %v", err)
			}
			vals[i] = v
		})
	}
	close(start)
	wg.Wait()
	for i, v := range vals {
		if len(v) == 0 || !bytes.Equal(v, vals[0]) {
			t.Fatalf("goroutine %d got %q, goroutine 0 %q: want one value", i, v, vals[0])
		}
	}
}

func testSecretRace(t *testing.T, s store.Store) { raceSecret(t, s) }

func testSigningKeys(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	now := base.Add(100 * 24 * time.Hour)
	key := func(kid string, created time.Time, notAfter time.Time) *store.SigningKey {
		return &store.SigningKey{
			KID: kid, CertDER: []byte("cert-" + kid), KeyDER: []byte("key-" + kid),
			CreatedAt: created, RetireAt: created.Add(30 * 24 * time.Hour), NotAfter: notAfter,
		}
	}
	keys := []*store.SigningKey{
		key("old-expired", base, now.Add(-time.Nanosecond)),
		key("k1", base.Add(24*time.Hour), now.Add(time.Hour)),
		key("k3", base.Add(72*time.Hour), now.Add(90*24*time.Hour)),
		key("k2", base.Add(48*time.Hour), now), // expires exactly now: still valid
	}
	if ks, err := s.SigningKeys(ctx, now); err != nil || len(ks) != 0 {
		t.Fatalf("SigningKeys before any = %d, %v", len(ks), err)
	}
	for _, k := range keys {
		if err := s.AddSigningKey(ctx, k); err != nil {
			t.Fatalf("AddSigningKey(%s): %v", k.KID, err)
		}
	}
	wantIs(t, "AddSigningKey(duplicate KID)", s.AddSigningKey(ctx, key("k1", base, now)), store.ErrExists)
	wantCallerError(t, "AddSigningKey(no key)", s.AddSigningKey(ctx, &store.SigningKey{KID: "empty"}))

	ks, err := s.SigningKeys(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, k := range ks {
		kids = append(kids, k.KID)
	}
	if fmt.Sprint(kids) != "[k3 k2 k1]" {
		t.Fatalf("SigningKeys = %v, want [k3 k2 k1] (newest first, expired left out)", kids)
	}
	want := keys[2]
	if got := ks[0]; !bytes.Equal(got.CertDER, want.CertDER) || !bytes.Equal(got.KeyDER, want.KeyDER) ||
		!got.CreatedAt.Equal(want.CreatedAt) || !got.RetireAt.Equal(want.RetireAt) || !got.NotAfter.Equal(want.NotAfter) {
		t.Fatalf("key\n got %+v\nwant %+v", got, want)
	}
	if ks, _ := s.SigningKeys(ctx, now.Add(2*time.Hour)); len(ks) != 1 || ks[0].KID != "k3" {
		t.Fatalf("two hours later: %d keys, want k3 only", len(ks))
	}
}

// saveConcurrently saves per results for each of agents, from many
// goroutines over stores, and checks none is lost and Last is the newest.
func saveConcurrently(t *testing.T, agents []string, per int, stores ...store.Store) {
	ctx := ctxT(t)
	mustCreate(t, stores[0], agents...)
	const workers = 16
	var wg sync.WaitGroup
	var mu sync.Mutex
	ids := map[int64]bool{}
	for w := range workers {
		wg.Go(func() {
			s := stores[w%len(stores)]
			for i := range per * len(agents) / workers {
				r := result(agents[(w+i)%len(agents)], (w+i)%5, base.Add(time.Duration(w*1000+i)))
				if err := s.SaveResult(ctx, r, fmt.Appendf(nil, "state %d/%d", w, i)); err != nil {
					t.Errorf("SaveResult: %v", err)
					return
				}
				mu.Lock()
				if ids[r.ID] {
					t.Errorf("ID %d assigned twice", r.ID)
				}
				ids[r.ID] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	total := 0
	for _, id := range agents {
		rs, err := stores[len(stores)-1].Results(ctx, id, 1000)
		if err != nil {
			t.Fatal(err)
		}
		total += len(rs)
		for _, r := range rs {
			if !ids[r.ID] {
				t.Fatalf("result %d was never acknowledged", r.ID)
			}
		}
		a := mustGet(t, stores[len(stores)-1], id)
		if a.Last == nil || a.Last.Level != rs[0].Level || !a.Last.Time.Equal(rs[0].Time) {
			t.Fatalf("%s: Last %+v, newest result level %d at %v", id, a.Last, rs[0].Level, rs[0].Time)
		}
	}
	if total != len(ids) {
		t.Fatalf("%d results stored, %d acknowledged", total, len(ids))
	}
}

func testConcurrentSaveResult(t *testing.T, s store.Store) {
	saveConcurrently(t, []string{"a", "b", "c", "d"}, 50, s)
}

func testPing(t *testing.T, s store.Store) {
	wantIs(t, "Ping", s.Ping(ctxT(t)), nil)
}

// testContextDone: a call whose context is already done fails as
// unavailable, whatever it was.
func testContextDone(t *testing.T, s store.Store) {
	mustCreate(t, s, "a")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.GetAgent(ctx, "a")
	wantIs(t, "GetAgent(cancelled)", err, store.ErrUnavailable)
	wantIs(t, "GetAgent(cancelled)", err, context.Canceled)
	wantIs(t, "SaveResult(cancelled)", s.SaveResult(ctx, result("a", 1, base), nil), store.ErrUnavailable)
	dctx, dcancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer dcancel()
	err = s.UseNonce(dctx, []byte("n"), "a", time.Now())
	wantIs(t, "UseNonce(past deadline)", err, store.ErrUnavailable)
	wantIs(t, "UseNonce(past deadline)", err, context.DeadlineExceeded)
	// Nothing was written.
	if a := mustGet(t, s, "a"); a.Last != nil {
		t.Fatalf("cancelled SaveResult wrote Last %+v", a.Last)
	}
	wantIs(t, "UseNonce after the cancelled one", s.UseNonce(ctxT(t), []byte("n"), "a", time.Now()), nil)
}

// testClosed: every method of a closed store fails as unavailable (and
// none panics).
func testClosed(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustCreate(t, s, "a")
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	_, err1 := s.GetAgent(ctx, "a")
	_, err2 := s.ListAgents(ctx, store.ListOptions{})
	_, err3 := s.Results(ctx, "a", 1)
	_, err4 := s.Prune(ctx, base, base)
	_, err5 := s.Secret(ctx, "x", func() ([]byte, error) { return []byte("v"), nil })
	_, err6 := s.SigningKeys(ctx, base)
	_, err7 := s.ExpireEnrollments(ctx, store.Expiry{Activating: base})
	for i, err := range []error{
		s.CreateAgent(ctx, agent("b", store.Pending), store.EnrollLimits{}),
		err1, err2,
		s.SetStatus(ctx, "a", store.StatusChange{From: store.Approved, To: store.Revoked}),
		s.UseNonce(ctx, []byte("n"), "a", base),
		s.SaveResult(ctx, result("a", 1, base), nil),
		err3, err4, err5,
		s.AddSigningKey(ctx, &store.SigningKey{KID: "k", CertDER: []byte{1}, KeyDER: []byte{1}, NotAfter: base}),
		err6, err7,
		s.Ping(ctx),
	} {
		wantIs(t, fmt.Sprintf("call %d on a closed store", i), err, store.ErrUnavailable)
	}
}

func testReplicaVisible(t *testing.T, a, b store.Store) {
	ctx := ctxT(t)
	mustCreate(t, a, "h")
	mustGet(t, b, "h")
	wantIs(t, "CreateAgent on the other replica", b.CreateAgent(ctx, agent("h", store.Pending), store.EnrollLimits{}), store.ErrExists)
	r := result("h", 3, base)
	mustSave(t, b, r, []byte("st"))
	got := mustGet(t, a, "h")
	if got.Last == nil || got.Last.Level != 3 || string(got.State) != "st" {
		t.Fatalf("replica a sees %+v after b's SaveResult", got)
	}
	if err := a.SetStatus(ctx, "h", store.StatusChange{From: store.Approved, To: store.Revoked, Reason: "op"}); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, b, "h"); got.Status != store.Revoked {
		t.Fatalf("replica b sees status %q after a revoked", got.Status)
	}
}

func testReplicaNonce(t *testing.T, a, b store.Store) {
	ctx := ctxT(t)
	exp := time.Now().Add(time.Minute)
	wantIs(t, "UseNonce on a", a.UseNonce(ctx, []byte("n1"), "h", exp), nil)
	wantIs(t, "same nonce on b", b.UseNonce(ctx, []byte("n1"), "h", exp), store.ErrNonceUsed)
	wantIs(t, "same nonce on a again", a.UseNonce(ctx, []byte("n1"), "h", exp), store.ErrNonceUsed)
	// Racing one nonce over both replicas: exactly one use is accepted.
	for round := range 10 {
		nonce := fmt.Appendf(nil, "race-%d", round)
		var ok, used atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range 8 {
			wg.Go(func() {
				<-start
				s := a
				if i%2 == 1 {
					s = b
				}
				switch err := s.UseNonce(ctx, nonce, "h", exp); {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, store.ErrNonceUsed):
					used.Add(1)
				default:
					t.Errorf("UseNonce: %v", err)
				}
			})
		}
		close(start)
		wg.Wait()
		if ok.Load() != 1 || used.Load() != 7 {
			t.Fatalf("round %d: %d accepted, %d refused; want 1 and 7", round, ok.Load(), used.Load())
		}
	}
}

func testReplicaSecret(t *testing.T, a, b store.Store) { raceSecret(t, a, b) }

func testReplicaSaveResult(t *testing.T, a, b store.Store) {
	saveConcurrently(t, []string{"a", "b", "c"}, 40, a, b)
}
