package directory_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tohost/tohost/directory"
	"github.com/tohost/tohost/directory/cache"
	"github.com/tohost/tohost/directory/store/postgres"
	"github.com/tohost/tohost/internal/testservices"
)

// clusterNode is a Service with the cache stack tohost directory builds
// over PostgreSQL and Redis: Local → Redis → postgres.
func clusterNode(t *testing.T, pgURL, redisAddr, prefix string) *directory.Service {
	t.Helper()
	pg, err := postgres.Open(context.Background(), pgURL, postgres.Options{MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	local, shared := cache.NewShared(pg, cache.LocalOptions{Size: 1000, TTL: time.Hour, NegativeTTL: time.Hour},
		cache.RedisOptions{Client: rdb, Prefix: prefix, TTL: time.Hour, NegativeTTL: time.Hour, Logger: quiet})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { shared.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; rdb.Close(); pg.Close() })
	return argon2Service(t, local, directory.Config{VerifyCacheTTL: time.Hour})
}

// listening waits until b receives a's invalidations: a write through a
// is seen through b although b had the old record in its caches.
func listening(t *testing.T, a, b *directory.Service) {
	t.Helper()
	ctx := context.Background()
	for i := 0; ; i++ {
		want := fmt.Sprint(i)
		if _, err := a.Set(ctx, "probe@x", "{PLAIN}x", []directory.Field{{Label: "n", Value: want}}); err != nil {
			t.Fatal(err)
		}
		for range 100 {
			if u, err := b.Lookup(ctx, "probe@x"); err == nil && u.Fields[0].Value == want {
				if i > 0 {
					return
				}
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if i > 20 {
			t.Fatal("node b never received an invalidation")
		}
	}
}

// TestVerifyCacheAcrossNodes: a password verified and cached on node B
// stops working there as soon as B sees the change or delete made on node
// A: the cache is keyed by the stored hash, so no invalidation of its own
// is needed, and B's record caches get theirs from Redis.
func TestVerifyCacheAcrossNodes(t *testing.T) {
	pg := testservices.Postgres(t)
	addr, prefix := testservices.Redis(t)
	a, b := clusterNode(t, pg, addr, prefix), clusterNode(t, pg, addr, prefix)
	listening(t, a, b)
	var verified atomic.Int64
	defer directory.HookVerify(func(_, _ string) { verified.Add(1) })()
	ctx := context.Background()
	check := func(pass string, want error) {
		t.Helper()
		if _, err := b.Check(ctx, "u@x", pass); !errors.Is(err, want) {
			t.Fatalf("check on B with %q: %v, want %v", pass, err, want)
		}
	}
	if _, err := a.Set(ctx, "u@x", "old", nil); err != nil {
		t.Fatal(err)
	}
	check("old", nil)
	check("old", nil)
	if n := verified.Load(); n != 1 {
		t.Fatalf("%d verifications for two checks, want 1: the second is cached", n)
	}
	before, _ := b.Lookup(ctx, "u@x")
	if _, err := a.Set(ctx, "u@x", "new", nil); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "B sees the new hash", func() bool {
		u, err := b.Lookup(ctx, "u@x")
		return err == nil && u.Password != before.Password
	})
	check("old", directory.ErrBadCredentials)
	check("new", nil)
	if err := a.Delete(ctx, "u@x"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "B sees the delete", func() bool {
		_, err := b.Lookup(ctx, "u@x")
		return errors.Is(err, directory.ErrNotFound)
	})
	check("new", directory.ErrBadCredentials)
}
