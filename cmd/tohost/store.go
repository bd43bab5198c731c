package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/pflag"

	"github.com/tohost/tohost/adminhttp"
	"github.com/tohost/tohost/directory"
	"github.com/tohost/tohost/directory/backup"
	"github.com/tohost/tohost/directory/cache"
	"github.com/tohost/tohost/directory/store/bolt"
	"github.com/tohost/tohost/directory/store/postgres"
	"github.com/tohost/tohost/directory/watch"
)

// storeFlags choose and configure the store stack: the embedded store, or
// Postgres with an optional shared Redis cache; always an in-process cache
// in front.
type storeFlags struct {
	dataDir     string
	postgres    string
	pgMaxConns  int32
	pgTimeout   time.Duration
	redis       string
	redisPrefix string
	redisTTL    time.Duration
	cacheSize   int
	cacheTTL    time.Duration
	negativeTTL time.Duration
}

func (f *storeFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&f.dataDir, "data-dir", "./tohost-data", "directory of the embedded store (one bbolt file), used without --postgres")
	fl.StringVar(&f.postgres, "postgres", "", "PostgreSQL URL (postgres://user@host:5432/db); replaces the embedded store")
	fl.Int32Var(&f.pgMaxConns, "postgres-max-conns", 16, "PostgreSQL connection pool size")
	fl.DurationVar(&f.pgTimeout, "postgres-timeout", 5*time.Second, "limit of one PostgreSQL call; past it the request gets -DEAD")
	fl.StringVar(&f.redis, "redis", "", "Redis URL (redis://host:6379/0) of the cache shared by all directory nodes")
	fl.StringVar(&f.redisPrefix, "redis-prefix", "tohost:", "prefix of every Redis key and of the invalidation channel")
	fl.DurationVar(&f.redisTTL, "redis-ttl", 10*time.Minute, "how long a user stays in Redis")
	fl.IntVar(&f.cacheSize, "cache-size", 1_000_000, "users kept in the in-process cache")
	fl.DurationVar(&f.cacheTTL, "cache-ttl", 5*time.Minute, "how long a user stays in the in-process cache (0: until evicted or invalidated)")
	fl.DurationVar(&f.negativeTTL, "negative-ttl", 30*time.Second, "how long an unknown name is remembered (0: not at all)")
}

// check refuses values out of range.
func (f *storeFlags) check() error {
	return errors.Join(atLeast("postgres-max-conns", f.pgMaxConns, 1),
		atLeast("postgres-timeout", f.pgTimeout, time.Millisecond),
		atLeast("redis-ttl", f.redisTTL, time.Millisecond),
		atLeast("cache-size", f.cacheSize, 1),
		atLeast("cache-ttl", f.cacheTTL, 0),
		atLeast("negative-ttl", f.negativeTTL, 0))
}

// openedStore is the store stack and what runs beside it.
type openedStore struct {
	directory.Store
	kind string
	deps []adminhttp.Dependency      // what /readyz and tohost_ready report
	bolt *bolt.Store                 // the embedded store, for /backup; nil on PostgreSQL
	run  func(context.Context) error // the Redis subscription, if any
}

func (f *storeFlags) open(ctx context.Context, log *slog.Logger, reg prometheus.Registerer) (*openedStore, error) {
	if err := f.check(); err != nil {
		return nil, err
	}
	var next directory.Store
	o := &openedStore{kind: "bolt", run: func(context.Context) error { return nil }}
	if f.postgres == "" {
		if f.redis != "" {
			return nil, fmt.Errorf("--redis needs --postgres: the embedded store serves one node")
		}
		st, err := bolt.Open(f.dataDir)
		if err != nil {
			return nil, err
		}
		w := watch.New(st, "bolt", log)
		next, o.bolt = w, st
		o.deps = []adminhttp.Dependency{{Name: "store", Required: true,
			Check: func(ctx context.Context) error { _, err := w.Count(ctx); return err }}}
	} else {
		st, err := postgres.Open(ctx, f.postgres, postgres.Options{MaxConns: f.pgMaxConns, QueryTimeout: f.pgTimeout})
		if err != nil {
			return nil, err
		}
		w := watch.New(st, "postgres", log)
		next, o.kind = w, "postgres"
		// The probe goes around the wrapper but tells it the outcome, so
		// an outage ends in the log even when no request reaches the store.
		o.deps = []adminhttp.Dependency{{Name: "postgres", Required: true,
			Check: func(ctx context.Context) error { err := st.Ping(ctx); w.Note(ctx, err); return err }}}
	}
	metrics := cache.NewMetrics(reg)
	lopts := cache.LocalOptions{Size: f.cacheSize, TTL: f.cacheTTL, NegativeTTL: f.negativeTTL, Metrics: metrics}
	if f.redis == "" {
		o.Store = cache.NewLocal(next, lopts)
		return o, nil
	}
	ropts, err := redis.ParseURL(f.redis)
	if err != nil {
		next.Close()
		return nil, fmt.Errorf("--redis: %w", err)
	}
	// Short timeouts and no retries: when Redis is slow, the store answers.
	ropts.DialTimeout, ropts.ReadTimeout, ropts.WriteTimeout = time.Second, 250*time.Millisecond, 250*time.Millisecond
	ropts.MaxRetries = -1
	redis.SetLogger(redisLog{log})
	client := redis.NewClient(ropts)
	local, shared := cache.NewShared(next, lopts, cache.RedisOptions{Client: client,
		Prefix: f.redisPrefix, TTL: f.redisTTL, NegativeTTL: f.negativeTTL, Logger: log, Metrics: metrics})
	o.Store, o.kind = local, o.kind+"+redis"
	// Not required: without Redis every node still answers from the store.
	o.deps = append(o.deps, adminhttp.Dependency{Name: "redis",
		Check: func(ctx context.Context) error { return client.Ping(ctx).Err() }})
	o.run = func(ctx context.Context) error {
		defer client.Close()
		return shared.Run(ctx)
	}
	return o, nil
}

// snapshotter is what /backup copies: the embedded store, or nothing.
func (o *openedStore) snapshotter() backup.Snapshotter {
	if o.bolt == nil {
		return nil // a nil *bolt.Store in the interface would not be nil
	}
	return o.bolt
}

// redisLog takes the Redis client's own lines (one per failed dial, many
// a second while Redis is down, in another format) to debug: the cache
// logs Redis outages once per state change.
type redisLog struct{ log *slog.Logger }

func (l redisLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.Debug("redis client", "detail", fmt.Sprintf(format, v...))
}
