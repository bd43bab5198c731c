package password

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testCache returns a cache whose clock and Verify the test controls.
func testCache(max int, ttl time.Duration) (c *VerifyCache, calls *atomic.Int64, clock *time.Time) {
	c = NewVerifyCache(max, ttl)
	calls = new(atomic.Int64)
	now := time.Unix(1_700_000_000, 0)
	clock = &now
	c.now = func() time.Time { return *clock }
	c.verify = func(stored, plain string) (bool, error) {
		calls.Add(1)
		return Verify(stored, plain)
	}
	return c, calls, clock
}

// checkIndex verifies that each shard's map, LRU list and free list agree.
func checkIndex(t *testing.T, c *VerifyCache) {
	t.Helper()
	for si := range c.shards {
		s := &c.shards[si]
		s.mu.Lock()
		n, prev := 0, int32(none)
		for i := s.head; i != none; i = s.slots[i].next {
			e := s.slots[i]
			if e.prev != prev || s.index[e.user] != i {
				t.Errorf("shard %d: slot %d (%x) is linked or indexed wrong", si, i, e.user)
			}
			prev = i
			n++
		}
		free := 0
		for i := s.free; i != none; i = s.slots[i].next {
			free++
		}
		if prev != s.tail || n != len(s.index) || n+free != len(s.slots) || n > s.max {
			t.Errorf("shard %d: list %d, map %d, free %d, slots %d, max %d", si, n, len(s.index), free, len(s.slots), s.max)
		}
		s.mu.Unlock()
	}
}

const ssha = "{SSHA}36T+CZy/LLJL94gOZ6WxairV8moBAgMEBQYHCA=="

func TestVerifyCacheHitMiss(t *testing.T) {
	c, calls, _ := testCache(10, time.Minute)
	check := func(user, stored, plain string, want bool, wantCalls int64) {
		t.Helper()
		ok, err := c.Verify(user, stored, plain)
		if ok != want || err != nil {
			t.Fatalf("Verify(%q, %q) = %v, %v; want %v", user, plain, ok, err, want)
		}
		if got := calls.Load(); got != wantCalls {
			t.Fatalf("after Verify(%q, %q): %d scheme calls, want %d", user, plain, got, wantCalls)
		}
	}
	check("bob", ssha, pw, true, 1)
	check("bob", ssha, pw, true, 1) // hit
	check("bob", ssha, "wrong", false, 2)
	check("bob", ssha, "wrong", false, 3)   // failures are not cached
	check("alice", ssha, pw, true, 4)       // other user: miss
	check("bob", "{PLAIN}"+pw, pw, true, 5) // other stored hash: miss
	check("bob", ssha, pw, true, 6)         // one entry a user: the latest hash's
	check("bob", ssha, "wrong", false, 7)
	check("bob", ssha, pw, true, 7) // a wrong guess did not evict it
	checkIndex(t, c)

	// Errors are passed on and not cached.
	for range 2 {
		if ok, err := c.Verify("bob", "{FOO}x", pw); ok || !errors.Is(err, ErrUnsupported) {
			t.Fatalf("Verify(bad stored) = %v, %v", ok, err)
		}
	}
	if calls.Load() != 9 {
		t.Errorf("%d scheme calls, want 9", calls.Load())
	}
}

func TestVerifyCacheTTL(t *testing.T) {
	c, calls, clock := testCache(10, time.Minute)
	c.Verify("bob", ssha, pw)
	*clock = clock.Add(59 * time.Second)
	c.Verify("bob", ssha, pw)
	if calls.Load() != 1 {
		t.Fatalf("hit within TTL ran the scheme: %d calls", calls.Load())
	}
	// Hits do not extend the TTL.
	*clock = clock.Add(time.Second)
	c.Verify("bob", ssha, pw)
	if calls.Load() != 2 {
		t.Fatalf("expired entry was used: %d calls", calls.Load())
	}
	c.Verify("bob", ssha, pw)
	if calls.Load() != 2 {
		t.Fatalf("re-verified entry missed: %d calls", calls.Load())
	}
	checkIndex(t, c)
}

func TestVerifyCacheForget(t *testing.T) {
	c, calls, _ := testCache(10, time.Minute)
	c.Verify("bob", ssha, pw)
	c.Verify("bob", "{PLAIN}"+pw, pw)
	c.Verify("alice", ssha, pw)
	c.Forget("bob")
	c.Forget("nobody")
	checkIndex(t, c)
	if c.Len() != 1 {
		t.Fatalf("Len after Forget(bob) = %d, want 1", c.Len())
	}
	before := calls.Load()
	c.Verify("alice", ssha, pw)
	if calls.Load() != before {
		t.Error("Forget(bob) dropped alice's entry")
	}
	c.Verify("bob", ssha, pw)
	if calls.Load() != before+1 {
		t.Error("bob's entry survived Forget")
	}
}

func TestVerifyCacheBound(t *testing.T) {
	c, calls, _ := testCache(3, time.Minute)
	for i := range 3 {
		c.Verify(fmt.Sprint("u", i), ssha, pw)
	}
	c.Verify("u0", ssha, pw) // u0 is now the most recent: u1 is the oldest
	c.Verify("u3", ssha, pw) // evicts u1
	checkIndex(t, c)
	if c.Len() != 3 {
		t.Fatalf("Len = %d, want 3", c.Len())
	}
	before := calls.Load()
	for _, u := range []string{"u0", "u2", "u3"} {
		c.Verify(u, ssha, pw)
	}
	if calls.Load() != before {
		t.Errorf("recently used entries were evicted: %d extra calls", calls.Load()-before)
	}
	c.Verify("u1", ssha, pw)
	if calls.Load() != before+1 {
		t.Error("least recently used entry was not evicted")
	}
	checkIndex(t, c)
}

func TestVerifyCacheDisabled(t *testing.T) {
	var nilCache *VerifyCache
	for _, c := range []*VerifyCache{nilCache, NewVerifyCache(0, time.Minute), NewVerifyCache(10, 0)} {
		if ok, err := c.Verify("bob", ssha, pw); !ok || err != nil {
			t.Errorf("Verify = %v, %v", ok, err)
		}
		if ok, _ := c.Verify("bob", ssha, "wrong"); ok {
			t.Error("wrong password accepted")
		}
		c.Forget("bob")
		if c.Len() != 0 {
			t.Errorf("disabled cache holds %d entries", c.Len())
		}
	}
}

func TestVerifyCacheKeyIsUnambiguous(t *testing.T) {
	c := NewVerifyCache(10, time.Minute)
	if c.key("ab", "c", "d") == c.key("a", "bc", "d") {
		t.Error("field boundaries do not change the key")
	}
	if c.key("a", "b", "c") != c.key("a", "b", "c") {
		t.Error("key is not deterministic")
	}
	if NewVerifyCache(10, time.Minute).key("a", "b", "c") == c.key("a", "b", "c") {
		t.Error("two caches share an HMAC key")
	}
}

func TestVerifyCacheConcurrent(t *testing.T) {
	c, _, _ := testCache(50, time.Minute)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 300 {
				user := fmt.Sprint("u", (g*7+i)%80)
				plain := pw
				if i%5 == 0 {
					plain = "wrong"
				}
				ok, err := c.Verify(user, ssha, plain)
				if err != nil || ok != (plain == pw) {
					t.Errorf("Verify(%s, %s) = %v, %v", user, plain, ok, err)
					return
				}
				if i%17 == 0 {
					c.Forget(user)
				}
			}
		})
	}
	wg.Wait()
	checkIndex(t, c)
	if c.Len() > 50 {
		t.Errorf("Len = %d above the bound", c.Len())
	}
}

func BenchmarkVerifyCacheHit(b *testing.B) {
	c := NewVerifyCache(1000, time.Minute)
	stored, _ := Hash(SchemeArgon2ID, pw)
	if ok, err := c.Verify("bob@example.com", stored, pw); !ok || err != nil {
		b.Fatal(ok, err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if ok, _ := c.Verify("bob@example.com", stored, pw); !ok {
			b.Fatal("no match")
		}
	}
}

// BenchmarkVerifyCacheMemory fills a cache sized for a million users and
// reports what an entry costs in heap: the map, the slot, the name's copy.
func BenchmarkVerifyCacheMemory(b *testing.B) {
	const n = 1_000_000
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		c := NewVerifyCache(n, time.Hour)
		for i := range n {
			// The benchmark population's names: user0000042@domain42.example.
			c.Remember(fmt.Sprintf("user%07d@domain%02d.example", i, i%100), ssha, pw)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		held := c.Len() // a little under n: a full shard evicts while others have room
		if held < n*9/10 || held > n {
			b.Fatalf("Len = %d", held)
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(held), "bytes/entry")
		runtime.KeepAlive(c)
	}
}
