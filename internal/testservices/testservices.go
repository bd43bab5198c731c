// Package testservices gives tests their own PostgreSQL database and their
// own Redis key space on the shared test servers, and removes them when the
// test ends. scripts/test-services.sh starts the servers; a test whose
// server is missing fails (it does not skip), so a broken setup cannot pass
// as green.
package testservices

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redis/go-redis/v9"
)

// Defaults, overridden by TOHOST_TEST_POSTGRES (a URL) and TOHOST_TEST_REDIS
// (host:port).
const (
	DefaultPostgres = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	DefaultRedis    = "127.0.0.1:6379"
)

const (
	hint    = "; start the test services with scripts/test-services.sh"
	timeout = 10 * time.Second
)

// Postgres creates an empty database for t and returns its URL; the
// database is dropped when t ends.
func Postgres(t testing.TB) string {
	t.Helper()
	admin := PostgresAdmin()
	u, err := url.Parse(admin)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("TOHOST_TEST_POSTGRES=%q is not a postgres:// URL", admin)
	}
	name := "tohost_" + uniqueName(t, 40)
	if err := createDatabase(admin, name); err != nil {
		t.Fatalf("postgres at %s: create database: %v%s", u.Redacted(), err, hint)
	}
	t.Cleanup(func() {
		if err := adminExec(admin, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("postgres: drop database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}

// PostgresAdmin returns the URL of the server's database that Postgres
// connects to for creating and dropping test databases.
func PostgresAdmin() string { return env("TOHOST_TEST_POSTGRES", DefaultPostgres) }

// createDatabase retries while another session sits in template1, which
// CREATE DATABASE refuses ("source database is being accessed").
func createDatabase(admin, name string) error {
	var err error
	for range 5 {
		err = adminExec(admin, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "55006" {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
	return err
}

// adminExec runs one statement on the server's admin database. CREATE and
// DROP DATABASE cannot run inside a transaction; Exec without arguments
// sends them as a simple query, outside one.
func adminExec(admin, sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

// Redis checks that Redis answers and returns its address and a key prefix
// of t's own; every key under the prefix is deleted when t ends (SCAN and
// DEL: other tests share the server, so never FLUSHALL).
func Redis(t testing.TB) (addr, prefix string) {
	t.Helper()
	addr = env("TOHOST_TEST_REDIS", DefaultRedis)
	client := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		client.Close()
		t.Fatalf("redis at %s: %v%s", addr, err, hint)
	}
	// uniqueName has no glob characters, so the prefix is safe in MATCH.
	prefix = "tohost-test:" + uniqueName(t, 40) + ":"
	t.Cleanup(func() {
		defer client.Close()
		if err := deleteKeys(client, prefix); err != nil {
			t.Errorf("redis: delete keys %s*: %v", prefix, err)
		}
	})
	return addr, prefix
}

func deleteKeys(client *redis.Client, prefix string) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	iter := client.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	var batch []string
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 1000 {
			if err := client.Del(ctx, batch...).Err(); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	if len(batch) > 0 {
		return client.Del(ctx, batch...).Err()
	}
	return nil
}

// uniqueName is t's name made safe for a database name or key glob
// (lower-case letters, digits, '_'), cut to max bytes, plus random hex so
// that parallel runs and -count=N never collide.
func uniqueName(t testing.TB, max int) string {
	var b strings.Builder
	for _, c := range strings.ToLower(t.Name()) {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' {
			b.WriteRune(c)
		} else {
			b.WriteByte('_')
		}
	}
	s := b.String()
	if len(s) > max {
		s = s[:max]
	}
	return s + "_" + randomHex()
}

func randomHex() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
