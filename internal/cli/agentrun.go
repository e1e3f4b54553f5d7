package cli

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-attest/vigil/agent"
	"github.com/vigil-attest/vigil/api"
	"github.com/vigil-attest/vigil/appraise"
	"github.com/vigil-attest/vigil/trust"
)

// runOptions are `vigil agent run`'s own flags.
type runOptions struct {
	Server      string
	CA          string
	ReportCA    string
	AgentID     string
	StateDir    string
	Socket      string
	SocketGroup string
	Audience    []string
	PCRs        string
	Output      string
	Interval    time.Duration
	Once        bool
}

// onceOutput is what `vigil agent run --once` prints: the appraisal, or
// why there is none. Stable for scripts.
type onceOutput struct {
	AgentID string `json:"agent_id"`
	// Enrollment is "approved", "pending" (an operator has to approve) or
	// "refused" (the service refused the agent: Code says why).
	Enrollment string             `json:"enrollment"`
	Level      int                `json:"level"`
	Status     string             `json:"status"`
	Token      string             `json:"token"`
	Failures   []appraise.Failure `json:"failures"`
	Code       string             `json:"code,omitempty"`
	Detail     string             `json:"detail,omitempty"`
	Time       *time.Time         `json:"time,omitempty"`
}

func newAgentRunCmd(g *globalOptions) *cobra.Command {
	mo := &measureOptions{}
	var eo enclaveOptions
	o := &runOptions{}
	c := &cobra.Command{
		Use:   "run",
		Short: "Enroll with the attestation service, then attest on an interval",
		Long: `Enroll this host's enclave with the attestation service once (a TPM's EK, EK
certificate and AK, answering credential activation; or a software key), then
attest every --interval (±10% jitter): ask for a nonce, measure the host (as
'vigil agent measure'), send evidence (the IMA list only from where the service's
replay state ends; the event log only when the service lacks it) and keep the
session report. Errors back off exponentially from 1s to 5m.

With --socket, local clients read the latest session report with
'GET /v1/report' and get a proof of possession with 'POST /v1/proof' (see
'vigil agent prove') on a unix socket: mode 0600, or 0660 owned by
--socket-group for the service accounts in that group. The agent ID defaults to the one
in --state-dir, or else to one derived from the EK (tpm-…) or the software key
(sw-…). See docs/agent.md.

Every session report is verified before it is printed or served: it must chain
to the report CA (--report-ca, or the one fetched at the first enrollment and
pinned in --state-dir), name this agent (sub), answer this round's nonce
(eat_nonce) and bind this enclave's report key (cnf). A report that does not is
an error (exit 2 with --once) and is never served.

--once enrolls if needed, attests once and prints the result (agent_id,
enrollment, level, status, token, failures). Exit codes: 0 attested and healthy
(status affirming or warning), 1 unhealthy (contraindicated, pending approval,
or refused by the service), 2 error (network, usage, a refused session report).`,
		Example: `  vigil agent run --server https://vigil.example:8443 --tpm /dev/tpmrm0 \
      --state-dir /var/lib/vigil --socket /run/vigil/agent.sock
  vigil agent run --server https://127.0.0.1:8443 --ca ca.pem --soft agent.key --once`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), g, mo, &eo)
		},
	}
	mo.addFlags(c.Flags())
	eo.addFlags(c.Flags())
	f := c.Flags()
	f.StringVar(&o.Server, "server", "", "the attestation service's URL (required)")
	f.StringVar(&o.CA, "ca", "", "the TLS CA (PEM) of the service's certificate (with its development CA: DATA/tls/tls-ca.pem); not the report CA")
	f.StringVar(&o.ReportCA, "report-ca", "", "the report CA (PEM) its session reports must chain to (default: /.well-known/vigil-ca.pem fetched at the first enrollment and pinned in --state-dir)")
	f.StringVar(&o.AgentID, "agent-id", "", "agent ID (default: the saved one, else derived from the EK or the software key)")
	f.StringVar(&o.StateDir, "state-dir", "", "directory keeping the agent ID and enrollment status across restarts, e.g. /var/lib/vigil")
	f.StringVar(&o.Socket, "socket", "", "serve the latest session report and proofs of possession on this unix socket (0600), e.g. "+agent.DefaultSocket)
	f.StringVar(&o.SocketGroup, "socket-group", "", "the group owning the socket (mode 0660): the service accounts allowed to read reports and ask for proofs")
	f.StringSliceVar(&o.Audience, "audience", nil, "relying parties every session report is asked for (its aud); a proof asked for another adds it")
	f.StringVar(&o.PCRs, "pcrs", "sha256:0-10,14", "PCRs to quote: BANK:LIST, e.g. sha256:0-10,14 (the service requires 0-9, 10 with IMA, 14 with shim)")
	f.StringVarP(&o.Output, "output", "o", "json", "--once output format: json or text")
	f.DurationVar(&o.Interval, "interval", agent.DefaultInterval, "time between attestations (±10% jitter)")
	f.BoolVar(&o.Once, "once", false, "enroll if needed, attest once, print the result and exit")
	return c
}

func (o *runOptions) run(ctx context.Context, g *globalOptions, mo *measureOptions, eo *enclaveOptions) error {
	if o.Output != "text" && o.Output != "json" {
		return usageErr("--output must be text or json")
	}
	if o.Server == "" {
		return usageErr("--server is required")
	}
	if o.Interval < time.Second {
		return usageErr("--interval: at least 1s")
	}
	sel, err := parsePCRSelection(o.PCRs)
	if err != nil {
		return usageErr("--pcrs: %v", err)
	}
	var reportCA []*x509.Certificate
	if o.ReportCA != "" {
		if reportCA, err = trust.LoadCertificates(o.ReportCA); err != nil {
			return usageErr("--report-ca: %v", err)
		}
	}
	client, err := agent.NewClient(o.Server, agent.ClientOptions{CAFile: o.CA})
	if err != nil {
		return usageErr("--server/--ca: %v", err)
	}
	defer client.Close()
	if o.StateDir != "" {
		// The agent's kernel-key cache lives with its state (not under
		// $HOME, which for a service may be / or read-only).
		mo.engine.stateCache = filepath.Join(o.StateDir, "cache")
	}
	m, src, err := mo.measurer(g)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	e, err := eo.open(ctx)
	if err != nil {
		return err
	}
	defer e.Close()
	a, err := agent.New(ctx, agent.Options{
		Client: client, Enclave: e, Measure: agent.MeasureWith(m, src), AgentID: o.AgentID,
		PCRs: sel, Interval: o.Interval, StateDir: o.StateDir, ServiceCA: reportCA, Audiences: o.Audience, Logger: g.logger,
	})
	if err != nil {
		return usageErr("%v", err)
	}
	if o.Once {
		return o.once(ctx, g.stdout, a)
	}
	g.logger.Info("agent running", "agent_id", a.ID(), "server", client.URL(), "enclave", e.Kind(), "interval", o.Interval)
	if o.Socket == "" {
		if o.SocketGroup != "" {
			return usageErr("--socket-group needs --socket")
		}
		return a.Run(ctx)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sockErr := make(chan error, 1)
	go func() {
		err := a.ServeSocket(ctx, o.Socket, agent.SocketOptions{Group: o.SocketGroup})
		cancel()
		sockErr <- err
	}()
	runErr := a.Run(ctx)
	if err := <-sockErr; err != nil {
		return &exitError{code: ExitUsage, err: err}
	}
	return runErr
}

// once enrolls when needed, attests once and prints the outcome.
func (o *runOptions) once(ctx context.Context, w io.Writer, a *agent.Agent) error {
	out := onceOutput{AgentID: a.ID(), Failures: []appraise.Failure{}, Status: "none"}
	var res *agent.Result
	var err error
	for try := 0; try < 2; try++ {
		if a.EnrollmentStatus() != agent.StatusApproved {
			var st string
			if st, err = a.Enroll(ctx); err != nil {
				break
			}
			if st != agent.StatusApproved {
				out.Enrollment = st
				return o.print(w, out, ExitDenied)
			}
		}
		// A saved approval the service no longer holds resets the status
		// (AttestOnce): enroll again, once.
		if res, err = a.AttestOnce(ctx); err == nil || a.EnrollmentStatus() == agent.StatusApproved {
			break
		}
	}
	if err != nil {
		var pe *agent.ProblemError
		if errors.As(err, &pe) && pe.Status == http.StatusForbidden && pe.Code != "" {
			out.Enrollment, out.Code, out.Detail = "refused", pe.Code, pe.Detail
			if pe.Code == api.CodeAgentPending {
				out.Enrollment, out.Code = agent.StatusPending, ""
			}
			return o.print(w, out, ExitDenied)
		}
		return &exitError{code: ExitUsage, err: err}
	}
	out.Enrollment = agent.StatusApproved
	out.Level, out.Status, out.Token, out.Failures, out.Time = res.Level, res.Status, res.Token, res.Failures, &res.Time
	code := ExitOK
	if !res.Healthy() {
		code = ExitDenied
	}
	return o.print(w, out, code)
}

func (o *runOptions) print(w io.Writer, out onceOutput, code int) error {
	if o.Output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return &exitError{code: ExitUsage, err: err}
		}
	} else {
		switch out.Enrollment {
		case agent.StatusApproved:
			fmt.Fprintf(w, "agent %s: level %d (%s), %d failures\n", out.AgentID, out.Level, out.Status, len(out.Failures))
			for _, f := range out.Failures {
				fmt.Fprintf(w, "  %s: %s (caps below level %d) %s\n", f.Claim, f.Reason, f.Level, f.Detail)
			}
		case agent.StatusPending:
			fmt.Fprintf(w, "agent %s: enrolled, waiting for an operator: vigil admin approve %s\n", out.AgentID, out.AgentID)
		default:
			fmt.Fprintf(w, "agent %s: refused by the service: %s: %s\n", out.AgentID, out.Code, out.Detail)
		}
	}
	if code != ExitOK {
		return &exitError{code: code}
	}
	return nil
}
