package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/vigil-attest/vigil/api"
	"github.com/vigil-attest/vigil/store"
)

// problemTitles are the human titles of the problem codes.
var problemTitles = map[string]string{
	api.CodeBadRequest:         "Bad request",
	api.CodeTooLarge:           "Request body too large",
	api.CodeUnsupportedMedia:   "Unsupported media type",
	api.CodeInvalidAgentID:     "Invalid agent ID",
	api.CodeInvalidEnrollment:  "Invalid enrollment",
	api.CodeEKUntrusted:        "EK certificate not trusted",
	api.CodeSoftwareNotAllowed: "Software agents not allowed",
	api.CodeEnrollConflict:     "Enrollment conflict",
	api.CodeActivationFailed:   "Credential activation failed",
	api.CodeNotActivating:      "Agent not activating",
	api.CodeUnknownAgent:       "Unknown agent",
	api.CodeAgentRevoked:       "Agent revoked",
	api.CodeAgentPending:       "Agent not approved",
	api.CodeNonceInvalid:       "Invalid nonce",
	api.CodeNonceExpired:       "Nonce expired",
	api.CodeNonceWrongAgent:    "Nonce issued to another agent",
	api.CodeNonceReplayed:      "Nonce already used",
	api.CodeRateLimited:        "Too many requests",
	api.CodeUnauthorized:       "Unauthorized",
	api.CodeNotFound:           "Not found",
	api.CodeMethodNotAllowed:   "Method not allowed",
	api.CodeUnavailable:        "Service unavailable",
	api.CodeInternal:           "Internal error",
	api.CodeTimeout:            "Request timed out",
}

// problemStatus is the HTTP status of each problem code.
var problemStatus = map[string]int{
	api.CodeBadRequest:         http.StatusBadRequest,
	api.CodeTooLarge:           http.StatusRequestEntityTooLarge,
	api.CodeUnsupportedMedia:   http.StatusUnsupportedMediaType,
	api.CodeInvalidAgentID:     http.StatusBadRequest,
	api.CodeInvalidEnrollment:  http.StatusBadRequest,
	api.CodeEKUntrusted:        http.StatusForbidden,
	api.CodeSoftwareNotAllowed: http.StatusForbidden,
	api.CodeEnrollConflict:     http.StatusConflict,
	api.CodeActivationFailed:   http.StatusForbidden,
	api.CodeNotActivating:      http.StatusConflict,
	api.CodeUnknownAgent:       http.StatusNotFound,
	api.CodeAgentRevoked:       http.StatusForbidden,
	api.CodeAgentPending:       http.StatusForbidden,
	api.CodeNonceInvalid:       http.StatusBadRequest,
	api.CodeNonceExpired:       http.StatusBadRequest,
	api.CodeNonceWrongAgent:    http.StatusBadRequest,
	api.CodeNonceReplayed:      http.StatusConflict,
	api.CodeRateLimited:        http.StatusTooManyRequests,
	api.CodeUnauthorized:       http.StatusUnauthorized,
	api.CodeNotFound:           http.StatusNotFound,
	api.CodeMethodNotAllowed:   http.StatusMethodNotAllowed,
	api.CodeUnavailable:        http.StatusServiceUnavailable,
	api.CodeInternal:           http.StatusInternalServerError,
	api.CodeTimeout:            http.StatusServiceUnavailable,
}

// ProblemMediaType is the media type of RFC 9457 problem details.
const ProblemMediaType = "application/problem+json"

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

// writeProblem writes an RFC 9457 problem response.
func writeProblem(w http.ResponseWriter, r *http.Request, code, detail string) {
	status, ok := problemStatus[code]
	if !ok {
		code, status = api.CodeInternal, http.StatusInternalServerError
	}
	p := api.Problem{
		Type:   api.ProblemType + code,
		Title:  problemTitles[code],
		Status: status,
		Detail: detail,
		Code:   code,
	}
	if r != nil {
		p.Instance = r.URL.Path
	}
	b, err := json.Marshal(p)
	if err != nil { // cannot happen: every field is a string or an int
		b = []byte(`{"type":"` + api.ProblemType + api.CodeInternal + `","title":"Internal error","status":500,"code":"internal"}`)
	}
	h := w.Header()
	h.Set("Content-Type", ProblemMediaType)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Length")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
