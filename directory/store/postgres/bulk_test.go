package postgres

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tohost/tohost/directory"
	"github.com/tohost/tohost/directory/store/storetest"
)

func TestBulkConformance(t *testing.T) {
	storetest.RunBulk(t, func(t *testing.T) directory.BulkStore {
		s, _ := open(t)
		return s
	})
}

func bulkEntries(from, n int) []directory.BulkEntry {
	out := make([]directory.BulkEntry, n)
	for i := range out {
		name := fmt.Sprintf("u%06d@d%d.example", from+i, (from+i)%7)
		out[i] = directory.BulkEntry{Line: int64(from + i + 1), Name: name, Display: strings.ToUpper(name[:1]) + name[1:],
			Password: "{SSHA}x", Fields: []directory.Field{fld("tohost", fmt.Sprintf("b%d", i%3)), fld("quota", "1"), fld("q\\\"", "a\tb\\c ü")}}
	}
	return out
}

func indexNames(t *testing.T, conn *pgx.Conn) []string {
	t.Helper()
	rows, _ := conn.Query(ctx, `SELECT indexname FROM pg_indexes WHERE tablename = 'users' ORDER BY 1`)
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return got
}

var allIndexes = []string{"users_domain", "users_name_trgm_0", "users_name_trgm_1", "users_name_trgm_2", "users_name_trgm_3", "users_pkey", "users_tohost"}

// TestBulkRebuildIndexes: a large load into an empty table sets the
// secondary indexes aside, COPYs straight into users (falling back to the
// staging merge for a batch that holds a user an earlier batch wrote), and
// builds the indexes again at the end; the counter stays exact and the
// fields come back as they went in.
func TestBulkRebuildIndexes(t *testing.T) {
	s, url := open(t)
	defer s.Close()
	conn := connect(t, url)
	stamp := time.Now().Truncate(time.Microsecond)
	b, err := s.BeginBulk(ctx, directory.BulkOptions{Stamp: stamp, Expected: 1_000_000})
	if err != nil {
		t.Fatal(err)
	}
	if got := indexNames(t, conn); !slices.Equal(got, []string{"users_pkey"}) {
		t.Fatalf("indexes during the load: %v", got)
	}
	first := bulkEntries(0, 2000)
	if res, err := b.Write(ctx, first); err != nil || res.Created != 2000 {
		t.Fatalf("%+v, %v", res, err)
	}
	again := append(bulkEntries(2000, 500), first[7]) // a duplicate: the COPY fails, the merge takes it
	again[500].Fields = []directory.Field{fld("tohost", "later")}
	res, err := b.Write(ctx, again)
	if err != nil || res.Created != 500 || !slices.Equal(res.Duplicates, []int{500}) {
		t.Fatalf("%+v, %v", res, err)
	}
	if _, err := b.Finish(ctx, nil); err != nil {
		t.Fatal(err)
	}
	b.Close(ctx)
	if got := indexNames(t, conn); !slices.Equal(got, allIndexes) {
		t.Fatalf("indexes after the load: %v", got)
	}
	var pending int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM tohost_import_index`).Scan(&pending); err != nil || pending != 0 {
		t.Fatalf("pending index records %d, %v", pending, err)
	}
	checkCount(t, s, conn, 2500)
	// Analyzed, the name hash included.
	var analyzed bool
	err = conn.QueryRow(ctx, `SELECT last_analyze IS NOT NULL AND EXISTS (SELECT FROM pg_stats_ext_exprs
		WHERE statistics_name = 'users_name_shard' AND n_distinct = 4) FROM pg_stat_user_tables WHERE relname = 'users'`).Scan(&analyzed)
	if err != nil || !analyzed {
		t.Fatalf("users not analyzed after the load: %v", err)
	}
	u, err := s.Get(ctx, first[3].Name)
	if err != nil || u.Display != first[3].Display || !slices.Equal(u.Fields, first[3].Fields) ||
		!u.Created.Equal(stamp) || u.Version != 1 || u.Tohost() != "b0" {
		t.Fatalf("%+v, %v", u, err)
	}
	if u, _ := s.Get(ctx, first[7].Name); u.Tohost() != "later" {
		t.Fatalf("duplicate: %+v", u)
	}
	var tohost, domain int
	conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE tohost = 'b1'), count(*) FILTER (WHERE domain = 'd3.example') FROM users`).Scan(&tohost, &domain)
	if tohost == 0 || domain == 0 {
		t.Fatalf("tohost and domain columns not filled: %d %d", tohost, domain)
	}
}

// TestBulkKilledLoadRestores: a load that died with its indexes set aside
// (its connections gone, nothing restored) leaves a record, and the next
// load builds them, even a small one that sets nothing aside itself; an
// interrupted load (Close without Finish) builds them too.
func TestBulkKilledLoadRestores(t *testing.T) {
	s, url := open(t)
	defer s.Close()
	conn := connect(t, url)
	bl, err := s.BeginBulk(ctx, directory.BulkOptions{Stamp: time.Now(), Expected: 1_000_000})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bl.Write(ctx, bulkEntries(0, 100)); err != nil {
		t.Fatal(err)
	}
	bl.(*bulk).release() // killed: no restore
	if got := indexNames(t, conn); !slices.Equal(got, []string{"users_pkey"}) {
		t.Fatalf("indexes after the kill: %v", got)
	}
	bl, err = s.BeginBulk(ctx, directory.BulkOptions{Stamp: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bl.Write(ctx, bulkEntries(50, 100)); err != nil {
		t.Fatal(err)
	}
	if err := bl.Close(ctx); err != nil { // interrupted
		t.Fatal(err)
	}
	if got := indexNames(t, conn); !slices.Equal(got, allIndexes) {
		t.Fatalf("indexes after the next load: %v", got)
	}
	checkCount(t, s, conn, 150)
}
