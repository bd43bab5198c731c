package imap

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Login outcomes, as counted.
const (
	outcomeOK          = "ok"
	outcomeFailed      = "failed"      // wrong password or unknown user
	outcomeUnavailable = "unavailable" // directory or store outage
	outcomeRefused     = "refused"     // the user lives on another backend
	outcomeMaster      = "master"      // a master login (Config.MasterUser)
)

// Metrics are the IMAP server's Prometheus metrics. A nil *Metrics records
// nothing.
type Metrics struct {
	logins    *prometheus.CounterVec
	sessions  prometheus.Gauge
	directory prometheus.Observer
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tohost_backend_imap_logins_total", Help: "IMAP logins by outcome (ok, master, failed, unavailable, refused)."},
			[]string{"outcome"}),
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tohost_backend_imap_sessions", Help: "IMAP connections open."}),
	}
	dir := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "tohost_backend_imap_directory_seconds", Help: "Time of one directory check for an IMAP login.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}})
	m.directory = dir
	reg.MustRegister(m.logins, m.sessions, dir)
	return m
}

func (m *Metrics) login(outcome string) {
	if m != nil {
		m.logins.WithLabelValues(outcome).Inc()
	}
}

func (m *Metrics) sessionOpened() {
	if m != nil {
		m.sessions.Inc()
	}
}

func (m *Metrics) sessionClosed() {
	if m != nil {
		m.sessions.Dec()
	}
}

func (m *Metrics) directoryTook(d time.Duration) {
	if m != nil {
		m.directory.Observe(d.Seconds())
	}
}
