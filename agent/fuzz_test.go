package agent

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/vigil-attest/vigil/api"
)

// FuzzReadResponse: whatever a hostile service or network answers, the
// client neither panics nor accepts it as more than it is: a success is a
// 2xx JSON body within the size limit, a refusal a *ProblemError whose
// detail is short and free of control characters. Seeded with the real
// service's answers (testdata/fuzz/FuzzReadResponse).
func FuzzReadResponse(f *testing.F) {
	f.Add(429, "application/problem+json", "3", []byte(`{"type":"x","title":"t","status":429,"code":"rate-limited"}`))
	f.Add(200, "application/json; charset=utf-8", "", []byte(`{"nonce":"00","ima_offset":1} x`))
	f.Fuzz(func(t *testing.T, status int, ctype, retryAfter string, body []byte) {
		if status < 100 || status > 999 {
			return
		}
		outs := []any{&api.EnrollResponse{}, &api.Challenge{}, &api.AttestResponse{}}
		for _, out := range outs {
			resp := &http.Response{StatusCode: status, Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(body))}
			resp.Header.Set("Content-Type", ctype)
			resp.Header.Set("Retry-After", retryAfter)
			err := readResponse(resp, out)
			var pe *ProblemError
			switch {
			case err == nil:
				if status < 200 || status > 299 || len(body) > MaxResponse {
					t.Fatalf("status %d, %d bytes accepted", status, len(body))
				}
			case errors.As(err, &pe):
				if pe.Status != status || status >= 200 && status <= 299 {
					t.Fatalf("problem %+v for status %d", pe, status)
				}
				if len([]rune(pe.Detail)) > 201 || strings.ContainsFunc(pe.Detail, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
					t.Fatalf("detail %q", pe.Detail)
				}
				if pe.RetryAfter < 0 || pe.RetryAfter > 3600e9 {
					t.Fatalf("retry after %v", pe.RetryAfter)
				}
			case !errors.Is(err, ErrResponse):
				t.Fatalf("error %v is neither a problem nor ErrResponse", err)
			}
		}
	})
}
