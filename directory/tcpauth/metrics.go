package tcpauth

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tohost/tohost/protocol/authent"
)

type outcome uint8

const (
	outcomeOK outcome = iota
	outcomeErr
	outcomeDead
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"ok", "err", "dead"}

const numCommands = int(authent.Auth) + 1

// Metrics are the server's Prometheus metrics. The counters of every
// command/outcome pair are looked up once, so the hot path only adds.
// A nil *Metrics records nothing.
type Metrics struct {
	requests [numCommands][numOutcomes]prometheus.Counter
	latency  [numCommands]prometheus.Observer
	conns    prometheus.Gauge
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tohost_tcpauth_requests_total",
		Help: "Authent requests by command and outcome (ok, err, dead).",
	}, []string{"command", "outcome"})
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tohost_tcpauth_request_seconds",
		Help:    "Time to answer an authent request, by command.",
		Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
	}, []string{"command"})
	m := &Metrics{
		conns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tohost_tcpauth_connections", Help: "Open authent connections."}),
	}
	reg.MustRegister(requests, latency, m.conns)
	for cmd := authent.Command(0); int(cmd) < numCommands; cmd++ {
		for o := outcome(0); o < numOutcomes; o++ {
			m.requests[cmd][o] = requests.WithLabelValues(cmd.String(), outcomeNames[o])
		}
		m.latency[cmd] = latency.WithLabelValues(cmd.String())
	}
	return m
}

func (m *Metrics) observe(cmd authent.Command, o outcome, d time.Duration) {
	if m != nil {
		m.requests[cmd][o].Inc()
		m.latency[cmd].Observe(d.Seconds())
	}
}

func (m *Metrics) count(cmd authent.Command, o outcome) {
	if m != nil {
		m.requests[cmd][o].Inc()
	}
}

func (m *Metrics) connOpened() {
	if m != nil {
		m.conns.Inc()
	}
}

func (m *Metrics) connClosed() {
	if m != nil {
		m.conns.Dec()
	}
}
