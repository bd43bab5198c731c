package daemon

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// events records what happened, in order.
type events struct {
	mu   sync.Mutex
	list []string
}

func (e *events) add(s string) {
	e.mu.Lock()
	e.list = append(e.list, s)
	e.mu.Unlock()
}

func (e *events) String() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return strings.Join(e.list, ",")
}

// serveUntilDone is a server that drains (returns) when ctx ends.
func serveUntilDone(ev *events, name string, started chan<- struct{}) ServeFunc {
	return func(ctx context.Context, ln net.Listener) error {
		started <- struct{}{}
		<-ctx.Done()
		ln.Close()
		ev.add(name + " drained")
		return nil
	}
}

// TestStopClosesStoresLast: on stop every server drains before any
// resource is closed, and resources close in reverse order.
func TestStopClosesStoresLast(t *testing.T) {
	ev := &events{}
	d := New("test", discard, time.Minute)
	started := make(chan struct{}, 2)
	d.OnStop(func() error { ev.add("store closed"); return nil })
	d.OnStop(func() error { ev.add("cache closed"); return nil })
	d.Serve("a", listen(t), serveUntilDone(ev, "a", started))
	d.Serve("b", listen(t), serveUntilDone(ev, "b", started))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- d.Run(ctx) }()
	<-started
	<-started
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := ev.String()
	if !strings.HasSuffix(got, "drained,cache closed,store closed") || strings.Count(got, "drained") != 2 {
		t.Fatalf("events %s: want both servers drained, then the cache, then the store closed", got)
	}
}

// TestFailureStopsTheOthers: one server failing stops the rest, and Run
// returns its error.
func TestFailureStopsTheOthers(t *testing.T) {
	ev := &events{}
	d := New("test", discard, time.Minute)
	started := make(chan struct{}, 1)
	d.Serve("good", listen(t), serveUntilDone(ev, "good", started))
	d.Serve("bad", listen(t), func(ctx context.Context, ln net.Listener) error {
		<-started
		return errors.New("disk on fire")
	})
	err := d.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "bad: disk on fire") {
		t.Fatalf("Run = %v, want the failing server's error", err)
	}
	if ev.String() != "good drained" {
		t.Fatalf("events %s", ev)
	}
}

// TestShutdownDeadline: a server that does not drain in time makes Run
// return an error naming it, and the stores it may still use stay open.
func TestShutdownDeadline(t *testing.T) {
	d := New("test", discard, 50*time.Millisecond)
	closed := false
	d.OnStop(func() error { closed = true; return nil })
	stuck := make(chan struct{})
	defer close(stuck)
	started := make(chan struct{})
	d.Serve("stuck", listen(t), func(ctx context.Context, ln net.Listener) error {
		close(started)
		<-stuck
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-started; cancel() }()
	err := d.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "stuck") || !strings.Contains(err.Error(), "deadline") {
		t.Fatalf("Run = %v, want a deadline error naming the busy server", err)
	}
	if closed {
		t.Fatal("a store was closed under a server still running")
	}
}

// TestAbort: after a start-up error the listeners opened so far are
// closed, and the resources too; after Run, Abort does nothing.
func TestAbort(t *testing.T) {
	d := New("test", discard, time.Minute)
	ln := listen(t)
	closed := 0
	d.OnStop(func() error { closed++; return nil })
	d.Serve("a", ln, nil)
	d.Abort()
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("listener still open after Abort: %v", err)
	}
	d.Abort()
	if closed != 1 {
		t.Fatalf("resources closed %d times, want 1", closed)
	}
}

func TestNewLogger(t *testing.T) {
	var b strings.Builder
	log, err := NewLogger(&b, "warn", "json")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hidden")
	log.Warn("shown", "k", "v")
	if got := b.String(); !strings.HasPrefix(got, `{"time":`) || !strings.Contains(got, `"msg":"shown","k":"v"`) || strings.Contains(got, "hidden") {
		t.Fatalf("json log: %q", got)
	}
	if _, err := NewLogger(&b, "loud", "text"); err == nil || !strings.Contains(err.Error(), "--log-level") {
		t.Errorf("bad level: %v", err)
	}
	if _, err := NewLogger(&b, "info", "xml"); err == nil || !strings.Contains(err.Error(), "--log-format") {
		t.Errorf("bad format: %v", err)
	}
}

// TestSIGHUPReloads: SIGHUP runs every reload, a failing one included,
// and stops nothing; the daemon stops only when asked.
func TestSIGHUPReloads(t *testing.T) {
	ev := &events{}
	d := New("test", discard, time.Minute)
	started := make(chan struct{}, 1)
	d.Serve("srv", listen(t), serveUntilDone(ev, "srv", started))
	reloaded := make(chan string, 4)
	d.OnReload("bad", func() error { reloaded <- "bad"; return errors.New("broken file") })
	d.OnReload("good", func() error { reloaded <- "good"; return nil })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	<-started
	for range 2 {
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		if a, b := <-reloaded, <-reloaded; a != "bad" || b != "good" {
			t.Fatalf("reloads ran %s, %s", a, b)
		}
	}
	select {
	case err := <-done:
		t.Fatalf("SIGHUP stopped the daemon: %v", err)
	default:
	}
	if s := ev.String(); s != "" {
		t.Fatalf("SIGHUP drained: %s", s)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
