package postgres

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"github.com/tohost/tohost/directory"
)

// The bulk loader. Each batch is one transaction on a connection of its
// own (the load holds a few, so batches are written in parallel): the
// batch is streamed with COPY (binary format, encoded here without a
// value per column boxed in an interface) into a TEMP staging table, then
// merged into users by one INSERT ... ON CONFLICT: one set-based statement
// per batch, never one per user. The user counter stays right by itself:
// its statement triggers see the rows a batch inserted or deleted.
//
// A large load into an empty (or small) table sets the secondary indexes
// (trigram, tohost, domain) aside and builds them at the end: building the
// trigram indexes from the finished table costs a fraction of maintaining
// them row by row, and the four of them (see nameShards) are built side by
// side. The definitions of the dropped indexes are kept in table
// tohost_import_index until they are built again, so a load that was
// killed leaves a record of what to rebuild, and the next load (or any
// later Finish or Close) rebuilds it. Into an empty table, batches are
// first tried as a COPY straight into users, which a unique violation
// (a user an earlier batch wrote) turns back into the staging path.

var _ directory.BulkStore = (*Store)(nil)

const (
	// bulkLockKey is the advisory lock that lets one load run at a time.
	bulkLockKey = 0x746f686f7374 // "tohost"
	// rebuildMin is the smallest load that sets indexes aside.
	rebuildMin = 50_000
	// sweepWindow is how many users one statement of the replace-mode
	// sweep examines.
	sweepWindow = 20_000
	// directFailures: after this many batches fell back from the direct
	// COPY, the load stops trying it.
	directFailures = 3
)

const createIndexState = `CREATE TABLE IF NOT EXISTS tohost_import_index (
	name text PRIMARY KEY,  -- an index of users the bulk loader dropped
	def  text NOT NULL      -- its CREATE INDEX statement
)`

const createStage = `CREATE TEMP TABLE IF NOT EXISTS tohost_stage (
	line     bigint NOT NULL,
	name     text COLLATE "C" NOT NULL,
	display  text NOT NULL,
	domain   text COLLATE "C",
	password text NOT NULL,
	tohost   text COLLATE "C",
	fields   jsonb NOT NULL
) ON COMMIT DELETE ROWS`

const (
	copyStage  = `COPY tohost_stage (line, name, display, domain, password, tohost, fields) FROM STDIN BINARY`
	copyDirect = `COPY users (name, display, domain, password, tohost, fields, created, updated, version) FROM STDIN BINARY`
)

// mergeUpsert writes the staged users that are new or changed, except
// those this load already wrote (an earlier batch: a duplicate in the
// file). It returns the counts of new and updated users, the lines of
// the duplicates and the number of users left as they were (duplicates
// and unchanged). RETURNING sees only the new row, so "created" is told
// by xmax: 0 for a fresh row. In replace mode (noteSeen) the names of the users
// left as they were are noted in tohost_import_seen, for the sweep.
const mergeUpsert = `WITH up AS (
	INSERT INTO users AS u (name, display, domain, password, tohost, fields, created, updated, version)
	SELECT name, display, domain, password, tohost, fields, $1, $1, 1 FROM tohost_stage
	ON CONFLICT (name) DO UPDATE SET display = excluded.display, domain = excluded.domain,
		password = excluded.password, tohost = excluded.tohost, fields = excluded.fields,
		updated = excluded.updated, version = u.version + 1
	WHERE u.updated <> excluded.updated
		AND (u.display, u.password, u.fields) IS DISTINCT FROM (excluded.display, excluded.password, excluded.fields)
	RETURNING u.name, u.xmax = 0 AS created
), kept AS MATERIALIZED (
	SELECT s.line, s.name FROM tohost_stage s WHERE NOT EXISTS (SELECT FROM up WHERE up.name = s.name)
)%s
SELECT (SELECT count(*) FROM up WHERE created), (SELECT count(*) FROM up WHERE NOT created),
	ARRAY(SELECT k.line FROM kept k JOIN users u ON u.name = k.name WHERE u.updated = $1),
	(SELECT count(*) FROM kept)`

// noteSeen is mergeUpsert's addition in replace mode.
const noteSeen = `, seen AS (
	INSERT INTO tohost_import_seen (name) SELECT name FROM kept ON CONFLICT DO NOTHING
)`

// mergeInsert inserts the new users and replaces only those this load
// wrote (duplicates); it returns the count of new users, the lines of the
// duplicates and the lines of the users that existed before the load.
const mergeInsert = `WITH up AS (
	INSERT INTO users AS u (name, display, domain, password, tohost, fields, created, updated, version)
	SELECT name, display, domain, password, tohost, fields, $1, $1, 1 FROM tohost_stage
	ON CONFLICT (name) DO UPDATE SET display = excluded.display, domain = excluded.domain,
		password = excluded.password, tohost = excluded.tohost, fields = excluded.fields,
		version = u.version + 1
	WHERE u.updated = excluded.updated
	RETURNING u.name, u.xmax = 0 AS created
)
SELECT (SELECT count(*) FROM up WHERE created),
	ARRAY(SELECT s.line FROM tohost_stage s JOIN up ON up.name = s.name WHERE NOT up.created),
	ARRAY(SELECT s.line FROM tohost_stage s WHERE NOT EXISTS (SELECT FROM up WHERE up.name = s.name))`

// replaceDuplicates writes the staged lines $2 over the users an earlier
// batch of this load wrote.
const replaceDuplicates = `UPDATE users u SET display = s.display, domain = s.domain,
	password = s.password, tohost = s.tohost, fields = s.fields, updated = $1, version = u.version + 1
	FROM tohost_stage s WHERE s.line = ANY($2) AND u.name = s.name`

// The replace-mode sweep goes through users in windows of sweepWindow
// names, each one statement pair in a transaction of its own: sweepBound
// finds the window's last name (an index-only scan of the primary key),
// sweepDelete deletes, in that key range, the users the load did not
// have: not written by it (updated before its stamp $3: a user written
// since the load began is left alone) and not in tohost_import_seen
// (found unchanged, or rejected and kept). The join is forced to index
// probes: a hash join would read the whole table (or the whole seen
// table) for every window.
const (
	sweepBound  = `SELECT max(name) FROM (SELECT name FROM users WHERE name > $1 ORDER BY name LIMIT $2) w`
	sweepPlan   = `SET LOCAL enable_seqscan = off; SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off`
	sweepDelete = `DELETE FROM users u WHERE u.name > $1 AND u.name <= $2 AND u.updated < $3
	AND NOT EXISTS (SELECT FROM tohost_import_seen s WHERE s.name = u.name)`
	seenKeep = `INSERT INTO tohost_import_seen (name) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING`
)

// createSeen holds the names of the users a replace-mode load found
// unchanged (and so did not stamp). Unlogged: it matters only while the
// load runs, and a crash ends the load.
const createSeen = `CREATE UNLOGGED TABLE IF NOT EXISTS tohost_import_seen (name text COLLATE "C" PRIMARY KEY)`

// BeginBulk implements directory.BulkStore.
func (s *Store) BeginBulk(ctx context.Context, opts directory.BulkOptions) (directory.Bulk, error) {
	b := &bulk{s: s, opts: opts, stamp: opts.Stamp.Truncate(time.Microsecond)}
	if err := b.begin(ctx, max(2, min(runtime.NumCPU(), 4))); err != nil {
		b.release()
		return nil, err
	}
	return b, nil
}

type bulk struct {
	s     *Store
	opts  directory.BulkOptions
	stamp time.Time
	conns []*pgx.Conn
	free  chan *pgx.Conn

	mu       sync.Mutex
	direct   bool // try COPY straight into users
	failures int  // batches that fell back from direct
	rebuild  bool // indexes were set aside (by this load or an earlier one)
	done     bool // Finish or Close ran
}

func (b *bulk) begin(ctx context.Context, n int) error {
	shards := map[uint32]bool{}
	for tries := 0; len(b.conns) < n; tries++ {
		pc, err := b.s.pool.Acquire(ctx)
		if err != nil {
			return unavailable(err)
		}
		conn := pc.Hijack() // ours until the load ends; closed, never returned
		// The user counter has 16 shards by backend pid: connections on
		// one shard would wait for each other's commits.
		shard := conn.PgConn().PID() % 16
		if shards[shard] && tries < 4*n {
			conn.Close(ctx)
			continue
		}
		shards[shard] = true
		b.conns = append(b.conns, conn)
		// Room for a batch in the staging table (best effort: it can
		// only be set before the session's first temporary table).
		conn.Exec(ctx, `SET temp_buffers = '64MB'`)
		if _, err := conn.Exec(ctx, createStage); err != nil {
			return unavailable(err)
		}
	}
	b.free = make(chan *pgx.Conn, len(b.conns))
	for _, c := range b.conns {
		b.free <- c
	}
	c := b.conns[0]
	var locked bool
	if err := c.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, int64(bulkLockKey)).Scan(&locked); err != nil {
		return unavailable(err)
	}
	if !locked {
		return errors.New("postgres: another import is running on this database")
	}
	if _, err := c.Exec(ctx, createIndexState); err != nil {
		return unavailable(err)
	}
	if b.opts.Mode == directory.BulkReplace {
		for _, q := range []string{createSeen, `TRUNCATE tohost_import_seen`} {
			if _, err := c.Exec(ctx, q); err != nil {
				return unavailable(err)
			}
		}
	}
	var pending int
	if err := c.QueryRow(ctx, `SELECT count(*) FROM tohost_import_index`).Scan(&pending); err != nil {
		return unavailable(err)
	}
	var empty bool
	if err := c.QueryRow(ctx, `SELECT NOT EXISTS (SELECT FROM users)`).Scan(&empty); err != nil {
		return unavailable(err)
	}
	b.direct = empty
	switch {
	case pending > 0:
		b.rebuild = true // an interrupted load set them aside
	case b.opts.Expected >= rebuildMin:
		n, err := b.s.Count(ctx)
		if err != nil {
			return err
		}
		if n*10 < b.opts.Expected {
			if err := b.dropIndexes(ctx, c); err != nil {
				return err
			}
			b.rebuild = true
		}
	}
	return nil
}

// dropIndexes sets the secondary indexes of users aside, recording their
// definitions in the same transaction.
func (b *bulk) dropIndexes(ctx context.Context, c *pgx.Conn) error {
	return unavailable(pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
			FROM pg_index i WHERE i.indrelid = 'users'::regclass AND NOT i.indisunique AND NOT i.indisprimary`)
		defs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[indexDef])
		if err != nil {
			return err
		}
		for _, d := range defs {
			if _, err := tx.Exec(ctx, `INSERT INTO tohost_import_index (name, def) VALUES ($1, $2)`, d.Name, d.Def); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `DROP INDEX `+pgx.Identifier(strings.Split(d.Name, ".")).Sanitize()); err != nil {
				return err
			}
		}
		return nil
	}))
}

type indexDef struct{ Name, Def string }

func (b *bulk) Concurrency() int { return len(b.conns) }

// Write implements directory.Bulk.
func (b *bulk) Write(ctx context.Context, entries []directory.BulkEntry) (directory.BulkResult, error) {
	var conn *pgx.Conn
	select {
	case conn = <-b.free:
	case <-ctx.Done():
		return directory.BulkResult{}, ctx.Err()
	}
	defer func() { b.free <- conn }()
	for _, e := range entries {
		if !storable(e.Name) || !storable(e.Display) || !storable(e.Password) {
			return directory.BulkResult{}, fmt.Errorf("line %d: user %q: not valid UTF-8", e.Line, e.Display)
		}
	}
	b.mu.Lock()
	direct := b.direct
	b.mu.Unlock()
	bufp := buffers.Get().(*[]byte)
	defer buffers.Put(bufp)
	if direct {
		buf := encodeRows((*bufp)[:0], entries, b.stamp, false)
		*bufp = buf
		_, err := conn.PgConn().CopyFrom(ctx, bytes.NewReader(buf), copyDirect)
		if err == nil {
			return directory.BulkResult{Created: len(entries)}, nil
		}
		if !hasCode(err, uniqueViolation) {
			return directory.BulkResult{}, unavailable(err)
		}
		b.mu.Lock()
		if b.failures++; b.failures >= directFailures {
			b.direct = false
		}
		b.mu.Unlock()
	}
	buf := encodeRows((*bufp)[:0], entries, b.stamp, true)
	*bufp = buf
	var res directory.BulkResult
	err := retry(ctx, func() error {
		var err error
		res, err = b.merge(ctx, conn, entries, buf)
		return err
	})
	return res, unavailable(err)
}

// merge writes one batch through the staging table, in one transaction.
func (b *bulk) merge(ctx context.Context, conn *pgx.Conn, entries []directory.BulkEntry, buf []byte) (directory.BulkResult, error) {
	var res directory.BulkResult
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		res = directory.BulkResult{}
		if _, err := conn.PgConn().CopyFrom(ctx, bytes.NewReader(buf), copyStage); err != nil {
			return err
		}
		index := func(lines []int64) []int {
			if len(lines) == 0 {
				return nil
			}
			at := make(map[int64]int, len(entries))
			for i, e := range entries {
				at[e.Line] = i
			}
			out := make([]int, len(lines))
			for i, l := range lines {
				out[i] = at[l]
			}
			slices.Sort(out)
			return out
		}
		var created int64
		if b.opts.Mode == directory.BulkInsert {
			var dups, skipped []int64
			if err := tx.QueryRow(ctx, mergeInsert, b.stamp).Scan(&created, &dups, &skipped); err != nil {
				return err
			}
			res.Created, res.Duplicates, res.Skipped = int(created), index(dups), index(skipped)
			return nil
		}
		var updated, kept int64
		var dups []int64
		q := fmt.Sprintf(mergeUpsert, "")
		if b.opts.Mode == directory.BulkReplace {
			q = fmt.Sprintf(mergeUpsert, noteSeen)
		}
		if err := tx.QueryRow(ctx, q, b.stamp).Scan(&created, &updated, &dups, &kept); err != nil {
			return err
		}
		res.Created, res.Updated, res.Duplicates = int(created), int(updated), index(dups)
		res.Unchanged = int(kept) - len(dups)
		if len(dups) == 0 {
			return nil
		}
		_, err := tx.Exec(ctx, replaceDuplicates, b.stamp, dups)
		return err
	})
	return res, err
}

// Finish implements directory.Bulk.
func (b *bulk) Finish(ctx context.Context, keep []string) (int64, error) {
	var deleted int64
	if b.opts.Mode == directory.BulkReplace {
		c := b.conns[0]
		if len(keep) > 0 {
			if _, err := c.Exec(ctx, seenKeep, keep); err != nil {
				return 0, unavailable(err)
			}
		}
		after := ""
		for {
			var last *string
			err := pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
				if err := tx.QueryRow(ctx, sweepBound, after, sweepWindow).Scan(&last); err != nil || last == nil {
					return err
				}
				if _, err := tx.Exec(ctx, sweepPlan); err != nil {
					return err
				}
				tag, err := tx.Exec(ctx, sweepDelete, after, *last, b.stamp)
				deleted += tag.RowsAffected()
				return err
			})
			if err != nil {
				return deleted, unavailable(err)
			}
			if last == nil {
				break
			}
			after = *last
		}
		if _, err := b.conns[0].Exec(ctx, `DROP TABLE IF EXISTS tohost_import_seen`); err != nil {
			return deleted, unavailable(err)
		}
	}
	err := b.restore(ctx)
	b.release()
	return deleted, err
}

// Close implements directory.Bulk: after an interrupted load it builds the
// indexes that were set aside.
func (b *bulk) Close(ctx context.Context) error {
	err := b.restore(ctx)
	if b.opts.Mode == directory.BulkReplace && len(b.conns) > 0 {
		b.conns[0].Exec(ctx, `DROP TABLE IF EXISTS tohost_import_seen`)
	}
	b.release()
	return err
}

// restore builds every index recorded in tohost_import_index, the larger
// (GIN) ones first, in parallel over the load's connections. Each index is
// built and struck off the record in one transaction. Then it analyzes
// the table: a search right after a large load must not be planned on the
// statistics of the empty table (autovacuum, if it runs at all, would get
// to it only a minute later), and the statistics of the name hash are what
// let the planner see that nameShards is always true.
func (b *bulk) restore(ctx context.Context) error {
	b.mu.Lock()
	if b.done || !b.rebuild {
		b.done = true
		b.mu.Unlock()
		return nil
	}
	b.done = true
	b.mu.Unlock()
	if err := restoreIndexes(ctx, b.conns); err != nil {
		return err
	}
	// Only the columns queries filter on: the rest (fields, password,
	// display) make up most of each row and are never in a WHERE, so
	// sampling them would double the time the ANALYZE takes.
	if _, err := b.conns[0].Exec(ctx, `ANALYZE users (name, domain, tohost)`); err != nil {
		return unavailable(fmt.Errorf("analyzing users: %w", err))
	}
	return nil
}

func restoreIndexes(ctx context.Context, conns []*pgx.Conn) error {
	if len(conns) == 0 {
		return errors.New("postgres: no connection to rebuild the indexes")
	}
	rows, _ := conns[0].Query(ctx, `SELECT name, def FROM tohost_import_index`)
	defs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[indexDef])
	if err != nil {
		return unavailable(fmt.Errorf("rebuilding indexes: %w", err))
	}
	slices.SortStableFunc(defs, func(a, b indexDef) int {
		return boolRank(strings.Contains(b.Def, "USING gin")) - boolRank(strings.Contains(a.Def, "USING gin"))
	})
	queue := make(chan indexDef, len(defs))
	for _, d := range defs {
		queue <- d
	}
	close(queue)
	g, gctx := errgroup.WithContext(ctx)
	for _, c := range conns[:min(len(conns), len(defs))] {
		g.Go(func() error {
			for d := range queue {
				err := pgx.BeginFunc(gctx, c, func(tx pgx.Tx) error {
					// The indexes are built side by side, a connection
					// each: parallel workers would only take CPU from
					// the other builds.
					if _, err := tx.Exec(gctx, `SET LOCAL maintenance_work_mem = '256MB'; SET LOCAL max_parallel_maintenance_workers = 0`); err != nil {
						return err
					}
					var exists bool
					if err := tx.QueryRow(gctx, `SELECT to_regclass($1) IS NOT NULL`, d.Name).Scan(&exists); err != nil {
						return err
					}
					if !exists {
						if _, err := tx.Exec(gctx, d.Def); err != nil {
							return err
						}
					}
					_, err := tx.Exec(gctx, `DELETE FROM tohost_import_index WHERE name = $1`, d.Name)
					return err
				})
				if err != nil {
					return fmt.Errorf("rebuilding index %s: %w", d.Name, err)
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return unavailable(err)
	}
	return nil
}

func boolRank(b bool) int {
	if b {
		return 1
	}
	return 0
}

// release closes the load's connections, which ends its advisory lock
// and drops its staging tables.
func (b *bulk) release() {
	for _, c := range b.conns {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c.Close(ctx)
		cancel()
	}
	b.conns = nil
}

// pgEpoch is the zero of PostgreSQL's binary timestamps.
var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// buffers recycles the COPY data of batches.
var buffers = sync.Pool{New: func() any { return new([]byte) }}

// encodeRows appends entries to b in COPY's binary format: for the
// staging table (line, name, display, domain, password, tohost, fields) or
// for users (name, display, domain, password, tohost, fields, created,
// updated, version).
func encodeRows(b []byte, entries []directory.BulkEntry, stamp time.Time, stage bool) []byte {
	b = append(b, "PGCOPY\n\xff\r\n\x00"...)
	b = binary.BigEndian.AppendUint32(b, 0) // flags
	b = binary.BigEndian.AppendUint32(b, 0) // header extension
	ts := uint64(stamp.Sub(pgEpoch).Microseconds())
	for i := range entries {
		e := &entries[i]
		if stage {
			b = binary.BigEndian.AppendUint16(b, 7)
			b = binary.BigEndian.AppendUint32(b, 8)
			b = binary.BigEndian.AppendUint64(b, uint64(e.Line))
		} else {
			b = binary.BigEndian.AppendUint16(b, 9)
		}
		b = appendText(b, e.Name)
		b = appendText(b, e.Display)
		b = appendNullable(b, directory.Domain(e.Name))
		b = appendText(b, e.Password)
		b = appendNullable(b, e.Tohost())
		// jsonb: a version byte, then the JSON text.
		at := len(b)
		b = append(b, 0, 0, 0, 0, 1, '[')
		for j, f := range e.Fields {
			if j > 0 {
				b = append(b, ',')
			}
			b = append(b, '[')
			b = appendJSONString(b, f.Label)
			b = append(b, ',')
			b = appendJSONString(b, f.Value)
			b = append(b, ']')
		}
		b = append(b, ']')
		binary.BigEndian.PutUint32(b[at:], uint32(len(b)-at-4))
		if !stage {
			b = binary.BigEndian.AppendUint32(b, 8)
			b = binary.BigEndian.AppendUint64(b, ts)
			b = binary.BigEndian.AppendUint32(b, 8)
			b = binary.BigEndian.AppendUint64(b, ts)
			b = binary.BigEndian.AppendUint32(b, 8)
			b = binary.BigEndian.AppendUint64(b, 1)
		}
	}
	return binary.BigEndian.AppendUint16(b, 0xffff) // trailer
}

func appendText(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

func appendNullable(b []byte, s string) []byte {
	if s == "" {
		return binary.BigEndian.AppendUint32(b, 0xffffffff)
	}
	return appendText(b, s)
}

// appendJSONString appends s as a JSON string; s is valid UTF-8.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\t':
			b = append(b, '\\', 't')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
