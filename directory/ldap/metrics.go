package ldap

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The operations counted, by the message type they arrive as.
const (
	opBind = iota
	opSearch
	opCompare
	opAdd
	opModify
	opDelete
	opModifyDN
	opExtended
	opOther
	numOps
)

var opNames = [numOps]string{"bind", "search", "compare", "add", "modify", "delete", "modifydn", "extended", "other"}

// Metrics are the LDAP server's Prometheus metrics; the per-operation
// series are looked up once, so a request only adds. A nil *Metrics
// records nothing.
type Metrics struct {
	requests [numOps]prometheus.Counter
	latency  [numOps]prometheus.Observer
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tohost_ldap_requests_total", Help: "LDAP requests by operation."}, []string{"op"})
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tohost_ldap_request_seconds",
		Help:    "Time to answer an LDAP request, by operation.",
		Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
	}, []string{"op"})
	reg.MustRegister(requests, latency)
	m := &Metrics{}
	for op := range numOps {
		m.requests[op] = requests.WithLabelValues(opNames[op])
		m.latency[op] = latency.WithLabelValues(opNames[op])
	}
	return m
}

func (m *Metrics) observe(op int, d time.Duration) {
	if m != nil {
		m.requests[op].Inc()
		m.latency[op].Observe(d.Seconds())
	}
}
