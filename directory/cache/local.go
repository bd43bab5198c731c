// Package cache puts caches in front of a directory.Store, as layers that
// wrap the next Store: Local, the in-process hot cache, answers a hit with
// no network round trip and no decoding. The Service does not know whether
// it talks to a cache or to the store itself.
package cache

import (
	"context"
	"errors"
	"hash/maphash"
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
// Cached users are shared between readers and must not be modified.
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

// Entries are keyed by the 64-bit hash of the name, and each entry holds
// its name: a lookup then compares integers in the map and the name in the
// entry it reads anyway, instead of following a pointer to a key string. A
// second name with the same hash (about never) replaces the first.
type shard struct {
	mu      sync.RWMutex
	entries map[uint64]*entry
	ring    []uint64 // CLOCK ring of keys
	hand    int
	max     int
	gen     uint64 // bumped by every invalidation, see load
}

// entry holds a compact copy of a user (users are immutable once cached):
// the record, its first fields inline, and all its texts in one string. A
// hit on a directory of millions of users is bound by cache misses, and
// this layout reads a few adjacent lines instead of chasing a pointer per
// part.
type entry struct {
	ref     atomic.Bool // used since the clock hand last passed
	missing bool        // a known miss
	expires int64       // coarse-clock nanoseconds; 0: never
	name    string      // the key, for telling hash collisions apart
	user    directory.User
	fields  [inlineFields]directory.Field
}

const inlineFields = 4

// NewLocal wraps next.
func NewLocal(next directory.Store, opts LocalOptions) *Local {
	if opts.Size <= 0 {
		opts.Size = 1 << 20
	}
	c := &Local{next: next, opts: opts, seed: maphash.MakeSeed()}
	per := max(opts.Size/shardCount, 1)
	for i := range c.shards {
		c.shards[i].entries = make(map[uint64]*entry)
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
	s.mu.RLock()
	e := s.entries[h]
	gen := s.gen
	s.mu.RUnlock()
	if e != nil && e.name == name && (e.expires == 0 || e.expires > c.clock.now()) {
		e.ref.Store(true)
		c.opts.Metrics.hit(layerLocal)
		if e.missing {
			return nil, directory.ErrNotFound
		}
		return &e.user, nil
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

// store caches a value read from the next store, unless the shard was
// invalidated since the read began: the value might then be older than
// the write that invalidated it.
func (c *Local) store(s *shard, h, gen uint64, name string, u *directory.User, ttl time.Duration) {
	var exp int64
	if ttl > 0 {
		exp = c.clock.now() + int64(ttl)
	}
	// Entries are immutable once published: readers use them unlocked.
	e := newEntry(name, u, exp)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen != gen {
		return
	}
	if s.entries[h] == nil {
		if len(s.ring) < s.max {
			s.ring = append(s.ring, h)
		} else {
			s.ring[s.evict()] = h
		}
	}
	s.entries[h] = e
}

// newEntry copies u (nil: a known miss) with all its texts in one
// allocation; name is copied too, as the caller's may live in a buffer.
func newEntry(name string, u *directory.User, exp int64) *entry {
	e := &entry{expires: exp, missing: u == nil}
	if u == nil {
		e.name = strings.Clone(name)
		return e
	}
	n := len(name) + len(u.Name) + len(u.Display) + len(u.Password)
	for _, f := range u.Fields {
		n += len(f.Label) + len(f.Value)
	}
	var b strings.Builder
	b.Grow(n)
	for _, t := range []string{name, u.Name, u.Display, u.Password} {
		b.WriteString(t)
	}
	for _, f := range u.Fields {
		b.WriteString(f.Label)
		b.WriteString(f.Value)
	}
	all := b.String()
	next := func(t string) string {
		out := all[:len(t)]
		all = all[len(t):]
		return out
	}
	e.name = next(name)
	e.user = *u
	e.user.Name, e.user.Display, e.user.Password = next(u.Name), next(u.Display), next(u.Password)
	if len(u.Fields) <= inlineFields {
		e.user.Fields = e.fields[:len(u.Fields):len(u.Fields)]
	} else {
		e.user.Fields = make([]directory.Field, len(u.Fields))
	}
	for i, f := range u.Fields {
		e.user.Fields[i] = directory.Field{Label: next(f.Label), Value: next(f.Value)}
	}
	return e
}

// evict frees a ring slot with the CLOCK algorithm and returns it.
func (s *shard) evict() int {
	for {
		i := s.hand
		s.hand = (s.hand + 1) % len(s.ring)
		e := s.entries[s.ring[i]]
		if e != nil && e.ref.Swap(false) {
			continue
		}
		delete(s.entries, s.ring[i])
		return i
	}
}

// Invalidate drops name from the cache.
func (c *Local) Invalidate(name string) {
	s, h := c.shard(name)
	s.mu.Lock()
	s.gen++
	// The ring slot stays; evict skips the missing entry.
	delete(s.entries, h)
	s.mu.Unlock()
}

// Flush drops every entry, e.g. after invalidations may have been missed.
func (c *Local) Flush() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		s.gen++
		clear(s.entries)
		s.ring = s.ring[:0]
		s.hand = 0
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
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.entries)
		s.mu.RUnlock()
	}
	return n
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
