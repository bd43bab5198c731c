package postgres

import (
	"errors"
	"io/fs"
	"testing"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/tohost/tohost/directory"
	"github.com/tohost/tohost/internal/testservices"
	"github.com/tohost/tohost/schema"
)

// TestFoldNamesMigration: a database of the version before the name rule
// (keys in Unicode lower case) is brought to it by the migration: every
// user is found under FoldName of its name, with its domain, and none is
// lost.
func TestFoldNamesMigration(t *testing.T) {
	url := testservices.Postgres(t)
	conn := connect(t, url)
	db := stdlib.OpenDB(*conn.Config())
	defer db.Close()
	migrations, err := fs.Sub(schema.Migrations, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(ctx, 2); err != nil {
		t.Fatal(err)
	}
	old := map[string]string{ // key as the old rule made it → name as written
		"élodie@x.com": "Élodie@x.com",
		"kelvin@x.com": "\u212Aelvin@x.com",
		"bob@x.com":    "Bob@x.com",
		"noat":         "NoAt",
	}
	for k, display := range old {
		_, err := conn.Exec(ctx, `INSERT INTO users (name, display, domain, password, created, updated)
			VALUES ($1, $2, nullif(split_part($1, '@', 2), ''), '{SSHA}x', now(), now())`, k, display)
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := Migrate(ctx, url); err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, url, Options{NoMigrate: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, display := range old {
		key := directory.FoldName(display)
		u, err := s.Get(ctx, key)
		if err != nil || u.Display != display {
			t.Fatalf("user %q under %q: %+v, %v", display, key, u, err)
		}
		var domain *string
		if err := conn.QueryRow(ctx, `SELECT domain FROM users WHERE name = $1`, key).Scan(&domain); err != nil {
			t.Fatal(err)
		}
		if d := directory.Domain(key); (domain == nil) != (d == "") || domain != nil && *domain != d {
			t.Fatalf("domain of %q: %v, want %q", key, domain, d)
		}
	}
	for _, gone := range []string{"élodie@x.com", "kelvin@x.com"} {
		if _, err := s.Get(ctx, gone); !errors.Is(err, directory.ErrNotFound) {
			t.Fatalf("old key %q still answers: %v", gone, err)
		}
	}
	if n, err := s.Count(ctx); err != nil || n != int64(len(old)) {
		t.Fatalf("count %d, %v, want %d", n, err, len(old))
	}
}
