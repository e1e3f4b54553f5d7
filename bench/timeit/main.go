// Command timeit runs shell commands several times, interleaved, and prints
// the median wall time, CPU time (user+system of the command and every
// descendant it waited for) and maximum RSS of each, as shell assignments
// for bench/run.sh to eval.
//
//	timeit [-runs 5] [-warmup 1] [-timeout 5m] [-budget 0] [-prefix P] LABEL 'CMD' [LABEL 'CMD' ...]
//
// Runs are interleaved (A B A B ...) so that load from other processes on a
// shared machine falls on every command alike. Every run must exit 0: a
// non-zero exit or a timeout makes timeit exit 1 without printing results,
// so a failing command is never timed as if it had succeeded. It also
// prints, for every command but the last, the ratio of its medians to the
// last command's and the median of the per-round ratios (P_ratio,
// P_pair_ratio, P_cpu_ratio with two commands; P_LABEL_ratio, ... with
// more). With -budget, no new round starts
// once the budget is spent and at least 3 rounds are done (a loaded
// machine then gets fewer runs, not an unbounded wait); P_runs says how
// many rounds were timed.
//
// Output, one assignment a line (LABEL must be a shell identifier):
//
//	P_LABEL_wall=4.123456   median wall seconds
//	P_LABEL_cpu=3.5         median user+system seconds
//	P_LABEL_rss=78684       median max RSS, KiB
//	P_LABEL_min=… P_LABEL_max=…   wall range
//	P_ratio=…  P_pair_ratio=…  P_cpu_ratio=…   (two commands)
//	P_LABEL_ratio=… P_LABEL_pair_ratio=… P_LABEL_cpu_ratio=…   (more)
//	P_runs=5                rounds timed
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"syscall"
	"time"
)

type sample struct{ wall, cpu, rss float64 }

type job struct {
	label, cmd string
	runs       []sample
}

var ident = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func main() {
	runs := flag.Int("runs", 5, "timed runs of each command")
	warmup := flag.Int("warmup", 1, "untimed runs of each command first")
	timeout := flag.Duration("timeout", 5*time.Minute, "limit for one run")
	prefix := flag.String("prefix", "T", "prefix of the printed variable names")
	budget := flag.Duration("budget", 0, "start no new round after this long once 3 rounds are done (0: no limit)")
	flag.Parse()
	args := flag.Args()
	if len(args) == 0 || len(args)%2 != 0 || !ident.MatchString(*prefix) || *runs < 1 {
		fmt.Fprintln(os.Stderr, "usage: timeit [-runs N] [-warmup N] [-timeout D] [-prefix P] LABEL CMD [LABEL CMD ...]")
		os.Exit(2)
	}
	var jobs []*job
	for i := 0; i < len(args); i += 2 {
		if !ident.MatchString(args[i]) {
			fmt.Fprintf(os.Stderr, "timeit: label %q is not a shell identifier\n", args[i])
			os.Exit(2)
		}
		jobs = append(jobs, &job{label: args[i], cmd: args[i+1]})
	}
	began := time.Now()
	done := 0
	for round := -*warmup; round < *runs; round++ {
		if *budget > 0 && done >= 3 && time.Since(began) > *budget {
			fmt.Fprintf(os.Stderr, "  [%s] budget %v spent: stopping after %d rounds\n", *prefix, *budget, done)
			break
		}
		for _, j := range jobs {
			s, err := run(j.cmd, *timeout)
			what := "warmup"
			if round >= 0 {
				what = fmt.Sprintf("run %d/%d", round+1, *runs)
			}
			if err != nil {
				fmt.Fprintf(os.Stderr, "timeit: [%s] %s %s: %v\n  command: %s\n", *prefix, j.label, what, err, j.cmd)
				os.Exit(1)
			}
			fmt.Fprintf(os.Stderr, "  [%s] %-8s %-9s wall %7.3f s  cpu %7.3f s  maxrss %7.1f MiB\n", *prefix, j.label, what, s.wall, s.cpu, s.rss/1024)
			if round >= 0 {
				j.runs = append(j.runs, s)
			}
		}
		if round >= 0 {
			done++
		}
	}
	fmt.Printf("%s_runs=%d\n", *prefix, done)
	for _, j := range jobs {
		p := *prefix + "_" + j.label
		walls := pick(j.runs, func(s sample) float64 { return s.wall })
		fmt.Printf("%s_wall=%.6f\n", p, median(walls))
		fmt.Printf("%s_cpu=%.6f\n", p, median(pick(j.runs, func(s sample) float64 { return s.cpu })))
		fmt.Printf("%s_rss=%.0f\n", p, median(pick(j.runs, func(s sample) float64 { return s.rss })))
		fmt.Printf("%s_min=%.6f\n%s_max=%.6f\n", p, slices.Min(walls), p, slices.Max(walls))
	}
	// Ratios of every command but the last to the last one.
	last := jobs[len(jobs)-1]
	for _, j := range jobs[:len(jobs)-1] {
		p := *prefix + "_" + j.label
		if len(jobs) == 2 {
			p = *prefix
		}
		ratios(p, j.runs, last.runs)
	}
}

// ratios prints P_ratio (of the wall medians), P_pair_ratio (median of the
// per-round ratios) and P_cpu_ratio (of the CPU medians) of a to b.
func ratios(p string, a, b []sample) {
	pairs := make([]float64, len(a))
	for i := range a {
		pairs[i] = a[i].wall / b[i].wall
	}
	wall := func(s sample) float64 { return s.wall }
	cpu := func(s sample) float64 { return s.cpu }
	fmt.Printf("%s_ratio=%.6f\n", p, median(pick(a, wall))/median(pick(b, wall)))
	fmt.Printf("%s_pair_ratio=%.6f\n", p, median(pairs))
	fmt.Printf("%s_cpu_ratio=%.6f\n", p, median(pick(a, cpu))/median(pick(b, cpu)))
}

// run runs cmd with sh -c in its own process group, stdin from /dev/null,
// and kills the whole group when it outlives timeout.
func run(cmd string, timeout time.Duration) (sample, error) {
	c := exec.Command("sh", "-c", cmd)
	// The commands redirect their own output; stdout stays ours (nil
	// discards what they print), stderr goes to the log.
	c.Stderr = os.Stderr
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	if err := c.Start(); err != nil {
		return sample{}, err
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(timeout):
		_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
		<-done
		return sample{}, fmt.Errorf("timed out after %v", timeout)
	}
	wall := time.Since(start).Seconds()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return sample{}, fmt.Errorf("exit status %d (want 0)", ee.ExitCode())
		}
		return sample{}, err
	}
	ru, ok := c.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return sample{wall: wall}, nil
	}
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	return sample{wall: wall, cpu: cpu, rss: float64(ru.Maxrss)}, nil
}

func pick(s []sample, f func(sample) float64) []float64 {
	out := make([]float64, len(s))
	for i, x := range s {
		out[i] = f(x)
	}
	return out
}

func median(x []float64) float64 {
	s := slices.Clone(x)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
