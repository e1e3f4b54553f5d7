package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/vigil-attest/vigil/store"
)

// CreateRelyingParty records a relying party's credential (migration
// 0004): ErrExists when its name or token hash is taken.
func (s *Store) CreateRelyingParty(ctx context.Context, rp *store.RelyingParty) error {
	if rp == nil || rp.Name == "" {
		return errors.New("sqlstore: create relying party: empty name")
	}
	if len(rp.TokenHash) != 32 {
		return fmt.Errorf("sqlstore: create relying party %q: token hash of %d bytes, want 32", rp.Name, len(rp.TokenHash))
	}
	if len(rp.Scopes) == 0 {
		return fmt.Errorf("sqlstore: create relying party %q: no scopes", rp.Name)
	}
	for _, sc := range rp.Scopes {
		if !store.ValidScope(sc) {
			return fmt.Errorf("sqlstore: create relying party %q: unknown scope %q", rp.Name, sc)
		}
	}
	scopes := slices.Clone(rp.Scopes)
	slices.Sort(scopes)
	scopes = slices.Compact(scopes)
	if rp.CreatedAt.IsZero() {
		rp.CreatedAt = time.Now().UTC()
	}
	op := fmt.Sprintf("create relying party %q", rp.Name)
	_, err := s.wdb.ExecContext(ctx, s.q(`INSERT INTO relying_parties (name, token_hash, scopes, created_at) VALUES (?, ?, ?, ?)`),
		rp.Name, rp.TokenHash, strings.Join(scopes, ","), ns(rp.CreatedAt))
	switch {
	case isUnique(err):
		return fmt.Errorf("sqlstore: %s: %w", op, store.ErrExists)
	case err != nil:
		return s.fail(op, err)
	}
	rp.Scopes = scopes
	return nil
}

func scanRelyingParty(r scanner) (*store.RelyingParty, error) {
	var (
		rp      store.RelyingParty
		scopes  string
		created int64
	)
	if err := r.Scan(&rp.Name, &rp.TokenHash, &scopes, &created); err != nil {
		return nil, err
	}
	rp.Scopes = strings.Split(scopes, ",")
	rp.CreatedAt = fromNS(created)
	return &rp, nil
}

// RelyingPartyByToken returns the relying party whose token hashes to
// hash; ErrNotFound when none.
func (s *Store) RelyingPartyByToken(ctx context.Context, hash []byte) (*store.RelyingParty, error) {
	rp, err := scanRelyingParty(s.rdb.QueryRowContext(ctx,
		s.q(`SELECT name, token_hash, scopes, created_at FROM relying_parties WHERE token_hash = ?`), hash))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlstore: relying party by token: %w", store.ErrNotFound)
	}
	if err != nil {
		return nil, s.fail("relying party by token", err)
	}
	return rp, nil
}

// RelyingParties lists every relying party by name.
func (s *Store) RelyingParties(ctx context.Context) ([]*store.RelyingParty, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT name, token_hash, scopes, created_at FROM relying_parties ORDER BY name`)
	if err != nil {
		return nil, s.fail("list relying parties", err)
	}
	defer rows.Close()
	var out []*store.RelyingParty
	for rows.Next() {
		rp, err := scanRelyingParty(rows)
		if err != nil {
			return nil, s.fail("list relying parties", err)
		}
		out = append(out, rp)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail("list relying parties", err)
	}
	return out, nil
}

// DeleteRelyingParty removes a relying party; ErrNotFound when unknown.
func (s *Store) DeleteRelyingParty(ctx context.Context, name string) error {
	op := fmt.Sprintf("delete relying party %q", name)
	res, err := s.wdb.ExecContext(ctx, s.q(`DELETE FROM relying_parties WHERE name = ?`), name)
	if err != nil {
		return s.fail(op, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return s.fail(op, err)
	} else if n == 0 {
		return fmt.Errorf("sqlstore: %s: %w", op, store.ErrNotFound)
	}
	return nil
}
