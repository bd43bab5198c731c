package bolt

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	bbolt "go.etcd.io/bbolt"

	"github.com/tohost/tohost/directory"
)

// The bulk loader writes each batch in one bbolt transaction of its own,
// straight through db.Update: no group-commit queue, no goroutine or
// channel per user. bbolt serializes write transactions, so a batch and
// the commit loop's groups simply take turns, and each batch is atomic:
// an interrupted import leaves whole batches.

var _ directory.BulkStore = (*Store)(nil)

// bulkFill is the fill percent of pages split while loading: bulk loads
// are mostly appends, and half-empty pages (bbolt's default 0.5) would
// double the file and the pages every later read touches.
const bulkFill = 0.9

// sweepChunk is how many users one transaction of the replace-mode
// sweep visits.
const sweepChunk = 20_000

// loading holds the stores with a load in progress.
var loading sync.Map

// BeginBulk implements directory.BulkStore.
func (s *Store) BeginBulk(_ context.Context, opts directory.BulkOptions) (directory.Bulk, error) {
	s.closeMu.RLock()
	closed := s.closed
	s.closeMu.RUnlock()
	if closed {
		return nil, unavailable(errClosed)
	}
	if _, busy := loading.LoadOrStore(s, true); busy {
		return nil, errors.New("bolt: another import is running on this store")
	}
	return &bulk{s: s, opts: opts}, nil
}

type bulk struct {
	s      *Store
	opts   directory.BulkOptions
	closed bool
	arena  []byte // Write's keys and values (Concurrency is 1)
}

func (b *bulk) Concurrency() int { return 1 }

// Write implements directory.Bulk: one transaction, keys in order.
func (b *bulk) Write(ctx context.Context, entries []directory.BulkEntry) (directory.BulkResult, error) {
	var res directory.BulkResult
	if err := ctx.Err(); err != nil {
		return res, err
	}
	order := make([]int, len(entries))
	size := 0
	for i := range entries {
		order[i] = i
		size += encodedBound(&entries[i])
	}
	slices.SortFunc(order, func(i, j int) int { return cmpString(entries[i].Name, entries[j].Name) })
	stamp := b.opts.Stamp
	err := b.s.db.Update(func(tx *bbolt.Tx) error {
		res = directory.BulkResult{}
		// Keys and values must stay valid until the commit: they live in
		// one arena, sized so that it never grows, and reused by the next
		// batch once this one is committed.
		if cap(b.arena) < size {
			b.arena = make([]byte, 0, size)
		}
		arena := b.arena[:0]
		bk := tx.Bucket(bucketUsers)
		bk.FillPercent = bulkFill
		var old directory.User
		for _, i := range order {
			e := &entries[i]
			u := directory.User{Name: e.Name, Display: e.Display, Password: e.Password,
				Fields: e.Fields, Created: stamp, Updated: stamp, Version: 1}
			start := len(arena)
			arena = append(arena, e.Name...)
			key := arena[start:len(arena):len(arena)]
			if v := bk.Get(key); v != nil {
				if err := old.UnmarshalBinary(v); err != nil {
					return fmt.Errorf("user %q: %w", e.Name, err)
				}
				dup := old.Updated.Equal(stamp) // an earlier batch of this load
				switch {
				case dup:
					res.Duplicates = append(res.Duplicates, i)
				case b.opts.Mode == directory.BulkInsert:
					res.Skipped = append(res.Skipped, i)
					continue
				case same(&old, e):
					res.Unchanged++
					if b.opts.Mode != directory.BulkReplace {
						continue
					}
					// replace mode rewrites it all the same: the stamp
					// is what keeps it from the sweep
				default:
					res.Updated++
				}
				u.Created, u.Version = old.Created, old.Version+1
				if same(&old, e) {
					u.Version = old.Version // rewritten for the stamp only
				}
			} else {
				res.Created++
			}
			start = len(arena)
			arena = u.AppendBinary(arena)
			if err := bk.Put(key, arena[start:len(arena):len(arena)]); err != nil {
				return err
			}
		}
		if res.Created > 0 {
			addCount(tx, int64(res.Created))
		}
		return nil
	})
	if err != nil {
		return directory.BulkResult{}, unavailable(err)
	}
	slices.Sort(res.Skipped)
	slices.Sort(res.Duplicates)
	return res, nil
}

// same reports whether u holds e's record.
func same(u *directory.User, e *directory.BulkEntry) bool {
	return u.Display == e.Display && u.Password == e.Password && slices.Equal(u.Fields, e.Fields)
}

// encodedBound bounds the bytes of e's key and encoded record.
func encodedBound(e *directory.BulkEntry) int {
	n := 1 + 3*10 + len(e.Name)*2 + len(e.Display) + len(e.Password)
	for _, f := range e.Fields {
		n += 20 + len(f.Label) + len(f.Value)
	}
	return n
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Finish implements directory.Bulk: in replace mode it deletes, a chunk
// per transaction, every user whose Updated is before the load's stamp.
func (b *bulk) Finish(ctx context.Context, keep []string) (int64, error) {
	if b.opts.Mode != directory.BulkReplace {
		return 0, nil
	}
	kept := make(map[string]bool, len(keep))
	for _, k := range keep {
		kept[k] = true
	}
	var deleted int64
	var start []byte // the next chunk starts at this key; nil: the first
	for {
		if err := ctx.Err(); err != nil {
			return deleted, err
		}
		var next []byte
		err := b.s.db.Update(func(tx *bbolt.Tx) error {
			bk := tx.Bucket(bucketUsers)
			c := bk.Cursor()
			k, v := c.First()
			if start != nil {
				k, v = c.Seek(start)
			}
			var doomed [][]byte
			var u directory.User
			next = nil
			for n := 0; k != nil; n++ {
				if n == sweepChunk {
					next = append([]byte(nil), k...)
					break
				}
				if err := u.UnmarshalBinary(v); err != nil {
					return fmt.Errorf("user %q: %w", k, err)
				}
				if u.Updated.Before(b.opts.Stamp) && !kept[string(k)] {
					doomed = append(doomed, append([]byte(nil), k...))
				}
				k, v = c.Next()
			}
			for _, d := range doomed {
				if err := bk.Delete(d); err != nil {
					return err
				}
			}
			if len(doomed) > 0 {
				addCount(tx, -int64(len(doomed)))
			}
			deleted += int64(len(doomed))
			return nil
		})
		if err != nil {
			return deleted, unavailable(err)
		}
		if next == nil {
			return deleted, nil
		}
		start = next
	}
}

// Close implements directory.Bulk.
func (b *bulk) Close(context.Context) error {
	if !b.closed {
		b.closed = true
		loading.Delete(b.s)
	}
	return nil
}
