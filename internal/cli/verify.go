package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/vigil-attest/vigil/integrity"
	"github.com/vigil-attest/vigil/reason"
)

// verifyOptions are the flags shared by verify and scan.
type verifyOptions struct {
	engineOptions
	Output    string
	Signature string
	Jobs      int
}

func (o *verifyOptions) addFlags(fs *pflag.FlagSet, outputs string) {
	o.engineOptions.addFlags(fs)
	fs.StringVarP(&o.Output, "output", "o", "text", "output format: "+outputs)
	fs.StringVar(&o.Mode, "mode", "auto", "judge as this platform loads code: auto (by each file's kind), kernel, uefi, windows or cms; a file the mode does not fit is denied unsupported")
}

func newVerifyCmd(g *globalOptions) *cobra.Command {
	o := &verifyOptions{}
	cmd := &cobra.Command{
		Use:   "verify [flags] FILE...",
		Short: "Decide whether files may load: signature, chain, revocation and block lists",
		Long: `Verify decides, for each file, whether it is signed by a trusted, unrevoked
publisher and not on a block list. It reads Authenticode (PE/EFI: .exe .dll .sys
.efi vmlinuz), appended Linux module signatures (.ko .ko.xz .ko.zst .ko.gz) and
detached CMS signatures (FILE.p7s next to FILE, or --signature).

Each verdict is taken under a mode, the platform whose loading rules apply,
shown in the output: kernel for modules, uefi for PE images whose subsystem
is EFI (10 to 13), windows for other PE images, cms for detached signatures.
--mode forces one; a file it does not fit (a PE in kernel mode, a non-EFI PE
in uefi mode) is denied with reason unsupported.

Exit code 0 when every file is allowed, 1 when any is denied, 2 on a usage or
I/O error. --output json prints one JSON object per file (JSON Lines).`,
		Example: `  vigil verify --policy policy.yaml driver.sys
  vigil verify --trust uefi-ca.pem --ignore-expiry shimx64.efi
  vigil verify --kernel /boot/vmlinuz-$(uname -r) --output json /lib/modules/$(uname -r)/kernel/fs/fuse/fuse.ko`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Output != "text" && o.Output != "json" {
				return usageErr("--output must be text or json")
			}
			if o.Signature != "" && len(args) != 1 {
				return usageErr("--signature needs exactly one FILE")
			}
			eng, err := o.build(g.logger)
			if err != nil {
				return err
			}
			var verdicts []*integrity.Verdict
			ioFailed := false
			if o.Signature != "" {
				v, err := eng.VerifyFileWith(cmd.Context(), args[0], o.Signature)
				if err != nil {
					g.logger.Error("verify failed", "path", args[0], "err", err)
					ioFailed = true
				}
				verdicts = append(verdicts, v)
			} else {
				tick, finish := progress(g, o.Output, len(args), "verifying")
				res := scanFiles(cmd.Context(), eng, args, o.Jobs, true, tick)
				finish()
				for _, r := range res {
					if r.err != nil {
						g.logger.Error("verify failed", "path", r.path, "err", r.err)
						ioFailed = true
					}
					if r.v == nil {
						r.v = &integrity.Verdict{Path: r.path, Format: integrity.FormatUnknown, Error: "not verified"}
					}
					verdicts = append(verdicts, r.v)
				}
			}
			// Several files get a summary table under their lines.
			if err := writeVerdicts(g.stdout, o.Output, verdicts, len(verdicts) > 1, true); err != nil {
				return err
			}
			return verdictExit(verdicts, ioFailed)
		},
	}
	o.addFlags(cmd.Flags(), "text, json")
	cmd.Flags().StringVar(&o.Signature, "signature", "", "detached CMS signature for the single FILE (default FILE.p7s when present)")
	cmd.Flags().IntVarP(&o.Jobs, "jobs", "j", runtime.NumCPU(), "files verified in parallel (output keeps argument order)")
	return cmd
}

func verdictExit(vs []*integrity.Verdict, ioFailed bool) error {
	if ioFailed {
		return &exitError{code: ExitUsage}
	}
	for _, v := range vs {
		if !v.Allowed {
			return &exitError{code: ExitDenied}
		}
	}
	return nil
}

func writeVerdicts(w io.Writer, format string, vs []*integrity.Verdict, summary, verbose bool) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		for _, v := range vs {
			if err := enc.Encode(v); err != nil {
				return err
			}
		}
	case "sarif":
		return writeSARIF(w, vs)
	default:
		for _, v := range vs {
			// A scan lists only what needs attention; verify lists all.
			if summary && v.Allowed && !verbose {
				continue
			}
			writeVerdictText(w, v)
		}
		if summary {
			writeSummary(w, vs)
		}
	}
	return nil
}

func writeVerdictText(w io.Writer, v *integrity.Verdict) {
	status := "ALLOWED"
	if !v.Allowed {
		status = "DENIED "
	}
	signer := ""
	for _, s := range v.Signatures {
		if s.Signer != nil && (s.Valid || signer == "") {
			signer = s.Signer.Subject
			if s.Valid {
				break
			}
		}
	}
	kind := string(v.Format)
	if v.Mode != "" {
		kind += " " + string(v.Mode)
	}
	line := fmt.Sprintf("%s %s [%s]", status, v.Path, kind)
	if signer != "" {
		line += fmt.Sprintf(" signer=%q", signer)
	}
	if len(v.Reasons) > 0 {
		line += " reasons=" + joinCodes(v.Reasons)
	}
	if v.Error != "" && !v.Allowed {
		line += " error=" + fmt.Sprintf("%q", v.Error)
	}
	fmt.Fprintln(w, line)
}

func joinCodes(cs []reason.Code) string {
	s := make([]string, len(cs))
	for i, c := range cs {
		s[i] = string(c)
	}
	return strings.Join(s, ",")
}

func writeSummary(w io.Writer, vs []*integrity.Verdict) {
	allowed, denied := 0, 0
	byReason := map[reason.Code]int{}
	byFormat := map[integrity.Format]int{}
	for _, v := range vs {
		byFormat[v.Format]++
		if v.Allowed {
			allowed++
		} else {
			denied++
			for _, r := range v.Reasons {
				byReason[r]++
			}
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nSUMMARY\tFILES")
	fmt.Fprintf(tw, "allowed\t%d\n", allowed)
	fmt.Fprintf(tw, "denied\t%d\n", denied)
	var fs []string
	for f := range byFormat {
		fs = append(fs, string(f))
	}
	sort.Strings(fs)
	for _, f := range fs {
		fmt.Fprintf(tw, "format %s\t%d\n", f, byFormat[integrity.Format(f)])
	}
	var rs []string
	for r := range byReason {
		rs = append(rs, string(r))
	}
	sort.Strings(rs)
	for _, r := range rs {
		fmt.Fprintf(tw, "reason %s\t%d\n", r, byReason[reason.Code(r)])
	}
	tw.Flush()
}

// scanOptions adds the scan-only flags.
type scanOptions struct {
	verifyOptions
	All     bool
	Verbose bool
}

func newScanCmd(g *globalOptions) *cobra.Command {
	o := &scanOptions{}
	cmd := &cobra.Command{
		Use:   "scan [flags] PATH...",
		Short: "Verify every signed-code file under directories, in parallel",
		Long: `Scan walks each PATH recursively and verifies every file in a format Vigil
knows (PE/EFI images, kernel modules, and files with a .p7s detached signature),
in parallel. Other files are skipped unless --all is given, in which case they
are reported as unsigned. Each file is judged under the mode of its kind
(kernel, uefi, windows, cms; see vigil verify --help) unless --mode says
otherwise.

Output: text (a progress bar on a terminal, the denied files, and a summary
table; --verbose lists allowed files too), json (JSON Lines,
one object per file, in path order), or sarif (SARIF 2.1.0 for code scanning UIs).
Exit code 0 when every file is allowed, 1 when any is denied, 2 on a usage or I/O
error.`,
		Example: `  vigil scan --kernel /boot/vmlinuz-$(uname -r) /lib/modules/$(uname -r)
  vigil scan --policy drivers.yaml --output sarif ./build > vigil.sarif`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch o.Output {
			case "text", "json", "sarif":
			default:
				return usageErr("--output must be text, json or sarif")
			}
			eng, err := o.build(g.logger)
			if err != nil {
				return err
			}
			files, err := collectFiles(args)
			if err != nil {
				return &exitError{code: ExitUsage, err: err}
			}
			tick, finish := progress(g, o.Output, len(files), "scanning")
			res := scanFiles(cmd.Context(), eng, files, o.Jobs, o.All, tick)
			finish()
			var vs []*integrity.Verdict
			ioFailed := false
			for _, r := range res {
				if r.err != nil {
					g.logger.Error("scan failed", "path", r.path, "err", r.err)
					ioFailed = true
				}
				if r.v != nil && !r.skipped {
					vs = append(vs, r.v)
				}
			}
			g.logger.Info("scan done", "files", len(files), "verified", len(vs))
			if err := writeVerdicts(g.stdout, o.Output, vs, true, o.Verbose); err != nil {
				return err
			}
			return verdictExit(vs, ioFailed)
		},
	}
	o.addFlags(cmd.Flags(), "text, json, sarif")
	cmd.Flags().IntVarP(&o.Jobs, "jobs", "j", runtime.NumCPU(), "parallel workers")
	cmd.Flags().BoolVar(&o.All, "all", false, "also report files in no known signed format (as unsigned)")
	cmd.Flags().BoolVarP(&o.Verbose, "verbose", "v", false, "text output lists allowed files too, not only denied ones")
	return cmd
}

// progress shows a progress bar on a terminal for text output. tick counts
// one file done; finish clears the bar. Both are no-ops otherwise.
func progress(g *globalOptions, output string, n int, label string) (tick, finish func()) {
	if output != "text" || n < 2 || !isTerminal(g.stderr) {
		return func() {}, func() {}
	}
	bar := progressbar.NewOptions(n, progressbar.OptionSetWriter(g.stderr),
		progressbar.OptionSetDescription(label), progressbar.OptionShowCount(),
		progressbar.OptionClearOnFinish(), progressbar.OptionThrottle(100_000_000))
	return func() { bar.Add(1) }, func() { bar.Finish() }
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// collectFiles expands directories recursively, sorted, without following
// symbolic links to directories. Detached .p7s files are not listed
// themselves.
func collectFiles(paths []string) ([]string, error) {
	var out []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			out = append(out, p)
			continue
		}
		// A PATH that is a symbolic link to a directory is walked (links
		// inside it are not followed).
		if lst, err := os.Lstat(p); err == nil && lst.Mode()&os.ModeSymlink != 0 {
			if p, err = filepath.EvalSymlinks(p); err != nil {
				return nil, err
			}
		}
		err = filepath.WalkDir(p, func(path string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.Type().IsRegular() && !strings.HasSuffix(path, ".p7s") {
				out = append(out, path)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	sort.Strings(out)
	return out, nil
}

type scanResult struct {
	path    string
	v       *integrity.Verdict
	err     error
	skipped bool
}

// scanFiles verifies files with jobs workers and returns results in input
// order.
func scanFiles(ctx context.Context, eng *integrity.Engine, files []string, jobs int, all bool, done func()) []scanResult {
	res := make([]scanResult, len(files))
	if jobs < 1 {
		jobs = 1
	}
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < jobs; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				v, err := eng.VerifyFile(ctx, files[i])
				res[i] = scanResult{path: files[i], v: v, err: err, skipped: err == nil && !all && v.Format == integrity.FormatUnknown}
				done()
			}
		}()
	}
	for i := range files {
		if ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	return res
}
