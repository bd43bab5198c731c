package maildir

import (
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// sharedStores opens one shared Store per host name on one root: what
// processes on these hosts would have, sharing nothing but the files.
func sharedStores(t *testing.T, stale time.Duration, hosts ...string) (string, []*Store) {
	t.Helper()
	root := t.TempDir()
	var stores []*Store
	for _, h := range hosts {
		s, err := Open(root, Options{Hostname: h, Shared: true, LockStale: stale, NoFsync: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		stores = append(stores, s)
	}
	return root, stores
}

// TestFileLockExcludes: goroutines of two Stores increment a counter in a
// file under one lock; every increment counts only if the lock keeps
// both Stores out of each other's read-modify-write.
func TestFileLockExcludes(t *testing.T) {
	root, stores := sharedStores(t, DefaultLockStale, "mx1.example", "mx2.example")
	counter := join(root, "counter")
	lockName := join(root, "u", locksDir, "counter")
	if err := os.MkdirAll(join(root, "u"), 0o700); err != nil {
		t.Fatal(err)
	}
	const workers, rounds = 4, 25
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := stores[w%2]
			for range rounds {
				unlock, err := s.lk.lock(lockName)
				if err != nil {
					t.Error(err)
					return
				}
				b, _ := os.ReadFile(counter)
				n, _ := strconv.Atoi(string(b))
				time.Sleep(100 * time.Microsecond) // widen the window a missing lock leaves
				os.WriteFile(counter, []byte(strconv.Itoa(n+1)), 0o600)
				unlock()
			}
		}()
	}
	wg.Wait()
	b, _ := os.ReadFile(counter)
	if got := string(b); got != strconv.Itoa(workers*rounds) {
		t.Fatalf("counter %s, want %d", got, workers*rounds)
	}
	if ents, _ := os.ReadDir(join(root, "u", locksDir)); len(ents) != 0 {
		t.Fatalf("lock files left: %v", ents)
	}
}

// TestFileLockStaleBroken: lock files nobody refreshes are broken: one
// with an old mtime, one of this host whose process has exited, and one
// whose mtime (set by a clock far ahead) stays put while it is watched.
func TestFileLockStaleBroken(t *testing.T) {
	const stale = 500 * time.Millisecond
	_, stores := sharedStores(t, stale, "mx1.example")
	s := stores[0]
	mb, err := s.Mailbox("ann")
	if err != nil {
		t.Fatal(err)
	}
	name := lockPath(mb.dir, pop3Lock)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		what, owner string
		mtime       time.Time
		try         bool // tryLock (POP3) rather than a waiting lock
	}{
		{"old mtime", "mx9.example 1", time.Now().Add(-time.Hour), true},
		{"dead process of this host", "mx1.example " + strconv.Itoa(dead.Process.Pid), time.Now(), true},
		{"mtime not moving", "mx9.example 1", time.Now().Add(time.Hour), false},
		// Lock files whose content is damaged go by their age alone.
		{"empty, old", "", time.Now().Add(-time.Hour), true},
		{"no pid, old", "mx1.example", time.Now().Add(-time.Hour), true},
		{"not a pid, old", "mx1.example twelve", time.Now().Add(-time.Hour), true},
	} {
		os.MkdirAll(parentDir(name), 0o700)
		if err := os.WriteFile(name, []byte(tc.owner+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(name, tc.mtime, tc.mtime)
		var unlock func()
		if tc.try {
			unlock, err = mb.LockPOP3()
		} else {
			unlock, err = s.lk.lock(name)
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.what, err)
		}
		b, _ := os.ReadFile(name)
		if string(b) != s.host+" "+strconv.Itoa(os.Getpid())+"\n" {
			t.Fatalf("%s: lock file holds %q", tc.what, b)
		}
		unlock()
	}
	if ents, _ := os.ReadDir(parentDir(name)); len(ents) != 0 {
		t.Fatalf("files left in the lock directory: %v", ents)
	}
	// A damaged one that is fresh is not broken at first sight: its
	// holder may be writing it.
	os.WriteFile(name, []byte("\x00garbage"), 0o600)
	if unlock, err := mb.LockPOP3(); !errors.Is(err, ErrInUse) {
		if err == nil {
			unlock()
		}
		t.Fatalf("a fresh damaged lock file: %v, want ErrInUse", err)
	}
}

// mailboxes opens user's mailbox through each of the stores.
func mailboxes(t *testing.T, stores []*Store, user string) []*Mailbox {
	t.Helper()
	var mbs []*Mailbox
	for _, s := range stores {
		mb, err := s.Mailbox(user)
		if err != nil {
			t.Fatal(err)
		}
		mbs = append(mbs, mb)
	}
	return mbs
}

// TestFileLockLiveHolderKept: a holder on another host keeps its lock for
// several times the stale time by refreshing it; the other Store's
// tryLock gets ErrInUse all along and its waiting lock is given only
// after the holder let go.
func TestFileLockLiveHolderKept(t *testing.T) {
	const stale = 600 * time.Millisecond
	_, stores := sharedStores(t, stale, "mx1.example", "mx2.example")
	mbs := mailboxes(t, stores, "ann")
	unlock, err := mbs[0].LockPOP3()
	if err != nil {
		t.Fatal(err)
	}
	var released atomic.Bool
	go func() {
		time.Sleep(4 * stale)
		released.Store(true)
		unlock()
	}()
	for !released.Load() {
		u, err := mbs[1].LockPOP3()
		if err == nil {
			if !released.Load() {
				u()
				t.Fatal("a live holder's POP3 lock was taken")
			}
			u()
			break
		}
		if !errors.Is(err, ErrInUse) {
			t.Fatal(err)
		}
		time.Sleep(stale / 5)
	}
	// The waiting lock, against a holder that again holds for a while.
	unlock, err = stores[0].lk.lock(lockPath(mbs[0].dir, foldersLock))
	if err != nil {
		t.Fatal(err)
	}
	released.Store(false)
	go func() {
		time.Sleep(3 * stale)
		released.Store(true)
		unlock()
	}()
	u, err := stores[1].lk.lock(lockPath(mbs[1].dir, foldersLock))
	if err != nil {
		t.Fatal(err)
	}
	if !released.Load() {
		t.Fatal("the waiting lock was given while its live holder held it")
	}
	u()
}

// TestSharedPOP3Lock: a POP3 lock taken through one Store is in use for
// the other until it is released.
func TestSharedPOP3Lock(t *testing.T) {
	_, stores := sharedStores(t, DefaultLockStale, "mx1.example", "mx2.example")
	mbs := mailboxes(t, stores, "Ann@Example.org")
	unlock, err := mbs[0].LockPOP3()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mbs[1].LockPOP3(); !errors.Is(err, ErrInUse) {
		t.Fatalf("second POP3 lock from the other Store: %v, want ErrInUse", err)
	}
	if _, err := mbs[0].LockPOP3(); !errors.Is(err, ErrInUse) {
		t.Fatalf("second POP3 lock from the same Store: %v, want ErrInUse", err)
	}
	unlock()
	u, err := mbs[1].LockPOP3()
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	u()
}

// TestLockFilesOutOfSight: lock files live in the user's tohost-locks,
// which is no folder, and never in a folder directory.
func TestLockFilesOutOfSight(t *testing.T) {
	_, stores := sharedStores(t, DefaultLockStale, "mx1.example")
	s := stores[0]
	mb, err := s.Mailbox("ann")
	if err != nil {
		t.Fatal(err)
	}
	if err := mb.Create("Work/Projects"); err != nil {
		t.Fatal(err)
	}
	f := mustFolder(t, s, "ann", "Work/Projects")
	unlock, err := s.lk.lock(f.lockName())
	if err != nil {
		t.Fatal(err)
	}
	pop, err := mb.LockPOP3()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"uidlist.Work.Projects", "pop3"} {
		if _, err := os.Stat(join(mb.dir, locksDir, want)); err != nil {
			t.Errorf("lock file %s: %v", want, err)
		}
	}
	names, err := mb.Folders()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(names, ",") != "INBOX,Work/Projects" {
		t.Errorf("folders %q", names)
	}
	ents, _ := os.ReadDir(f.dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), "lock") {
			t.Errorf("lock file %s in the folder", e.Name())
		}
	}
	unlock()
	pop()
}

// TestChangedAcrossStores: a Folder notices changes another Store made
// (delivery, flags, expunge) through Changed, and nothing once settled.
func TestChangedAcrossStores(t *testing.T) {
	_, stores := sharedStores(t, DefaultLockStale, "mx1.example", "mx2.example")
	a := mustFolder(t, stores[0], "ann", "INBOX")
	b := mustFolder(t, stores[1], "ann", "INBOX")
	settle := func() {
		t.Helper()
		old := time.Now().Add(-time.Hour)
		for _, p := range []string{"new", "cur", uidListName} {
			os.Chtimes(join(a.dir, p), old, old)
		}
		mustSync(t, a)
		if a.Changed() {
			t.Fatal("Changed with nothing changed")
		}
	}
	mustSync(t, a)
	settle()
	if _, err := stores[1].Deliver("ann", strings.NewReader("Subject: x\r\n\r\nx\r\n")); err != nil {
		t.Fatal(err)
	}
	if !a.Changed() {
		t.Fatal("a delivery by the other Store not noticed")
	}
	msgs := mustSync(t, a)
	settle()
	if err := b.SetFlags(msgs[0].UID, []string{`\Seen`}); err != nil {
		t.Fatal(err)
	}
	if !a.Changed() {
		t.Fatal("a flag change by the other Store not noticed")
	}
	if got := mustSync(t, a); len(got) != 1 || got[0].UID != msgs[0].UID || !strings.Contains(strings.Join(got[0].Flags, " "), `\Seen`) {
		t.Fatalf("after the other's SetFlags: %+v", got)
	}
	settle()
	if err := b.Expunge([]uint32{msgs[0].UID}); err != nil {
		t.Fatal(err)
	}
	if !a.Changed() {
		t.Fatal("an expunge by the other Store not noticed")
	}
	if got := mustSync(t, a); len(got) != 0 {
		t.Fatalf("after the other's Expunge: %+v", got)
	}
}
