// Package bolt is the embedded Store: every user in one bbolt file. It is
// the default when no database is configured. Writes from concurrent
// requests share one transaction and one fsync (bbolt's Batch), so an
// acknowledged write is durable without costing an fsync per user.
package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/tohost/tohost/directory"
)

var (
	bucketUsers = []byte("users")
	bucketMeta  = []byte("meta")
	keyCount    = []byte("count")
	keyNameRule = []byte("name-rule")
)

// nameRule names the rule (directory.FoldName) the keys of a store were
// made with. A store without it predates the rule: its keys were Unicode
// lower case and its names could hold invalid UTF-8.
const nameRule = "ascii-fold-1"

// FileName is the database file inside the data directory.
const FileName = "tohost.db"

// searchChunk is how many users one read transaction of Search visits.
// Search reopens its transaction between chunks: a long-lived bbolt read
// transaction would block the writers whenever the file has to grow.
const searchChunk = 1000

// Store is the bbolt-backed directory.Store.
type Store struct {
	db      *bbolt.DB
	commits chan *write // the group-commit queue, see commitLoop
	stopped chan struct{}

	closeMu sync.RWMutex // held shared while queueing a write
	closed  bool
}

// write is one queued write transaction function and where its result goes.
type write struct {
	fn  func(*bbolt.Tx) error
	err chan error
}

// maxGroup bounds the writes one commit takes.
const maxGroup = 10000

// Open opens (or creates) the store in dir.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	path := filepath.Join(dir, FileName)
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout:         2 * time.Second, // another process holds the file lock
		NoFreelistSync:  true,            // faster commits; the freelist is rebuilt on open
		FreelistType:    bbolt.FreelistMapType,
		InitialMmapSize: 1 << 30, // fewer remaps, which wait for all readers
	})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketUsers, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return refoldNames(tx)
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init %s: %w", path, err)
	}
	s := &Store{db: db, commits: make(chan *write, maxGroup), stopped: make(chan struct{})}
	go s.commitLoop()
	return s, nil
}

// errClosed answers writes that arrive after Close.
var errClosed = errors.New("store closed")

// Close lets the queued writes commit, stops the commit loop and closes the
// database file. Later writes fail with ErrUnavailable.
func (s *Store) Close() error {
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return nil
	}
	s.closed = true
	close(s.commits)
	s.closeMu.Unlock()
	<-s.stopped
	// Commits skip writing the free page list (NoFreelistSync: much
	// faster writes), so an open has to rebuild it by walking the whole
	// file: over a second for 10 million users. One last commit that
	// writes it lets the next open read it instead (an open after a
	// crash still walks).
	s.db.NoFreelistSync = false
	err := s.db.Update(func(*bbolt.Tx) error { return nil })
	return errors.Join(err, s.db.Close())
}

// Get implements directory.Store.
func (s *Store) Get(_ context.Context, name string) (*directory.User, error) {
	var u *directory.User
	err := s.db.View(func(tx *bbolt.Tx) error {
		var err error
		u, err = getUser(tx, name)
		return err
	})
	return u, err
}

// Update implements directory.Store.
func (s *Store) Update(_ context.Context, name string, fn directory.UpdateFunc) (*directory.User, error) {
	var result *directory.User
	err := s.batch(func(tx *bbolt.Tx) error {
		old, err := getUser(tx, name)
		if err != nil && !errors.Is(err, directory.ErrNotFound) {
			return err
		}
		u, err := fn(old)
		if err != nil {
			return err
		}
		if u == nil || u.Name != name {
			return fmt.Errorf("update of %q produced no record or another name", name)
		}
		if err := putUser(tx, u); err != nil {
			return err
		}
		if old == nil {
			addCount(tx, 1)
		}
		result = u
		return nil
	})
	if err != nil {
		return nil, err
	}
	return result, nil
}

// Delete implements directory.Store.
func (s *Store) Delete(_ context.Context, name string) error {
	return s.batch(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketUsers)
		if b.Get([]byte(name)) == nil {
			return directory.ErrNotFound
		}
		addCount(tx, -1)
		return b.Delete([]byte(name))
	})
}

// Rename implements directory.Store.
func (s *Store) Rename(_ context.Context, oldName, newName, newDisplay string) error {
	return s.batch(func(tx *bbolt.Tx) error {
		u, err := getUser(tx, oldName)
		if err != nil {
			return err
		}
		if oldName != newName && tx.Bucket(bucketUsers).Get([]byte(newName)) != nil {
			return directory.ErrExists
		}
		if err := tx.Bucket(bucketUsers).Delete([]byte(oldName)); err != nil {
			return err
		}
		u.Name, u.Display = newName, newDisplay
		u.Updated = time.Now()
		u.Version++
		return putUser(tx, u)
	})
}

// Search implements directory.Store, reading searchChunk users per
// transaction and seeking to the pattern's literal prefix.
func (s *Store) Search(ctx context.Context, m directory.Match, fn func(*directory.User) error) error {
	prefix := []byte(m.Prefix())
	start := prefix
	if m.After != "" && m.After >= m.Prefix() {
		start = append([]byte(m.After), 0) // the smallest key after m.After
	}
	for next := start; ; {
		var batch []*directory.User
		err := s.db.View(func(tx *bbolt.Tx) error {
			var err error
			batch, next, err = scanChunk(tx, m, prefix, next)
			return err
		})
		if err != nil {
			return unavailable(err)
		}
		for _, u := range batch {
			if err := fn(u); err != nil {
				return err
			}
		}
		if next == nil {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// scanChunk visits up to searchChunk keys from start and returns the
// matching users and the key to resume at (nil at the end).
func scanChunk(tx *bbolt.Tx, m directory.Match, prefix, start []byte) ([]*directory.User, []byte, error) {
	var out []*directory.User
	c := tx.Bucket(bucketUsers).Cursor()
	k, v := c.Seek(start)
	for n := 0; k != nil && bytes.HasPrefix(k, prefix); n++ {
		if n == searchChunk {
			return out, append([]byte(nil), k...), nil
		}
		if m.Matches(string(k)) {
			u := new(directory.User)
			if err := u.UnmarshalBinary(v); err != nil {
				return nil, nil, fmt.Errorf("user %q: %w", k, err)
			}
			out = append(out, u)
		}
		k, v = c.Next()
	}
	return out, nil, nil
}

// Count implements directory.Store from a counter kept by every write.
func (s *Store) Count(context.Context) (int64, error) {
	var n int64
	err := s.db.View(func(tx *bbolt.Tx) error {
		n = readCount(tx)
		return nil
	})
	return n, err
}

// batch runs fn in a write transaction shared with the other writes
// queued meanwhile (group commit: one fsync for all of them), in queue
// order, and returns once that transaction is durable. fn must return a
// directory error (not found, exists, bad input) before it changes
// anything: such an error fails only fn, and the others still commit.
// Any other error fails the whole group as a storage failure.
func (s *Store) batch(fn func(*bbolt.Tx) error) error {
	w := &write{fn: fn, err: make(chan error, 1)}
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return unavailable(errClosed)
	}
	s.commits <- w
	s.closeMu.RUnlock()
	err := <-w.err
	if err == nil || directory.IsAnswer(err) {
		return err
	}
	return unavailable(err)
}

// commitLoop is the single writer: it takes every queued write, runs them
// in one transaction and commits. While a commit waits for the disk, the
// next group gathers in the queue, so the commit rate follows the disk and
// the writes per commit follow the load.
func (s *Store) commitLoop() {
	defer close(s.stopped)
	group := make([]*write, 0, maxGroup)
	results := make([]error, 0, maxGroup)
	for w := range s.commits {
		group = append(group[:0], w)
	gather:
		for len(group) < maxGroup {
			select {
			case w, ok := <-s.commits:
				if !ok {
					break gather
				}
				group = append(group, w)
			default:
				break gather
			}
		}
		results = results[:len(group)]
		err := s.db.Update(func(tx *bbolt.Tx) error {
			for i, w := range group {
				results[i] = w.fn(tx)
				if results[i] != nil && !directory.IsAnswer(results[i]) {
					return results[i]
				}
			}
			return nil
		})
		for i, w := range group {
			if err != nil {
				w.err <- err
			} else {
				w.err <- results[i]
			}
		}
	}
}

func unavailable(err error) error {
	if err == nil || errors.Is(err, directory.ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %v", directory.ErrUnavailable, err)
}

func getUser(tx *bbolt.Tx, name string) (*directory.User, error) {
	v := tx.Bucket(bucketUsers).Get([]byte(name))
	if v == nil {
		return nil, directory.ErrNotFound
	}
	u := new(directory.User)
	if err := u.UnmarshalBinary(v); err != nil {
		return nil, unavailable(fmt.Errorf("user %q: %w", name, err))
	}
	return u, nil
}

func putUser(tx *bbolt.Tx, u *directory.User) error {
	return tx.Bucket(bucketUsers).Put([]byte(u.Name), u.AppendBinary(nil))
}

func readCount(tx *bbolt.Tx) int64 {
	v := tx.Bucket(bucketMeta).Get(keyCount)
	if len(v) != 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(v))
}

func addCount(tx *bbolt.Tx, d int64) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(readCount(tx)+d))
	// Put only fails on a read-only tx or bad key, neither possible here.
	_ = tx.Bucket(bucketMeta).Put(keyCount, b[:])
}

// refoldNames brings the keys of a store made before nameRule to it, once:
// each user whose key is not FoldName of its name moves to that key, and a
// name holding invalid UTF-8 is stored with U+FFFD in its place (it was
// already keyed so), the one form in which it can be asked for now. No two
// users can meet: names that fold alike under FoldName also did under the
// Unicode lower-casing the keys were made with.
func refoldNames(tx *bbolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if string(meta.Get(keyNameRule)) == nameRule {
		return nil
	}
	users := tx.Bucket(bucketUsers)
	var moved []*directory.User
	var oldKeys [][]byte
	err := users.ForEach(func(k, v []byte) error {
		var u directory.User
		if err := u.UnmarshalBinary(v); err != nil {
			return fmt.Errorf("user %q: %w", k, err)
		}
		display := strings.ToValidUTF8(u.Display, "\uFFFD")
		key := directory.FoldName(display)
		if key == string(k) && display == u.Display {
			return nil
		}
		u.Name, u.Display = key, display
		moved = append(moved, &u)
		oldKeys = append(oldKeys, bytes.Clone(k))
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range oldKeys { // not while ForEach runs: it forbids changes
		if err := users.Delete(k); err != nil {
			return err
		}
	}
	for _, u := range moved {
		if users.Get([]byte(u.Name)) != nil {
			return fmt.Errorf("users %q and another are both %q under the name rule; rename one with the old version first", u.Display, u.Name)
		}
		if err := users.Put([]byte(u.Name), u.AppendBinary(nil)); err != nil {
			return err
		}
	}
	return meta.Put(keyNameRule, []byte(nameRule))
}
