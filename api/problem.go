package api

import (
	"encoding/json"
	"net/http"
)

// ProblemMediaType is the media type of RFC 9457 problem details.
const ProblemMediaType = "application/problem+json"

// ProblemTitles are the human titles of the problem codes.
var ProblemTitles = map[string]string{
	CodeBadRequest:          "Bad request",
	CodeTooLarge:            "Request body too large",
	CodeUnsupportedMedia:    "Unsupported media type",
	CodeInvalidAgentID:      "Invalid agent ID",
	CodeInvalidEnrollment:   "Invalid enrollment",
	CodeEKUntrusted:         "EK certificate not trusted",
	CodeSoftwareNotAllowed:  "Software agents not allowed",
	CodeEnrollConflict:      "Enrollment conflict",
	CodeEKInUse:             "EK enrolled under another agent ID",
	CodeEnrollLimited:       "Too many unfinished enrollments",
	CodeActivationFailed:    "Credential activation failed",
	CodeNotActivating:       "Agent not activating",
	CodeUnknownAgent:        "Unknown agent",
	CodeAgentRevoked:        "Agent revoked",
	CodeAgentPending:        "Agent not approved",
	CodeNonceInvalid:        "Invalid nonce",
	CodeNonceExpired:        "Nonce expired",
	CodeNonceWrongAgent:     "Nonce issued to another agent",
	CodeNonceReplayed:       "Nonce already used",
	CodeRateLimited:         "Too many requests",
	CodeUnauthorized:        "Unauthorized",
	CodeNotFound:            "Not found",
	CodeMethodNotAllowed:    "Method not allowed",
	CodeUnavailable:         "Service unavailable",
	CodeInternal:            "Internal error",
	CodeTimeout:             "Request timed out",
	CodeScopeMissing:        "Scope missing",
	CodeNonceMismatch:       "Evidence answers another challenge",
	CodeRelyingPartyExists:  "Relying party exists",
	CodeUnknownRelyingParty: "Unknown relying party",
}

// ProblemStatus is the HTTP status of each problem code.
var ProblemStatus = map[string]int{
	CodeBadRequest:          http.StatusBadRequest,
	CodeTooLarge:            http.StatusRequestEntityTooLarge,
	CodeUnsupportedMedia:    http.StatusUnsupportedMediaType,
	CodeInvalidAgentID:      http.StatusBadRequest,
	CodeInvalidEnrollment:   http.StatusBadRequest,
	CodeEKUntrusted:         http.StatusForbidden,
	CodeSoftwareNotAllowed:  http.StatusForbidden,
	CodeEnrollConflict:      http.StatusConflict,
	CodeEKInUse:             http.StatusConflict,
	CodeEnrollLimited:       http.StatusTooManyRequests,
	CodeActivationFailed:    http.StatusForbidden,
	CodeNotActivating:       http.StatusConflict,
	CodeUnknownAgent:        http.StatusNotFound,
	CodeAgentRevoked:        http.StatusForbidden,
	CodeAgentPending:        http.StatusForbidden,
	CodeNonceInvalid:        http.StatusBadRequest,
	CodeNonceExpired:        http.StatusBadRequest,
	CodeNonceWrongAgent:     http.StatusBadRequest,
	CodeNonceReplayed:       http.StatusConflict,
	CodeRateLimited:         http.StatusTooManyRequests,
	CodeUnauthorized:        http.StatusUnauthorized,
	CodeNotFound:            http.StatusNotFound,
	CodeMethodNotAllowed:    http.StatusMethodNotAllowed,
	CodeUnavailable:         http.StatusServiceUnavailable,
	CodeInternal:            http.StatusInternalServerError,
	CodeTimeout:             http.StatusServiceUnavailable,
	CodeScopeMissing:        http.StatusForbidden,
	CodeNonceMismatch:       http.StatusBadRequest,
	CodeRelyingPartyExists:  http.StatusConflict,
	CodeUnknownRelyingParty: http.StatusNotFound,
}

// WriteProblem writes the RFC 9457 problem of code (an unknown code is
// CodeInternal) with its status and title; instance is r's path when r
// is not nil.
func WriteProblem(w http.ResponseWriter, r *http.Request, code, detail string) {
	status, ok := ProblemStatus[code]
	if !ok {
		code, status = CodeInternal, http.StatusInternalServerError
	}
	p := Problem{Type: ProblemType + code, Title: ProblemTitles[code], Status: status, Detail: detail, Code: code}
	if r != nil {
		p.Instance = r.URL.Path
	}
	b, err := json.Marshal(p)
	if err != nil { // cannot happen: every field is a string or an int
		b = []byte(`{"type":"` + ProblemType + CodeInternal + `","title":"Internal error","status":500,"code":"internal"}`)
	}
	h := w.Header()
	h.Set("Content-Type", ProblemMediaType)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Length")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
