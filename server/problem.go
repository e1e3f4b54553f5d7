package server

import (
	"context"
	"errors"
	"net/http"

	"github.com/vigil-attest/vigil/api"
	"github.com/vigil-attest/vigil/store"
)

// ProblemMediaType is the media type of RFC 9457 problem details.
const ProblemMediaType = api.ProblemMediaType

// problemError is an error that becomes a problem response.
type problemError struct {
	code   string
	detail string
	// err is the cause, logged and never sent.
	err error
}

func (e *problemError) Error() string {
	if e.err != nil {
		return e.code + ": " + e.detail + ": " + e.err.Error()
	}
	return e.code + ": " + e.detail
}

func (e *problemError) Unwrap() error { return e.err }

// fail makes a problem error with a detail for the client.
func fail(code, detail string) *problemError { return &problemError{code: code, detail: detail} }

// failWith makes a problem error whose cause is logged, not sent.
func failWith(code, detail string, err error) *problemError {
	return &problemError{code: code, detail: detail, err: err}
}

// storeFailure maps a store error (other than the ones a handler expects)
// to its problem: a failing database or a request past its deadline is
// 503, anything else is internal.
func storeFailure(op string, err error) *problemError {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return failWith(api.CodeTimeout, "the request took too long", err)
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, context.Canceled):
		return failWith(api.CodeUnavailable, "the database is unavailable; retry later", err)
	default:
		return failWith(api.CodeInternal, "internal error", err)
	}
}

// asProblem turns any error into a problem error.
func asProblem(err error) *problemError {
	var p *problemError
	if errors.As(err, &p) {
		return p
	}
	return storeFailure("", err)
}

// writeProblem writes an RFC 9457 problem response (api.WriteProblem).
func writeProblem(w http.ResponseWriter, r *http.Request, code, detail string) {
	api.WriteProblem(w, r, code, detail)
}
