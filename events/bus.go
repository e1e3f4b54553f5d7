// Package events delivers api.Event values — changes of an agent's level
// or status — to webhooks and to a Server-Sent Events stream.
//
// A Bus never blocks its publisher (the HTTP request path). Publish numbers
// the event, keeps it in a bounded ring for SSE resumption, hands it to
// every SSE subscriber and queues it for every matching webhook. All
// buffers are bounded: a webhook queue that is full drops its oldest event
// (counted in Stats), and an SSE subscriber whose buffer is full is
// disconnected so that it reconnects with Last-Event-ID.
//
// Each webhook has one worker goroutine that delivers its events in order,
// signed with HMAC-SHA256 (see Sign and VerifySignature), retrying network
// errors, 5xx and 429 with exponential backoff and jitter.
package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vigil-attest/vigil/api"
)

// Defaults for the zero fields of Options.
const (
	DefaultMaxAttempts      = 8
	DefaultBackoffBase      = time.Second
	DefaultBackoffMax       = time.Minute
	DefaultQueueSize        = 1024
	DefaultRingSize         = 1024
	DefaultSubscriberBuffer = 64
	DefaultMaxSubscribers   = 256
	DefaultHeartbeat        = 15 * time.Second
	DefaultWriteTimeout     = 10 * time.Second
	DefaultDrainTimeout     = 5 * time.Second
)

// Options configure a Bus. Zero fields take the Default* values.
type Options struct {
	// Webhooks receive every published event whose type they select.
	// Check them with Validate first: New disables an invalid webhook
	// (every event for it counts as Failed and is logged).
	Webhooks []Webhook
	// Client posts to webhooks. Nil: a client with dial, TLS, header and
	// overall timeouts that does not follow redirects (a 3xx is final).
	Client *http.Client
	// MaxAttempts is how many times one event is tried per webhook.
	MaxAttempts int
	// BackoffBase and BackoffMax bound the delay before retry n:
	// min(BackoffMax, BackoffBase·2^(n-1)), with the upper half jittered.
	// A Retry-After on 429/503 replaces it, also capped at BackoffMax.
	BackoffBase, BackoffMax time.Duration
	// QueueSize bounds each webhook's queue; when full the oldest queued
	// event is dropped.
	QueueSize int
	// RingSize is how many recent events SSE clients can resume from.
	RingSize int
	// SubscriberBuffer bounds each SSE client's backlog; a client that
	// falls that far behind is disconnected.
	SubscriberBuffer int
	// MaxSubscribers bounds concurrent SSE clients (503 beyond).
	MaxSubscribers int
	// Heartbeat is the interval of SSE comment lines on an idle stream.
	Heartbeat time.Duration
	// WriteTimeout bounds each write to an SSE client.
	WriteTimeout time.Duration
	// DrainTimeout bounds how long Close lets webhook workers deliver
	// what is queued.
	DrainTimeout time.Duration
	// OnDelivery, when set, is called from a webhook worker once per
	// event with the final outcome and the attempt it came at. It must
	// be quick and safe for concurrent use.
	OnDelivery func(url string, ok bool, attempt int)
	// Logger logs delivery failures and disconnected subscribers. Nil:
	// discard.
	Logger *slog.Logger
}

func (o *Options) defaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.MaxAttempts, DefaultMaxAttempts)
	def(&o.QueueSize, DefaultQueueSize)
	def(&o.RingSize, DefaultRingSize)
	def(&o.SubscriberBuffer, DefaultSubscriberBuffer)
	def(&o.MaxSubscribers, DefaultMaxSubscribers)
	defDur(&o.BackoffBase, DefaultBackoffBase)
	defDur(&o.BackoffMax, DefaultBackoffMax)
	defDur(&o.Heartbeat, DefaultHeartbeat)
	defDur(&o.WriteTimeout, DefaultWriteTimeout)
	defDur(&o.DrainTimeout, DefaultDrainTimeout)
	if o.Client == nil {
		o.Client = defaultClient()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate checks every webhook.
func (o Options) Validate() error {
	var errs []error
	for i, w := range o.Webhooks {
		if err := w.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("webhook %d: %w", i, err))
		}
	}
	return errors.Join(errs...)
}

// Bus fans published events out to SSE subscribers and webhooks.
type Bus struct {
	o   Options
	log *slog.Logger

	mu     sync.Mutex
	closed bool
	nextID int64
	ring   []api.Event // event number i (from 0) is at ring[i%len(ring)]
	count  int64       // events ever published
	subs   map[*subscriber]struct{}
	hooks  []*hook

	published   atomic.Uint64
	slowClients atomic.Uint64

	done   chan struct{} // closed by Close: SSE handlers stop
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type subscriber struct {
	agent string
	// keep, when set, selects the events the subscriber gets.
	keep func(api.Event) bool
	ch   chan api.Event
}

// wants reports whether s gets e.
func (s *subscriber) wants(e api.Event) bool {
	return (s.agent == "" || s.agent == e.AgentID) && (s.keep == nil || s.keep(e))
}

// New starts a Bus and one worker per valid webhook.
func New(o Options) *Bus {
	o.defaults()
	ctx, cancel := context.WithCancel(context.Background())
	b := &Bus{
		o:      o,
		log:    o.Logger,
		nextID: 1,
		ring:   make([]api.Event, o.RingSize),
		subs:   make(map[*subscriber]struct{}),
		done:   make(chan struct{}),
		cancel: cancel,
	}
	for _, w := range o.Webhooks {
		h := &hook{w: w, queue: make(chan api.Event, o.QueueSize)}
		h.invalid = w.Validate()
		if h.invalid != nil {
			b.log.Error("events: webhook disabled", "url", w.URL, "err", h.invalid)
		}
		b.hooks = append(b.hooks, h)
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			b.work(ctx, h)
		}()
	}
	return b
}

// Publish numbers e (e.ID is overwritten; a zero e.Time becomes now),
// records it for resumption and fans it out. It never blocks on a
// consumer. After Close it does nothing.
func (b *Bus) Publish(e api.Event) {
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	e.ID = b.nextID
	b.nextID++
	b.ring[b.count%int64(len(b.ring))] = e
	b.count++
	b.published.Add(1)
	for s := range b.subs {
		if !s.wants(e) {
			continue
		}
		select {
		case s.ch <- e:
		default:
			// Too far behind: disconnect so it resumes with Last-Event-ID.
			delete(b.subs, s)
			close(s.ch)
			b.slowClients.Add(1)
			b.log.Warn("events: slow SSE client disconnected", "at_event", e.ID)
		}
	}
	for _, h := range b.hooks {
		if !h.w.selects(e.Type) {
			continue
		}
		select {
		case h.queue <- e:
		default:
			// Full: drop the oldest. Only Publish sends, under b.mu, so
			// after one receive there is room.
			select {
			case <-h.queue:
				h.dropped.Add(1)
			default:
			}
			h.queue <- e
		}
	}
}

// subscribe registers an SSE client and returns the retained events after
// lastID (for its agent filter) that it must be sent first.
func (b *Bus) subscribe(agent string, keep func(api.Event) bool, lastID int64) (*subscriber, []api.Event, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, nil, errClosed
	}
	if len(b.subs) >= b.o.MaxSubscribers {
		return nil, nil, errTooMany
	}
	var backlog []api.Event
	s := &subscriber{agent: agent, keep: keep, ch: make(chan api.Event, b.o.SubscriberBuffer)}
	n := int64(len(b.ring))
	for i := max(0, b.count-n); i < b.count; i++ {
		e := b.ring[i%n]
		if e.ID > lastID && s.wants(e) {
			backlog = append(backlog, e)
		}
	}
	b.subs[s] = struct{}{}
	return s, backlog, nil
}

func (b *Bus) unsubscribe(s *subscriber) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.subs[s]; ok {
		delete(b.subs, s)
		close(s.ch)
	}
}

var (
	errClosed  = errors.New("event bus closed")
	errTooMany = errors.New("too many event stream clients")
)

// Close stops accepting events, ends every SSE stream and lets webhook
// workers deliver what is queued for up to Options.DrainTimeout; then it
// abandons the rest. It returns an error when events were abandoned.
// Close is idempotent.
func (b *Bus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	close(b.done)
	for s := range b.subs {
		delete(b.subs, s)
		close(s.ch)
	}
	before := make([]uint64, len(b.hooks))
	for i, h := range b.hooks {
		before[i] = h.dropped.Load()
		close(h.queue)
	}
	b.mu.Unlock()

	timer := time.AfterFunc(b.o.DrainTimeout, b.cancel)
	b.wg.Wait()
	timer.Stop()
	b.cancel()

	var lost uint64
	for i, h := range b.hooks {
		lost += h.dropped.Load() - before[i]
	}
	if lost > 0 {
		return fmt.Errorf("events: close: %d webhook events undelivered after %v", lost, b.o.DrainTimeout)
	}
	return nil
}

// Stats is a snapshot of the bus's counters, for metrics.
type Stats struct {
	// Published counts events numbered by Publish.
	Published uint64
	// Subscribers is the number of connected SSE clients; SlowClients
	// counts those disconnected for falling behind.
	Subscribers int
	SlowClients uint64
	Webhooks    []WebhookStats
}

// WebhookStats are one webhook's counters.
type WebhookStats struct {
	URL string
	// Queued is the current queue length.
	Queued int
	// Delivered and Failed count final outcomes; Retries counts attempts
	// after the first; Dropped counts events never tried (queue overflow
	// or Close's deadline).
	Delivered, Failed, Retries, Dropped uint64
}

// Stats returns the current counters.
func (b *Bus) Stats() Stats {
	b.mu.Lock()
	st := Stats{Published: b.published.Load(), Subscribers: len(b.subs), SlowClients: b.slowClients.Load()}
	b.mu.Unlock()
	for _, h := range b.hooks {
		st.Webhooks = append(st.Webhooks, WebhookStats{
			URL:       h.w.URL,
			Queued:    len(h.queue),
			Delivered: h.delivered.Load(),
			Failed:    h.failed.Load(),
			Retries:   h.retries.Load(),
			Dropped:   h.dropped.Load(),
		})
	}
	return st
}

func (w Webhook) selects(typ string) bool {
	return len(w.Types) == 0 || slices.Contains(w.Types, typ)
}
