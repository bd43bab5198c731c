package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
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
	pgRead      string
	pgReadLag   time.Duration
	redis       string
	redisPrefix string
	redisTTL    time.Duration
	redisStale  time.Duration
	cacheSize   int
	cacheTTL    time.Duration
	negativeTTL time.Duration
}

func (f *storeFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&f.dataDir, "data-dir", "./tohost-data", "folder of the embedded store (one file, tohost.db), used without --postgres")
	fl.StringVar(&f.postgres, "postgres", "", "PostgreSQL URL (postgres://user@host:5432/db; several hosts with target_session_attrs=read-write follow a failover); replaces the embedded store")
	fl.Int32Var(&f.pgMaxConns, "postgres-max-conns", 16, "PostgreSQL connection pool size")
	fl.DurationVar(&f.pgTimeout, "postgres-timeout", 5*time.Second, "limit of one PostgreSQL call; past it the request gets -DEAD")
	fl.StringVar(&f.pgRead, "postgres-read", "", "PostgreSQL URL of a streaming replica that serves the cache misses (with --postgres)")
	fl.DurationVar(&f.pgReadLag, "postgres-read-lag", time.Second, "replication lag under which --postgres-read is used; names written less than this ago are read from the primary")
	fl.StringVar(&f.redis, "redis", "", "Redis URL (redis://host:6379/0) of the cache shared by all directory nodes; a Redis Cluster as host:port,host:port or redis+cluster://host:port,host:port")
	fl.StringVar(&f.redisPrefix, "redis-prefix", "tohost:", "prefix of every Redis key and of the invalidation channel")
	fl.DurationVar(&f.redisTTL, "redis-ttl", 10*time.Minute, "how long a user stays in Redis")
	fl.DurationVar(&f.redisStale, "redis-stale-after", 3*time.Second, "silence of the invalidation channel (heartbeats every second) after which the in-process cache is bypassed until the channel is heard again (0: never)")
	fl.IntVar(&f.cacheSize, "cache-size", 1_000_000, "users kept in the in-process cache")
	fl.DurationVar(&f.cacheTTL, "cache-ttl", 5*time.Minute, "how long a user stays in the in-process cache (0: until evicted or invalidated)")
	fl.DurationVar(&f.negativeTTL, "negative-ttl", 30*time.Second, "how long an unknown name is remembered (0: not at all)")
}

// bulkUnused are the store flags only a running directory uses (its
// caches, its replica, its call limit); import and export hide them.
var bulkUnused = []string{"postgres-timeout", "postgres-read", "postgres-read-lag",
	"redis-ttl", "redis-stale-after", "cache-size", "cache-ttl", "negative-ttl"}

// registerBulk adds the flags for import or export, the ones that do
// nothing there hidden: still accepted, so that a command line or
// environment written for the directory works, but not offered. Export
// never touches the caches, so it hides --redis and --redis-prefix too.
func (f *storeFlags) registerBulk(fl *pflag.FlagSet, export bool) {
	f.register(fl)
	hide := bulkUnused
	if export {
		hide = append(hide[:len(hide):len(hide)], "redis", "redis-prefix")
	}
	for _, name := range hide {
		fl.MarkHidden(name)
	}
}

// check refuses values out of range.
func (f *storeFlags) check() error {
	return errors.Join(atLeast("postgres-max-conns", f.pgMaxConns, 1),
		atLeast("postgres-timeout", f.pgTimeout, time.Millisecond),
		atLeast("redis-ttl", f.redisTTL, time.Millisecond),
		atLeast("redis-stale-after", f.redisStale, 0),
		atLeast("postgres-read-lag", f.pgReadLag, 0),
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
	var written func(string) // tells the store of other nodes' writes
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
		st, err := postgres.Open(ctx, f.postgres, postgres.Options{MaxConns: f.pgMaxConns, QueryTimeout: f.pgTimeout,
			ReadURL: f.pgRead, ReadLag: f.pgReadLag})
		if err != nil {
			return nil, err
		}
		w := watch.New(st, "postgres", log)
		next, o.kind, written = w, "postgres", st.Written
		// The probe goes around the wrapper but tells it the outcome, so
		// an outage ends in the log even when no request reaches the store.
		o.deps = []adminhttp.Dependency{{Name: "postgres", Required: true,
			Check: func(ctx context.Context) error { err := st.Ping(ctx); w.Note(ctx, err); return err }}}
		if f.pgRead != "" {
			o.kind += "+replica"
			reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "tohost_postgres_replica_reads_total",
				Help: "User records read from the --postgres-read replica."}, func() float64 { return float64(st.ReplicaReads()) }))
		}
	}
	metrics := cache.NewMetrics(reg)
	lopts := cache.LocalOptions{Size: f.cacheSize, TTL: f.cacheTTL, NegativeTTL: f.negativeTTL, Metrics: metrics}
	if f.redis == "" {
		local := cache.NewLocal(next, lopts)
		cache.RegisterSize(reg, local)
		o.Store = local
		return o, nil
	}
	// Short timeouts and no retries: when Redis is slow, the store answers.
	client, err := newRedisClient(f.redis, time.Second, 250*time.Millisecond)
	if err != nil {
		next.Close()
		return nil, fmt.Errorf("--redis: %w", err)
	}
	redis.SetLogger(redisLog{log})
	if _, ok := client.(*redis.ClusterClient); ok {
		o.kind += "+redis-cluster"
	} else {
		o.kind += "+redis"
	}
	local, shared := cache.NewShared(next, lopts, f.redisOptions(client, log, metrics, written))
	cache.RegisterSize(reg, local)
	o.Store = local
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

// redisOptions configure the shared cache from the flags.
func (f *storeFlags) redisOptions(client redis.UniversalClient, log *slog.Logger, m *cache.Metrics, written func(string)) cache.RedisOptions {
	o := cache.RedisOptions{Client: client, Prefix: f.redisPrefix, TTL: f.redisTTL, NegativeTTL: f.negativeTTL,
		Timeout: 250 * time.Millisecond, Heartbeat: time.Second, StaleAfter: f.redisStale,
		Written: written, Logger: log, Metrics: m}
	if f.redisStale == 0 {
		o.StaleAfter = -1 // never
	} else {
		// A few heartbeats fit in the silence that counts as stale.
		o.Heartbeat = min(time.Second, f.redisStale/3)
	}
	return o
}

// newRedisClient opens --redis: a redis://, rediss:// or unix:// URL for
// one server; for a Redis Cluster, seed addresses separated by commas
// (host:port,host:port) or a redis+cluster:// (rediss+cluster://) URL
// with them as its host. dial and io bound connecting and each read or
// write; commands are not retried (the caller falls back to the store).
func newRedisClient(spec string, dial, io time.Duration) (redis.UniversalClient, error) {
	u, seeds, ok := clusterURL(spec)
	if !ok {
		o, err := redis.ParseURL(spec)
		if err != nil {
			return nil, err
		}
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.MaxRetries = dial, io, io, -1
		return redis.NewClient(o), nil
	}
	o, err := redis.ParseClusterURL(u)
	if err != nil {
		return nil, err
	}
	for _, s := range seeds {
		if h, p, err := net.SplitHostPort(s); err != nil || h == "" || p == "" {
			return nil, fmt.Errorf("cluster seed %q is not host:port", s)
		}
	}
	o.Addrs = append(o.Addrs, seeds...)
	o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.MaxRetries = dial, io, io, -1
	// Every command sent is single-key, or is sent to a chosen node
	// (PUBLISH, SCAN): the per-command policy lookup costs and gains nothing.
	o.DisableRoutingPolicies = true
	return redis.NewClusterClient(o), nil
}

// clusterURL turns a cluster spec into a redis:// URL of its first seed,
// which go-redis parses, and the other seeds; ok is false for a URL of
// one server.
func clusterURL(spec string) (u string, more []string, ok bool) {
	scheme, rest, found := strings.Cut(spec, "://")
	switch {
	case !found && strings.Contains(spec, ","):
		scheme, rest = "redis", spec
	case found && (scheme == "redis+cluster" || scheme == "rediss+cluster"):
		scheme = strings.TrimSuffix(scheme, "+cluster")
	default:
		return "", nil, false
	}
	end := strings.IndexAny(rest, "/?")
	if end < 0 {
		end = len(rest)
	}
	hosts, tail := rest[:end], rest[end:]
	var userinfo string
	if at := strings.LastIndex(hosts, "@"); at >= 0 {
		userinfo, hosts = hosts[:at+1], hosts[at+1:]
	}
	seeds := strings.Split(hosts, ",")
	return scheme + "://" + userinfo + seeds[0] + tail, seeds[1:], true
}
