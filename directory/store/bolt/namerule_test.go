package bolt

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/tohost/tohost/directory"
)

// TestRefoldNames: a store written before the name rule (keys in Unicode
// lower case, names with invalid UTF-8) is brought to it at the first
// open: every user is found under FoldName of its name, none is lost, and
// the second open changes nothing.
func TestRefoldNames(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Microsecond)
	old := map[string]string{ // key as the old rule made it → name as written
		"élodie@x.com":  "Élodie@x.com",
		"kelvin@x.com":  "\u212Aelvin@x.com", // the Kelvin sign, folded to k
		"bob@x.com":     "Bob@x.com",
		"v\uFFFD@x.com": "v\x80@x.com",
		"plain@x.com":   "plain@x.com",
	}
	err = s.db.Update(func(tx *bbolt.Tx) error {
		for k, display := range old {
			u := directory.User{Name: k, Display: display, Password: "{SSHA}x", Created: now, Updated: now, Version: 1}
			if err := tx.Bucket(bucketUsers).Put([]byte(k), u.AppendBinary(nil)); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Delete(keyNameRule) // as a store of the old version has none
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	for range 2 {
		s, err = Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{
			"Élodie@x.com":      "Élodie@x.com",
			"\u212Aelvin@x.com": "\u212Aelvin@x.com",
			"bob@x.com":         "Bob@x.com",
			"v\uFFFD@x.com":     "v\uFFFD@x.com",
			"plain@x.com":       "plain@x.com",
		}
		n := 0
		err = s.Search(context.Background(), directory.Match{}, func(u *directory.User) error {
			n++
			if want[u.Name] != u.Display {
				t.Errorf("user %q (%q) after the name rule, want one of %q", u.Name, u.Display, want)
			}
			return nil
		})
		if err != nil || n != len(want) {
			t.Fatalf("%d users (%v), want %d", n, err, len(want))
		}
		for _, gone := range []string{"élodie@x.com", "kelvin@x.com"} {
			if _, err := s.Get(context.Background(), gone); !errors.Is(err, directory.ErrNotFound) {
				t.Fatalf("old key %q still answers: %v", gone, err)
			}
		}
		s.Close()
	}
}

// TestNameRuleOnNewStore: a new store is marked with the rule at once.
func TestNameRuleOnNewStore(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.db.View(func(tx *bbolt.Tx) error {
		if got := string(tx.Bucket(bucketMeta).Get(keyNameRule)); !strings.EqualFold(got, nameRule) {
			t.Fatalf("name rule %q, want %q", got, nameRule)
		}
		return nil
	})
}

// TestCloseWritesTheFreelist: after a clean Close the file's current
// meta page points at a free page list, so the next open reads it instead
// of walking the whole file (over a second for 10 million users).
func TestCloseWritesTheFreelist(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i := range 100 {
		name := fmt.Sprintf("u%d@x", i)
		_, err := s.Update(context.Background(), name, func(*directory.User) (*directory.User, error) {
			return &directory.User{Name: name, Display: name, Password: "{SSHA}x", Created: now, Updated: now}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := currentFreelist(t, dir); got != noFreelist {
		t.Fatalf("while open the commits wrote a free list (%d): NoFreelistSync is off", got)
	}
	s.Close()
	if got := currentFreelist(t, dir); got == noFreelist {
		t.Fatal("after Close the file has no free page list: the next open walks every page")
	}
}

// noFreelist is bbolt's meta value for "no free list written".
const noFreelist = ^uint64(0)

// currentFreelist reads the free list page id of the newest of the file's
// two meta pages (bbolt's layout: a 16-byte page header, then magic,
// version, page size, flags, the root bucket's page id and sequence, the
// free list's page id, the high water mark and the transaction id).
func currentFreelist(t *testing.T, dir string) uint64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	pageSize := int(binary.LittleEndian.Uint32(b[16+8:]))
	var best, freelist uint64
	for _, off := range []int{0, pageSize} {
		m := b[off+16:]
		if txid := binary.LittleEndian.Uint64(m[48:]); txid >= best {
			best, freelist = txid, binary.LittleEndian.Uint64(m[32:])
		}
	}
	return freelist
}
