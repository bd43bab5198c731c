// Package storetest is the conformance suite every directory.Store
// implementation runs: the same behaviour whether the users live in bbolt,
// PostgreSQL or behind a cache.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/tohost/tohost/directory"
)

// Run runs the suite. open returns an empty store; the suite closes it.
func Run(t *testing.T, open func(t *testing.T) directory.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s directory.Store)
	}{
		{"GetMissing", testGetMissing},
		{"CreateAndGet", testCreateAndGet},
		{"UpdateSeesOld", testUpdateSeesOld},
		{"UpdateErrorWritesNothing", testUpdateError},
		{"Delete", testDelete},
		{"Rename", testRename},
		{"SearchOrderAndMatch", testSearch},
		{"SearchStop", testSearchStop},
		{"SearchAfter", testSearchAfter},
		{"SearchLarge", testSearchLarge},
		{"Count", testCount},
		{"ConcurrentUpdates", testConcurrentUpdates},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			defer s.Close()
			tc.fn(t, s)
		})
	}
}

var ctx = context.Background()

func fld(label, value string) directory.Field { return directory.Field{Label: label, Value: value} }

// put creates or replaces a user with the given fields.
func put(t *testing.T, s directory.Store, name string, fields ...directory.Field) *directory.User {
	t.Helper()
	u, err := tryPut(s, name, fields...)
	if err != nil {
		t.Fatalf("update %s: %v", name, err)
	}
	return u
}

// tryPut is put for goroutines other than the test's, which must not call
// t.Fatal.
func tryPut(s directory.Store, name string, fields ...directory.Field) (*directory.User, error) {
	now := time.Unix(1700000000, 0)
	u, err := s.Update(ctx, name, func(old *directory.User) (*directory.User, error) {
		n := &directory.User{Name: name, Display: name, Password: "{PLAIN}pw-" + name,
			Fields: fields, Created: now, Updated: now, Version: 1}
		if old != nil {
			n.Created, n.Version = old.Created, old.Version+1
		}
		return n, nil
	})
	return u, err
}

func mustGet(t *testing.T, s directory.Store, name string) *directory.User {
	t.Helper()
	u, err := s.Get(ctx, name)
	if err != nil {
		t.Fatalf("get %s: %v", name, err)
	}
	return u
}

func testGetMissing(t *testing.T, s directory.Store) {
	if _, err := s.Get(ctx, "nobody@x"); !errors.Is(err, directory.ErrNotFound) {
		t.Fatalf("get missing: err = %v, want ErrNotFound", err)
	}
}

func testCreateAndGet(t *testing.T, s directory.Store) {
	fields := []directory.Field{fld("tohost", "b1.example"), fld("quota", "200"), fld("name", "Bob B"), fld("a", "")}
	want := put(t, s, "bob@test.com", fields...)
	got := mustGet(t, s, "bob@test.com")
	if got.Name != want.Name || got.Display != want.Display || got.Password != want.Password ||
		!reflect.DeepEqual(got.Fields, want.Fields) || !got.Created.Equal(want.Created) ||
		!got.Updated.Equal(want.Updated) || got.Version != want.Version {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
	}
}

func testUpdateSeesOld(t *testing.T, s directory.Store) {
	put(t, s, "a@x", fld("k", "1"))
	var seen *directory.User
	_, err := s.Update(ctx, "a@x", func(old *directory.User) (*directory.User, error) {
		seen = old
		n := old.Clone()
		n.Fields = append(n.Fields, fld("k2", "2"))
		n.Version++
		return n, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen == nil || seen.Get("k") != "1" {
		t.Fatalf("update saw %+v, want the stored user", seen)
	}
	if u := mustGet(t, s, "a@x"); u.Get("k2") != "2" || u.Version != 2 {
		t.Fatalf("after update: %+v", u)
	}
}

func testUpdateError(t *testing.T, s directory.Store) {
	boom := &directory.InputError{Msg: "boom"}
	_, err := s.Update(ctx, "new@x", func(*directory.User) (*directory.User, error) { return nil, boom })
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the UpdateFunc's error", err)
	}
	if _, err := s.Get(ctx, "new@x"); !errors.Is(err, directory.ErrNotFound) {
		t.Fatalf("failed update wrote something: %v", err)
	}
	if n, _ := s.Count(ctx); n != 0 {
		t.Fatalf("count after failed update = %d", n)
	}
}

func testDelete(t *testing.T, s directory.Store) {
	put(t, s, "a@x")
	if err := s.Delete(ctx, "a@x"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "a@x"); !errors.Is(err, directory.ErrNotFound) {
		t.Fatalf("second delete: %v, want ErrNotFound", err)
	}
	if _, err := s.Get(ctx, "a@x"); !errors.Is(err, directory.ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
}

func testRename(t *testing.T, s directory.Store) {
	put(t, s, "old@x", fld("tohost", "h1"))
	put(t, s, "taken@x")
	if err := s.Rename(ctx, "old@x", "taken@x", "Taken@X"); !errors.Is(err, directory.ErrExists) {
		t.Fatalf("rename onto existing: %v, want ErrExists", err)
	}
	if err := s.Rename(ctx, "missing@x", "m2@x", "m2@x"); !errors.Is(err, directory.ErrNotFound) {
		t.Fatalf("rename missing: %v, want ErrNotFound", err)
	}
	if err := s.Rename(ctx, "old@x", "new@x", "New@X"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "old@x"); !errors.Is(err, directory.ErrNotFound) {
		t.Fatalf("old name still there: %v", err)
	}
	u := mustGet(t, s, "new@x")
	if u.Name != "new@x" || u.Display != "New@X" || u.Tohost() != "h1" || u.Password != "{PLAIN}pw-old@x" || u.Version != 2 {
		t.Fatalf("renamed user: %+v", u)
	}
	if n, _ := s.Count(ctx); n != 2 {
		t.Fatalf("count after rename = %d, want 2", n)
	}
	// The same key with another spelling: only the display name changes.
	if err := s.Rename(ctx, "new@x", "new@x", "NEW@x"); err != nil {
		t.Fatalf("rename to the same key: %v", err)
	}
	if u := mustGet(t, s, "new@x"); u.Display != "NEW@x" || u.Tohost() != "h1" || u.Version != 3 {
		t.Fatalf("after a case-only rename: %+v", u)
	}
	if n, _ := s.Count(ctx); n != 2 {
		t.Fatalf("count after case-only rename = %d, want 2", n)
	}
}

func names(t *testing.T, s directory.Store, pattern string) []string {
	t.Helper()
	var out []string
	err := s.Search(ctx, directory.NewMatch(pattern), func(u *directory.User) error {
		out = append(out, u.Name)
		return nil
	})
	if err != nil {
		t.Fatalf("search %q: %v", pattern, err)
	}
	return out
}

func testSearch(t *testing.T, s directory.Store) {
	for _, n := range []string{"carol@b.com", "alice@a.com", "bob@a.com", "al@b.com", "x_y@c.com"} {
		put(t, s, n)
	}
	cases := map[string][]string{
		"a.com":   {"alice@a.com", "bob@a.com"},
		"al*":     {"al@b.com", "alice@a.com"},
		"*@b.com": {"al@b.com", "carol@b.com"},
		"b?b@*":   {"bob@a.com"},
		"AL":      {"al@b.com", "alice@a.com"},
		"_":       {"x_y@c.com"},
		"%":       nil,
		"*":       {"al@b.com", "alice@a.com", "bob@a.com", "carol@b.com", "x_y@c.com"},
	}
	for p, want := range cases {
		if got := names(t, s, p); !reflect.DeepEqual(got, want) {
			t.Errorf("search %q = %v, want %v", p, got, want)
		}
	}
}

func testSearchAfter(t *testing.T, s directory.Store) {
	for _, n := range []string{"a1@x", "a2@x", "a3@x", "b1@x", "a2@x.y"} {
		put(t, s, n)
	}
	cases := []struct {
		pattern, after string
		want           []string
	}{
		{"a*", "a2@x", []string{"a2@x.y", "a3@x"}},
		{"a*", "", []string{"a1@x", "a2@x", "a2@x.y", "a3@x"}},
		{"@x", "a3@x", []string{"b1@x"}},
		{"*", "0", []string{"a1@x", "a2@x", "a2@x.y", "a3@x", "b1@x"}},
		{"a*", "zzz", nil},
	}
	for _, c := range cases {
		m := directory.NewMatch(c.pattern)
		m.After = c.after
		var got []string
		err := s.Search(ctx, m, func(u *directory.User) error { got = append(got, u.Name); return nil })
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("search %q after %q = %v, want %v", c.pattern, c.after, got, c.want)
		}
	}
}

func testSearchStop(t *testing.T, s directory.Store) {
	for i := 0; i < 10; i++ {
		put(t, s, fmt.Sprintf("u%d@x", i))
	}
	stop := errors.New("stop")
	n := 0
	err := s.Search(ctx, directory.NewMatch("u"), func(*directory.User) error {
		n++
		if n == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 3 {
		t.Fatalf("search stop: err=%v n=%d", err, n)
	}
}

func testSearchLarge(t *testing.T, s directory.Store) {
	const n, workers = 2500, 25 // more than one internal chunk in chunked stores
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += workers {
				if _, err := tryPut(s, fmt.Sprintf("user%05d@big.example", i)); err != nil {
					t.Error(err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	got := names(t, s, "user*@big.example")
	if len(got) != n {
		t.Fatalf("search returned %d users, want %d", len(got), n)
	}
	for i, name := range got {
		if want := fmt.Sprintf("user%05d@big.example", i); name != want {
			t.Fatalf("result %d = %s, want %s", i, name, want)
		}
	}
}

func testCount(t *testing.T, s directory.Store) {
	for i := 0; i < 5; i++ {
		put(t, s, fmt.Sprintf("c%d@x", i))
	}
	put(t, s, "c0@x") // an update is not a new user
	if err := s.Delete(ctx, "c1@x"); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Count(ctx); err != nil || n != 4 {
		t.Fatalf("count = %d, %v; want 4", n, err)
	}
}

// testConcurrentUpdates: concurrent read-modify-writes of one user lose
// nothing, and concurrent creates of many users all land.
func testConcurrentUpdates(t *testing.T, s directory.Store) {
	put(t, s, "counter@x")
	const workers, each = 8, 25
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				_, err := s.Update(ctx, "counter@x", func(old *directory.User) (*directory.User, error) {
					n := old.Clone()
					n.Version++
					return n, nil
				})
				if err != nil {
					t.Error(err)
				}
				if _, err := tryPut(s, fmt.Sprintf("w%d-%d@x", w, i)); err != nil {
					t.Error(err)
				}
			}
		}(w)
	}
	wg.Wait()
	if u := mustGet(t, s, "counter@x"); u.Version != 1+workers*each {
		t.Fatalf("version = %d, want %d (lost updates)", u.Version, 1+workers*each)
	}
	if n, _ := s.Count(ctx); n != 1+workers*each {
		t.Fatalf("count = %d, want %d", n, 1+workers*each)
	}
}
