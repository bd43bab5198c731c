package cache

import "github.com/prometheus/client_golang/prometheus"

// Metrics counts cache hits and misses by layer ("local", "redis").
// A nil *Metrics counts nothing.
type Metrics struct {
	hits, misses map[string]prometheus.Counter
	redisErrors  prometheus.Counter
}

// NewMetrics registers the cache metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	hits := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tohost_cache_hits_total", Help: "User lookups answered by a cache layer."}, []string{"layer"})
	misses := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tohost_cache_misses_total", Help: "User lookups a cache layer passed on."}, []string{"layer"})
	redisErrors := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tohost_cache_redis_errors_total", Help: "Failed Redis operations (the store answered instead)."})
	reg.MustRegister(hits, misses, redisErrors)
	m := &Metrics{hits: map[string]prometheus.Counter{}, misses: map[string]prometheus.Counter{}, redisErrors: redisErrors}
	for _, l := range []string{"local", "redis"} {
		m.hits[l], m.misses[l] = hits.WithLabelValues(l), misses.WithLabelValues(l)
	}
	return m
}

func (m *Metrics) hit(layer string) {
	if m != nil {
		m.hits[layer].Inc()
	}
}

func (m *Metrics) miss(layer string) {
	if m != nil {
		m.misses[layer].Inc()
	}
}

func (m *Metrics) redisError() {
	if m != nil {
		m.redisErrors.Inc()
	}
}
