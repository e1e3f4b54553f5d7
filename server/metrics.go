package server

import (
	"log/slog"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Who may read /metrics (Options.MetricsAuth).
const (
	// MetricsPublic serves the metrics to anyone who reaches the
	// listener (the default).
	MetricsPublic = "public"
	// MetricsAdmin requires the admin bearer token (401 unauthorized
	// otherwise, as the admin API).
	MetricsAdmin = "admin"
)

// MetricsHandler serves the Prometheus metrics under Options.MetricsAuth.
// It is what Handler routes at /metrics, unless Options.MetricsSeparate
// took the metrics off the API handler to serve them on a listener of
// their own.
func (s *Server) MetricsHandler() http.Handler { return s.metricsHTTP }

func (s *Server) metricsHandler() http.Handler {
	h := promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	})
	if s.o.MetricsAuth == MetricsAdmin {
		return s.admin(func(w http.ResponseWriter, r *http.Request) error {
			h.ServeHTTP(w, r)
			return nil
		})
	}
	return h
}

// metrics are the service's Prometheus metrics, in a registry of the
// server's own (never the global one: tests start several servers).
type metrics struct {
	reg            *prometheus.Registry
	requests       *prometheus.CounterVec
	latency        *prometheus.HistogramVec
	attestations   *prometheus.CounterVec
	appraisal      prometheus.Histogram
	storeErrors    *prometheus.CounterVec
	nonceRejected  *prometheus.CounterVec
	agents         *prometheus.GaugeVec
	panics         prometheus.Counter
	pruned         prometheus.Counter
	rateLimited    *prometheus.CounterVec
	unattributed   *prometheus.CounterVec
	inFlight       prometheus.Gauge
	limiterBuckets prometheus.GaugeFunc
}

func newMetrics(limiterSize func() int) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_http_requests_total", Help: "HTTP requests by route pattern and status code.",
	}, []string{"route", "code"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "vigil_http_request_duration_seconds", Help: "HTTP request latency by route pattern and status code.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"route", "code"})
	m.attestations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_attestations_total", Help: "Appraised attestations by security level and EAR status.",
	}, []string{"level", "status"})
	m.appraisal = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "vigil_appraisal_duration_seconds", Help: "Time to appraise evidence (verification and policy).",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
	})
	m.storeErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_store_errors_total", Help: "Store operations that failed, by operation.",
	}, []string{"op"})
	m.nonceRejected = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_nonce_rejections_total", Help: "Nonces refused, by problem code.",
	}, []string{"code"})
	m.agents = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "vigil_agents", Help: "Enrolled agents by status (counted in the store every minute, kept current in between by this replica's changes).",
	}, []string{"status"})
	m.panics = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "vigil_http_panics_total", Help: "Handler panics recovered (answered 500).",
	})
	m.pruned = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "vigil_pruned_rows_total", Help: "Result and nonce rows deleted by retention.",
	})
	m.rateLimited = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_rate_limited_total", Help: "Requests refused by a rate limit, by scope (agent: the agent's budget; client: the caller address's).",
	}, []string{"scope"})
	m.unattributed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_not_from_agent_total", Help: "Challenge key proofs and evidence not signed by an enrolled key of their agent ID (answered unknown-agent or with a bare nonce), by evidence reason.",
	}, []string{"reason"})
	m.inFlight = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "vigil_http_requests_in_flight", Help: "HTTP requests being served.",
	})
	m.limiterBuckets = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "vigil_rate_limiter_buckets", Help: "Rate-limit buckets (per agent and per client) held in memory.",
	}, func() float64 { return float64(limiterSize()) })
	m.reg.MustRegister(m.requests, m.latency, m.attestations, m.appraisal, m.storeErrors,
		m.nonceRejected, m.agents, m.panics, m.pruned, m.rateLimited, m.unattributed, m.inFlight, m.limiterBuckets,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) attested(level int, status string) {
	m.attestations.WithLabelValues(strconv.Itoa(level), status).Inc()
}
