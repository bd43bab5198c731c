package queue

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the queue's Prometheus metrics. A nil *Metrics records nothing.
type Metrics struct {
	reg        prometheus.Registerer
	recipients *prometheus.CounterVec
	bounces    prometheus.Counter
}

// NewMetrics creates the metrics and registers them with reg; the gauge of
// queued messages is registered by Open.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		reg: reg,
		recipients: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tohost_backend_queue_recipients_total",
			Help: "Outcomes of the queue's delivery attempts, by recipient: delivered, deferred (tried again later), failed (bounced)."},
			[]string{"outcome"}),
		bounces: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tohost_backend_queue_bounces_total", Help: "Bounces (delivery status notifications) queued to senders."}),
	}
	reg.MustRegister(m.recipients, m.bounces)
	return m
}

func (m *Metrics) setQueued(n func() int) {
	if m != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tohost_backend_queue_messages", Help: "Messages in the outbound queue."},
			func() float64 { return float64(n()) }))
	}
}

func (m *Metrics) recipient(outcome string) {
	if m != nil {
		m.recipients.WithLabelValues(outcome).Inc()
	}
}

func (m *Metrics) bounced() {
	if m != nil {
		m.bounces.Inc()
	}
}
