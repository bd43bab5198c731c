package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/tohost/tohost/directory"
	"github.com/tohost/tohost/directory/store/storetest"
	"github.com/tohost/tohost/internal/testservices"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// node is one directory node's cache stack: Local → Redis → next.
type node struct {
	local *Local
	redis *Redis
}

func newNode(t *testing.T, next directory.Store, client redis.UniversalClient, prefix string, m *Metrics) *node {
	t.Helper()
	local, r := NewShared(next, LocalOptions{Size: 1000, NegativeTTL: time.Minute},
		RedisOptions{Client: client, Prefix: prefix, Logger: quiet, Metrics: m})
	return startNode(t, local, r)
}

// startNode runs r and returns once it is subscribed.
func startNode(t *testing.T, local *Local, r *Redis) *node {
	t.Helper()
	// Run flushes the in-process cache once its subscription is confirmed:
	// a marker entry put there first tells when that happened, so no test
	// writes before the node listens for invalidations.
	const marker = "\x00subscribed"
	s, h := local.shard(marker)
	local.store(s, h, s.gen, marker, nil, 0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	if !waitFor(hangGuard, func() bool { return local.Len() == 0 }) {
		t.Fatal("the node never subscribed to invalidations")
	}
	return &node{local: local, redis: r}
}

func sharedRedis(t *testing.T) (redis.UniversalClient, string) {
	addr, prefix := testservices.Redis(t)
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { c.Close() })
	return c, prefix
}

func TestRedisConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) directory.Store {
		c, prefix := sharedRedis(t)
		return newNode(t, newBolt(t), c, prefix, nil).local
	})
}

// hangGuard bounds a wait for something that must happen: it only keeps a
// broken build from hanging, and says nothing about how fast it happens.
const hangGuard = 30 * time.Second

// waitFor polls cond until it holds, for up to d.
func waitFor(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(2 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

func tohostOf(s directory.Store, name string) string {
	u, err := s.Get(ctx, name)
	if err != nil {
		return "error: " + err.Error()
	}
	return u.Tohost()
}

// TestCrossNodeInvalidation: a write through node A is seen by node B,
// which had the old value cached with no TTL: the invalidation reached it.
func TestCrossNodeInvalidation(t *testing.T) {
	c, prefix := sharedRedis(t)
	store := newBolt(t)
	a := newNode(t, store, c, prefix, nil)
	b := newNode(t, store, c, prefix, nil)
	set(t, a.local, "u@x", "h1")
	if got := tohostOf(b.local, "u@x"); got != "h1" {
		t.Fatalf("B reads %q", got)
	}
	if got := tohostOf(b.local, "u@x"); got != "h1" { // now in B's caches
		t.Fatalf("B reads %q", got)
	}
	set(t, a.local, "u@x", "h2")
	if !waitFor(hangGuard, func() bool { return tohostOf(b.local, "u@x") == "h2" }) {
		t.Fatalf("B still reads %q: the invalidation never reached it", tohostOf(b.local, "u@x"))
	}
	if err := a.local.Delete(ctx, "u@x"); err != nil {
		t.Fatal(err)
	}
	if !waitFor(hangGuard, func() bool { return strings.HasPrefix(tohostOf(b.local, "u@x"), "error: user does not exist") }) {
		t.Fatalf("B still reads %q after delete", tohostOf(b.local, "u@x"))
	}
}

func TestRedisServesHitsAndMisses(t *testing.T) {
	c, prefix := sharedRedis(t)
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	next := newBolt(t)
	n := newNode(t, next, c, prefix, m)
	set(t, next, "u@x", "h1") // behind the caches: a write through them leaves a tombstone
	for i := 0; i < 3; i++ {
		n.local.Flush() // force the Redis layer
		if got := tohostOf(n.local, "u@x"); got != "h1" {
			t.Fatalf("read %q", got)
		}
	}
	if hits := testutil.ToFloat64(m.hits[layerRedis]); hits < 1 {
		t.Fatalf("redis hits = %v", hits)
	}
	if gets := next.gets.Load(); gets > 2 {
		t.Fatalf("store reads = %d: Redis did not serve", gets)
	}
	n.local.Flush()
	before := next.gets.Load()
	for i := 0; i < 3; i++ {
		n.local.Flush()
		if _, err := n.local.Get(ctx, "ghost@x"); !errors.Is(err, directory.ErrNotFound) {
			t.Fatal(err)
		}
	}
	if d := next.gets.Load() - before; d != 1 {
		t.Fatalf("unknown name reached the store %d times, want 1", d)
	}
}

// privateRedis runs a redis-server of the test's own on a free port.
type privateRedis struct {
	t    *testing.T
	port int
	cmd  *exec.Cmd
}

func startPrivateRedis(t *testing.T, port int) *privateRedis {
	t.Helper()
	if port == 0 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
	}
	p := &privateRedis{t: t, port: port}
	p.cmd = exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir())
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("redis-server: %v (run scripts/test-services.sh to install it)", err)
	}
	t.Cleanup(p.stop)
	c := redis.NewClient(&redis.Options{Addr: p.addr()})
	defer c.Close()
	if !waitFor(hangGuard, func() bool { return c.Ping(ctx).Err() == nil }) {
		t.Fatal("private redis-server did not start")
	}
	return p
}

func (p *privateRedis) addr() string { return fmt.Sprintf("127.0.0.1:%d", p.port) }

func (p *privateRedis) stop() {
	if p.cmd.ProcessState == nil {
		p.cmd.Process.Kill()
		p.cmd.Wait()
	}
}

// TestRedisOutage: with Redis stopped the directory answers from the store
// and accepts writes; when Redis returns, the node reconnects by itself,
// flushes its in-process cache and delivers the invalidations it owes.
func TestRedisOutage(t *testing.T) {
	srv := startPrivateRedis(t, 0)
	client := redis.NewClient(&redis.Options{Addr: srv.addr(), DialTimeout: 200 * time.Millisecond,
		ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond, MaxRetries: -1})
	defer client.Close()
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	store := newBolt(t)
	a := newNode(t, store, client, "t:", m)
	set(t, a.local, "u@x", "h1")
	a.local.Flush()
	if got := tohostOf(a.local, "u@x"); got != "h1" { // fills Redis
		t.Fatal(got)
	}

	srv.stop()
	set(t, a.local, "u@x", "h2") // the store takes it; the tombstone must wait
	if got := tohostOf(a.local, "u@x"); got != "h2" {
		t.Fatalf("during outage read %q", got)
	}
	set(t, a.local, "v@x", "h3")
	if got := tohostOf(a.local, "v@x"); got != "h3" {
		t.Fatalf("during outage read %q", got)
	}
	if testutil.ToFloat64(m.redisErrors) == 0 {
		t.Fatal("no redis errors counted during the outage")
	}

	srv = startPrivateRedis(t, srv.port)
	// Simulate a Redis that kept the pre-outage value: the owed
	// invalidation must replace it.
	direct := redis.NewClient(&redis.Options{Addr: srv.addr()})
	defer direct.Close()
	old := &directory.User{Name: "u@x", Fields: []directory.Field{{Label: "tohost", Value: "h1"}}}
	direct.Set(ctx, "t:user:u@x", old.AppendBinary(nil), time.Minute)
	if !waitFor(hangGuard, func() bool {
		v, _ := direct.Get(ctx, "t:user:u@x").Bytes()
		return len(v) == 1 && v[0] == markTombstone
	}) {
		t.Fatal("owed invalidation not delivered after Redis came back")
	}
	a.local.Flush()
	if got := tohostOf(a.local, "u@x"); got != "h2" {
		t.Fatalf("after recovery read %q", got)
	}
	// And it uses Redis again.
	if !waitFor(hangGuard, func() bool {
		tohostOf(a.local, "v@x")
		a.local.Flush()
		return direct.Exists(ctx, "t:user:v@x").Val() == 1
	}) {
		t.Fatal("node did not go back to filling Redis")
	}
}

// TestRedisUndecodableEntry: a Redis value that is not a user record (a
// foreign writer, a version skew) is never served; the store answers.
func TestRedisUndecodableEntry(t *testing.T) {
	c, prefix := sharedRedis(t)
	next := newBolt(t)
	n := newNode(t, next, c, prefix, nil)
	set(t, next, "u@x", "h1")
	for _, junk := range [][]byte{{1, 0xff}, []byte("garbage"), {}} {
		if err := c.Set(ctx, prefix+"user:u@x", junk, time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
		n.local.Flush()
		if got := tohostOf(n.local, "u@x"); got != "h1" {
			t.Fatalf("with %q in Redis the node read %q", junk, got)
		}
	}
}
