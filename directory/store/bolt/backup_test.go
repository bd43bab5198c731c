package bolt

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tohost/tohost/directory"
)

func put(t *testing.T, s *Store, name string) {
	t.Helper()
	_, err := s.Update(context.Background(), name, func(*directory.User) (*directory.User, error) {
		return &directory.User{Name: name, Display: name, Password: "{SSHA}x"}, nil
	})
	if err != nil {
		t.Error(err)
	}
}

// TestBackupWhileWriting: a copy taken while writers run holds every
// write acknowledged before it began, its user count agrees with its
// users, and it opens as a store.
func TestBackupWhileWriting(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var acked atomic.Int64 // writers' names are w<i>-<n>; acked counts all
	stop := make(chan struct{})
	var wg sync.WaitGroup
	done := make([]atomic.Int64, 4) // per writer: names below this are acknowledged
	for i := range done {
		wg.Go(func() {
			for n := int64(0); ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				put(t, s, fmt.Sprintf("w%d-%d", i, n))
				done[i].Store(n + 1)
				acked.Add(1)
			}
		})
	}
	for acked.Load() < 500 {
	}
	before := make([]int64, len(done))
	for i := range done {
		before[i] = done[i].Load()
	}
	path := filepath.Join(t.TempDir(), "copy.db")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	var headUsers int64
	if _, err := s.Backup(f, func(_, users int64) { headUsers = users }); err != nil {
		t.Fatal(err)
	}
	f.Close()
	close(stop)
	wg.Wait()

	n, err := Verify(path)
	if err != nil {
		t.Fatal(err)
	}
	if n != headUsers {
		t.Errorf("copy holds %d users, its head said %d", n, headUsers)
	}
	dir := t.TempDir()
	if err := os.Rename(path, filepath.Join(dir, FileName)); err != nil {
		t.Fatal(err)
	}
	restored, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer restored.Close()
	for i, b := range before {
		for n := range b {
			if _, err := restored.Get(context.Background(), fmt.Sprintf("w%d-%d", i, n)); err != nil {
				t.Fatalf("w%d-%d, acknowledged before the backup: %v", i, n, err)
			}
		}
	}
}

// TestVerifyRefusesDamage: a copy cut short does not pass.
func TestVerifyRefusesDamage(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2000 {
		put(t, s, fmt.Sprintf("u%d", i))
	}
	path := filepath.Join(t.TempDir(), "copy.db")
	f, _ := os.Create(path)
	s.Backup(f, func(int64, int64) {})
	f.Close()
	s.Close()
	if n, err := Verify(path); err != nil || n != 2000 {
		t.Fatalf("whole copy: %d %v", n, err)
	}
	fi, _ := os.Stat(path)
	os.Truncate(path, fi.Size()/2)
	if n, err := Verify(path); err == nil {
		t.Fatalf("half a copy passed, %d users", n)
	}
}
