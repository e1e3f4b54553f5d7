package testvm

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"time"
)

// ConsoleStep is one exchange on the serial console: wait until Wait
// appears (after the previous step's match; escape sequences removed, ""
// waits for nothing), then pause Delay and send Send.
type ConsoleStep struct {
	Wait  string
	Delay time.Duration
	Send  string
}

// Keys as a VT100 terminal sends them, which OVMF's serial terminal reads.
const (
	KeyDown  = "\x1b[B"
	KeyEnter = "\r"
)

func consoleSocket(run string) string { return filepath.Join(run, "console.sock") }

// consoleChardev is the serial chardev when a script drives the console:
// a unix socket qemu listens on and waits for before it starts the guest
// (so no output is lost), with everything logged to the serial file too.
func consoleChardev(run, serial string) string {
	return "socket,id=ser0,path=" + consoleSocket(run) + ",server=on,wait=on,logfile=" + serial
}

// ansi matches the escape sequences OVMF's terminal emits (CSI … final
// byte) and the character-set selections.
var ansi = regexp.MustCompile(`\x1b(\[[0-9;?]*[ -/]*[@-~]|[()][0-9A-Za-z])`)

// driveConsole connects to the console and plays the steps. It returns
// when the last step was sent, or with an error naming the step whose
// text did not come.
func driveConsole(ctx context.Context, run string, steps []ConsoleStep) error {
	var conn net.Conn
	var err error
	for {
		conn, err = net.Dial("unix", consoleSocket(run))
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("testvm: console: %w", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	go func() { <-ctx.Done(); conn.Close() }()
	data := make(chan []byte, 64)
	go func() {
		defer close(data)
		for {
			b := make([]byte, 4096)
			n, err := conn.Read(b)
			if n > 0 {
				data <- b[:n]
			}
			if err != nil {
				return
			}
		}
	}()
	var seen []byte // since the previous match, escapes removed
	var raw []byte
	for i, s := range steps {
		for s.Wait != "" {
			clean := ansi.ReplaceAll(raw, nil)
			if j := bytes.Index(clean, []byte(s.Wait)); j >= 0 {
				// Consume through the match: the next step waits for
				// text after it.
				raw = clean[j+len(s.Wait):]
				break
			}
			seen = clean
			select {
			case b, ok := <-data:
				if !ok {
					return fmt.Errorf("testvm: console closed waiting for step %d %q; last output: %q", i, s.Wait, tailBytes(seen, 300))
				}
				raw = append(raw, b...)
			case <-ctx.Done():
				return fmt.Errorf("testvm: console: step %d: %q did not appear; last output: %q", i, s.Wait, tailBytes(seen, 300))
			}
		}
		if s.Delay > 0 {
			select {
			case <-time.After(s.Delay):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if s.Send != "" {
			if _, err := conn.Write([]byte(s.Send)); err != nil {
				return fmt.Errorf("testvm: console: step %d: send: %w", i, err)
			}
		}
	}
	// Keep reading so that qemu never blocks on a full socket.
	go func() {
		for range data {
		}
	}()
	return nil
}

func tailBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
