package agent

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/vigil-attest/vigil/api"
	"github.com/vigil-attest/vigil/token"
	"github.com/vigil-attest/vigil/token/tokentest"
	"github.com/vigil-attest/vigil/trust"
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
		outs := []any{&api.EnrollResponse{}, &api.Challenge{}, &api.AttestResponse{}, new(pemBody)}
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
				if p, ok := out.(*pemBody); ok && !bytes.Equal(*p, body) {
					t.Fatal("a PEM answer was altered")
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

// FuzzServiceCA: whatever a service answers at /.well-known/vigil-ca.pem
// (or a state file holds), parsing it as the CA to pin neither panics nor
// pins anything but CA certificates. Seeded with a real service CA.
func FuzzServiceCA(f *testing.F) {
	iss, err := token.NewIssuer(context.Background(), tokentest.NewKeyStore(), token.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	real := iss.CAPEM()
	f.Add(real)
	f.Add(append(append([]byte{}, real...), real...))
	f.Add(iss.CA().Raw)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		ca, err := parseServiceCA(b)
		if err != nil {
			if ca != nil {
				t.Fatal("a CA with an error")
			}
			return
		}
		certs, err := trust.ParseCertificates(b)
		if err != nil || len(certs) == 0 || ca.roots == nil || ca.name == "" {
			t.Fatalf("pinned %v from bytes that do not parse: %v", ca, err)
		}
		for _, c := range certs {
			if !c.IsCA || !c.BasicConstraintsValid {
				t.Fatalf("pinned a certificate that is not a CA: %s", c.Subject)
			}
		}
	})
}
