package server_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/vigil-attest/vigil/appraise"
	"github.com/vigil-attest/vigil/store"
)

// faultStore is a real store with fault injection: while down, every
// method fails as a failing database does (store.ErrUnavailable); while
// saveDown, only SaveResult does; while slow, GetAgent waits for the
// request's deadline. beforeSave and beforeStatus, when set, run before
// the real SaveResult and SetStatus: a race landing at that point.
type faultStore struct {
	store.Store
	down, saveDown, slow atomic.Bool
	beforeSave           atomic.Pointer[func(r *store.Result)]
	beforeStatus         atomic.Pointer[func(id string, c store.StatusChange)]
}

func (f *faultStore) fault(op string) error {
	if f.down.Load() {
		return fmt.Errorf("%s: injected: connection refused: %w", op, store.ErrUnavailable)
	}
	return nil
}

func (f *faultStore) CreateAgent(ctx context.Context, a *store.Agent, lim store.EnrollLimits) error {
	if err := f.fault("create agent"); err != nil {
		return err
	}
	return f.Store.CreateAgent(ctx, a, lim)
}

func (f *faultStore) GetAgent(ctx context.Context, id string) (*store.Agent, error) {
	if err := f.fault("get agent"); err != nil {
		return nil, err
	}
	if f.slow.Load() {
		<-ctx.Done()
		return nil, fmt.Errorf("get agent: %w", errors.Join(store.ErrUnavailable, ctx.Err()))
	}
	return f.Store.GetAgent(ctx, id)
}

func (f *faultStore) ListAgents(ctx context.Context, o store.ListOptions) ([]*store.Agent, error) {
	if err := f.fault("list agents"); err != nil {
		return nil, err
	}
	return f.Store.ListAgents(ctx, o)
}

func (f *faultStore) SetStatus(ctx context.Context, id string, c store.StatusChange) error {
	if err := f.fault("set status"); err != nil {
		return err
	}
	if h := f.beforeStatus.Load(); h != nil {
		(*h)(id, c)
	}
	return f.Store.SetStatus(ctx, id, c)
}

func (f *faultStore) UseNonce(ctx context.Context, hash []byte, agentID string, expires time.Time) error {
	if err := f.fault("use nonce"); err != nil {
		return err
	}
	return f.Store.UseNonce(ctx, hash, agentID, expires)
}

func (f *faultStore) SaveResult(ctx context.Context, r *store.Result, state []byte) error {
	if err := f.fault("save result"); err != nil {
		return err
	}
	if f.saveDown.Load() {
		return fmt.Errorf("save result: injected: disk full: %w", store.ErrUnavailable)
	}
	if h := f.beforeSave.Load(); h != nil {
		(*h)(r)
	}
	return f.Store.SaveResult(ctx, r, state)
}

func (f *faultStore) Results(ctx context.Context, agentID string, limit int) ([]*store.Result, error) {
	if err := f.fault("results"); err != nil {
		return nil, err
	}
	return f.Store.Results(ctx, agentID, limit)
}

func (f *faultStore) Ping(ctx context.Context) error {
	if err := f.fault("ping"); err != nil {
		return err
	}
	return f.Store.Ping(ctx)
}

// faultAppraiser is the real appraiser with fault injection: an error or
// a panic instead of an outcome.
type faultAppraiser struct {
	next interface {
		Appraise(context.Context, *appraise.Request) (*appraise.Outcome, error)
	}
	fail, panics atomic.Bool
}

func (f *faultAppraiser) Appraise(ctx context.Context, r *appraise.Request) (*appraise.Outcome, error) {
	if f.panics.Load() {
		panic("injected appraiser panic")
	}
	if f.fail.Load() {
		return nil, errors.New("injected: the policy did not evaluate")
	}
	return f.next.Appraise(ctx, r)
}
