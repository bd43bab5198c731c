// Package cache puts caches in front of a directory.Store, as layers that
// wrap the next Store: Local, the in-process hot cache, answers a hit with
// no network round trip and no decoding. The Service does not know whether
// it talks to a cache or to the store itself.
package cache

import (
	"context"
	"errors"
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tohost/tohost/directory"
)

// LocalOptions configures Local.
type LocalOptions struct {
	// Size bounds the number of cached names (users and misses).
	Size int
	// TTL bounds how long a user is served from the cache; 0 keeps entries
	// until they are evicted or invalidated (right when this process is
	// the only writer, as with the embedded store).
	TTL time.Duration
	// NegativeTTL is how long an unknown name is remembered (0: not at
	// all), so a dictionary attack does not reach the store per try.
	NegativeTTL time.Duration
	// Metrics, when set, counts hits and misses.
	Metrics *Metrics
}

const shardCount = 64

// Local is a bounded in-process cache of users in front of a Store. Reads
// take one shard's read lock; entries are evicted with the CLOCK algorithm
// (an approximation of LRU that needs no write on a hit but one atomic flag).
type Local struct {
	next   directory.Store
	opts   LocalOptions
	seed   maphash.Seed
	shards [shardCount]shard
	clock  coarseClock
	// distrusted: invalidations may be going missing (the node's channel
	// to the other nodes went quiet), so entries cannot be served; reads
	// go to the next store until Trust.
	distrusted atomic.Bool
}

// A cache of millions of users must cost little per user, in memory and
// in garbage collection work. So a cached user is one string, its encoded
// record (directory's codec), in a slot of a flat array that is also the
// CLOCK ring; the index maps the 64-bit hash of the name to the slot and
// holds no pointers. The collector then has one pointer-free object per
// user to mark and nothing in it to scan, and a hit decodes the record
// into a new User whose strings are slices of it (no copy).
type shard struct {
	mu    sync.RWMutex
	index map[uint64]int32 // name hash → slot
	slots []slot           // the CLOCK ring; len grows to max, then slots are reused
	hand  int
	max   int
	gen   uint64 // bumped by every invalidation, see store
	bytes int    // of the records held
}

// slot is one cached name. A second name with the same hash (about never)
// replaces the first; rec's name tells them apart.
type slot struct {
	rec     string // encoded user; for a known miss, the name itself
	expires int64  // coarse-clock nanoseconds; 0: never
	key     uint64 // the name's hash, to drop it from the index on eviction
	ref     atomic.Bool
	missing bool // a known miss
	free    bool // invalidated: the next eviction takes it at once
}

// NewLocal wraps next.
func NewLocal(next directory.Store, opts LocalOptions) *Local {
	if opts.Size <= 0 {
		opts.Size = 1 << 20
	}
	c := &Local{next: next, opts: opts, seed: maphash.MakeSeed()}
	per := max(opts.Size/shardCount, 1)
	for i := range c.shards {
		c.shards[i].index = make(map[uint64]int32)
		c.shards[i].max = per
	}
	c.clock.start()
	return c
}

func (c *Local) shard(name string) (*shard, uint64) {
	h := maphash.String(c.seed, name)
	return &c.shards[h%shardCount], h
}

// Get implements directory.Store.
func (c *Local) Get(ctx context.Context, name string) (*directory.User, error) {
	if c.distrusted.Load() {
		// Nothing is stored either: Trust flushes whatever would be.
		c.opts.Metrics.miss(layerLocal)
		return c.next.Get(ctx, name)
	}
	s, h := c.shard(name)
	rec, missing, ok, gen := s.load(h, c.clock.now())
	if ok {
		if missing && rec == name {
			c.opts.Metrics.hit(layerLocal)
			return nil, directory.ErrNotFound
		}
		if !missing {
			// The record's name tells a hash collision (about never)
			// from a hit, once decoded.
			u := new(directory.User)
			if err := u.UnmarshalString(rec); err == nil && u.Name == name {
				c.opts.Metrics.hit(layerLocal)
				return u, nil
			}
		}
	}
	c.opts.Metrics.miss(layerLocal)
	u, err := c.next.Get(ctx, name)
	switch {
	case err == nil:
		c.store(s, h, gen, name, u, c.opts.TTL)
	case errors.Is(err, directory.ErrNotFound) && c.opts.NegativeTTL > 0:
		c.store(s, h, gen, name, nil, c.opts.NegativeTTL)
	}
	return u, err
}

// load returns the unexpired entry under hash h, marked as used, and the
// shard's generation.
func (s *shard) load(h uint64, now int64) (rec string, missing, ok bool, gen uint64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	gen = s.gen
	i, found := s.index[h]
	if !found {
		return "", false, false, gen
	}
	e := &s.slots[i]
	if e.expires != 0 && e.expires <= now {
		return "", false, false, gen
	}
	e.ref.Store(true)
	return e.rec, e.missing, true, gen
}

// store caches a value read from the next store, unless the shard was
// invalidated since the read began: the value might then be older than
// the write that invalidated it.
func (c *Local) store(s *shard, h, gen uint64, name string, u *directory.User, ttl time.Duration) {
	var exp int64
	if ttl > 0 {
		exp = c.clock.now() + int64(ttl)
	}
	var rec string
	if u != nil {
		rec = string(u.AppendBinary(make([]byte, 0, 64+len(u.Password)+len(name)*2)))
	} else {
		rec = strings.Clone(name) // the caller's may live in a buffer
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen != gen {
		return
	}
	i, found := s.index[h]
	if !found {
		i = s.take()
		s.index[h] = i
	}
	e := &s.slots[i]
	s.bytes += len(rec) - len(e.rec)
	e.rec, e.expires, e.key, e.missing, e.free = rec, exp, h, u == nil, false
	e.ref.Store(false)
}

// take returns a slot for a new entry: a new one while the ring is below
// its bound, else one freed with the CLOCK algorithm.
func (s *shard) take() int32 {
	if n := len(s.slots); n < s.max {
		if n == cap(s.slots) {
			// Doubling, but never past the bound: a full cache wastes
			// no slots, and a new one allocates nothing up front.
			s.slots = slices.Grow(s.slots, min(max(n, 64), s.max-n))
		}
		s.slots = append(s.slots, slot{})
		return int32(n)
	}
	for {
		i := s.hand
		s.hand = (s.hand + 1) % len(s.slots)
		e := &s.slots[i]
		if !e.free && e.ref.Swap(false) {
			continue
		}
		if !e.free {
			delete(s.index, e.key)
		}
		return int32(i)
	}
}

// Invalidate drops name from the cache.
func (c *Local) Invalidate(name string) {
	s, h := c.shard(name)
	s.mu.Lock()
	s.gen++
	if i, found := s.index[h]; found {
		delete(s.index, h)
		s.bytes -= len(s.slots[i].rec)
		s.slots[i] = slot{free: true}
	}
	s.mu.Unlock()
}

// Flush drops every entry, e.g. after invalidations may have been missed.
func (c *Local) Flush() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		s.gen++
		clear(s.index)
		clear(s.slots) // let the records go
		s.slots = s.slots[:0]
		s.hand = 0
		s.bytes = 0
		s.mu.Unlock()
	}
}

// Distrust stops serving cached entries: the node may be missing
// invalidations. Reads go to the next store until Trust.
func (c *Local) Distrust() { c.distrusted.Store(true) }

// Trust serves cached entries again, after dropping them all if they were
// distrusted: the invalidations missed in between are unknown.
func (c *Local) Trust() {
	if c.distrusted.Load() {
		c.Flush()
		c.distrusted.Store(false)
	}
}

// Trusted reports whether cached entries are served.
func (c *Local) Trusted() bool { return !c.distrusted.Load() }

// Len returns the number of cached names.
func (c *Local) Len() int {
	n, _ := c.Size()
	return n
}

// Size returns the number of cached names and the bytes of their records
// (what the cache holds; its own cost per entry comes on top).
func (c *Local) Size() (entries, recordBytes int) {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		entries += len(s.index)
		recordBytes += s.bytes
		s.mu.RUnlock()
	}
	return entries, recordBytes
}

// Update implements directory.Store: the write goes to the next store
// first (the truth), then the cached copy is dropped.
func (c *Local) Update(ctx context.Context, name string, fn directory.UpdateFunc) (*directory.User, error) {
	defer c.Invalidate(name)
	return c.next.Update(ctx, name, fn)
}

// Delete implements directory.Store.
func (c *Local) Delete(ctx context.Context, name string) error {
	defer c.Invalidate(name)
	return c.next.Delete(ctx, name)
}

// Rename implements directory.Store.
func (c *Local) Rename(ctx context.Context, oldName, newName, newDisplay string) error {
	defer c.Invalidate(newName)
	defer c.Invalidate(oldName)
	return c.next.Rename(ctx, oldName, newName, newDisplay)
}

// Search implements directory.Store; searches bypass the cache.
func (c *Local) Search(ctx context.Context, m directory.Match, fn func(*directory.User) error) error {
	return c.next.Search(ctx, m, fn)
}

// Count implements directory.Store.
func (c *Local) Count(ctx context.Context) (int64, error) { return c.next.Count(ctx) }

// Close stops the cache's clock and closes the next store.
func (c *Local) Close() error {
	c.clock.stop()
	return c.next.Close()
}

// coarseClock is a clock read with one atomic load, ticking every 50 ms:
// TTLs of seconds do not need time.Now on every hit. Once stopped it no
// longer moves, which lets tests set it.
type coarseClock struct {
	ns      atomic.Int64
	done    chan struct{}
	stopped chan struct{} // closed when the ticking goroutine has returned
	once    sync.Once
}

func (k *coarseClock) start() {
	k.ns.Store(time.Now().UnixNano())
	k.done = make(chan struct{})
	k.stopped = make(chan struct{})
	go func() {
		defer close(k.stopped)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case now := <-t.C:
				k.ns.Store(now.UnixNano())
			case <-k.done:
				return
			}
		}
	}()
}

func (k *coarseClock) now() int64 { return k.ns.Load() }

// stop ends the ticking and returns once the clock can no longer move.
func (k *coarseClock) stop() {
	k.once.Do(func() { close(k.done) })
	<-k.stopped
}
