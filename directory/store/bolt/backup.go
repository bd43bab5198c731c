package bolt

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/tohost/tohost/directory"
)

// Backup writes a copy of the database file to w from one read
// transaction, while writes go on: the copy holds exactly the writes
// committed before it began, and opens as a store of its own. head is
// called before the first byte with the copy's size and its number of
// users.
//
// The transaction stays open until w has taken the whole file; while it
// is, the pages the writes free cannot be reused, so the file may grow
// by what is written meanwhile.
func (s *Store) Backup(w io.Writer, head func(size, users int64)) (int64, error) {
	var n int64
	err := s.db.View(func(tx *bbolt.Tx) error {
		head(tx.Size(), readCount(tx))
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

// Verify opens the store file at path read-only, checks bbolt's page
// structure, decodes every user and returns how many there are. A copy
// that passes opens and serves as a data directory's FileName.
func Verify(path string) (int64, error) {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: 2 * time.Second})
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", path, err)
	}
	defer db.Close()
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	var n int64
	err = db.View(func(tx *bbolt.Tx) error {
		// Pages past the end of a file cut short are not there to read
		// (reading the mapping there kills the process): refuse first.
		if fi.Size() < tx.Size() {
			return fmt.Errorf("cut short: %d bytes of %d", fi.Size(), tx.Size())
		}
		if err := check(tx); err != nil {
			return err
		}
		users, meta := tx.Bucket(bucketUsers), tx.Bucket(bucketMeta)
		if users == nil || meta == nil {
			return errors.New("not a tohost store: no users or meta bucket")
		}
		n, err = countUsers(users)
		if err != nil {
			return err
		}
		if c := readCount(tx); c != n {
			return fmt.Errorf("%d users, but the stored count says %d", n, c)
		}
		return nil
	})
	return n, err
}

// countUsers decodes every user in b.
func countUsers(b *bbolt.Bucket) (int64, error) {
	var n int64
	err := b.ForEach(func(k, v []byte) error {
		var u directory.User
		if err := u.UnmarshalBinary(v); err != nil {
			return fmt.Errorf("user %q: %w", k, err)
		}
		n++
		return nil
	})
	return n, err
}

// check runs bbolt's consistency check, draining every error it finds (its
// goroutine stops only then) and returning the first.
func check(tx *bbolt.Tx) error {
	var first error
	for err := range tx.Check() {
		if first == nil {
			first = fmt.Errorf("page structure: %w", err)
		}
	}
	return first
}
