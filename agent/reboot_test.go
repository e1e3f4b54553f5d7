package agent_test

import (
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/agent"
	"github.com/vigil-attest/vigil/appraise"
	"github.com/vigil-attest/vigil/eventlog/eventlogtest"
	"github.com/vigil-attest/vigil/hostfs"
	"github.com/vigil-attest/vigil/ima/imatest"
	"github.com/vigil-attest/vigil/internal/testhost"
	"github.com/vigil-attest/vigil/internal/testpki"
	"github.com/vigil-attest/vigil/internal/testserver"
	"github.com/vigil-attest/vigil/internal/testtpm"
	"github.com/vigil-attest/vigil/measure"
	"github.com/vigil-attest/vigil/tpm"
)

// TestTPMAgentReboot: after a reboot (the TPM reset, a new boot ID, a new
// IMA list) the agent restarted with the same state directory returns to
// its level on the first round: the service's IMA offset is the old
// boot's list's, so the agent sends the new list from its start (the bug
// was a round judged without the list, ima-not-verified, after every
// reboot). Both a shorter and a longer list than the old boot's.
func TestTPMAgentReboot(t *testing.T) {
	boot := eventlogtest.Debian()
	logBytes := boot.Log()
	for _, tc := range []struct {
		name  string
		after int // entries of the new boot's IMA list (the old one has 50)
	}{
		{"shorter list", 30},
		{"longer list", 70},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			sw := testtpm.Start(t)
			host := testhost.Base()
			host.EventLog = logBytes
			if err := host.SetSecureBoot(true, []*x509.Certificate{testpki.NewRoot(testpki.Options{}).Cert}, 40); err != nil {
				t.Fatal(err)
			}
			before := imatest.Boot(50, boot.BootPCRs())
			host.Files[testhost.IMAListPath] = before
			root := host.WriteDir(t)
			state := t.TempDir()
			svc := testserver.Start(t, testserver.Options{EKRoots: sw.Roots, EKIntermediates: sw.Intermediates})
			rec := newRecorder(t, svc.URL)
			// One boot: open the TPM, replay the boot into it, run the
			// agent (a new process each boot) once.
			round := func() (*agent.Result, error) {
				e, err := tpm.Open(ctx, sw.URI, tpm.Options{})
				if err != nil {
					t.Fatal(err)
				}
				defer e.Close()
				c, err := agent.NewClient(rec.URL, agent.ClientOptions{})
				if err != nil {
					t.Fatal(err)
				}
				a, err := agent.New(ctx, agent.Options{
					Client: c, Enclave: e, Measure: agent.MeasureWith(measure.New(measure.Options{}), hostfs.New(root)),
					StateDir: state, Interval: time.Second,
				})
				if err != nil {
					t.Fatal(err)
				}
				if a.EnrollmentStatus() != agent.StatusApproved {
					if st, err := a.Enroll(ctx); err != nil || st != agent.StatusApproved {
						t.Fatalf("enroll: %s %v", st, err)
					}
				}
				return a.AttestOnce(ctx)
			}
			e, err := tpm.Open(ctx, sw.URI, tpm.Options{})
			if err != nil {
				t.Fatal(err)
			}
			testtpm.ExtendEventLog(t, e, logBytes)
			testtpm.ExtendIMA(t, e, before)
			e.Close()
			r1, err := round()
			if err != nil {
				t.Fatal(err)
			}
			if r1.Level != appraise.LevelMeasured || hasFailure(r1.Failures, "ima-not-verified") {
				t.Fatalf("first boot: level %d %+v", r1.Level, r1.Failures)
			}

			// The reboot: the TPM resets (swtpm restarted with
			// startup-clear), the firmware and IMA extend it anew.
			sw.Restart()
			after := imatest.Boot(tc.after, boot.BootPCRs())
			if err := os.WriteFile(filepath.Join(root, testhost.IMAListPath), after, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, "proc/sys/kernel/random/boot_id"), []byte("6b9a1c3e-2f4d-4e8a-9b7c-0d1e2f3a4b5c\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			e, err = tpm.Open(ctx, sw.URI, tpm.Options{})
			if err != nil {
				t.Fatal(err)
			}
			testtpm.ExtendEventLog(t, e, logBytes)
			testtpm.ExtendIMA(t, e, after)
			e.Close()
			r2, err := round()
			if err != nil {
				t.Fatal(err)
			}
			if r2.Level != r1.Level || hasFailure(r2.Failures, "ima-not-verified") {
				t.Errorf("first round after the reboot: level %d %+v; want level %d as before", r2.Level, r2.Failures, r1.Level)
			}
			evs := rec.evidence()
			if len(evs) != 2 || evs[1].IMALog == nil || evs[1].IMALog.Offset != 0 || len(evs[1].IMALog.Data) != len(after) {
				t.Fatalf("after the reboot: %d evidence; want the new list whole from 0", len(evs))
			}
			if chs := rec.chs; len(chs) < 2 || chs[len(chs)-1].IMAOffset != int64(len(before)) {
				t.Errorf("the service's offset after the reboot is not the old list's end (%d)", len(before))
			}
		})
	}
}
