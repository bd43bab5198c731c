package cache

import (
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// freeze stops (SIGSTOP) or resumes (SIGCONT) the server: its connections
// stay open and silent, as a hung host or a cut network looks.
func (p *privateRedis) freeze(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
}

// newFastNode is a node on its own client with short timeouts, a fast
// heartbeat and a short silence limit.
func newFastNode(t *testing.T, next *countingStore, addr string) *node {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 200 * time.Millisecond,
		ReadTimeout: 100 * time.Millisecond, WriteTimeout: 100 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	local, r := NewShared(next, LocalOptions{Size: 1000, NegativeTTL: time.Minute},
		RedisOptions{Client: c, Prefix: "t:", Logger: quiet, Timeout: 150 * time.Millisecond,
			Heartbeat: 100 * time.Millisecond, StaleAfter: 400 * time.Millisecond})
	return startNode(t, local, r)
}

// TestFrozenRedisStale: with Redis frozen, a write through node A never
// reaches node B as an invalidation; B notices the silence of its channel,
// stops serving its in-process copy and reads the store. When Redis
// resumes, B trusts its (flushed) cache again.
func TestFrozenRedisStale(t *testing.T) {
	srv := startPrivateRedis(t, 0)
	store := newBolt(t)
	a := newFastNode(t, store, srv.addr())
	b := newFastNode(t, store, srv.addr())
	set(t, a.local, "u@x", "h1")
	set(t, a.local, "v@x", "h1")
	for _, name := range []string{"u@x", "v@x"} {
		if !waitFor(hangGuard, func() bool { return servedFromCache(b, store, name, "h1") }) {
			t.Fatalf("B does not serve %s from its cache", name)
		}
	}

	srv.freeze(syscall.SIGSTOP)
	defer srv.freeze(syscall.SIGCONT)
	set(t, a.local, "u@x", "h2")
	// Behind every cache: an invalidation lost for good. Only the flush
	// when B hears its channel again drops its copy.
	set(t, store, "v@x", "h2")
	if !waitFor(hangGuard, func() bool { return tohostOf(b.local, "u@x") == "h2" }) {
		t.Fatalf("B still reads %q with Redis frozen: it kept trusting its cache", tohostOf(b.local, "u@x"))
	}
	if b.local.Trusted() {
		t.Fatal("B reads the store but says it trusts its cache")
	}

	srv.freeze(syscall.SIGCONT)
	if !waitFor(hangGuard, b.local.Trusted) {
		t.Fatal("B never trusted its cache again after Redis resumed")
	}
	for _, name := range []string{"u@x", "v@x"} {
		if !waitFor(hangGuard, func() bool { return servedFromCache(b, store, name, "h2") }) {
			t.Fatalf("B reads %s = %q after the freeze, or not from its cache", name, tohostOf(b.local, name))
		}
	}
	set(t, a.local, "u@x", "h3")
	if !waitFor(hangGuard, func() bool { return tohostOf(b.local, "u@x") == "h3" }) {
		t.Fatal("invalidations do not flow again after the freeze")
	}
}

// servedFromCache reads name through n twice and reports whether both
// read want and the second reached no store.
func servedFromCache(n *node, store *countingStore, name, want string) bool {
	if tohostOf(n.local, name) != want {
		return false
	}
	before := store.gets.Load()
	return tohostOf(n.local, name) == want && store.gets.Load() == before
}
