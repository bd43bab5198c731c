// Package adminhttp is the admin HTTP listener every daemon runs:
// /metrics for Prometheus, /healthz for liveness, /readyz for readiness,
// /debug/pprof for profiles, and the daemon's own admin routes.
package adminhttp

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Health reports whether the daemon can serve; a non-nil error makes
// /healthz answer 503 with the error's text.
type Health func(ctx context.Context) error

// Options are what a daemon adds to the common endpoints.
type Options struct {
	// Health, when set, is /healthz's check; without it /healthz says
	// only that the process answers.
	Health Health
	// Ready are the dependencies /readyz and tohost_ready report.
	Ready []Dependency
	// Admin routes (pattern → handler) change or copy the daemon's
	// data: they answer only clients in AdminAllow.
	Admin      map[string]http.Handler
	AdminAllow []netip.Prefix
}

// Handler returns the admin endpoints.
func Handler(gather prometheus.Gatherer, opts Options) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(gather, promhttp.HandlerOpts{}))
	// Profiles, for finding where a busy daemon spends its time. The
	// listener is loopback-only by default, like every admin endpoint.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /healthz", healthz(opts.Health))
	mux.Handle("GET /readyz", readyz(opts.Ready))
	for pattern, h := range opts.Admin {
		mux.Handle(pattern, AdminOnly(opts.AdminAllow, h))
	}
	return mux
}

func healthz(health Health) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if health != nil {
			if err := health(ctx); err != nil {
				http.Error(w, "unhealthy: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		w.Write([]byte("ok\n"))
	}
}

// AdminOnly answers 403 to clients outside allow. The listener's own
// --allow has let the client in already; this is the narrower list of
// those who may also read or change the data.
func AdminOnly(allow []netip.Prefix, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil || !contains(allow, ap.Addr().Unmap()) {
			http.Error(w, "forbidden: not an admin network (--admin-allow)", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func contains(list []netip.Prefix, a netip.Addr) bool {
	for _, p := range list {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Serve serves h on ln until ctx is done.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	})
	defer stop()
	log.Info("admin http listening", "addr", ln.Addr().String())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
