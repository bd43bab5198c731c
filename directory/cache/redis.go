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
	"github.com/tohost/tohost/directory/watch"
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
	// Timeout bounds each Redis call of the request path (0: the client's
	// own timeouts only). A cluster client retries a command that timed
	// out, on the same node and then another: without this bound a frozen
	// node would cost a request several timeouts.
	Timeout time.Duration
	// Heartbeat is how often the node publishes a sign of life on the
	// invalidation channel (default 1 second).
	Heartbeat time.Duration
	// StaleAfter: a node that has heard nothing on the invalidation
	// channel (its own heartbeat included) for this long stops serving
	// its in-process cache, which may be missing invalidations, until it
	// hears again; it then flushes it. Default 3 seconds; negative: never.
	StaleAfter time.Duration
	// Written, if set, learns of every name written by any node as soon
	// as this node does (an invalidation, a tombstone), and of "*" while
	// writes may go unseen (the channel is quiet or was lost). A store
	// reading replicas sends reads of such names to the primary.
	Written func(name string)
	Logger  *slog.Logger
	Metrics *Metrics
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

// heartbeatMsg is the payload of a heartbeat: no user name holds a NUL.
const heartbeatMsg = "\x00heartbeat"

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
	outage    watch.Outage // logged once when it begins, once when it ends

	mu       sync.Mutex
	pending  []string // invalidations not yet delivered
	overflow bool     // more were lost than pending holds

	lastHeard atomic.Int64  // Unix ns of the last message on the channel
	stale     atomic.Bool   // nothing heard for StaleAfter
	retryNow  chan struct{} // wakes retryPending when the channel is back
	sub       atomic.Pointer[subscription]
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
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = time.Second
	}
	if opts.StaleAfter == 0 {
		opts.StaleAfter = 3 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Redis{next: next, c: opts.Client, opts: opts, log: opts.Logger,
		channel: opts.Prefix + "invalidate", retryNow: make(chan struct{}, 1)}
}

// bound applies opts.Timeout to one Redis call.
func (r *Redis) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if r.opts.Timeout <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, r.opts.Timeout)
}

// written tells opts.Written, if any, that name was (or "*": anything may
// have been) written.
func (r *Redis) written(name string) {
	if r.opts.Written != nil {
		r.opts.Written(name)
	}
}

func (r *Redis) key(name string) string { return r.opts.Prefix + "user:" + name }

// Get implements directory.Store.
func (r *Redis) Get(ctx context.Context, name string) (*directory.User, error) {
	refill := r.up()
	if refill {
		rctx, cancel := r.bound(ctx)
		b, err := r.c.Get(rctx, r.key(name)).Bytes()
		cancel()
		switch {
		case err == nil && len(b) > 0 && b[0] == markMissing:
			r.opts.Metrics.hit(layerRedis)
			return nil, directory.ErrNotFound
		case err == nil && len(b) > 0 && b[0] == markTombstone:
			refill = false
			r.written(name)
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
	ctx, cancel := r.bound(ctx)
	defer cancel()
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
// import). It deletes this prefix's user keys on every master (a cluster
// keeps them on several) and publishes "*".
func (r *Redis) InvalidateAll(ctx context.Context) error {
	err := forEachMaster(ctx, r.c, func(ctx context.Context, node redis.UniversalClient) error {
		return deleteMatching(ctx, node, r.opts.Prefix+"user:*")
	})
	if err != nil {
		return err
	}
	return r.publisher(ctx).Publish(ctx, r.channel, "*").Err()
}

// forEachMaster runs fn on every master of a cluster, or on the one server.
func forEachMaster(ctx context.Context, c redis.UniversalClient, fn func(context.Context, redis.UniversalClient) error) error {
	if cc, ok := c.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error { return fn(ctx, node) })
	}
	return fn(ctx, c)
}

// deleteMatching deletes the keys of one server that match pattern. Each
// DEL names one key: keys of one node may sit in different hash slots, and
// a multi-key DEL across slots is refused by a cluster.
func deleteMatching(ctx context.Context, node redis.UniversalClient, pattern string) error {
	iter := node.Scan(ctx, 0, pattern, 1000).Iterator()
	var batch []string
	flush := func() error {
		_, err := node.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range batch {
				p.Del(ctx, k)
			}
			return nil
		})
		batch = batch[:0]
		return err
	}
	for iter.Next(ctx) {
		if batch = append(batch, iter.Val()); len(batch) == 1000 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	if len(batch) > 0 {
		return flush()
	}
	return nil
}

// publisher is where this node publishes. In a cluster that is the master
// the subscription is on (the one serving the channel name's hash slot):
// a heartbeat that comes back through it then proves that the path every
// invalidation takes works, where a publish to another master would only
// prove that one.
func (r *Redis) publisher(ctx context.Context) redis.Cmdable {
	if cc, ok := r.c.(*redis.ClusterClient); ok {
		if m, err := cc.MasterForKey(ctx, r.channel); err == nil {
			return m
		}
	}
	return r.c
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

// send writes the tombstones, then publishes the names: a node that
// drops its copy on the message and reads again finds the tombstone. In a
// cluster the tombstones go to their keys' masters, the messages to the
// channel's.
func (r *Redis) send(ctx context.Context, names []string) error {
	ctx, cancel := r.bound(ctx)
	defer cancel()
	_, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, n := range names {
			p.Set(ctx, r.key(n), []byte{markTombstone}, tombstoneTTL)
		}
		return nil
	})
	if err == nil {
		_, err = r.publisher(ctx).Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, n := range names {
				p.Publish(ctx, r.channel, n)
			}
			return nil
		})
	}
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
	r.downUntil.Store(time.Now().Add(downFor).UnixNano())
	if r.outage.Fail() {
		r.log.Error("redis unavailable, serving from the store", "err", err)
	}
}

// Run keeps the invalidation subscription, publishes the heartbeat,
// watches for silence and delivers the pending invalidations, until ctx
// is done.
func (r *Redis) Run(ctx context.Context) error {
	r.lastHeard.Store(time.Now().UnixNano())
	go r.retryPending(ctx)
	go r.heartbeat(ctx)
	for ctx.Err() == nil {
		r.subscribeOnce(ctx)
	}
	return nil
}

// subscription is one SUBSCRIBE connection; dropped marks it closed by
// the staleness watcher rather than by a failure.
type subscription struct {
	ps      *redis.PubSub
	dropped atomic.Bool
}

// subscribeOnce receives on one subscription until ctx is done or the
// subscription is dropped. go-redis reconnects it after an error.
func (r *Redis) subscribeOnce(ctx context.Context) {
	sub := &subscription{ps: r.c.Subscribe(ctx, r.channel)}
	r.sub.Store(sub)
	defer sub.ps.Close()
	// Receive blocks in a read that ignores ctx; closing wakes it.
	stop := context.AfterFunc(ctx, func() { sub.ps.Close() })
	defer stop()
	for {
		msg, err := sub.ps.Receive(ctx)
		if ctx.Err() != nil || sub.dropped.Load() {
			return
		}
		r.receive(msg)
		if err != nil {
			r.failed(err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
}

// dropSubscription closes the subscription so that Run opens a new one: a
// connection to a frozen or vanished server may never report an error,
// and in a cluster the new one goes to the channel's current master.
func (r *Redis) dropSubscription() {
	if sub := r.sub.Load(); sub != nil {
		sub.dropped.Store(true)
		sub.ps.Close()
	}
}

// receive handles one event of the subscription.
func (r *Redis) receive(msg any) {
	switch m := msg.(type) {
	case *redis.Subscription:
		// Subscribed, or subscribed again after a lost connection:
		// invalidations may have been missed in between.
		r.heard()
		r.written("*")
		if r.local != nil {
			r.local.Flush()
		}
		if failed, lasted, ended := r.outage.End(); ended {
			r.log.Info("redis available again; in-process cache flushed", "failed", failed,
				"down_for", lasted.Round(time.Millisecond).String())
		}
	case *redis.Message:
		r.heard()
		r.apply(m.Payload)
	case *redis.Pong:
		r.heard()
	}
}

// heard notes a sign of life of the channel. A node that had gone stale
// trusts its in-process cache again, emptied, and delivers what it owes.
func (r *Redis) heard() {
	r.lastHeard.Store(time.Now().UnixNano())
	if !r.stale.Load() {
		return
	}
	if r.local != nil {
		r.local.Trust()
	}
	r.stale.Store(false)
	r.outage.End() // the next failure is logged again
	r.opts.Metrics.setStale(false)
	r.log.Info("invalidation channel heard again; in-process cache flushed and in use")
	select {
	case r.retryNow <- struct{}{}:
	default:
	}
}

// heartbeat publishes a sign of life every opts.Heartbeat and stops
// trusting the in-process cache when the channel has been silent for
// opts.StaleAfter: a frozen Redis, or a subscription connection that is
// open but carries nothing, delivers no invalidation and no error either.
func (r *Redis) heartbeat(ctx context.Context) {
	t := time.NewTicker(r.opts.Heartbeat)
	defer t.Stop()
	var dropped time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if r.checkStale() && time.Since(dropped) >= r.opts.StaleAfter {
			r.dropSubscription()
			dropped = time.Now()
		}
		// Sent whether or not Redis is marked down: it is also the probe.
		pctx, cancel := r.bound(ctx)
		if err := r.publisher(pctx).Publish(pctx, r.channel, heartbeatMsg).Err(); err != nil && ctx.Err() == nil {
			r.failed(err)
		}
		cancel()
	}
}

// checkStale distrusts the in-process cache once the channel has been
// silent too long, and reports whether it has. While stale, every name may
// have been written unseen.
func (r *Redis) checkStale() bool {
	if r.opts.StaleAfter < 0 {
		return false
	}
	silent := time.Duration(time.Now().UnixNano() - r.lastHeard.Load())
	if silent <= r.opts.StaleAfter {
		return false
	}
	r.written("*")
	if r.stale.Swap(true) {
		return true
	}
	if r.local != nil {
		r.local.Distrust()
	}
	r.opts.Metrics.setStale(true)
	r.log.Warn("invalidation channel silent; in-process cache bypassed until it is heard again",
		"silent", silent.Round(time.Millisecond))
	return true
}

func (r *Redis) apply(name string) {
	if name == heartbeatMsg {
		return
	}
	r.written(name)
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
		case <-r.retryNow:
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
