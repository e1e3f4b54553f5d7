package testvm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Boot is one guest run.
type Boot struct {
	// Disk is the GPT disk image BuildDisk wrote (attached as virtio-blk,
	// bootindex=1).
	Disk string
	// Vars is the guest's UEFI variable store; "" copies Parts.OVMFVars
	// (Microsoft's keys: Secure Boot on). The boot writes to it.
	Vars string
	// TPMState is a provisioned swtpm state directory (from
	// testtpm.Start(…).StateDir, stopped); the boot writes to it.
	TPMState string
	// Share is the host directory the guest mounts as 9p tag "share".
	Share string
	// Timeout bounds the whole boot (default 3 minutes): the guest is
	// killed when it has not powered off by then.
	Timeout time.Duration
	// MemoryMiB is the guest's RAM (default 768: the initramfs is unpacked
	// into a ramfs root).
	MemoryMiB int
	// Console, when set, drives the serial console (console.go): each
	// step waits for its text and sends its keys, as an operator at the
	// firmware's or MokManager's prompt would.
	Console []ConsoleStep
	// Forwards, when set, give the guest an e1000 NIC on a restricted
	// qemu user network (restrict=on: no route out of the guest) where
	// each forward is the only reachable address: a connection to its
	// Guest address (10.0.2.100:PORT) is relayed by socat to Host
	// (127.0.0.1:PORT). The guest loads e1000 and configures eth0
	// itself (10.0.2.15/24).
	Forwards []Forward
	// Kernel, when set, is passed to qemu as -kernel (with Initrd as
	// -initrd and Append as -append): OVMF then starts it through its
	// own loader, which under Secure Boot neither verifies nor measures
	// it (the unsigned-kernel boot). The disk is still attached.
	Kernel, Initrd, Append string
	// StopOn, when set, ends the boot as soon as the serial console
	// shows it (a boot that is meant to stop at a firmware or shim
	// screen): the guest is killed, Run returns no error and
	// Result.Stopped is true.
	StopOn string
}

// Forward is one guest address relayed to a host address.
type Forward struct {
	Guest string // IP:PORT on the guest's network, e.g. 10.0.2.100:8080
	Host  string // IP:PORT on the host, e.g. 127.0.0.1:8080
}

// ForwardTo is the forward that gives the guest the service at hostAddr
// (127.0.0.1:PORT) as 10.0.2.100:PORT, the one address it can reach.
func ForwardTo(hostAddr string) (Forward, error) {
	_, port, err := net.SplitHostPort(hostAddr)
	if err != nil {
		return Forward{}, fmt.Errorf("testvm: forward to %q: %w", hostAddr, err)
	}
	return Forward{Guest: "10.0.2.100:" + port, Host: hostAddr}, nil
}

// Result is what a boot left.
type Result struct {
	// Serial is the serial console: firmware, shim, grub, the kernel and
	// /init's output.
	Serial string
	// Elapsed is from qemu's start to its exit.
	Elapsed time.Duration
	// Stopped: the serial console showed Boot.StopOn.
	Stopped bool
}

// ErrTimeout is returned when the guest did not power off in time.
var ErrTimeout = errors.New("testvm: the guest did not power off before the timeout")

// Run boots the guest under OVMF Secure Boot with a swtpm TPM and waits
// until it powers off. qemu and swtpm are started by Run and killed by
// their PIDs when it returns (and die with the test process, by
// Pdeathsig), so nothing is left running.
func Run(ctx context.Context, p Parts, b Boot) (result *Result, runErr error) {
	if b.Timeout == 0 {
		b.Timeout = 3 * time.Minute
	}
	if b.MemoryMiB == 0 {
		b.MemoryMiB = 768
	}
	// A short directory: unix socket paths are limited to 108 bytes.
	run, err := os.MkdirTemp("", "vvm")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(run)
	if b.Vars == "" {
		b.Vars = filepath.Join(run, "vars.fd")
		if err := copyFile(p.OVMFVars, b.Vars); err != nil {
			return nil, fmt.Errorf("testvm: copy the OVMF variables: %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, b.Timeout)
	defer cancel()

	sock := filepath.Join(run, "tpm.ctrl")
	tpmLog := filepath.Join(run, "swtpm.log")
	swtpm, err := start(ctx, p.Swtpm, nil, "socket", "--tpm2",
		"--tpmstate", "dir="+b.TPMState,
		"--ctrl", "type=unixio,path="+sock,
		"--log", "file="+tpmLog+",level=1")
	if err != nil {
		return nil, fmt.Errorf("testvm: start swtpm: %w", err)
	}
	defer swtpm.stop()
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		select {
		case <-swtpm.done:
			return nil, fmt.Errorf("testvm: swtpm exited: %s", tail(tpmLog))
		case <-ctx.Done():
			return nil, fmt.Errorf("testvm: swtpm did not create its socket: %s", tail(tpmLog))
		case <-time.After(10 * time.Millisecond):
		}
	}

	serial := filepath.Join(run, "serial.log")
	args := []string{
		"-accel", "tcg", "-cpu", "max", "-smp", "1", "-m", fmt.Sprint(b.MemoryMiB),
		"-machine", "q35,smm=on",
		"-global", "driver=cfi.pflash01,property=secure,value=on",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + p.OVMFCode,
		"-drive", "if=pflash,format=raw,unit=1,file=" + b.Vars,
		"-chardev", "socket,id=chrtpm,path=" + sock,
		"-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
		"-device", "tpm-tis,tpmdev=tpm0",
		"-drive", "if=none,id=disk0,format=raw,file=" + b.Disk,
		"-device", "virtio-blk-pci,drive=disk0,bootindex=1",
		"-virtfs", "local,path=" + b.Share + ",mount_tag=share,security_model=none,id=share",
	}
	if b.Kernel != "" {
		args = append(args, "-kernel", b.Kernel, "-initrd", b.Initrd, "-append", b.Append)
	}
	if len(b.Forwards) > 0 {
		if p.Socat == "" {
			return nil, errors.New("testvm: a forward needs socat on the host")
		}
		netdev := "user,id=n0,restrict=on"
		for _, f := range b.Forwards {
			if strings.ContainsAny(f.Guest+f.Host, ", ") {
				return nil, fmt.Errorf("testvm: forward %q → %q: an address has a comma or space", f.Guest, f.Host)
			}
			// qemu runs the command per connection, the connection on
			// its standard input and output (net/slirp.c, guestfwd).
			netdev += ",guestfwd=tcp:" + f.Guest + "-cmd:" + p.Socat + " - TCP:" + f.Host
		}
		args = append(args, "-netdev", netdev, "-device", "e1000,netdev=n0")
	}
	serialDev := "file,id=ser0,path=" + serial
	if len(b.Console) > 0 {
		serialDev = consoleChardev(run, serial)
	}
	args = append(args,
		"-nodefaults", "-display", "none", "-monitor", "none", "-no-reboot",
		"-chardev", serialDev, "-serial", "chardev:ser0",
	)
	if len(b.Console) > 0 {
		// The script runs beside the boot; one that fails (a prompt
		// that never came) ends the boot at once, with its error.
		var stop context.CancelCauseFunc
		ctx, stop = context.WithCancelCause(ctx)
		go func() {
			if err := driveConsole(ctx, run, b.Console); err != nil {
				stop(err)
			}
		}()
		defer func() {
			if c := context.Cause(ctx); errors.Is(runErr, ErrTimeout) && c != nil && !errors.Is(c, context.DeadlineExceeded) && !errors.Is(c, context.Canceled) {
				runErr = fmt.Errorf("%w (%v)", c, runErr)
			}
		}()
	}
	var qout bytes.Buffer
	t0 := time.Now()
	qemu, err := start(ctx, p.QEMU, &qout, args...)
	if err != nil {
		return nil, fmt.Errorf("testvm: start qemu: %w", err)
	}
	defer qemu.stop()
	var waitErr error
	var tick <-chan time.Time
	if b.StopOn != "" {
		tk := time.NewTicker(250 * time.Millisecond)
		defer tk.Stop()
		tick = tk.C
	}
	stopped := false
wait:
	for {
		select {
		case <-qemu.done:
			waitErr = qemu.err
			break wait
		case <-ctx.Done():
			waitErr = ErrTimeout
			break wait
		case <-tick:
			if s, _ := os.ReadFile(serial); bytes.Contains(s, []byte(b.StopOn)) {
				stopped = true
				break wait
			}
		}
	}
	qemu.stop()
	res := &Result{Elapsed: time.Since(t0), Stopped: stopped}
	s, _ := os.ReadFile(serial)
	res.Serial = string(s)
	if waitErr != nil {
		return res, fmt.Errorf("testvm: qemu after %s: %w; qemu: %s; swtpm: %s; serial tail: %s",
			res.Elapsed.Round(time.Second), waitErr, strings.TrimSpace(qout.String()), tail(tpmLog), lastLines(res.Serial, 15))
	}
	return res, nil
}

// proc is a started child, killed by its PID.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	once sync.Once
}

func start(ctx context.Context, name string, out io.Writer, args ...string) (*proc, error) {
	cmd := exec.Command(name, args...)
	if out == nil {
		out = io.Discard
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	return p, nil
}

// stop kills the process by its PID (SIGTERM, SIGKILL after 3 s) and
// waits for it.
func (p *proc) stop() {
	p.once.Do(func() {
		select {
		case <-p.done:
			return
		default:
		}
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(3 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
	})
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o600)
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	return lastLines(string(b), 10)
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// Vigil builds a static vigil (CGO_ENABLED=0) from this worktree into a
// test directory and returns its path.
func Vigil(tb testing.TB) string {
	tb.Helper()
	_, file, _, _ := runtime.Caller(0)
	out := filepath.Join(tb.TempDir(), "vigil")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./cmd/vigil")
	cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("testvm: build a static vigil: %v: %s", err, b)
	}
	return out
}
