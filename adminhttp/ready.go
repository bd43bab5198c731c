package adminhttp

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Dependency is something the daemon needs: its store, a database, a
// cache. Check asks it now.
type Dependency struct {
	Name string
	// Required: without it the daemon cannot answer (a directory whose
	// store is down cannot answer a cache miss), so it is not ready.
	// A dependency that is not required (a shared cache) is reported
	// but leaves the daemon ready.
	Required bool
	Check    func(ctx context.Context) error
}

// checkTimeout bounds one round of checks: a hung database must make
// /readyz answer "down", not hang the probe.
const checkTimeout = 2 * time.Second

// status is one dependency's answer.
type status struct {
	dep Dependency
	err error
}

// checkAll asks every dependency at once and returns their answers in
// order, and whether every required one answered.
func checkAll(ctx context.Context, deps []Dependency) ([]status, bool) {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	out := make([]status, len(deps))
	var wg sync.WaitGroup
	for i, d := range deps {
		out[i].dep = d
		wg.Go(func() { out[i].err = d.Check(ctx) })
	}
	wg.Wait()
	ready := true
	for _, s := range out {
		if s.err != nil && s.dep.Required {
			ready = false
		}
	}
	return out, ready
}

// readyz answers "ready" or "not ready" (503), then one line per
// dependency: "NAME ok" or "NAME down: ERROR".
func readyz(deps []Dependency) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st, ready := checkAll(r.Context(), deps)
		var b strings.Builder
		code := http.StatusOK
		if ready {
			b.WriteString("ready\n")
		} else {
			b.WriteString("not ready\n")
			code = http.StatusServiceUnavailable
		}
		for _, s := range st {
			if s.err == nil {
				fmt.Fprintf(&b, "%s ok\n", s.dep.Name)
			} else {
				fmt.Fprintf(&b, "%s down: %s\n", s.dep.Name, oneLine(s.err.Error()))
			}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(code)
		w.Write([]byte(b.String()))
	})
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// readyCollector reports the dependencies' state at scrape time.
type readyCollector struct {
	deps []Dependency
	desc *prometheus.Desc
}

// ReadyCollector returns tohost_ready{dependency="NAME"}: 1 when the
// dependency answers, 0 when not, asked at every scrape.
func ReadyCollector(deps []Dependency) prometheus.Collector {
	return &readyCollector{deps: deps, desc: prometheus.NewDesc("tohost_ready",
		"Whether a dependency answers (1) or not (0), asked at scrape time.", []string{"dependency"}, nil)}
}

func (c *readyCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *readyCollector) Collect(ch chan<- prometheus.Metric) {
	st, _ := checkAll(context.Background(), c.deps)
	for _, s := range st {
		v := 1.0
		if s.err != nil {
			v = 0
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, v, s.dep.Name)
	}
}
