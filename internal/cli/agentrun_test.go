package cli_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-attest/vigil/internal/testhost"
)

// TestAgentRunUsage: bad flags and an unreachable service exit 2, before
// or without any attestation.
func TestAgentRunUsage(t *testing.T) {
	dir := testhost.Base().WriteDir(t)
	key := filepath.Join(t.TempDir(), "agent.key")
	base := []string{"agent", "run", "--root", dir, "--no-verify"}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no server", []string{"--soft", key, "--once"}, "--server is required"},
		{"bad server URL", []string{"--server", "vigil.example:8443", "--soft", key, "--once"}, "want http(s)://"},
		{"no enclave", []string{"--server", "http://127.0.0.1:1", "--once"}, "--tpm or --soft is required"},
		{"both enclaves", []string{"--server", "http://127.0.0.1:1", "--soft", key, "--tpm", "unix:///nope", "--once"}, "exclusive"},
		{"short interval", []string{"--server", "http://127.0.0.1:1", "--soft", key, "--interval", "10ms"}, "--interval"},
		{"bad output", []string{"--server", "http://127.0.0.1:1", "--soft", key, "--once", "-o", "yaml"}, "--output"},
		{"bad PCRs", []string{"--server", "http://127.0.0.1:1", "--soft", key, "--once", "--pcrs", "sha256:0-99"}, "--pcrs"},
		{"bad agent ID", []string{"--server", "http://127.0.0.1:1", "--soft", key, "--once", "--agent-id", "a/b"}, "agent ID"},
		{"missing CA file", []string{"--server", "https://127.0.0.1:1", "--soft", key, "--once", "--ca", filepath.Join(dir, "none.pem")}, "CA file"},
		{"service down", []string{"--server", "http://127.0.0.1:1", "--soft", key, "--once"}, "connection refused"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := vigil(t, append(base, tc.args...)...)
			if code != 2 || !strings.Contains(errs, tc.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, errs, tc.want)
			}
			if out != "" {
				t.Errorf("stdout on error: %q", out)
			}
		})
	}
	if code, out, _ := vigil(t, "agent", "run", "--help"); code != 0 || !strings.Contains(out, "--once") {
		t.Errorf("agent run --help: exit %d\n%s", code, out)
	}
}
