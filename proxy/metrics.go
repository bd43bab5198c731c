package proxy

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Login outcomes, as counted.
const (
	outcomeOK          = "ok"
	outcomeFailed      = "failed"      // wrong password or unknown user
	outcomeUnavailable = "unavailable" // directory or backend outage
	outcomeRefused     = "refused"     // no TLS under --require-tls, loop, no backend
)

// Metrics are the proxy's Prometheus metrics. A nil *Metrics records
// nothing.
type Metrics struct {
	logins        *prometheus.CounterVec
	sessions      *prometheus.GaugeVec
	bytes         *prometheus.CounterVec
	directory     prometheus.Observer
	backend       prometheus.Observer
	backendErrors prometheus.Counter
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	buckets := []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	m := &Metrics{
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tohost_proxy_logins_total", Help: "Logins by protocol and outcome (ok, failed, unavailable, refused)."},
			[]string{"protocol", "outcome"}),
		sessions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tohost_proxy_sessions", Help: "Client connections open, by protocol."}, []string{"protocol"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tohost_proxy_relayed_bytes_total", Help: "Bytes relayed after login, by protocol and direction (in: from clients, out: to clients)."},
			[]string{"protocol", "direction"}),
	}
	dir := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "tohost_proxy_directory_seconds", Help: "Time of one directory check or lookup.", Buckets: buckets})
	be := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "tohost_proxy_backend_seconds", Help: "Time to connect to a backend and replay a login.", Buckets: buckets})
	m.backendErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tohost_proxy_backend_errors_total", Help: "Backend connections that failed (refused, timed out, TLS, refused login)."})
	m.directory, m.backend = dir, be
	reg.MustRegister(m.logins, m.sessions, m.bytes, dir, be, m.backendErrors)
	return m
}

func (m *Metrics) login(p Protocol, outcome string) {
	if m != nil {
		m.logins.WithLabelValues(p.String(), outcome).Inc()
	}
}

func (m *Metrics) sessionOpened(p Protocol) {
	if m != nil {
		m.sessions.WithLabelValues(p.String()).Inc()
	}
}

func (m *Metrics) sessionClosed(p Protocol) {
	if m != nil {
		m.sessions.WithLabelValues(p.String()).Dec()
	}
}

func (m *Metrics) relayed(p Protocol, in, out int64) {
	if m != nil {
		m.bytes.WithLabelValues(p.String(), "in").Add(float64(in))
		m.bytes.WithLabelValues(p.String(), "out").Add(float64(out))
	}
}

func (m *Metrics) directoryTook(d time.Duration) {
	if m != nil {
		m.directory.Observe(d.Seconds())
	}
}

func (m *Metrics) backendTook(d time.Duration) {
	if m != nil {
		m.backend.Observe(d.Seconds())
	}
}

func (m *Metrics) backendFailed() {
	if m != nil {
		m.backendErrors.Inc()
	}
}
