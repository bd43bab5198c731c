package cache

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tohost/tohost/directory"
	"github.com/tohost/tohost/directory/store/bolt"
	"github.com/tohost/tohost/directory/store/storetest"
)

// countingStore counts the reads that reach the store.
type countingStore struct {
	directory.Store
	gets atomic.Int64
}

func (s *countingStore) Get(ctx context.Context, name string) (*directory.User, error) {
	s.gets.Add(1)
	return s.Store.Get(ctx, name)
}

func newBolt(t *testing.T) *countingStore {
	st, err := bolt.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &countingStore{Store: st}
}

func TestLocalConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) directory.Store {
		return NewLocal(newBolt(t), LocalOptions{Size: 100, NegativeTTL: time.Minute})
	})
}

var ctx = context.Background()

func set(t *testing.T, s directory.Store, name, tohost string) {
	t.Helper()
	_, err := s.Update(ctx, name, func(*directory.User) (*directory.User, error) {
		return &directory.User{Name: name, Display: name, Fields: []directory.Field{{Label: "tohost", Value: tohost}}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestLocalHitsAndInvalidation(t *testing.T) {
	next := newBolt(t)
	c := NewLocal(next, LocalOptions{Size: 1000, NegativeTTL: time.Minute})
	defer c.Close()
	set(t, c, "a@x", "h1")
	for i := 0; i < 5; i++ {
		u, err := c.Get(ctx, "a@x")
		if err != nil || u.Tohost() != "h1" {
			t.Fatalf("get: %v %v", u, err)
		}
	}
	if n := next.gets.Load(); n != 1 {
		t.Fatalf("store reads = %d, want 1", n)
	}
	set(t, c, "a@x", "h2") // a write through the cache drops the entry
	if u, _ := c.Get(ctx, "a@x"); u.Tohost() != "h2" {
		t.Fatalf("after write: tohost %q", u.Tohost())
	}
	for i := 0; i < 3; i++ {
		if _, err := c.Get(ctx, "nobody@x"); !errors.Is(err, directory.ErrNotFound) {
			t.Fatal(err)
		}
	}
	if n := next.gets.Load(); n != 3 {
		t.Fatalf("store reads = %d, want 3 (misses cached)", n)
	}
	set(t, c, "nobody@x", "h3") // creating a cached miss drops it
	if u, err := c.Get(ctx, "nobody@x"); err != nil || u.Tohost() != "h3" {
		t.Fatalf("created user: %v %v", u, err)
	}
	if err := c.Delete(ctx, "a@x"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, "a@x"); !errors.Is(err, directory.ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
}

// advance stops c's clock ticking and moves it forward by d.
func advance(c *Local, d time.Duration) {
	c.clock.stop()
	c.clock.ns.Add(int64(d))
}

func TestLocalTTL(t *testing.T) {
	next := newBolt(t)
	const ttl = time.Hour
	c := NewLocal(next, LocalOptions{Size: 10, TTL: ttl, NegativeTTL: 2 * ttl})
	defer c.Close()
	advance(c, 0)             // the clock moves only when the test says so
	set(t, next, "a@x", "h1") // written behind the cache's back
	c.Get(ctx, "a@x")
	c.Get(ctx, "gone@x") // a cached miss
	set(t, next, "a@x", "h2")
	set(t, next, "gone@x", "h3")
	if u, _ := c.Get(ctx, "a@x"); u.Tohost() != "h1" {
		t.Fatalf("expected the cached value before the TTL, got %q", u.Tohost())
	}
	advance(c, ttl-1)
	if u, _ := c.Get(ctx, "a@x"); u.Tohost() != "h1" {
		t.Fatalf("expected the cached value until the TTL, got %q", u.Tohost())
	}
	advance(c, 1)
	if u, _ := c.Get(ctx, "a@x"); u.Tohost() != "h2" {
		t.Fatalf("after TTL: %q", u.Tohost())
	}
	// A miss is remembered for NegativeTTL, not TTL.
	if _, err := c.Get(ctx, "gone@x"); !errors.Is(err, directory.ErrNotFound) {
		t.Fatalf("miss before NegativeTTL: %v", err)
	}
	advance(c, ttl)
	if u, err := c.Get(ctx, "gone@x"); err != nil || u.Tohost() != "h3" {
		t.Fatalf("miss after NegativeTTL: %v %v", u, err)
	}
}

func TestLocalBoundAndFlush(t *testing.T) {
	next := newBolt(t)
	c := NewLocal(next, LocalOptions{Size: shardCount * 2})
	defer c.Close()
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				c.Get(ctx, fmt.Sprintf("u%d@x", i)) // misses are not cached: NegativeTTL 0
			}
		}()
	}
	wg.Wait()
	for i := 0; i < 1000; i++ {
		set(t, next, fmt.Sprintf("u%d@x", i), "h")
		c.Get(ctx, fmt.Sprintf("u%d@x", i))
	}
	if n := c.Len(); n > shardCount*2 || n == 0 {
		t.Fatalf("cache holds %d entries, bound %d", n, shardCount*2)
	}
	c.Flush()
	if n := c.Len(); n != 0 {
		t.Fatalf("after flush: %d entries", n)
	}
}

// TestLocalNoStaleFill: a read that started before a write must not put
// the old value back after the write invalidated it.
func TestLocalNoStaleFill(t *testing.T) {
	next := newBolt(t)
	slow := &slowStore{countingStore: next, gate: make(chan struct{}), started: make(chan struct{})}
	c := NewLocal(slow, LocalOptions{Size: 100})
	defer c.Close()
	set(t, next, "a@x", "old")
	done := make(chan struct{})
	go func() { c.Get(ctx, "a@x"); close(done) }()
	<-slow.started
	set(t, c, "a@x", "new")
	close(slow.gate)
	<-done
	if u, _ := c.Get(ctx, "a@x"); u.Tohost() != "new" {
		t.Fatalf("stale value cached: %q", u.Tohost())
	}
}

type slowStore struct {
	*countingStore
	gate, started chan struct{}
	once          sync.Once
}

func (s *slowStore) Get(ctx context.Context, name string) (*directory.User, error) {
	u, err := s.countingStore.Get(ctx, name)
	s.once.Do(func() { close(s.started); <-s.gate })
	return u, err
}

func BenchmarkLocalHit(b *testing.B) {
	st, err := bolt.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	c := NewLocal(st, LocalOptions{Size: 1000})
	defer c.Close()
	_, err = c.Update(ctx, "a@x", func(*directory.User) (*directory.User, error) {
		return &directory.User{Name: "a@x"}, nil
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Get(ctx, "a@x"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkLocalHitSpread: hits spread over 200,000 users, as a busy
// directory sees them; the cost is dominated by cache misses, so it
// measures the entry layout.
func BenchmarkLocalHitSpread(b *testing.B) {
	c, names := spreadCache(b)
	defer c.Close()
	var sink int
	b.ResetTimer()
	x := uint64(1)
	for i := 0; i < b.N; i++ {
		x = x*6364136223846793005 + 1442695040888963407
		u, err := c.Get(ctx, names[(x>>33)%uint64(len(names))])
		if err != nil {
			b.Fatal(err)
		}
		for _, f := range u.Fields {
			sink += len(f.Value) + int(f.Value[0])
		}
	}
	_ = sink
}

// spreadCache is a cache holding 200,000 users.
func spreadCache(b *testing.B) (*Local, []string) {
	st, err := bolt.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	const n = 200_000
	c := NewLocal(st, LocalOptions{Size: n * 2})
	return c, fill(c, n)
}

// fill caches n users shaped as the benchmark population's and returns
// their names.
func fill(c *Local, n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("user%07d@domain%02d.example", i, i%100)
		u := &directory.User{Name: names[i], Display: names[i], Password: "{SSHA}0123456789012345678901234567890123",
			Fields: []directory.Field{{Label: "tohost", Value: "backend1.example"}, {Label: "quota", Value: "1073741824"}, {Label: "name", Value: "Alice Smith"}}}
		s, h := c.shard(names[i])
		c.store(s, h, s.gen, names[i], u, time.Hour)
	}
	return names
}

// TestLocalMemoryPerUser bounds what a full cache costs per user beyond
// the user's encoded record: slot, index entry and allocation rounding.
// A directory caches a million users; at 128 bytes each that is 128 MB.
func TestLocalMemoryPerUser(t *testing.T) {
	const n = 100_000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c := NewLocal(nil, LocalOptions{Size: n})
	defer c.clock.stop()
	names := fill(c, n)
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(names)
	cached, records := c.Size()
	perUser := float64(after.HeapAlloc-before.HeapAlloc-uint64(n*(16+len(names[0])))) / float64(cached)
	record := float64(records) / float64(cached)
	t.Logf("%d users cached: %.0f heap bytes each, %.0f of them the encoded record", cached, perUser, record)
	if cached < n*9/10 {
		t.Fatalf("only %d of %d users cached", cached, n)
	}
	if over := perUser - record; over > 128 {
		t.Fatalf("a cached user costs %.0f bytes beyond its %.0f-byte record, want at most 128", over, record)
	}
}

// BenchmarkLocalHitSpreadParallel is BenchmarkLocalHitSpread from every
// core at once, as the directory's connections read the cache.
func BenchmarkLocalHitSpreadParallel(b *testing.B) {
	c, names := spreadCache(b)
	defer c.Close()
	var seed atomic.Uint64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		x := seed.Add(12345)
		for pb.Next() {
			x = x*6364136223846793005 + 1442695040888963407
			if _, err := c.Get(ctx, names[(x>>33)%uint64(len(names))]); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestLocalSize: the record bytes Size reports follow stores, evictions,
// invalidations and flushes.
func TestLocalSize(t *testing.T) {
	c := NewLocal(nil, LocalOptions{Size: shardCount * 4})
	defer c.clock.stop()
	held := func() (n, bytes int) {
		for i := range c.shards {
			s := &c.shards[i]
			n += len(s.index)
			for j := range s.slots {
				bytes += len(s.slots[j].rec)
			}
		}
		return n, bytes
	}
	check := func(when string) {
		t.Helper()
		n, b := c.Size()
		wn, wb := held()
		if n != wn || b != wb || (n > 0) != (b > 0) {
			t.Fatalf("%s: Size() = %d entries, %d bytes; the cache holds %d, %d", when, n, b, wn, wb)
		}
	}
	names := fill(c, shardCount*10) // several evictions per shard
	check("after evictions")
	for _, name := range names[len(names)-100:] {
		c.Invalidate(name)
	}
	check("after invalidations")
	fill(c, 50)
	check("after refilling")
	c.Flush()
	if n, b := c.Size(); n != 0 || b != 0 {
		t.Fatalf("after a flush: %d entries, %d bytes", n, b)
	}
}

// Two names under one hash (forced here; about never otherwise): a read
// of one never returns the other's record, cached user or known miss.
func TestLocalHashCollision(t *testing.T) {
	next := newBolt(t)
	c := NewLocal(next, LocalOptions{Size: 1000, NegativeTTL: time.Minute})
	defer c.Close()
	set(t, c, "b@x", "hb")
	s, h := c.shard("b@x")
	other := &directory.User{Name: "a@x", Display: "a@x", Fields: []directory.Field{{Label: "tohost", Value: "ha"}}}
	c.store(s, h, s.gen, "a@x", other, 0) // a@x's record under b@x's hash
	u, err := c.Get(ctx, "b@x")
	if err != nil || u.Name != "b@x" || u.Get("tohost") != "hb" {
		t.Fatalf("b@x with a@x's record under its hash: %+v, %v", u, err)
	}
	c.store(s, h, s.gen, "nobody@x", nil, 0) // a known miss of another name
	if u, err := c.Get(ctx, "b@x"); err != nil || u.Name != "b@x" {
		t.Fatalf("b@x with another name's miss under its hash: %+v, %v", u, err)
	}
}
