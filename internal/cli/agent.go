package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"

	"github.com/vigil-attest/vigil/hostfs"
	"github.com/vigil-attest/vigil/integrity"
	"github.com/vigil-attest/vigil/measure"
)

func newAgentCmd(g *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "agent",
		Short: "Measure this host (the attestation agent's side)",
		Long: `The agent measures the host into a runtime report: kernel, loaded modules
(each judged by the code-integrity engine), taint, enforcement, debugging,
Secure Boot, the measured-boot event log, IMA and critical processes. Views
that a rootkit could lie to are cross-checked.`,
	}
	c.AddCommand(newAgentMeasureCmd(g), newAgentCaptureCmd(g), newAgentKeysCmd(g), newAgentEvidenceCmd(g), newAgentRunCmd(g), newAgentProveCmd(g))
	return c
}

// measureOptions are the flags shared by measure and capture.
type measureOptions struct {
	Root     string
	NoVerify bool
	engine   engineOptions
}

func (o *measureOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Root, "root", "/", "measure the host tree under this directory (a capture, or a mounted image) instead of /")
	fs.BoolVar(&o.NoVerify, "no-verify", false, "do not judge module and boot files with the code-integrity engine")
	o.engine.addFlags(fs)
}

// agentConfig is the agent's section of the config file.
type agentConfig struct {
	Measure measure.Config `yaml:"measure"`
}

func loadAgentConfig(path string) (measure.Config, error) {
	if path == "" {
		path = os.Getenv("VIGIL_CONFIG")
	}
	if path == "" {
		return measure.Config{}, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return measure.Config{}, fmt.Errorf("config: %w", err)
	}
	var c agentConfig
	if err := yaml.Unmarshal(b, &c); err != nil {
		return measure.Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	for i, p := range c.Measure.CriticalProcesses {
		if p.Exe == "" && p.Name == "" {
			return measure.Config{}, fmt.Errorf("config %s: measure.critical_processes[%d]: name or exe is required", path, i)
		}
		if p.SHA256 == "" && p.Signer == "" {
			return measure.Config{}, fmt.Errorf("config %s: measure.critical_processes[%d] (%s): sha256 or signer is required", path, i, p.Name)
		}
	}
	return c.Measure, nil
}

// measure builds the measurer and source and measures once.
func (o *measureOptions) measure(ctx context.Context, g *globalOptions) (*measure.Report, *hostfs.Dir, error) {
	m, src, err := o.measurer(g)
	if err != nil {
		return nil, nil, err
	}
	r, err := m.Measure(ctx, src)
	if err != nil {
		return nil, nil, &exitError{code: ExitUsage, err: err}
	}
	return r, src, nil
}

// measurer builds the measurer and source for the options.
func (o *measureOptions) measurer(g *globalOptions) (*measure.Measurer, *hostfs.Dir, error) {
	cfg, err := loadAgentConfig(g.Config)
	if err != nil {
		return nil, nil, usageErr("%v", err)
	}
	if fi, err := os.Stat(o.Root); err != nil || !fi.IsDir() {
		return nil, nil, usageErr("--root %s: not a directory", o.Root)
	}
	src := hostfs.New(o.Root)
	var eng *integrity.Engine
	if !o.NoVerify {
		eo := o.engine
		if len(eo.Kernel) == 0 {
			// Trust what the running kernel trusts: the keys built into
			// its image, when the image is there.
			if rel, err := os.ReadFile(filepath.Join(o.Root, "proc/sys/kernel/osrelease")); err == nil {
				k := filepath.Join(o.Root, "boot", "vmlinuz-"+strings.TrimSpace(string(rel)))
				if _, err := os.Stat(k); err == nil {
					eo.Kernel = []string{k}
				}
			}
		}
		if eo.Policy == "" {
			// Without a policy file, judge as the kernel and the firmware
			// do: neither checks certificate validity periods.
			eo.IgnoreExpiry = true
		}
		eo.cache = true
		if eng, err = eo.build(g.logger); err != nil {
			return nil, nil, err
		}
	}
	return measure.New(measure.Options{Config: cfg, Engine: eng, Logger: g.logger}), src, nil
}

func newAgentMeasureCmd(g *globalOptions) *cobra.Command {
	o := &measureOptions{}
	var output string
	c := &cobra.Command{
		Use:   "measure",
		Short: "Print this host's runtime report",
		Long: `Measure the host and print the runtime report (docs/runtime-report.md).

--output json prints the canonical report (RFC 8785 JSON, one line): the same
inputs give byte-identical output. A section the host does not expose is
"unavailable", never a failure. Critical processes come from the config
file's measure.critical_processes list.

Module files are judged by the code-integrity engine against --policy (default:
the built-in policy, validity periods ignored as the kernel does), trusting the
keys built into /boot/vmlinuz-RELEASE unless --kernel says otherwise.`,
		Example: `  vigil agent measure
  vigil agent measure --root /srv/captures/web-01 --output json
  vigil agent measure --config /etc/vigil/agent.yaml --no-verify`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return usageErr("--output must be text or json")
			}
			r, _, err := o.measure(cmd.Context(), g)
			if err != nil {
				return err
			}
			if output == "json" {
				b, err := r.Canonical()
				if err != nil {
					return &exitError{code: ExitUsage, err: err}
				}
				_, err = fmt.Fprintf(g.stdout, "%s\n", b)
				return err
			}
			return writeReportText(g.stdout, r)
		},
	}
	o.addFlags(c.Flags())
	c.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return c
}

func newAgentCaptureCmd(g *globalOptions) *cobra.Command {
	o := &measureOptions{}
	c := &cobra.Command{
		Use:   "capture DIR",
		Short: "Copy what the agent reads into a tree, for support bundles",
		Long: `Measure the host, then copy every file, directory listing and link the
collectors read into DIR, laid out as on the host, with the report beside it
as DIR/vigil-report.json. 'vigil agent measure --root DIR' measures the copy
as it measured the host.`,
		Example: `  vigil agent capture /tmp/web-01 && tar -C /tmp -czf web-01.tgz web-01`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, src, err := o.measure(cmd.Context(), g)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(args[0], 0o755); err != nil {
				return &exitError{code: ExitUsage, err: err}
			}
			if err := src.Capture(args[0]); err != nil {
				g.logger.Warn("capture incomplete", "err", err)
			}
			b, err := r.Canonical()
			if err != nil {
				return &exitError{code: ExitUsage, err: err}
			}
			if err := os.WriteFile(filepath.Join(args[0], "vigil-report.json"), append(b, '\n'), 0o644); err != nil {
				return &exitError{code: ExitUsage, err: err}
			}
			fmt.Fprintf(g.stderr, "captured %d files into %s\n", len(src.Inputs()), args[0])
			return nil
		},
	}
	o.addFlags(c.Flags())
	return c
}

func short(hex string) string {
	if len(hex) > 16 {
		return hex[:16] + "…"
	}
	return hex
}

// moduleState is how the text summary names a loaded module: "not
// allowed" (its file was judged and refused), "unknown" (its file was not
// judged: not found, unreadable), or "" (allowed, or no engine ran).
func moduleState(m measure.LoadedModule) string {
	switch {
	case m.Judged && !m.Allowed:
		return "not allowed"
	case !m.Judged && len(m.Reasons) > 0:
		return "unknown"
	}
	return ""
}

// writeReportText prints a summary of each section.
func writeReportText(w io.Writer, r *measure.Report) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	line := func(sec string, s measure.Section, detail string) {
		if s.Error != "" && s.Status != measure.StatusOK {
			detail = strings.TrimSpace(detail + " " + s.Error)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", sec, s.Status, detail)
	}
	fmt.Fprintf(tw, "SECTION\tSTATUS\tDETAIL\n")
	line("kernel", r.Kernel.Section, fmt.Sprintf("%s up %ds", r.Kernel.Release, r.Kernel.UptimeS))
	// The counts and the listings below use the same rules, so that no
	// module is listed as not allowed beside a count of 0.
	notAllowed, unknown := 0, 0
	for _, m := range r.Modules.Loaded {
		switch moduleState(m) {
		case "not allowed":
			notAllowed++
		case "unknown":
			unknown++
		}
	}
	line("modules", r.Modules.Section, fmt.Sprintf("%d loaded, %d not allowed, %d unknown, %d hidden (views: %s)",
		len(r.Modules.Loaded), notAllowed, unknown, len(r.Modules.Hidden), strings.Join(r.Modules.Views, ",")))
	line("taint", r.Taint.Section, fmt.Sprintf("%d [%s] unexplained [%s]", r.Taint.Value, strings.Join(r.Taint.Flags, ""), strings.Join(r.Taint.Unexplained, "")))
	line("enforcement", r.Enforcement.Section, fmt.Sprintf("sig_enforce=%t lockdown=%s lsm=%s", r.Enforcement.SigEnforce, r.Enforcement.Lockdown, strings.Join(r.Enforcement.LSM, ",")))
	line("debug", r.Debug.Section, fmt.Sprintf("kernel_debugging=%t relaxed=[%s]", r.Debug.KernelDebugging, strings.Join(r.Debug.RelaxedSigning, " ")))
	sb := r.SecureBoot
	bootBad, platformBad := 0, 0
	for _, b := range sb.BootFiles {
		if b.Judged && !b.Allowed {
			bootBad++
		}
		if b.Platform != nil && !b.Platform.Allowed {
			platformBad++
		}
	}
	dbx := 0
	if sb.DBX != nil {
		dbx = sb.DBX.Entries
	}
	line("secure_boot", sb.Section, fmt.Sprintf("enabled=%t setup_mode=%t dbx=%d entries, %d boot files (%d not allowed, %d the host's firmware and shim would refuse)", sb.Enabled, sb.SetupMode, dbx, len(sb.BootFiles), bootBad, platformBad))
	mb := r.MeasuredBoot
	line("measured_boot", mb.Section, fmt.Sprintf("%s, %d events, %d boot applications, %d problems", mb.Format, mb.Events, len(mb.BootApplications), len(mb.Problems)))
	im := r.IMA
	line("ima", im.Section, fmt.Sprintf("%d entries, %d violations, %d template-hash mismatches, pcr10.sha256=%s", im.Entries, im.Violations, im.TemplateHashMismatches, short(im.PCR10.SHA256)))
	bad := 0
	for _, c := range r.Processes.Critical {
		if !c.OK {
			bad++
		}
	}
	line("processes", r.Processes.Section, fmt.Sprintf("%d listed, %d/%d critical unhealthy, %d hidden", r.Processes.Count, bad, len(r.Processes.Critical), len(r.Processes.Hidden)))
	unresolved := 0
	for _, k := range r.Keyrings.Trusted {
		if k.Certificate == "" {
			unresolved++
		}
	}
	line("keyrings", r.Keyrings.Section, fmt.Sprintf("%s: %d trusted keys (%d unresolved), %d revoked keys, %d blacklist hashes, %d anchors not trusted by the kernel",
		r.Keyrings.Membership, len(r.Keyrings.Trusted), unresolved, len(r.Keyrings.Revoked), r.Keyrings.BlacklistCount, len(r.Keyrings.NotTrusted)))
	line("revocations", r.Revocations.Section, fmt.Sprintf("%d enforced by the host, %d pending (Vigil applies them now), %d Vigil only", r.Revocations.EnforcedCount, r.Revocations.PendingCount, r.Revocations.VigilOnly))
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, h := range r.Modules.Hidden {
		fmt.Fprintf(w, "HIDDEN MODULE %s: seen in %s, missing from %s\n", h.Name, strings.Join(h.SeenIn, ","), strings.Join(h.MissingFrom, ","))
	}
	if al := r.Modules.Allocations; al.Status == measure.StatusOK && al.Unlisted > 0 {
		fmt.Fprintf(w, "HIDDEN MODULES %d: %d module allocations for %d listed modules (vmallocinfo), unlisted sizes %v\n", al.Unlisted, al.Count, al.Listed, al.UnlistedSizes)
	}
	for _, h := range r.Processes.Hidden {
		fmt.Fprintf(w, "HIDDEN PROCESS %d (%s %s)\n", h.PID, h.Name, h.Exe)
	}
	for _, m := range r.Modules.Loaded {
		if st := moduleState(m); st != "" {
			fmt.Fprintf(w, "MODULE %s %s: %s\n", m.Name, st, joinCodes(m.Reasons))
		}
	}
	for _, b := range sb.BootFiles {
		if b.Judged && !b.Allowed {
			fmt.Fprintf(w, "BOOT FILE %s not allowed: %s\n", b.Path, joinCodes(b.Reasons))
		}
		if b.Platform != nil && !b.Platform.Allowed {
			fmt.Fprintf(w, "BOOT FILE %s refused by the host's firmware and shim: %s\n", b.Path, joinCodes(b.Platform.Reasons))
		}
	}
	for _, c := range r.Processes.Critical {
		if !c.OK {
			fmt.Fprintf(w, "CRITICAL %s: %s\n", c.Name, strings.Join(c.Problems, ","))
		}
	}
	return nil
}
