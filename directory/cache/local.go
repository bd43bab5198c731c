// Package cache puts caches in front of a directory.Store, as layers that
// wrap the next Store: Local, the in-process hot cache, answers a hit with
// no network round trip and no decoding. The Service does not know whether
// it talks to a cache or to the store itself.
package cache

import (
	"context"
	"errors"
	"hash/maphash"
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
}

type shard struct {
	mu      sync.RWMutex
	entries map[string]*entry
	ring    []string // CLOCK ring of keys
	hand    int
	max     int
	gen     uint64 // bumped by every invalidation, see load
}

// entry holds a copy of the user inline (users are immutable once
// cached), so a hit touches one object less than a pointer to it would.
type entry struct {
	ref     atomic.Bool // used since the clock hand last passed
	missing bool        // a known miss
	expires int64       // coarse-clock nanoseconds; 0: never
	user    directory.User
}

// NewLocal wraps next.
func NewLocal(next directory.Store, opts LocalOptions) *Local {
	if opts.Size <= 0 {
		opts.Size = 1 << 20
	}
	c := &Local{next: next, opts: opts, seed: maphash.MakeSeed()}
	per := max(opts.Size/shardCount, 1)
	for i := range c.shards {
		c.shards[i].entries = make(map[string]*entry)
		c.shards[i].max = per
	}
	c.clock.start()
	return c
}

func (c *Local) shard(name string) *shard {
	return &c.shards[maphash.String(c.seed, name)%shardCount]
}

// Get implements directory.Store.
func (c *Local) Get(ctx context.Context, name string) (*directory.User, error) {
	s := c.shard(name)
	s.mu.RLock()
	e := s.entries[name]
	gen := s.gen
	s.mu.RUnlock()
	if e != nil && (e.expires == 0 || e.expires > c.clock.now()) {
		e.ref.Store(true)
		c.opts.Metrics.hit("local")
		if e.missing {
			return nil, directory.ErrNotFound
		}
		return &e.user, nil
	}
	c.opts.Metrics.miss("local")
	u, err := c.next.Get(ctx, name)
	switch {
	case err == nil:
		c.store(s, gen, name, u, c.opts.TTL)
	case errors.Is(err, directory.ErrNotFound) && c.opts.NegativeTTL > 0:
		c.store(s, gen, name, nil, c.opts.NegativeTTL)
	}
	return u, err
}

// store caches a value read from the next store, unless the shard was
// invalidated since the read began: the value might then be older than
// the write that invalidated it.
func (c *Local) store(s *shard, gen uint64, name string, u *directory.User, ttl time.Duration) {
	var exp int64
	if ttl > 0 {
		exp = c.clock.now() + int64(ttl)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen != gen {
		return
	}
	// Entries are immutable once published (readers use them unlocked),
	// and the key is copied: the caller's name may live in a read buffer.
	key := string(append([]byte(nil), name...))
	e := &entry{expires: exp, missing: u == nil}
	if u != nil {
		e.user = *u
	}
	if s.entries[name] != nil {
		s.entries[key] = e
		return
	}
	if len(s.ring) < s.max {
		s.ring = append(s.ring, key)
	} else {
		s.ring[s.evict()] = key
	}
	s.entries[key] = e
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
	s := c.shard(name)
	s.mu.Lock()
	s.gen++
	if e := s.entries[name]; e != nil {
		// The ring slot stays; evict skips the missing entry.
		delete(s.entries, name)
	}
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
// TTLs of seconds do not need time.Now on every hit.
type coarseClock struct {
	ns   atomic.Int64
	done chan struct{}
	once sync.Once
}

func (k *coarseClock) start() {
	k.ns.Store(time.Now().UnixNano())
	k.done = make(chan struct{})
	go func() {
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

func (k *coarseClock) stop() { k.once.Do(func() { close(k.done) }) }
