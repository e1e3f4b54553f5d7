package devca

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

func TestEnsureServesAndPersists(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	m, err := Ensure(dir, []string{"vigil.test"})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{CAFile, CAKey, CertFile, KeyFile} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", f, st.Mode().Perm())
		}
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }))
	srv.TLS = m.Config
	srv.StartTLS()
	defer srv.Close()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: m.Pool}}}
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatalf("a client trusting the CA is refused: %v", err)
	}
	resp.Body.Close()
	// A client that does not trust the CA must be refused.
	if _, err := http.Get(srv.URL); err == nil {
		t.Fatal("a client without the CA accepted the certificate")
	}
	// Second call: same CA, same server certificate.
	m2, err := Ensure(dir, []string{"vigil.test"})
	if err != nil {
		t.Fatal(err)
	}
	if string(m2.CAPEM) != string(m.CAPEM) {
		t.Error("the CA changed across restarts")
	}
	if string(m2.Config.Certificates[0].Certificate[0]) != string(m.Config.Certificates[0].Certificate[0]) {
		t.Error("the server certificate was remade though it still covers the hosts")
	}
	// A new host name makes a new server certificate under the same CA.
	m3, err := Ensure(dir, []string{"other.test"})
	if err != nil {
		t.Fatal(err)
	}
	if string(m3.CAPEM) != string(m.CAPEM) || string(m3.Config.Certificates[0].Certificate[0]) == string(m.Config.Certificates[0].Certificate[0]) {
		t.Error("a new host should remake only the server certificate")
	}
}

func TestEnsureRejectsCorruptCA(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, CAFile), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, CAKey), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Ensure(dir, nil); err == nil {
		t.Fatal("a corrupt CA file must be an error, not silently replaced")
	}
}
