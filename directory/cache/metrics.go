package cache

import "github.com/prometheus/client_golang/prometheus"

// The cache layers, as metric labels.
type layer int

const (
	layerLocal layer = iota
	layerRedis
	numLayers
)

var layerNames = [numLayers]string{"local", "redis"}

// Metrics counts cache hits and misses by layer. The counters are looked
// up once, so a hit only adds. A nil *Metrics counts nothing.
type Metrics struct {
	hits, misses [numLayers]prometheus.Counter
	redisErrors  prometheus.Counter
	stale        prometheus.Gauge
}

// NewMetrics registers the cache metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	hits := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tohost_cache_hits_total", Help: "User lookups answered by a cache layer."}, []string{"layer"})
	misses := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tohost_cache_misses_total", Help: "User lookups a cache layer passed on."}, []string{"layer"})
	redisErrors := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tohost_cache_redis_errors_total", Help: "Failed Redis operations (the store answered instead)."})
	stale := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tohost_cache_stale", Help: "1 while the invalidation channel is silent and the in-process cache is bypassed."})
	reg.MustRegister(hits, misses, redisErrors, stale)
	m := &Metrics{redisErrors: redisErrors, stale: stale}
	for l, name := range layerNames {
		m.hits[l], m.misses[l] = hits.WithLabelValues(name), misses.WithLabelValues(name)
	}
	return m
}

func (m *Metrics) hit(l layer) {
	if m != nil {
		m.hits[l].Inc()
	}
}

func (m *Metrics) miss(l layer) {
	if m != nil {
		m.misses[l].Inc()
	}
}

func (m *Metrics) redisError() {
	if m != nil {
		m.redisErrors.Inc()
	}
}

func (m *Metrics) setStale(stale bool) {
	if m != nil {
		v := 0.0
		if stale {
			v = 1
		}
		m.stale.Set(v)
	}
}

// RegisterSize registers gauges of what c holds with reg.
func RegisterSize(reg prometheus.Registerer, c *Local) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tohost_cache_entries",
			Help: "Names (users and known misses) in the in-process cache."},
			func() float64 { n, _ := c.Size(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tohost_cache_record_bytes",
			Help: "Bytes of the encoded user records in the in-process cache."},
			func() float64 { _, b := c.Size(); return float64(b) }))
}
