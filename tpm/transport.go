package tpm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
	"github.com/google/go-tpm/tpm2/transport/linuxudstpm"
	"github.com/google/go-tpm/tpm2/transport/tcp"
)

// dial opens the transport that uri names:
//
//	/dev/tpmrm0 (any absolute path)  a character device (linuxtpm)
//	unix:///path                      a unix socket, e.g. swtpm's (linuxudstpm)
//	tcp://HOST:PORT                   swtpm's or the simulator's command port;
//	                                  the platform port is PORT+1. PowerOn is
//	                                  never sent (swtpm's control channel speaks
//	                                  its own protocol): start swtpm with
//	                                  --flags not-need-init,startup-clear.
func dial(uri string) (transport.TPMCloser, error) {
	switch {
	case strings.HasPrefix(uri, "unix://"):
		path := strings.TrimPrefix(uri, "unix://")
		if !strings.HasPrefix(path, "/") {
			return nil, fmt.Errorf("%w: %q: want unix:///absolute/path", ErrURI, uri)
		}
		t, err := linuxudstpm.Open(path)
		if err != nil {
			return nil, fmt.Errorf("open TPM socket %s: %w", path, err)
		}
		return t, nil
	case strings.HasPrefix(uri, "tcp://"):
		hostport := strings.TrimPrefix(uri, "tcp://")
		host, port, err := net.SplitHostPort(hostport)
		if err != nil {
			return nil, fmt.Errorf("%w: %q: %v", ErrURI, uri, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil || p < 1 || p > 65534 {
			return nil, fmt.Errorf("%w: %q: bad port", ErrURI, uri)
		}
		t, err := tcp.Open(tcp.Config{
			CommandAddress:  net.JoinHostPort(host, strconv.Itoa(p)),
			PlatformAddress: net.JoinHostPort(host, strconv.Itoa(p+1)),
		})
		if err != nil {
			return nil, fmt.Errorf("open TPM at %s: %w", hostport, err)
		}
		return t, nil
	case strings.HasPrefix(uri, "/"):
		fi, err := os.Stat(uri)
		if err != nil {
			return nil, fmt.Errorf("open TPM %s: %w", uri, err)
		}
		if fi.Mode()&os.ModeSocket != 0 {
			return dial("unix://" + uri)
		}
		t, err := linuxtpm.Open(uri)
		if err != nil {
			return nil, fmt.Errorf("open TPM %s: %w", uri, err)
		}
		return t, nil
	}
	return nil, fmt.Errorf("%w: %q: want /dev/tpmrm0, unix:///path or tcp://HOST:PORT", ErrURI, uri)
}

// Retry policy for TPM_RC_RETRY, TPM_RC_YIELDED and TPM_RC_TESTING: the
// delay doubles from retryFirst up to retryMax, for at most retryBudget
// in all.
var (
	retryFirst  = time.Millisecond
	retryMax    = 200 * time.Millisecond
	retryBudget = 10 * time.Second
)

// retrying resends a command the TPM answered with TPM_RC_RETRY,
// TPM_RC_YIELDED or TPM_RC_TESTING (the command was not executed), with a
// bounded exponential backoff. ctx, when set, cuts the waiting short.
type retrying struct {
	next transport.TPM
	ctx  context.Context
}

func (r *retrying) Send(cmd []byte) ([]byte, error) {
	delay := retryFirst
	var waited time.Duration
	for {
		if r.ctx != nil {
			if err := r.ctx.Err(); err != nil {
				return nil, err
			}
		}
		rsp, err := r.next.Send(cmd)
		if err != nil {
			return nil, err
		}
		if len(rsp) < 10 {
			return nil, fmt.Errorf("TPM response of %d bytes is shorter than its header", len(rsp))
		}
		switch rc := tpm2.TPMRC(binary.BigEndian.Uint32(rsp[6:10])); rc {
		case tpm2.TPMRCRetry, tpm2.TPMRCYielded, tpm2.TPMRCTesting:
			if waited >= retryBudget {
				return nil, fmt.Errorf("%w: %w after %v", ErrTPMBusy, rc, waited)
			}
			if err := r.sleep(delay); err != nil {
				return nil, err
			}
			waited += delay
			delay = min(2*delay, retryMax)
			continue
		}
		return rsp, nil
	}
}

func (r *retrying) sleep(d time.Duration) error {
	if r.ctx == nil {
		time.Sleep(d)
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-r.ctx.Done():
		return r.ctx.Err()
	}
}

// isRC reports whether err is the TPM response code rc (handle, session
// and parameter numbers ignored).
func isRC(err error, rc tpm2.TPMRC) bool { return errors.Is(err, rc) }
