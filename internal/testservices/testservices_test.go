package testservices

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

var ctx = context.Background()

// TestPostgres: the database exists, is empty and separate per call, and
// is gone after the test that asked for it.
func TestPostgres(t *testing.T) {
	var first, second string
	t.Run("inner", func(t *testing.T) {
		first, second = Postgres(t), Postgres(t)
		if first == second {
			t.Fatalf("two calls gave the same database %s", first)
		}
		conn, err := pgx.Connect(ctx, first)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var n int
		err = conn.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`).Scan(&n)
		if err != nil || n != 0 {
			t.Fatalf("fresh database has %d tables (%v)", n, err)
		}
	})
	conn, err := pgx.Connect(ctx, PostgresAdmin())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, u := range []string{first, second} {
		name := dbName(t, u)
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_database WHERE datname = $1`, name).Scan(&n); err != nil || n != 0 {
			t.Errorf("database %s still there after cleanup (n=%d, %v)", name, n, err)
		}
	}
}

func dbName(t *testing.T, u string) string {
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(p.Path, "/")
}

// TestRedis: cleanup deletes every key under the prefix, more than one SCAN
// batch of them, and nothing else.
func TestRedis(t *testing.T) {
	addr, _ := Redis(t)
	client := redis.NewClient(&redis.Options{Addr: addr})
	defer client.Close()
	outside := "tohost-test-outside:" + randomHex()
	if err := client.Set(ctx, outside, "keep", 0).Err(); err != nil {
		t.Fatal(err)
	}
	defer client.Del(ctx, outside)

	var prefix string
	t.Run("inner", func(t *testing.T) {
		_, prefix = Redis(t)
		pipe := client.Pipeline()
		for i := range 2500 {
			pipe.Set(ctx, fmt.Sprintf("%sk%d", prefix, i), "v", 0)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
	})
	left := 0
	iter := client.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		left++
	}
	if err := iter.Err(); err != nil || left != 0 {
		t.Errorf("after cleanup: %d keys under %s (%v)", left, prefix, err)
	}
	if v, err := client.Get(ctx, outside).Result(); v != "keep" {
		t.Errorf("key outside the prefix: %q, %v", v, err)
	}
}

func TestUniqueNameIsSafe(t *testing.T) {
	t.Run("Weird *?[name] with spaces/and-ÜNICODE", func(t *testing.T) {
		n := uniqueName(t, 40)
		if strings.ContainsAny(n, "*?[]\\ /-") || n != strings.ToLower(n) || len(n) > 40+1+12 {
			t.Errorf("uniqueName = %q", n)
		}
	})
}
