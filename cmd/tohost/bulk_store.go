package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/tohost/tohost/directory"
	"github.com/tohost/tohost/directory/cache"
	"github.com/tohost/tohost/directory/store/bolt"
	"github.com/tohost/tohost/directory/store/postgres"
)

// bulkStore is the configured store opened for import or export: the
// store itself, without the in-process cache (an import writes around
// every cache and then invalidates them all).
type bulkStore struct {
	directory.BulkStore
	kind string
	// invalidate drops every cached user on every directory node: the
	// Redis keys, and (through the invalidation channel) each node's
	// in-process cache. nil without --redis.
	invalidate func(context.Context) error
	closeRedis func() error
}

// openBulk opens the store the flags configure, as `directory` would. A
// reader (existing) never creates one: an export from a mistyped
// --data-dir must fail, not report an empty directory.
func (f *storeFlags) openBulk(ctx context.Context, existing bool) (*bulkStore, error) {
	if err := f.check(); err != nil {
		return nil, err
	}
	if f.postgres == "" {
		if f.redis != "" {
			return nil, fmt.Errorf("--redis needs --postgres: the embedded store serves one node")
		}
		if _, err := os.Stat(filepath.Join(f.dataDir, bolt.FileName)); existing && errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no directory store in %s (no %s there): check --data-dir", f.dataDir, bolt.FileName)
		}
		st, err := bolt.Open(f.dataDir)
		if errors.Is(err, bbolt.ErrTimeout) {
			return nil, fmt.Errorf("%w: the embedded store in %s is in use (a running directory?): stop it first, or copy it from the running directory with tohost backup or tohost export --from", err, f.dataDir)
		}
		if err != nil {
			return nil, err
		}
		return &bulkStore{BulkStore: st, kind: "embedded store " + f.dataDir}, nil
	}
	st, err := postgres.Open(ctx, f.postgres, postgres.Options{MaxConns: f.pgMaxConns, NoMigrate: existing})
	if err != nil {
		return nil, err
	}
	b := &bulkStore{BulkStore: st, kind: "postgres"}
	if f.redis == "" {
		return b, nil
	}
	// Timeouts of an admin command, not of a request: it may wait.
	client, err := newRedisClient(f.redis, 5*time.Second, 10*time.Second)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("--redis: %w", err)
	}
	shared := cache.NewRedis(st, cache.RedisOptions{Client: client, Prefix: f.redisPrefix})
	b.kind = "postgres+redis"
	b.invalidate = shared.InvalidateAll
	b.closeRedis = client.Close
	return b, nil
}

// Close closes the store and the Redis client.
func (b *bulkStore) Close() error {
	err := b.BulkStore.Close()
	if b.closeRedis != nil {
		if cerr := b.closeRedis(); err == nil {
			err = cerr
		}
	}
	return err
}
