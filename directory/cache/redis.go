package cache

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tohost/tohost/directory"
)

// RedisOptions configures Redis.
type RedisOptions struct {
	// Client is the Redis connection (a single node or a cluster client).
	Client redis.UniversalClient
	// Prefix starts every key and the invalidation channel (default "tohost:").
	Prefix string
	// TTL of a cached user (default 10 minutes) and of a cached unknown
	// name (default 30 seconds).
	TTL, NegativeTTL time.Duration
	Logger           *slog.Logger
	Metrics          *Metrics
}

// Value markers. A user record starts with the codec's version byte (1).
const (
	markMissing   = 'N' // the name is known not to exist
	markTombstone = 'T' // just written: read the store, do not refill
)

// tombstoneTTL is how long a write keeps other nodes from refilling the
// key. A node that read the old record from the store before the write
// committed would otherwise put it back; tombstones make its SET NX fail.
const tombstoneTTL = 5 * time.Second

// downFor is how long Redis is skipped after a failure, so an outage costs
// one timeout per second instead of one per request.
const downFor = time.Second

// maxPending bounds the invalidations remembered while Redis is down.
const maxPending = 100_000

// Redis is the cache shared by all directory nodes. Reads try Redis, then
// the next store, and fill Redis; writes go to the next store, then leave a
// tombstone in Redis and publish the name so every node drops it from its
// in-process cache. When Redis is down, reads and writes go straight to the
// store and the invalidations are kept and sent when Redis is back.
type Redis struct {
	next    directory.Store
	c       redis.UniversalClient
	opts    RedisOptions
	local   *Local // this node's in-process cache, or nil
	log     *slog.Logger
	channel string

	downUntil atomic.Int64 // Unix ns; Redis is skipped until then
	isDown    atomic.Bool
	downSince atomic.Int64 // Unix ns; when the outage began
	failures  atomic.Int64 // Redis calls failed in this outage

	mu       sync.Mutex
	pending  []string // invalidations not yet delivered
	overflow bool     // more were lost than pending holds
}

// NewShared builds a node's cache stack, Local → Redis → next, wired so
// that invalidations published by other nodes reach the in-process cache
// and it is flushed when the subscription was lost (invalidations may have
// been missed). Call Run on the Redis layer to receive them.
func NewShared(next directory.Store, lo LocalOptions, ro RedisOptions) (*Local, *Redis) {
	r := NewRedis(next, ro)
	l := NewLocal(r, lo)
	r.local = l
	return l, r
}

// NewRedis wraps next, with no in-process cache to invalidate (see
// NewShared).
func NewRedis(next directory.Store, opts RedisOptions) *Redis {
	if opts.Prefix == "" {
		opts.Prefix = "tohost:"
	}
	if opts.TTL == 0 {
		opts.TTL = 10 * time.Minute
	}
	if opts.NegativeTTL == 0 {
		opts.NegativeTTL = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Redis{next: next, c: opts.Client, opts: opts, log: opts.Logger, channel: opts.Prefix + "invalidate"}
}

func (r *Redis) key(name string) string { return r.opts.Prefix + "user:" + name }

// Get implements directory.Store.
func (r *Redis) Get(ctx context.Context, name string) (*directory.User, error) {
	refill := r.up()
	if refill {
		b, err := r.c.Get(ctx, r.key(name)).Bytes()
		switch {
		case err == nil && len(b) > 0 && b[0] == markMissing:
			r.opts.Metrics.hit(layerRedis)
			return nil, directory.ErrNotFound
		case err == nil && len(b) > 0 && b[0] == markTombstone:
			refill = false
		case err == nil:
			u := new(directory.User)
			if u.UnmarshalBinary(b) == nil {
				r.opts.Metrics.hit(layerRedis)
				return u, nil
			}
			r.log.Warn("redis cache: undecodable entry, reading the store", "user", name)
		case errors.Is(err, redis.Nil):
		default:
			r.failed(err)
			refill = false
		}
	}
	r.opts.Metrics.miss(layerRedis)
	u, err := r.next.Get(ctx, name)
	if refill {
		switch {
		case err == nil:
			r.fill(ctx, name, u.AppendBinary(nil), r.opts.TTL)
		case errors.Is(err, directory.ErrNotFound):
			r.fill(ctx, name, []byte{markMissing}, r.opts.NegativeTTL)
		}
	}
	return u, err
}

// fill caches a value unless the key exists (a tombstone of a write).
func (r *Redis) fill(ctx context.Context, name string, v []byte, ttl time.Duration) {
	err := r.c.SetArgs(ctx, r.key(name), v, redis.SetArgs{Mode: "NX", TTL: ttl}).Err()
	if err != nil && !errors.Is(err, redis.Nil) {
		r.failed(err)
	}
}

// Update implements directory.Store.
func (r *Redis) Update(ctx context.Context, name string, fn directory.UpdateFunc) (*directory.User, error) {
	u, err := r.next.Update(ctx, name, fn)
	r.invalidate(ctx, name)
	return u, err
}

// Delete implements directory.Store.
func (r *Redis) Delete(ctx context.Context, name string) error {
	err := r.next.Delete(ctx, name)
	r.invalidate(ctx, name)
	return err
}

// Rename implements directory.Store.
func (r *Redis) Rename(ctx context.Context, oldName, newName, newDisplay string) error {
	err := r.next.Rename(ctx, oldName, newName, newDisplay)
	r.invalidate(ctx, oldName, newName)
	return err
}

// Search implements directory.Store; searches bypass the cache.
func (r *Redis) Search(ctx context.Context, m directory.Match, fn func(*directory.User) error) error {
	return r.next.Search(ctx, m, fn)
}

// Count implements directory.Store.
func (r *Redis) Count(ctx context.Context) (int64, error) { return r.next.Count(ctx) }

// Close closes the next store; the Redis client belongs to the caller.
func (r *Redis) Close() error { return r.next.Close() }

// InvalidateAll drops every cached user on every node (after a bulk
// import). It deletes this prefix's user keys and publishes "*".
func (r *Redis) InvalidateAll(ctx context.Context) error {
	iter := r.c.Scan(ctx, 0, r.opts.Prefix+"user:*", 1000).Iterator()
	var batch []string
	for iter.Next(ctx) {
		if batch = append(batch, iter.Val()); len(batch) == 1000 {
			if err := r.c.Del(ctx, batch...).Err(); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	if len(batch) > 0 {
		if err := r.c.Del(ctx, batch...).Err(); err != nil {
			return err
		}
	}
	return r.c.Publish(ctx, r.channel, "*").Err()
}

// invalidate tombstones the names and tells every node. Called after a
// write whether it succeeded or not: a failed write may still have
// committed (a timeout after COMMIT), and a spare invalidation is cheap.
func (r *Redis) invalidate(ctx context.Context, names ...string) {
	if r.up() && r.send(ctx, names) == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.pending)+len(names) > maxPending {
		r.overflow = true
		r.pending = r.pending[:0]
		return
	}
	r.pending = append(r.pending, names...)
}

func (r *Redis) send(ctx context.Context, names []string) error {
	_, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, n := range names {
			p.Set(ctx, r.key(n), []byte{markTombstone}, tombstoneTTL)
			p.Publish(ctx, r.channel, n)
		}
		return nil
	})
	if err != nil {
		r.failed(err)
	}
	return err
}

// up reports whether Redis is worth asking now.
func (r *Redis) up() bool { return time.Now().UnixNano() >= r.downUntil.Load() }

// failed marks Redis down for a while; the first failure of an outage is
// logged, the rest only counted.
func (r *Redis) failed(err error) {
	r.opts.Metrics.redisError()
	now := time.Now()
	r.downUntil.Store(now.Add(downFor).UnixNano())
	r.failures.Add(1)
	if !r.isDown.Swap(true) {
		r.downSince.Store(now.UnixNano())
		r.log.Error("redis unavailable, serving from the store", "err", err)
	}
}

// Run keeps the invalidation subscription and delivers the pending
// invalidations, until ctx is done.
func (r *Redis) Run(ctx context.Context) error {
	go r.retryPending(ctx)
	ps := r.c.Subscribe(ctx, r.channel)
	defer ps.Close()
	// Receive blocks in a read that ignores ctx; closing wakes it.
	stop := context.AfterFunc(ctx, func() { ps.Close() })
	defer stop()
	for {
		msg, err := ps.Receive(ctx)
		if ctx.Err() != nil {
			return nil
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			// Subscribed, or subscribed again after a lost connection:
			// invalidations may have been missed in between.
			if r.local != nil {
				r.local.Flush()
			}
			if r.isDown.Swap(false) {
				r.log.Info("redis available again; in-process cache flushed", "failed", r.failures.Swap(0),
					"down_for", time.Since(time.Unix(0, r.downSince.Load())).Round(time.Millisecond).String())
			}
		case *redis.Message:
			r.apply(m.Payload)
		}
		if err != nil {
			r.failed(err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
}

func (r *Redis) apply(name string) {
	if r.local == nil {
		return
	}
	if name == "*" {
		r.local.Flush()
		return
	}
	r.local.Invalidate(name)
}

// retryPending delivers invalidations that failed while Redis was down.
// If more were lost than could be kept, every cached user is dropped.
func (r *Redis) retryPending(ctx context.Context) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.mu.Lock()
		names, overflow := r.pending, r.overflow
		r.pending, r.overflow = nil, false
		r.mu.Unlock()
		if len(names) == 0 && !overflow {
			continue
		}
		var err error
		if overflow {
			err = r.InvalidateAll(ctx)
		}
		if err == nil && len(names) > 0 {
			err = r.send(ctx, names)
		}
		if err != nil {
			r.mu.Lock()
			r.pending = append(names, r.pending...)
			r.overflow = r.overflow || overflow
			r.mu.Unlock()
		}
	}
}
