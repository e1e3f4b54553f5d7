package storetest

import (
	"crypto/sha256"
	"slices"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/store"
)

// testRelyingParties: a relying party is found by its token's hash and by
// nothing else; names and hashes are unique; bad input is refused; a
// deleted relying party's token stops working.
func testRelyingParties(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	h := func(tok string) []byte { b := sha256.Sum256([]byte(tok)); return b[:] }
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	bank := &store.RelyingParty{Name: "bank", TokenHash: h("bank-token"), Scopes: []string{store.ScopeVerify, store.ScopeFeed, store.ScopeFeed}, CreatedAt: at}
	if err := s.CreateRelyingParty(ctx, bank); err != nil {
		t.Fatalf("create: %v", err)
	}
	if want := []string{store.ScopeFeed, store.ScopeVerify}; !slices.Equal(bank.Scopes, want) {
		t.Errorf("scopes after create %v, want sorted and unique %v", bank.Scopes, want)
	}
	feed := &store.RelyingParty{Name: "siem", TokenHash: h("siem-token"), Scopes: []string{store.ScopeFeed}}
	if err := s.CreateRelyingParty(ctx, feed); err != nil {
		t.Fatalf("create siem: %v", err)
	}
	got, err := s.RelyingPartyByToken(ctx, h("bank-token"))
	if err != nil {
		t.Fatalf("by token: %v", err)
	}
	if got.Name != "bank" || !got.CreatedAt.Equal(at) || !got.Has(store.ScopeVerify) || !got.Has(store.ScopeFeed) || got.Has("admin") {
		t.Errorf("by token: %+v", got)
	}
	if got, err := s.RelyingPartyByToken(ctx, h("siem-token")); err != nil || got.Name != "siem" || got.Has(store.ScopeVerify) {
		t.Errorf("siem by token: %+v, %v", got, err)
	}
	_, err = s.RelyingPartyByToken(ctx, h("guess"))
	wantIs(t, "unknown token", err, store.ErrNotFound)

	wantIs(t, "same name", s.CreateRelyingParty(ctx, &store.RelyingParty{Name: "bank", TokenHash: h("other"), Scopes: []string{store.ScopeFeed}}), store.ErrExists)
	wantIs(t, "same token", s.CreateRelyingParty(ctx, &store.RelyingParty{Name: "other", TokenHash: h("bank-token"), Scopes: []string{store.ScopeFeed}}), store.ErrExists)
	for name, rp := range map[string]*store.RelyingParty{
		"empty name":    {TokenHash: h("x"), Scopes: []string{store.ScopeFeed}},
		"short hash":    {Name: "x", TokenHash: []byte("short"), Scopes: []string{store.ScopeFeed}},
		"no scopes":     {Name: "x", TokenHash: h("x")},
		"unknown scope": {Name: "x", TokenHash: h("x"), Scopes: []string{"admin"}},
	} {
		wantCallerError(t, name, s.CreateRelyingParty(ctx, rp))
	}

	all, err := s.RelyingParties(ctx)
	if err != nil || len(all) != 2 || all[0].Name != "bank" || all[1].Name != "siem" {
		t.Fatalf("list: %v, %v", all, err)
	}
	if err := s.DeleteRelyingParty(ctx, "bank"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	_, err = s.RelyingPartyByToken(ctx, h("bank-token"))
	wantIs(t, "deleted token", err, store.ErrNotFound)
	wantIs(t, "delete again", s.DeleteRelyingParty(ctx, "bank"), store.ErrNotFound)
}
