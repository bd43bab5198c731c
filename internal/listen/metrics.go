package listen

import "github.com/prometheus/client_golang/prometheus"

// Register adds the Gate's metrics to reg: connections open on all its
// listeners, the cap, and connections turned away.
func (g *Gate) Register(reg prometheus.Registerer) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tohost_connections_open",
			Help: "Connections open on the daemon's listeners (the admin listener aside)."},
			func() float64 { return float64(g.Open()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tohost_connections_max",
			Help: "The connection cap in force (--max-conns, lowered to fit the descriptor limit)."},
			func() float64 { return float64(g.MaxConns()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tohost_connections_refused_total",
			Help: "Connections turned away: from a network not allowed, or over the cap."},
			func() float64 { return float64(g.Refused()) }),
	)
}
