package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tohost/tohost/internal/listen"
	"github.com/tohost/tohost/protocol/authent"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// fakeDir is a directory of a few users in memory, which a test can take
// down to see the proxy's outage answers. It stands in for the authent
// client; the client itself is tested against the real server.
type fakeDir struct {
	mu     sync.Mutex
	users  map[string]fakeUser // by lower-case name
	down   bool
	checks []string // "user ip" of every Check, in order
}

type fakeUser struct{ pass, tohost string }

func newFakeDir() *fakeDir { return &fakeDir{users: map[string]fakeUser{}} }

func (d *fakeDir) add(name, pass, tohost string) {
	d.mu.Lock()
	d.users[strings.ToLower(name)] = fakeUser{pass, tohost}
	d.mu.Unlock()
}

func (d *fakeDir) setDown(down bool) {
	d.mu.Lock()
	d.down = down
	d.mu.Unlock()
}

func (d *fakeDir) user(name string) (authent.User, fakeUser, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.down {
		return authent.User{}, fakeUser{}, fmt.Errorf("%w: test outage", authent.ErrUnavailable)
	}
	fu, ok := d.users[strings.ToLower(name)]
	if !ok {
		return authent.User{}, fakeUser{}, fmt.Errorf("%w: %w", authent.ErrRejected, authent.ErrNotFound)
	}
	u := authent.User{Name: name}
	if fu.tohost != "" {
		u.Fields = []authent.Field{{Label: "tohost", Value: fu.tohost}}
	}
	return u, fu, nil
}

func (d *fakeDir) Check(_ context.Context, name, pass, ip string) (authent.User, error) {
	d.mu.Lock()
	d.checks = append(d.checks, name+" "+ip)
	d.mu.Unlock()
	u, fu, err := d.user(name)
	if errors.Is(err, authent.ErrNotFound) || err == nil && fu.pass != pass {
		return authent.User{}, fmt.Errorf("%w: %w", authent.ErrRejected, authent.ErrBadCredentials)
	}
	return u, err
}

func (d *fakeDir) Lookup(_ context.Context, name string) (authent.User, error) {
	u, _, err := d.user(name)
	return u, err
}

// proxyHarness is a proxy serving one protocol on a loopback port.
type proxyHarness struct {
	addr   string
	p      *Proxy
	cancel context.CancelFunc
	done   chan error
}

// startProxy serves proto on a loopback port with cfg (Directory and
// Logger are filled in when unset) until the test ends.
func startProxy(t *testing.T, cfg Config, proto Protocol) *proxyHarness {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = discard
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln = listen.NewGate(listen.Config{Logger: discard}).Wrap(ln, listen.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	h := &proxyHarness{addr: ln.Addr().String(), p: p, cancel: cancel, done: make(chan error, 1)}
	go func() { h.done <- p.Serve(ctx, ln, proto) }()
	t.Cleanup(func() { h.stop(t) })
	return h
}

// stop shuts the proxy down and waits for Serve to return.
func (h *proxyHarness) stop(t *testing.T) {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(30 * time.Second): // a hang guard
		t.Error("proxy did not stop")
	}
}
