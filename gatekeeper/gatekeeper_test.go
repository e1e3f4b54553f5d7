package gatekeeper

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/vigil-attest/vigil/ear"
)

// TestProblemTable: every code of package ear has a row (a report or
// proof refusal passes through with its own code), each row has a title
// and a 4xx/5xx status, and WriteProblem writes the RFC 9457 shape.
func TestProblemTable(t *testing.T) {
	for _, c := range ear.All() {
		if _, ok := problems[Code(c)]; !ok {
			t.Errorf("ear code %s has no row in the problem table", c)
		}
	}
	for c, p := range problems {
		if p.title == "" || p.status < 400 || p.status > 599 {
			t.Errorf("%s: %+v", c, p)
		}
	}
	w := httptest.NewRecorder()
	WriteProblem(w, httptest.NewRequest("GET", "/x", nil), TokenMissing, "no report")
	if w.Code != 401 || w.Header().Get("Content-Type") != ProblemMediaType || !strings.Contains(w.Header().Get("WWW-Authenticate"), "token-missing") ||
		!strings.Contains(w.Body.String(), `"code":"token-missing"`) || !strings.Contains(w.Body.String(), `"type":"https://vigil-attest.dev/problems/token-missing"`) {
		t.Errorf("%d %v %s", w.Code, w.Header(), w.Body)
	}
	w = httptest.NewRecorder()
	WriteProblem(w, nil, Code("made-up"), "")
	if w.Code != 500 || !strings.Contains(w.Body.String(), `"code":"internal"`) {
		t.Errorf("an unknown code: %d %s", w.Code, w.Body)
	}
}

// TestCredentials: the report comes from exactly one Authorization of
// the Vigil scheme (others are the upstream's), the proof from at most
// one Vigil-PoP; everything else is refused with its code.
func TestCredentials(t *testing.T) {
	big := strings.Repeat("a", maxHeader+1)
	for _, tc := range []struct {
		name string
		h    http.Header
		code Code
	}{
		{"none", http.Header{}, TokenMissing},
		{"basic only", http.Header{"Authorization": {"Basic Zm9vOmJhcg=="}}, TokenMissing},
		{"bearer only", http.Header{"Authorization": {"Bearer x"}}, TokenMissing},
		{"two vigil", http.Header{"Authorization": {"Vigil a", "vigil b"}}, HeaderMalformed},
		{"empty vigil", http.Header{"Authorization": {"Vigil "}}, HeaderMalformed},
		{"huge report", http.Header{"Authorization": {"Vigil " + big}}, HeaderMalformed},
		{"two proofs", http.Header{"Authorization": {"Vigil a"}, "Vigil-Pop": {"p", "q"}}, HeaderMalformed},
		{"empty proof", http.Header{"Authorization": {"Vigil a"}, "Vigil-Pop": {" "}}, HeaderMalformed},
		{"huge proof", http.Header{"Authorization": {"Vigil a"}, "Vigil-Pop": {big}}, HeaderMalformed},
		{"fine", http.Header{"Authorization": {"Basic x", "VIGIL a"}, "Vigil-Pop": {"p"}}, ""},
	} {
		rep, pr, ref := credentials(tc.h)
		switch {
		case tc.code == "" && (ref != nil || rep != "a" || pr != "p"):
			t.Errorf("%s: %q %q %v", tc.name, rep, pr, ref)
		case tc.code != "" && (ref == nil || ref.Code != tc.code):
			t.Errorf("%s: %v, want %s", tc.name, ref, tc.code)
		}
	}
}

func gateFor(t testing.TB, routes ...Route) *Gate {
	t.Helper()
	g, err := NewGate(Config{AuthListen: "127.0.0.1:0", Audience: "a", JWKSURL: "http://127.0.0.1:1/jwks", Routes: routes}, GateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// TestRoutes: the longest prefix at a segment boundary wins, methods
// restrict, and what no route takes has none (NoRoute, fail closed).
func TestRoutes(t *testing.T) {
	g := gateFor(t,
		Route{Path: "/api", Policy: Policy{MinLevel: 1}},
		Route{Path: "/api/admin", Methods: []string{"POST"}, Policy: Policy{MinLevel: 3}},
		Route{Path: "/static/", Policy: Policy{}},
	)
	for _, tc := range []struct {
		method, path string
		want         int // the MinLevel, -1 for none
	}{
		{"GET", "/api", 1}, {"GET", "/api/x", 1}, {"GET", "/apix", -1}, {"POST", "/api/admin/y", 3},
		{"GET", "/api/admin/y", 1}, {"GET", "/static/a.css", 0}, {"GET", "/static", 0}, {"GET", "/", -1}, {"GET", "/other", -1},
	} {
		r, ok := g.route(tc.method, tc.path)
		got := -1
		if ok {
			got = r.MinLevel
		}
		if got != tc.want {
			t.Errorf("%s %s: route level %d, want %d", tc.method, tc.path, got, tc.want)
		}
	}
}

// TestConfigValidate: each mistake is named.
func TestConfigValidate(t *testing.T) {
	ok := Config{Listen: ":0", Upstream: "http://127.0.0.1:1", Audience: "a", CA: "ca.pem", Routes: []Route{{Path: "/"}}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		edit func(*Config)
		want string
	}{
		"no listener":   {func(c *Config) { c.Listen = "" }, "listen or auth-listen"},
		"no upstream":   {func(c *Config) { c.Upstream = "" }, "upstream"},
		"bad upstream":  {func(c *Config) { c.Upstream = "ftp://x" }, "upstream"},
		"no audience":   {func(c *Config) { c.Audience = "" }, "audience"},
		"both keys":     {func(c *Config) { c.JWKSURL = "http://x" }, "exactly one of ca and jwks-url"},
		"feed alone":    {func(c *Config) { c.FeedURL = "http://x/v1/feed" }, "feed-url and rp-token-file"},
		"no routes":     {func(c *Config) { c.Routes = nil }, "no routes"},
		"relative path": {func(c *Config) { c.Routes = []Route{{Path: "api"}} }, "must start with /"},
		"level 5":       {func(c *Config) { c.Routes = []Route{{Path: "/", Policy: Policy{MinLevel: 5}}} }, "min-level 5"},
		"unknown claim": {func(c *Config) {
			c.Routes = []Route{{Path: "/", Policy: Policy{TrustVector: map[string]string{"speed": "affirming"}}}}
		}, `claim "speed"`},
		"unknown tier": {func(c *Config) {
			c.Routes = []Route{{Path: "/", Policy: Policy{TrustVector: map[string]string{"executables": "fine"}}}}
		}, `tier "fine"`},
		"lower method":    {func(c *Config) { c.Routes = []Route{{Path: "/", Methods: []string{"get"}}} }, "upper case"},
		"twice":           {func(c *Config) { c.Routes = []Route{{Path: "/"}, {Path: "/"}} }, "twice"},
		"bad prefix":      {func(c *Config) { c.HeaderPrefix = "X" }, "header-prefix"},
		"negative maxage": {func(c *Config) { c.Routes = []Route{{Path: "/", Policy: Policy{MaxAge: -1}}} }, "max-age"},
	} {
		c := ok
		tc.edit(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}

// TestStripIdentity: every header under the prefix and every Vigil
// Authorization goes; the upstream's own Authorization and other headers
// stay.
func TestStripIdentity(t *testing.T) {
	g := gateFor(t, Route{Path: "/"})
	h := http.Header{
		"Vigil-Agent": {"mallory"}, "Vigil-Level": {"4"}, "Vigil-Pop": {"p"}, "vigil-lowercase": {"x"},
		"Authorization": {"Vigil r", "Basic b"}, "X-Other": {"kept"},
	}
	g.StripIdentity(h)
	if len(h) != 2 || h.Get("X-Other") != "kept" || len(h.Values("Authorization")) != 1 || h.Get("Authorization") != "Basic b" {
		t.Errorf("after stripping: %v", h)
	}
	h = http.Header{"Authorization": {"vigil r"}}
	g.StripIdentity(h)
	if len(h) != 0 {
		t.Errorf("after stripping: %v", h)
	}
}

// TestParseSSE: events as the service frames them, comments, multi-line
// data and a line past the bound (an error, not unbounded memory).
func TestParseSSE(t *testing.T) {
	in := ": connected\n\nid: 7\nevent: agent.level\ndata: {\"a\":1}\n\n: heartbeat\n\ndata: x\ndata: y\n\n"
	var got []string
	err := ParseSSE(strings.NewReader(in), func(id, ev string, data []byte) error {
		got = append(got, id+"|"+ev+"|"+string(data))
		return nil
	})
	if err != nil || len(got) != 2 || got[0] != `7|agent.level|{"a":1}` || got[1] != "7||x\ny" {
		t.Fatalf("%q %v", got, err)
	}
	long := "data: " + strings.Repeat("x", maxSSELine) + "\n\n"
	if err := ParseSSE(strings.NewReader(long), func(string, string, []byte) error { return nil }); err == nil {
		t.Error("an over-long line parsed")
	}
	stop := errors.New("stop")
	if err := ParseSSE(strings.NewReader(in), func(string, string, []byte) error { return stop }); err != stop {
		t.Errorf("fn's error: %v", err)
	}
}

// TestFeedApply: level events set the host's level, a revocation is
// final, other status changes and unreadable events change nothing.
func TestFeedApply(t *testing.T) {
	f, err := NewFeed(FeedOptions{URL: "http://x", Token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	ev := func(id, data string) { f.apply(id, []byte(data)) }
	ev("1", `{"type":"agent.level","agent_id":"h","level":3}`)
	if s, ok := f.Standing("h"); !ok || s.Level != 3 || s.Revoked {
		t.Fatalf("%+v %v", s, ok)
	}
	ev("2", `{"type":"agent.level","agent_id":"h","level":1}`)
	ev("3", `{"type":"agent.status","agent_id":"h","status":"revoked","level":1}`)
	ev("4", `{"type":"agent.status","agent_id":"h","status":"approved","level":1}`)
	ev("5", `not json`)
	ev("6", `{"type":"agent.status","agent_id":"","status":"revoked"}`)
	if s, _ := f.Standing("h"); s.Level != 1 || !s.Revoked {
		t.Fatalf("%+v", s)
	}
	if f.lastID != 4 {
		t.Errorf("last event ID %d, want 4 (the last readable one)", f.lastID)
	}
	ev("7", `{"type":"agent.status","agent_id":"new","status":"approved"}`)
	if s, ok := f.Standing("new"); !ok || s.Level != -1 || s.Revoked {
		t.Errorf("an approval alone: %+v %v", s, ok)
	}
}

// FuzzParseSSE: any stream parses without panic, and memory stays
// bounded by the line limit.
func FuzzParseSSE(f *testing.F) {
	f.Add([]byte(": connected\n\nid: 1\nevent: agent.level\ndata: {\"id\":1,\"type\":\"agent.level\",\"agent_id\":\"a\",\"level\":2}\n\n"))
	f.Add([]byte("data:x\r\ndata\n\nid\x00: 3\n:\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n := 0
		ParseSSE(bytes.NewReader(b), func(_, _ string, data []byte) error {
			n++
			if len(data) > len(b) {
				t.Fatalf("data of %d bytes from %d", len(data), len(b))
			}
			return nil
		})
		_ = n
	})
}

// FuzzHeaders: the gate's header handling (credentials, StripIdentity)
// never panics, strips every header under the prefix and every Vigil
// Authorization, and never takes a report from anything but one Vigil
// Authorization.
func FuzzHeaders(f *testing.F) {
	g := gateFor(f, Route{Path: "/"})
	f.Add("Authorization", "Vigil eyJ.a.b", "Vigil-PoP", "eyJ.c.d")
	f.Add("authorization", "vigil  x", "vigil-agent", "mallory")
	f.Add("Authorization", "Basic", "Vigil-Pop", "")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		h := http.Header{}
		h.Add(k1, v1)
		h.Add(k2, v2)
		rep, _, ref := credentials(h)
		if ref == nil && (rep == "" || len(rep) > maxHeader) {
			t.Fatalf("report %q taken from %v", rep, h)
		}
		g.StripIdentity(h)
		for k, vs := range h {
			if strings.HasPrefix(strings.ToLower(k), "vigil-") {
				t.Fatalf("%s survived", k)
			}
			if k == "Authorization" {
				for _, v := range vs {
					if s, _, _ := strings.Cut(v, " "); strings.EqualFold(s, Scheme) {
						t.Fatalf("a Vigil Authorization survived: %q", v)
					}
				}
			}
		}
		if _, _, ref := credentials(h); ref == nil || ref.Code != TokenMissing {
			t.Fatalf("after stripping, credentials: %v", ref)
		}
	})
}

// TestDocsCodes: docs/relying-parties.md lists every code of the table
// with its status, and names every code of package ear.
func TestDocsCodes(t *testing.T) {
	b, err := os.ReadFile("../docs/relying-parties.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, c := range Codes() {
		if strings.HasPrefix(string(c), "pop-") || containsCode(ear.All(), c) {
			if !strings.Contains(doc, "`"+string(c)+"`") {
				t.Errorf("ear code %s is not in docs/relying-parties.md", c)
			}
			continue
		}
		row := fmt.Sprintf("| `%s` | %d |", c, c.Status())
		if !strings.Contains(doc, row) {
			t.Errorf("docs/relying-parties.md lacks the row %q", row)
		}
	}
}

func containsCode(all []ear.Code, c Code) bool {
	for _, x := range all {
		if Code(x) == c {
			return true
		}
	}
	return false
}

// TestAuthRequestStatus: the auth_request endpoint answers only what
// nginx takes as a refusal (401, 403) or as its own error (5xx), with the
// code in Vigil-Refusal: a request without X-Original-* is a 403 carrying
// auth-request-malformed, one without a report a 401 token-missing.
func TestAuthRequestStatus(t *testing.T) {
	g := gateFor(t, Route{Path: "/"})
	for _, tc := range []struct {
		name   string
		hdr    map[string]string
		status int
		code   Code
	}{
		{"no original request", nil, 403, AuthRequestMalformed},
		{"a relative URI", map[string]string{HeaderOriginalMethod: "GET", HeaderOriginalURI: "x"}, 403, AuthRequestMalformed},
		{"no report", map[string]string{HeaderOriginalMethod: "GET", HeaderOriginalURI: "/a?b=c"}, 401, TokenMissing},
		{"two reports", map[string]string{HeaderOriginalMethod: "GET", HeaderOriginalURI: "/a", "Authorization": "Vigil a"}, 0, ""},
	} {
		r := httptest.NewRequest("GET", "/auth", nil)
		for k, v := range tc.hdr {
			r.Header.Set(k, v)
		}
		if tc.status == 0 {
			r.Header.Add("Authorization", "Vigil b")
			tc.status, tc.code = 403, HeaderMalformed
		}
		w := httptest.NewRecorder()
		g.AuthHandler().ServeHTTP(w, r)
		if w.Code != tc.status || w.Header().Get(HeaderRefusal) != string(tc.code) || !strings.Contains(w.Body.String(), `"code":"`+string(tc.code)+`"`) ||
			!strings.Contains(w.Body.String(), fmt.Sprintf(`"status":%d`, tc.status)) {
			t.Errorf("%s: %d %q %s, want %d %s", tc.name, w.Code, w.Header().Get(HeaderRefusal), w.Body, tc.status, tc.code)
		}
	}
}
