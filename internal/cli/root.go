// Package cli builds vigil's cobra command tree. Each verb group lives in its
// own file with an options struct that adds its own flags; the library
// packages it calls know nothing of cobra.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

// Exit codes, stable for scripts.
const (
	ExitOK     = 0 // every file allowed, host healthy
	ExitDenied = 1 // some file denied, host unhealthy
	ExitUsage  = 2 // usage or I/O error
)

// exitError carries an exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}

func usageErr(format string, args ...any) error {
	return &exitError{code: ExitUsage, err: fmt.Errorf(format, args...)}
}

// globalOptions are flags every command has.
type globalOptions struct {
	Config   string
	LogLevel string
	LogJSON  bool
	stdout   io.Writer
	stderr   io.Writer
	logger   *slog.Logger
}

func (g *globalOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&g.Config, "config", "", "config file (YAML: flag names as keys); also $VIGIL_CONFIG")
	fs.StringVar(&g.LogLevel, "log-level", "warn", "log level: debug, info, warn, error")
	fs.BoolVar(&g.LogJSON, "log-json", false, "write logs as JSON")
}

// NewRoot returns the root command writing to stdout and stderr.
func NewRoot(stdout, stderr io.Writer) *cobra.Command {
	g := &globalOptions{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "vigil",
		Short: "Code integrity and runtime attestation for Linux fleets",
		Long: `Vigil decides whether code is signed by someone trusted and unrevoked, measures
what a host is really running, binds that to a TPM, and issues signed verdicts.

Configuration comes from a YAML file (--config or $VIGIL_CONFIG), then from
environment variables VIGIL_<FLAG_NAME> (e.g. VIGIL_POLICY, VIGIL_JOBS), then from
flags; a flag given on the command line always wins.

Exit codes: 0 allowed/healthy, 1 denied/unhealthy, 2 usage or I/O error.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyConfig(cmd, g.Config); err != nil {
				return &exitError{code: ExitUsage, err: err}
			}
			return g.setupLogging()
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	g.addFlags(root.PersistentFlags())
	root.AddCommand(
		newVerifyCmd(g),
		newScanCmd(g),
		newInspectCmd(g),
		newSignCmd(g),
		newPolicyCmd(g),
		newKernelKeysCmd(g),
		newAgentCmd(g),
		newEvidenceCmd(g),
		newServerCmd(g),
		newUpCmd(g),
		newAdminCmd(g),
		newTokenCmd(g),
		newBenchCmd(g),
		newGateCmd(g),
	)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &exitError{code: ExitUsage, err: fmt.Errorf("%w\nsee '%s --help'", err, c.CommandPath())}
	})
	return root
}

func (g *globalOptions) setupLogging() error {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(g.LogLevel)); err != nil {
		return usageErr("--log-level: %v", err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	if g.LogJSON {
		g.logger = slog.New(slog.NewJSONHandler(g.stderr, opts))
	} else {
		g.logger = slog.New(slog.NewTextHandler(g.stderr, opts))
	}
	return nil
}

// applyConfig fills flags the user did not set: first from the environment
// (VIGIL_FLAG_NAME), then from the config file. List flags take YAML lists
// or comma-separated strings.
func applyConfig(cmd *cobra.Command, path string) error {
	if path == "" {
		path = os.Getenv("VIGIL_CONFIG")
	}
	var file map[string]any
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("config: %w", err)
		}
		if err := yaml.Unmarshal(b, &file); err != nil {
			return fmt.Errorf("config %s: %w", path, err)
		}
	}
	var errs []error
	set := func(f *pflag.Flag, v string, from string) {
		if err := setFlag(f, v); err != nil {
			errs = append(errs, fmt.Errorf("%s: --%s: %w", from, f.Name, err))
		}
	}
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Name == "config" || f.Name == "help" {
			return
		}
		env := "VIGIL_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			set(f, v, "environment "+env)
			return
		}
		if v, ok := file[f.Name]; ok {
			switch x := v.(type) {
			case []any:
				parts := make([]string, len(x))
				for i, p := range x {
					parts[i] = fmt.Sprint(p)
				}
				set(f, strings.Join(parts, ","), "config "+path)
			default:
				set(f, fmt.Sprint(x), "config "+path)
			}
		}
	})
	return errors.Join(errs...)
}

func setFlag(f *pflag.Flag, v string) error {
	if sv, ok := f.Value.(pflag.SliceValue); ok {
		var items []string
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				items = append(items, s)
			}
		}
		return sv.Replace(items)
	}
	return f.Value.Set(v)
}

// Main runs vigil with args and returns the process exit code.
func Main(args []string) int {
	return Run(args, os.Stdout, os.Stderr)
}

// Run is Main with explicit output streams, for tests.
func Run(args []string, stdout, stderr io.Writer) int {
	return RunContext(context.Background(), args, stdout, stderr)
}

// RunContext is Run until ctx ends (long-running commands such as
// `vigil gate` stop as on SIGTERM), for tests.
func RunContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := NewRoot(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(stderr, "vigil:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "vigil:", err)
	return ExitUsage
}
