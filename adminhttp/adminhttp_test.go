package adminhttp

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func get(t *testing.T, h http.Handler, path, remote string) (int, string) {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, path, nil)
	r.RemoteAddr = remote
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	b, _ := io.ReadAll(w.Result().Body)
	return w.Code, string(b)
}

// TestReadyz: a required dependency down makes /readyz 503; one that is
// not required is reported but leaves it 200; /healthz stays 200; the
// gauge follows.
func TestReadyz(t *testing.T) {
	var storeErr, redisErr error
	deps := []Dependency{
		{Name: "postgres", Required: true, Check: func(context.Context) error { return storeErr }},
		{Name: "redis", Check: func(context.Context) error { return redisErr }},
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(ReadyCollector(deps))
	h := Handler(reg, Options{Ready: deps})
	gauge := func() string {
		_, body := get(t, h, "/metrics", "127.0.0.1:1")
		return body
	}
	if code, body := get(t, h, "/readyz", "127.0.0.1:1"); code != 200 || body != "ready\npostgres ok\nredis ok\n" {
		t.Errorf("all up: %d %q", code, body)
	}
	redisErr = errors.New("dial tcp: connection\nrefused")
	if code, body := get(t, h, "/readyz", "127.0.0.1:1"); code != 200 || body != "ready\npostgres ok\nredis down: dial tcp: connection refused\n" {
		t.Errorf("redis down: %d %q", code, body)
	}
	storeErr = errors.New("unexpected EOF")
	if code, body := get(t, h, "/readyz", "127.0.0.1:1"); code != 503 || !strings.HasPrefix(body, "not ready\npostgres down: unexpected EOF\n") {
		t.Errorf("postgres down: %d %q", code, body)
	}
	if g := gauge(); !strings.Contains(g, `tohost_ready{dependency="postgres"} 0`) || !strings.Contains(g, `tohost_ready{dependency="redis"} 0`) {
		t.Errorf("gauge:\n%s", g)
	}
	if code, _ := get(t, h, "/healthz", "127.0.0.1:1"); code != 200 {
		t.Errorf("/healthz with the store down: %d", code)
	}
}

// TestAdminOnly: admin routes answer only the admin networks.
func TestAdminOnly(t *testing.T) {
	h := Handler(prometheus.NewRegistry(), Options{
		AdminAllow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		Admin: map[string]http.Handler{"GET /backup": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Write([]byte("copy"))
		})},
	})
	if code, body := get(t, h, "/backup", "10.1.2.3:5555"); code != 200 || body != "copy" {
		t.Errorf("admin network: %d %q", code, body)
	}
	for _, remote := range []string{"127.0.0.1:5555", "[::ffff:192.0.2.1]:1", "garbage"} {
		if code, _ := get(t, h, "/backup", remote); code != 403 {
			t.Errorf("%s: %d, want 403", remote, code)
		}
	}
	if code, _ := get(t, h, "/backup", "[::ffff:10.0.0.1]:1"); code != 200 {
		t.Errorf("an IPv4-mapped admin address: %d", code)
	}
}
