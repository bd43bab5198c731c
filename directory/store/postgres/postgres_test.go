package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tohost/tohost/directory"
	"github.com/tohost/tohost/directory/store/storetest"
	"github.com/tohost/tohost/internal/testservices"
)

var ctx = context.Background()

// open returns a store on a fresh database, and the database's URL.
func open(t *testing.T) (*Store, string) {
	t.Helper()
	url := testservices.Postgres(t)
	s, err := Open(ctx, url, Options{MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	return s, url
}

// connect is a plain connection beside the store, for looking under it.
func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(ctx) })
	return conn
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) directory.Store {
		s, _ := open(t)
		return s
	})
}

func fld(label, value string) directory.Field { return directory.Field{Label: label, Value: value} }

func put(t *testing.T, s *Store, name string, fields ...directory.Field) *directory.User {
	t.Helper()
	u, err := s.Update(ctx, name, func(*directory.User) (*directory.User, error) {
		now := time.Now()
		return &directory.User{Name: name, Display: name, Password: "{PLAIN}x", Fields: fields,
			Created: now, Updated: now, Version: 1}, nil
	})
	if err != nil {
		t.Fatalf("put %s: %v", name, err)
	}
	return u
}

// TestMigrationIndexes: the migration creates the indexes the queries need,
// and the planner uses them for prefix, substring, tohost and domain
// queries.
func TestMigrationIndexes(t *testing.T) {
	s, url := open(t)
	defer s.Close()
	conn := connect(t, url)
	rows, _ := conn.Query(ctx, `SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'users'`)
	defs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([2]string, error) {
		var d [2]string
		return d, r.Scan(&d[0], &d[1])
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"users_pkey":        `USING btree (name)`,
		"users_name_trgm_0": `USING gin (name gin_trgm_ops) WHERE ((hashtext(name) & 3) = 0)`,
		"users_name_trgm_1": `USING gin (name gin_trgm_ops) WHERE ((hashtext(name) & 3) = 1)`,
		"users_name_trgm_2": `USING gin (name gin_trgm_ops) WHERE ((hashtext(name) & 3) = 2)`,
		"users_name_trgm_3": `USING gin (name gin_trgm_ops) WHERE ((hashtext(name) & 3) = 3)`,
		"users_tohost":      `USING btree (tohost)`,
		"users_domain":      `USING btree (domain)`,
	}
	for _, d := range defs {
		if w, ok := want[d[0]]; ok && strings.Contains(d[1], w) {
			delete(want, d[0])
		}
	}
	if len(want) > 0 {
		t.Errorf("missing indexes %v; have %v", want, defs)
	}
	var collation string
	err = conn.QueryRow(ctx, `SELECT collation_name FROM information_schema.columns
		WHERE table_name = 'users' AND column_name = 'name'`).Scan(&collation)
	if err != nil || collation != "C" {
		t.Errorf("name collation = %q (%v), want C (byte order, prefix LIKE on the primary key)", collation, err)
	}

	// 20,000 users over 50 domains, vacuumed and analyzed, so the planner
	// weighs real numbers (sequential scans stay off: the table is small).
	for _, q := range []string{
		`INSERT INTO users (name, display, domain, password, created, updated)
			SELECT 'u' || i || '@d' || i % 50 || '.example', 'u' || i, 'd' || i % 50 || '.example', '{PLAIN}x', now(), now()
			FROM generate_series(1, 20000) AS i`,
		`VACUUM ANALYZE users`, // also moves the GIN pending lists into the indexes
		`SET enable_seqscan = off`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	// Search's own query, with the parameters written in.
	search := func(pattern string) string {
		return strings.NewReplacer("$1", "'"+pattern+"'", "$2", "''", "$3", "1000").Replace(searchFirst)
	}
	plans := map[string][]string{
		search("al%"):      {`Index Cond: ((name >= 'al'::text) AND (name < 'am'::text)`},
		search("%u1234@%"): {"BitmapOr", "users_name_trgm_0", "users_name_trgm_1", "users_name_trgm_2", "users_name_trgm_3"},
		`SELECT name FROM users WHERE tohost = 'b1'`:        {`users_tohost`},
		`SELECT count(*) FROM users WHERE domain = 'a.com'`: {`users_domain`},
	}
	for q, wants := range plans {
		plan := explain(t, conn, q)
		for _, want := range wants {
			if !strings.Contains(plan, want) {
				t.Errorf("%s\nplan does not use %q:\n%s", q, want, plan)
			}
		}
	}
}

func explain(t *testing.T, conn *pgx.Conn, q string) string {
	t.Helper()
	rows, _ := conn.Query(ctx, "EXPLAIN "+q)
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}

// TestSearchLiteral: LIKE's own metacharacters in a pattern match
// literally, and every pattern gives exactly what directory.Match says,
// in byte order.
func TestSearchLiteral(t *testing.T) {
	s, _ := open(t)
	defer s.Close()
	all := []string{"a%b@x", "a_b@x", `a\b@x`, "axb@x", "ab@x", "a%%b@y", "Zed@x", "zed@x", "é@x", "~@x"}
	for _, n := range all {
		put(t, s, n)
	}
	slices.Sort(all)
	cases := map[string][]string{
		"%":     {"a%%b@y", "a%b@x"},
		"_":     {"a_b@x"},
		`\`:     {`a\b@x`},
		"a%b":   {"a%b@x"},
		"a?b@x": {"a%b@x", `a\b@x`, "a_b@x", "axb@x"},
		"a%*":   {"a%%b@y", "a%b@x"},
		`a\*`:   {`a\b@x`},
		"*%b@?": {"a%%b@y", "a%b@x"},
	}
	for p, want := range cases {
		if got := searchNames(t, s, directory.NewMatch(p)); !reflect.DeepEqual(got, want) {
			t.Errorf("search %q = %v, want %v", p, got, want)
		}
	}
	for _, p := range []string{"", "*", "a", "@x", "a*b@?", "*e*", "?ed@x", "z", "%_", "[a]", "é", "~", "zed", "A?B@X"} {
		m := directory.NewMatch(p)
		want := slices.DeleteFunc(slices.Clone(all), func(n string) bool { return !m.Matches(n) })
		if got := searchNames(t, s, m); !slices.Equal(got, want) {
			t.Errorf("search %q = %v, Match says %v", p, got, want)
		}
	}
}

func searchNames(t *testing.T, s *Store, m directory.Match) []string {
	t.Helper()
	var out []string
	err := s.Search(ctx, m, func(u *directory.User) error {
		out = append(out, u.Name)
		return nil
	})
	if err != nil {
		t.Fatalf("search %+v: %v", m, err)
	}
	return out
}

func TestLikePattern(t *testing.T) {
	cases := []struct {
		m    directory.Match
		want string
	}{
		{directory.NewMatch("abc"), "%abc%"},
		{directory.NewMatch("a*b?c"), "a%b_c"},
		{directory.NewMatch(`50%_\`), `%50\%\_\\%`},
		{directory.NewMatch(`*%?_`), `%\%_\_`},
		{directory.Match{Pattern: "a*?"}, "%a*?%"}, // not a wildcard: * and ? are literal
	}
	for _, c := range cases {
		if got := likePattern(c.m); got != c.want {
			t.Errorf("likePattern(%+v) = %q, want %q", c.m, got, c.want)
		}
	}
}

// TestCount: the sharded counter stays equal to count(*) under concurrent
// creates and deletes, a multi-row COPY (the bulk loader's path) and
// TRUNCATE.
func TestCount(t *testing.T) {
	s, url := open(t)
	defer s.Close()
	const workers, each = 8, 40
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				name := fmt.Sprintf("w%d-%d@x", w, i)
				put(t, s, name)
				put(t, s, name) // an update adds nothing
				if i%2 == 1 {
					if err := s.Delete(ctx, name); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	conn := connect(t, url)
	checkCount(t, s, conn, workers*each/2)

	n, err := conn.CopyFrom(ctx, pgx.Identifier{"users"},
		[]string{"name", "display", "password", "created", "updated"},
		pgx.CopyFromSlice(1000, func(i int) ([]any, error) {
			return []any{fmt.Sprintf("bulk%04d@x", i), "b", "p", time.Now(), time.Now()}, nil
		}))
	if err != nil || n != 1000 {
		t.Fatalf("copy: %d, %v", n, err)
	}
	checkCount(t, s, conn, workers*each/2+1000)
	if _, err := conn.Exec(ctx, `DELETE FROM users WHERE name LIKE 'bulk%'`); err != nil {
		t.Fatal(err)
	}
	checkCount(t, s, conn, workers*each/2)
	if _, err := conn.Exec(ctx, `TRUNCATE users`); err != nil {
		t.Fatal(err)
	}
	checkCount(t, s, conn, 0)
}

func checkCount(t *testing.T, s *Store, conn *pgx.Conn, want int64) {
	t.Helper()
	var real int64
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM users`).Scan(&real); err != nil {
		t.Fatal(err)
	}
	n, err := s.Count(ctx)
	if err != nil || n != want || real != want {
		t.Fatalf("Count = %d (%v), count(*) = %d, want %d", n, err, real, want)
	}
}

// TestConcurrentCreate: many first writes of one new name race; each must
// see the others' results (none overwrites a user it thought absent).
func TestConcurrentCreate(t *testing.T) {
	s, _ := open(t)
	defer s.Close()
	const workers = 12
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			_, err := s.Update(ctx, "new@x", func(old *directory.User) (*directory.User, error) {
				if old == nil {
					return &directory.User{Name: "new@x", Display: "new@x", Password: "p", Version: 1}, nil
				}
				u := old.Clone()
				u.Version++
				return u, nil
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	u, err := s.Get(ctx, "new@x")
	if err != nil || u.Version != workers {
		t.Fatalf("version = %+v (%v), want %d: a create overwrote another", u, err, workers)
	}
	if n, _ := s.Count(ctx); n != 1 {
		t.Fatalf("count = %d", n)
	}
}

// TestUpdateReturnsStored: Update returns the record exactly as Get will
// (timestamptz keeps microseconds), so a cache filled from it agrees.
func TestUpdateReturnsStored(t *testing.T) {
	s, _ := open(t)
	defer s.Close()
	when := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	u, err := s.Update(ctx, "t@x", func(*directory.User) (*directory.User, error) {
		return &directory.User{Name: "t@x", Display: "T@x", Password: "p", Created: when, Updated: when,
			Fields: []directory.Field{fld("quota", "1"), fld("tohost", "b2"), fld("z", "")}, Version: 7}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, "t@x")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(u, got) || !got.Created.Equal(when.Truncate(time.Microsecond)) || got.Tohost() != "b2" {
		t.Fatalf("update returned %+v\nget returned %+v", u, got)
	}
}

// TestUnstorable: text PostgreSQL cannot hold is the caller's error, not
// the database's; such a name is simply not there.
func TestUnstorable(t *testing.T) {
	s, _ := open(t)
	defer s.Close()
	var in *directory.InputError
	if _, err := s.Update(ctx, "\xff@x", nil); !errors.As(err, &in) {
		t.Errorf("update invalid UTF-8 name: %v, want InputError", err)
	}
	_, err := s.Update(ctx, "a@x", func(*directory.User) (*directory.User, error) {
		return &directory.User{Name: "a@x", Password: "p", Fields: []directory.Field{fld("k", "\x00")}}, nil
	})
	if !errors.As(err, &in) {
		t.Errorf("update NUL in field: %v, want InputError", err)
	}
	if _, err := s.Get(ctx, "\xff@x"); !errors.Is(err, directory.ErrNotFound) {
		t.Errorf("get invalid UTF-8: %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, "\xff@x"); !errors.Is(err, directory.ErrNotFound) {
		t.Errorf("delete invalid UTF-8: %v, want ErrNotFound", err)
	}
	if got := searchNames(t, s, directory.NewMatch("\xff")); len(got) != 0 {
		t.Errorf("search invalid UTF-8: %v", got)
	}
	// An error of the UpdateFunc itself comes back as it was.
	mine := errors.New("mine")
	if _, err := s.Update(ctx, "a@x", func(*directory.User) (*directory.User, error) { return nil, mine }); err != mine {
		t.Errorf("fn error: %v", err)
	}
}

func TestMigrateIdempotent(t *testing.T) {
	url := testservices.Postgres(t)
	var wg sync.WaitGroup
	for range 3 { // nodes starting together: one migrates, the others wait
		wg.Go(func() {
			if err := Migrate(ctx, url); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	s, err := Open(ctx, url, Options{NoMigrate: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n, err := s.Count(ctx); err != nil || n != 0 {
		t.Fatalf("count = %d, %v", n, err)
	}
}

// TestUnavailable: a database that cannot be reached gives errors that
// wrap ErrUnavailable, never "not found", from every method.
func TestUnavailable(t *testing.T) {
	t.Run("ClosedPort", func(t *testing.T) {
		url := fmt.Sprintf("postgres://postgres@%s/test?sslmode=disable", closedAddr(t))
		if _, err := Open(ctx, url, Options{}); !errors.Is(err, directory.ErrUnavailable) {
			t.Errorf("open: %v", err)
		}
		if _, err := Open(ctx, url, Options{NoMigrate: true}); !errors.Is(err, directory.ErrUnavailable) {
			t.Errorf("open without migrating: %v", err)
		}
		if err := Migrate(ctx, url); !errors.Is(err, directory.ErrUnavailable) {
			t.Errorf("migrate: %v", err)
		}
	})
	t.Run("DatabaseGone", func(t *testing.T) {
		s, url := open(t)
		defer s.Close()
		put(t, s, "a@x")
		refuseConnections(t, url)
		checkUnavailable(t, s)
	})
	t.Run("Closed", func(t *testing.T) {
		s, _ := open(t)
		s.Close()
		checkUnavailable(t, s)
	})
}

// closedAddr returns a loopback address nobody listens on.
func closedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// refuseConnections makes the database at url refuse new connections and
// ends the open ones, as when an operator takes it away.
func refuseConnections(t *testing.T, dbURL string) {
	conn := connect(t, testservices.PostgresAdmin())
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.TrimPrefix(u.Path, "/")
	stmts := []string{
		`ALTER DATABASE ` + pgx.Identifier{name}.Sanitize() + ` WITH ALLOW_CONNECTIONS false`,
		`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '` + name + `'`,
	}
	for _, q := range stmts {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
}

func checkUnavailable(t *testing.T, s *Store) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	noop := func(*directory.User) error { return nil }
	set := func(old *directory.User) (*directory.User, error) {
		return &directory.User{Name: "a@x", Password: "p"}, nil
	}
	_, getErr := s.Get(ctx, "a@x")
	_, updateErr := s.Update(ctx, "a@x", set)
	_, countErr := s.Count(ctx)
	errs := map[string]error{
		"get":    getErr,
		"update": updateErr,
		"delete": s.Delete(ctx, "a@x"),
		"rename": s.Rename(ctx, "a@x", "b@x", "b@x"),
		"search": s.Search(ctx, directory.NewMatch("a"), noop),
		"count":  countErr,
		"ping":   s.Ping(ctx),
	}
	for op, err := range errs {
		if !errors.Is(err, directory.ErrUnavailable) {
			t.Errorf("%s: %v, want ErrUnavailable", op, err)
		}
	}
	t.Logf("get: %v", getErr)
}

// TestConformanceWithReplica: with a read URL (here the database itself,
// a replica with no lag) the store still behaves as a store.
func TestConformanceWithReplica(t *testing.T) {
	storetest.Run(t, func(t *testing.T) directory.Store {
		url := testservices.Postgres(t)
		s, err := Open(ctx, url, Options{MaxConns: 4, ReadURL: url, ReadLag: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
