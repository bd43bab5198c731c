package storetest

import (
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tohost/tohost/directory"
)

// RunBulk runs the conformance suite of directory.BulkStore. open returns
// an empty store; the suite closes it.
func RunBulk(t *testing.T, open func(t *testing.T) directory.BulkStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s directory.BulkStore)
	}{
		{"CreateUpdateUnchanged", testBulkUpsert},
		{"DuplicateAcrossBatches", testBulkDuplicates},
		{"InsertMode", testBulkInsert},
		{"ReplaceMode", testBulkReplace},
		{"InterruptedKeepsBatches", testBulkInterrupted},
		{"ConcurrentWrites", testBulkConcurrent},
		{"OneLoadAtATime", testBulkExclusive},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			defer s.Close()
			tc.fn(t, s)
		})
	}
}

func entry(line int64, name string, fields ...directory.Field) directory.BulkEntry {
	return directory.BulkEntry{Line: line, Name: name, Display: name, Password: "{PLAIN}pw-" + name, Fields: fields}
}

func begin(t *testing.T, s directory.BulkStore, mode directory.BulkMode) (directory.Bulk, time.Time) {
	t.Helper()
	stamp := time.Now().Truncate(time.Microsecond)
	b, err := s.BeginBulk(ctx, directory.BulkOptions{Mode: mode, Stamp: stamp})
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	return b, stamp
}

func write(t *testing.T, b directory.Bulk, entries ...directory.BulkEntry) directory.BulkResult {
	t.Helper()
	res, err := b.Write(ctx, entries)
	if err != nil {
		t.Fatalf("write: %v", err)
	}
	return res
}

func finish(t *testing.T, b directory.Bulk, keep ...string) int64 {
	t.Helper()
	n, err := b.Finish(ctx, keep)
	if err != nil {
		t.Fatalf("finish: %v", err)
	}
	if err := b.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
	return n
}

func wantCount(t *testing.T, s directory.Store, want int64) {
	t.Helper()
	if n, err := s.Count(ctx); err != nil || n != want {
		t.Fatalf("count = %d (%v), want %d", n, err, want)
	}
}

func wantResult(t *testing.T, got, want directory.BulkResult) {
	t.Helper()
	if len(got.Skipped) == 0 {
		got.Skipped = nil
	}
	if len(got.Duplicates) == 0 {
		got.Duplicates = nil
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("write result %+v, want %+v", got, want)
	}
}

// wantUser checks what a load stored: the entry's record, its stamp.
func wantUser(t *testing.T, s directory.Store, e directory.BulkEntry, created, updated time.Time, version uint64) {
	t.Helper()
	u := mustGet(t, s, e.Name)
	if u.Display != e.Display || u.Password != e.Password || !slices.Equal(u.Fields, e.Fields) ||
		!u.Created.Equal(created) || !u.Updated.Equal(updated) || u.Version != version {
		t.Fatalf("stored %+v\nwant entry %+v created %v updated %v version %d", u, e, created, updated, version)
	}
}

// testBulkUpsert: new users are created with the load's stamp, changed ones
// replaced (keeping Created, bumping Version), equal ones left unchanged,
// field order kept; the count follows.
func testBulkUpsert(t *testing.T, s directory.BulkStore) {
	old := put(t, s, "old@x", fld("tohost", "b1"))
	b, stamp := begin(t, s, directory.BulkUpsert)
	many := make([]directory.BulkEntry, 0, 3000)
	for i := range 3000 {
		many = append(many, entry(int64(i+1), fmt.Sprintf("u%05d@x", i), fld("quota", "1"), fld("tohost", "b2"), fld("a", fmt.Sprint(i))))
	}
	wantResult(t, write(t, b, many...), directory.BulkResult{Created: 3000})
	changed := entry(5000, "old@x", fld("name", "Old"), fld("tohost", "b9"))
	wantResult(t, write(t, b, changed), directory.BulkResult{Updated: 1})
	finish(t, b)
	wantCount(t, s, 3001)
	wantUser(t, s, many[1234], stamp, stamp, 1)
	wantUser(t, s, changed, old.Created, stamp, old.Version+1)

	// A second load of the same records changes nothing.
	b, _ = begin(t, s, directory.BulkUpsert)
	wantResult(t, write(t, b, many[:10]...), directory.BulkResult{Unchanged: 10})
	wantResult(t, write(t, b, changed), directory.BulkResult{Unchanged: 1})
	finish(t, b)
	wantUser(t, s, many[3], stamp, stamp, 1)
	wantUser(t, s, changed, old.Created, stamp, old.Version+1)
	wantCount(t, s, 3001)
}

// testBulkDuplicates: a user that an earlier batch of the same load wrote
// is reported as a duplicate, and the later record wins.
func testBulkDuplicates(t *testing.T, s directory.BulkStore) {
	put(t, s, "pre@x")
	for _, mode := range []directory.BulkMode{directory.BulkUpsert, directory.BulkInsert, directory.BulkReplace} {
		t.Run(mode.String(), func(t *testing.T) {
			m := mode.String()
			b, stamp := begin(t, s, mode)
			first := []directory.BulkEntry{entry(1, m+"1@x", fld("v", "first")), entry(2, m+"2@x", fld("v", "first"))}
			write(t, b, first...)
			later := []directory.BulkEntry{entry(7, m+"n@x"), entry(8, m+"2@x", fld("v", "later")), entry(9, m+"1@x", fld("v", "first"))}
			res := write(t, b, later...)
			if !slices.Equal(res.Duplicates, []int{1, 2}) {
				t.Fatalf("duplicates = %v, want [1 2] (%+v)", res.Duplicates, res)
			}
			finish(t, b, "pre@x")
			u := mustGet(t, s, m+"2@x")
			if u.Get("v") != "later" || !u.Updated.Equal(stamp) {
				t.Fatalf("%s2@x = %+v: the later record must win", m, u)
			}
		})
	}
}

// testBulkInsert: insert mode leaves users that existed before the load
// alone and reports them.
func testBulkInsert(t *testing.T, s directory.BulkStore) {
	before := put(t, s, "exists@x", fld("tohost", "b1"))
	b, stamp := begin(t, s, directory.BulkInsert)
	e := []directory.BulkEntry{entry(1, "a@x"), entry(2, "exists@x", fld("tohost", "b2")), entry(3, "b@x")}
	wantResult(t, write(t, b, e...), directory.BulkResult{Created: 2, Skipped: []int{1}})
	finish(t, b)
	if u := mustGet(t, s, "exists@x"); u.Tohost() != "b1" || u.Version != before.Version {
		t.Fatalf("insert mode changed an existing user: %+v", u)
	}
	wantUser(t, s, e[2], stamp, stamp, 1)
	wantCount(t, s, 3)
}

// testBulkReplace: replace mode deletes the users the load did not have,
// except the kept names and users written after the load began; users the
// load found unchanged stay.
func testBulkReplace(t *testing.T, s directory.BulkStore) {
	for _, n := range []string{"gone1@x", "same@x", "changed@x", "gone2@x", "kept@x"} {
		put(t, s, n)
	}
	same := mustGet(t, s, "same@x")
	b, _ := begin(t, s, directory.BulkReplace)
	res := write(t, b,
		directory.BulkEntry{Line: 1, Name: "same@x", Display: same.Display, Password: same.Password, Fields: same.Fields},
		entry(2, "changed@x", fld("k", "v")), entry(3, "new@x"))
	if res.Created != 1 || res.Updated != 1 || res.Unchanged != 1 {
		t.Fatalf("write result %+v", res)
	}
	time.Sleep(2 * time.Millisecond)
	_, err := s.Update(ctx, "concurrent@x", func(*directory.User) (*directory.User, error) {
		now := time.Now()
		return &directory.User{Name: "concurrent@x", Display: "concurrent@x", Password: "p",
			Created: now, Updated: now, Version: 1}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := finish(t, b, "kept@x"); n != 2 {
		t.Fatalf("replace deleted %d users, want 2", n)
	}
	for _, n := range []string{"gone1@x", "gone2@x"} {
		if _, err := s.Get(ctx, n); err == nil {
			t.Errorf("%s survived replace", n)
		}
	}
	for _, n := range []string{"same@x", "changed@x", "new@x", "kept@x", "concurrent@x"} {
		mustGet(t, s, n)
	}
	wantCount(t, s, 5)
	if got := names(t, s, "*"); len(got) != 5 {
		t.Fatalf("users after replace: %v", got)
	}
}

// testBulkInterrupted: a load closed without Finish keeps its committed
// batches; running it again gives the state a whole load gives.
func testBulkInterrupted(t *testing.T, s directory.BulkStore) {
	put(t, s, "other@x")
	all := make([]directory.BulkEntry, 0, 40)
	for i := range 40 {
		all = append(all, entry(int64(i+1), fmt.Sprintf("i%02d@x", i), fld("n", fmt.Sprint(i))))
	}
	b, _ := begin(t, s, directory.BulkReplace)
	write(t, b, all[:10]...)
	write(t, b, all[10:20]...)
	if err := b.Close(ctx); err != nil { // interrupted: no Finish
		t.Fatal(err)
	}
	wantCount(t, s, 21) // nothing deleted, whole batches kept
	mustGet(t, s, "other@x")

	b, stamp := begin(t, s, directory.BulkReplace)
	for i := 0; i < 40; i += 10 {
		write(t, b, all[i:i+10]...)
	}
	if n := finish(t, b); n != 1 {
		t.Fatalf("deleted %d, want 1", n)
	}
	wantCount(t, s, 40)
	got := names(t, s, "*")
	for i, e := range all {
		if got[i] != e.Name {
			t.Fatalf("users %v", got)
		}
	}
	u := mustGet(t, s, "i35@x")
	if u.Get("n") != "35" || !u.Created.Equal(stamp) {
		t.Fatalf("%+v", u)
	}
}

// testBulkConcurrent: Concurrency() writers with disjoint names.
func testBulkConcurrent(t *testing.T, s directory.BulkStore) {
	b, _ := begin(t, s, directory.BulkUpsert)
	n := b.Concurrency()
	if n < 1 {
		t.Fatalf("concurrency %d", n)
	}
	const per = 500
	var wg sync.WaitGroup
	for w := range n * 2 {
		wg.Go(func() {
			batch := make([]directory.BulkEntry, per)
			for i := range batch {
				batch[i] = entry(int64(w*per+i+1), fmt.Sprintf("w%d-%04d@x", w, i))
			}
			res, err := b.Write(ctx, batch)
			if err != nil || res.Created != per {
				t.Errorf("writer %d: %+v, %v", w, res, err)
			}
		})
	}
	wg.Wait()
	finish(t, b)
	wantCount(t, s, int64(2*n*per))
}

// testBulkExclusive: a second load waits its turn (an error), and may
// begin once the first is closed.
func testBulkExclusive(t *testing.T, s directory.BulkStore) {
	b, _ := begin(t, s, directory.BulkUpsert)
	if b2, err := s.BeginBulk(ctx, directory.BulkOptions{Stamp: time.Now()}); err == nil {
		b2.Close(ctx)
		t.Fatal("two loads at once")
	}
	finish(t, b)
	b, _ = begin(t, s, directory.BulkUpsert)
	finish(t, b)
}
