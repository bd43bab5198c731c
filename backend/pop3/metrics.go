package pop3

import "github.com/prometheus/client_golang/prometheus"

// Login outcomes, as counted.
const (
	outcomeOK          = "ok"
	outcomeFailed      = "failed"      // wrong password or unknown user
	outcomeUnavailable = "unavailable" // directory outage, mailbox unreadable
	outcomeRefused     = "refused"     // another backend's user
	outcomeInUse       = "in_use"      // another session holds the maildrop
)

// Metrics are the POP3 server's Prometheus metrics. A nil *Metrics
// records nothing.
type Metrics struct {
	logins    *prometheus.CounterVec
	sessions  prometheus.Gauge
	retrieved prometheus.Counter
	deleted   prometheus.Counter
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tohost_backend_pop3_logins_total",
			Help: "POP3 logins by outcome (ok, failed, unavailable, refused, in_use)."}, []string{"outcome"}),
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tohost_backend_pop3_sessions", Help: "POP3 connections open."}),
		retrieved: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tohost_backend_pop3_retrieved_total", Help: "Messages sent whole by POP3 RETR."}),
		deleted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tohost_backend_pop3_deleted_total", Help: "Messages deleted by POP3 sessions at QUIT."}),
	}
	reg.MustRegister(m.logins, m.sessions, m.retrieved, m.deleted)
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

func (m *Metrics) retrievedOne() {
	if m != nil {
		m.retrieved.Inc()
	}
}

func (m *Metrics) deletedN(n int) {
	if m != nil {
		m.deleted.Add(float64(n))
	}
}
