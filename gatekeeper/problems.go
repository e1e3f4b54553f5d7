package gatekeeper

import (
	"encoding/json"
	"net/http"

	"github.com/vigil-attest/vigil/ear"
)

// Code is a stable, machine-readable reason a request was refused: the
// "code" of the RFC 9457 problem the middleware and the gate answer
// with, and the Vigil-Refusal header of the auth_request endpoint. The
// codes are part of the public contract: never rename one. The session
// report's and the proof's own codes (package ear) pass through as they
// are.
type Code string

// The gatekeeper's own codes, beyond ear's.
const (
	// TokenMissing: no Authorization: Vigil <report> header.
	TokenMissing Code = "token-missing"
	// HeaderMalformed: the Authorization or Vigil-PoP header is repeated,
	// oversized or not of the form the scheme needs.
	HeaderMalformed Code = "header-malformed"
	// AgentRevoked: the feed says the host was revoked after its report
	// was issued.
	AgentRevoked Code = "agent-revoked"
	// LevelDropped: the feed says the host's level fell below the
	// route's min-level after its report was issued.
	LevelDropped Code = "level-dropped"
	// FeedUnavailable: the feed is configured but has not been connected
	// for longer than its grace: revocations might be missed.
	FeedUnavailable Code = "feed-unavailable"
	// KeysUnavailable: the service's key set (JWKS) cannot be fetched.
	KeysUnavailable Code = "keys-unavailable"
	// NoRoute: no configured route takes the request's path and method
	// (the gate admits nothing it was not told to).
	NoRoute Code = "no-route"
	// AuthRequestMalformed: the auth_request endpoint was called without
	// X-Original-Method and X-Original-URI (nginx's configuration).
	AuthRequestMalformed Code = "auth-request-malformed"
	// UpstreamUnavailable: the upstream did not answer (the gate only).
	UpstreamUnavailable Code = "upstream-unavailable"
	// Internal: anything else.
	Internal Code = "internal"
)

// problem is one row of the table: the HTTP status and the title.
type problem struct {
	status int
	title  string
}

// problems is the one table of every code's status and title: 401 when
// the caller must present another report or proof, 403 when a valid one
// does not meet the route, 5xx when the gate cannot decide.
var problems = map[Code]problem{
	TokenMissing:         {http.StatusUnauthorized, "Session report missing"},
	HeaderMalformed:      {http.StatusBadRequest, "Malformed Vigil header"},
	AgentRevoked:         {http.StatusForbidden, "Host revoked"},
	LevelDropped:         {http.StatusForbidden, "Security level dropped"},
	FeedUnavailable:      {http.StatusServiceUnavailable, "Revocation feed unavailable"},
	KeysUnavailable:      {http.StatusServiceUnavailable, "Service keys unavailable"},
	NoRoute:              {http.StatusForbidden, "No route"},
	AuthRequestMalformed: {http.StatusBadRequest, "Malformed auth request"},
	UpstreamUnavailable:  {http.StatusBadGateway, "Upstream unavailable"},
	Internal:             {http.StatusInternalServerError, "Internal error"},

	Code(ear.Malformed):              {http.StatusUnauthorized, "Session report malformed"},
	Code(ear.BadAlg):                 {http.StatusUnauthorized, "Session report algorithm refused"},
	Code(ear.UnknownKey):             {http.StatusUnauthorized, "Session report signed by an unknown key"},
	Code(ear.BadSignature):           {http.StatusUnauthorized, "Session report signature invalid"},
	Code(ear.HighS):                  {http.StatusUnauthorized, "Session report signature not canonical"},
	Code(ear.UntrustedChain):         {http.StatusUnauthorized, "Session report not from the service CA"},
	Code(ear.Expired):                {http.StatusUnauthorized, "Session report expired"},
	Code(ear.NotYetValid):            {http.StatusUnauthorized, "Session report not yet valid"},
	Code(ear.MissingClaim):           {http.StatusUnauthorized, "Session report lacks a claim"},
	Code(ear.WrongSubject):           {http.StatusUnauthorized, "Session report for another agent"},
	Code(ear.WrongNonce):             {http.StatusUnauthorized, "Session report for another nonce"},
	Code(ear.WrongKey):               {http.StatusUnauthorized, "Session report binds another key"},
	Code(ear.LevelTooLow):            {http.StatusForbidden, "Security level too low"},
	Code(ear.TrustVectorClaim):       {http.StatusForbidden, "Trust vector insufficient"},
	Code(ear.TooOld):                 {http.StatusUnauthorized, "Session report too old"},
	Code(ear.ProofMissing):           {http.StatusUnauthorized, "Proof of possession missing"},
	Code(ear.ProofMalformed):         {http.StatusUnauthorized, "Proof of possession malformed"},
	Code(ear.ProofWrongType):         {http.StatusUnauthorized, "Proof of possession of another type"},
	Code(ear.ProofAlg):               {http.StatusUnauthorized, "Proof of possession algorithm refused"},
	Code(ear.ProofBadSignature):      {http.StatusUnauthorized, "Proof of possession signature invalid"},
	Code(ear.ProofKeyMismatch):       {http.StatusUnauthorized, "Proof signed by another key than the report's"},
	Code(ear.ProofATHMismatch):       {http.StatusUnauthorized, "Proof for another session report"},
	Code(ear.ProofAudience):          {http.StatusUnauthorized, "Proof for another audience"},
	Code(ear.ReportAudience):         {http.StatusUnauthorized, "Session report for another audience"},
	Code(ear.ProofNonce):             {http.StatusUnauthorized, "Proof for another nonce"},
	Code(ear.ProofMethod):            {http.StatusUnauthorized, "Proof for another method"},
	Code(ear.ProofURL):               {http.StatusUnauthorized, "Proof for another URL"},
	Code(ear.ProofStale):             {http.StatusUnauthorized, "Proof too old"},
	Code(ear.ProofFuture):            {http.StatusUnauthorized, "Proof from the future"},
	Code(ear.ProofReplayed):          {http.StatusUnauthorized, "Proof replayed"},
	Code(ear.ProofReplayUnavailable): {http.StatusServiceUnavailable, "Replay cache unavailable"},
}

// Codes returns every code the gatekeeper answers with.
func Codes() []Code {
	out := make([]Code, 0, len(problems))
	for c := range problems {
		out = append(out, c)
	}
	return out
}

// Status is the HTTP status of code (500 for a code not in the table).
func (c Code) Status() int {
	if p, ok := problems[c]; ok {
		return p.status
	}
	return http.StatusInternalServerError
}

// Title is the human title of code.
func (c Code) Title() string { return problems[c].title }

// ProblemType is the type URI prefix of the gatekeeper's problems; the
// code is appended (the service's problems use the same base).
const ProblemType = "https://vigil-attest.dev/problems/"

// ProblemMediaType is the media type of RFC 9457 problem details.
const ProblemMediaType = "application/problem+json"

// Problem is an RFC 9457 problem detail, the shape of the service's.
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`
	Code     Code   `json:"code"`
}

// Refusal is a refused request: its code and what exactly.
type Refusal struct {
	Code   Code
	Detail string
}

func (r *Refusal) Error() string { return string(r.Code) + ": " + r.Detail }

func refuse(c Code, detail string) *Refusal { return &Refusal{Code: c, Detail: detail} }

// WriteProblem answers with the problem of code (a code not in the table
// is Internal). A 401 carries WWW-Authenticate: Vigil.
func WriteProblem(w http.ResponseWriter, r *http.Request, code Code, detail string) {
	writeProblem(w, r, code, detail, 0)
}

// writeProblem is WriteProblem with another HTTP status than the code's
// when status is not 0 (the auth_request endpoint's 403s).
func writeProblem(w http.ResponseWriter, r *http.Request, code Code, detail string, status int) {
	if _, ok := problems[code]; !ok {
		code = Internal
	}
	if status == 0 {
		status = code.Status()
	}
	p := Problem{Type: ProblemType + string(code), Title: code.Title(), Status: status, Detail: detail, Code: code}
	if r != nil {
		p.Instance = r.URL.Path
	}
	b, _ := json.Marshal(p) // only strings and an int
	h := w.Header()
	h.Set("Content-Type", ProblemMediaType)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Length")
	if p.Status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Vigil realm="vigil", error="`+string(code)+`"`)
	}
	w.WriteHeader(p.Status)
	w.Write(append(b, '\n'))
}
