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
// appears (escape sequences removed; "" waits for nothing) in what the
// guest wrote after the previous step's keys were sent, then pause Delay
// and send Send. Output from before the keys is dropped when they are
// sent, so a screen redrawn late cannot answer the next step's wait.
type ConsoleStep struct {
	Wait  string
	Delay time.Duration
	Send  string
	// Dismiss are message boxes that may come while waiting: each is
	// answered with Enter and the wait goes on.
	Dismiss []string
	// Within, when set, bounds the wait: without Wait by then the keys
	// are sent anyway (a screen whose keys are known but whose text may
	// come late).
	Within time.Duration
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
		var giveUp <-chan time.Time
		if s.Within > 0 {
			giveUp = time.After(s.Within)
		}
	wait:
		for s.Wait != "" {
			clean := ansi.ReplaceAll(raw, nil)
			if j := bytes.Index(clean, []byte(s.Wait)); j >= 0 {
				// Consume through the match: the next step waits for
				// text after it.
				raw = clean[j+len(s.Wait):]
				break
			}
			dismissed := false
			for _, d := range s.Dismiss {
				if j := bytes.Index(clean, []byte(d)); j >= 0 {
					time.Sleep(time.Second)
					raw = raw[:0]
					if _, err := conn.Write([]byte(KeyEnter)); err != nil {
						return fmt.Errorf("testvm: console: step %d: dismiss %q: %w", i, d, err)
					}
					dismissed = true
				}
			}
			if dismissed {
				continue
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
			case <-giveUp:
				break wait
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
			// Drop what came before the keys (drain what is queued).
			for drained := false; !drained; {
				select {
				case _, ok := <-data:
					drained = !ok
				default:
					drained = true
				}
			}
			raw = raw[:0]
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
