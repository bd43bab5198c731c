package maildir

import (
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ErrLockTimeout: a lock file stayed held, and kept fresh by its holder,
// for longer than a lock is ever expected to be held.
var ErrLockTimeout = errors.New("maildir: lock held elsewhere for too long")

// DefaultLockStale is how long a lock file may go without being refreshed
// by its holder before another process breaks it.
const DefaultLockStale = 30 * time.Second

// fileLocker is the locker of a Store shared by several processes, on one
// host or several (a networked drive): a lock is a file created with
// O_EXCL, as Dovecot's dotlocks are, holding "<host> <pid>". Its holder
// touches it every stale/3 while it holds it; a lock file whose mtime does
// not move for stale is left by a process that died and is broken, and so
// is one of this host whose process no longer runs. Within the process a
// memLocker comes first, so that only one goroutine per name polls the
// file and the others wait their turn without touching the disk.
type fileLocker struct {
	mem   *memLocker
	owner string // "<host> <pid>", the content of our lock files
	host  string
	pid   int
	stale time.Duration

	mu   sync.Mutex
	seen map[string]sighting // lock files held by others, as first seen
}

// sighting is a lock file of another holder as this process first saw it:
// if it is still the same file with the same mtime stale later, nobody
// refreshes it. The time is this host's clock, so skew between hosts
// does not matter.
type sighting struct {
	info os.FileInfo
	at   time.Time
}

func newFileLocker(host string, pid int, stale time.Duration) *fileLocker {
	return &fileLocker{mem: newMemLocker(), owner: host + " " + strconv.Itoa(pid) + "\n",
		host: host, pid: pid, stale: stale, seen: make(map[string]sighting)}
}

func (l *fileLocker) lock(name string) (func(), error) {
	unlockMem, err := l.mem.lock(name)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(4 * l.stale)
	wait := time.Millisecond
	for {
		h, err := l.acquire(name)
		if err != nil {
			unlockMem()
			return nil, err
		}
		if h != nil {
			return l.unlocker(h, unlockMem), nil
		}
		if time.Now().After(deadline) {
			unlockMem()
			return nil, fmt.Errorf("%w: %s", ErrLockTimeout, name)
		}
		time.Sleep(wait/2 + rand.N(wait/2+1))
		wait = min(2*wait, 100*time.Millisecond)
	}
}

func (l *fileLocker) tryLock(name string) (func(), error) {
	unlockMem, err := l.mem.tryLock(name)
	if err != nil {
		return nil, err
	}
	h, err := l.acquire(name)
	if err == nil && h == nil {
		err = ErrInUse
	}
	if err != nil {
		unlockMem()
		return nil, err
	}
	return l.unlocker(h, unlockMem), nil
}

// acquire makes one attempt at the lock file: a held lock, or nil when
// another live holder has it. A stale lock file is broken on the way.
func (l *fileLocker) acquire(name string) (*heldLock, error) {
	for try := 0; try < 3; try++ {
		h, err := l.create(name)
		if err == nil {
			l.forget(name)
			return h, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return nil, err
		}
		if !l.breakIfStale(name) {
			return nil, nil
		}
	}
	return nil, nil
}

// create creates the lock file with O_EXCL (os.ErrExist while another
// has it), making the user's lock directory when it is missing.
func (l *fileLocker) create(name string) (*heldLock, error) {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrNotExist) {
		if merr := os.Mkdir(parentDir(name), 0o700); merr != nil && !errors.Is(merr, os.ErrExist) {
			return nil, err
		}
		f, err = os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	}
	if err != nil {
		return nil, err
	}
	info, err := f.Stat()
	if err == nil {
		_, err = f.WriteString(l.owner)
	}
	if err != nil {
		f.Close()
		os.Remove(name)
		return nil, err
	}
	h := &heldLock{name: name, f: f, info: info}
	h.mu.Lock()
	h.timer = time.AfterFunc(l.stale/3, func() { h.refresh(l.stale / 3) })
	h.mu.Unlock()
	return h, nil
}

// breakIfStale removes the lock file name when its holder is gone, and
// reports whether it is worth trying to create it again (it was broken,
// or it is gone already).
func (l *fileLocker) breakIfStale(name string) bool {
	info, err := os.Lstat(name)
	if errors.Is(err, os.ErrNotExist) {
		return true
	}
	if err != nil || !l.isStale(name, info) {
		return false
	}
	return l.breakLock(name, info)
}

// isStale judges a lock file held by another: its process, of this host,
// no longer runs; or its mtime is older than stale; or this process has
// seen it unchanged for stale.
func (l *fileLocker) isStale(name string, info os.FileInfo) bool {
	if b, err := os.ReadFile(name); err == nil {
		host, pidText, ok := strings.Cut(strings.TrimSpace(string(b)), " ")
		if pid, err := strconv.Atoi(pidText); ok && err == nil && host == l.host && !pidRunning(pid, info.ModTime()) {
			return true
		}
	}
	if time.Since(info.ModTime()) > l.stale {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	s, ok := l.seen[name]
	if !ok || !os.SameFile(s.info, info) || !s.info.ModTime().Equal(info.ModTime()) {
		l.seen[name] = sighting{info: info, at: time.Now()}
		return false
	}
	return time.Since(s.at) > l.stale
}

func (l *fileLocker) forget(name string) {
	l.mu.Lock()
	delete(l.seen, name)
	l.mu.Unlock()
}

// breakLock removes the stale lock file judged from info. It is first
// renamed to a name of its own, in one step, so that two processes
// breaking it at once cannot remove a lock that one of them has just
// taken: a file that turns out not to be the one judged is put back.
func (l *fileLocker) breakLock(name string, info os.FileInfo) bool {
	aside := name + ".broken." + randomHex(8)
	if err := os.Rename(name, aside); err != nil {
		return errors.Is(err, os.ErrNotExist)
	}
	got, err := os.Lstat(aside)
	if err == nil && (!os.SameFile(got, info) || !got.ModTime().Equal(info.ModTime())) {
		os.Link(aside, name) // fails when a new lock is there already
	}
	os.Remove(aside)
	l.forget(name)
	return true
}

func (l *fileLocker) unlocker(h *heldLock, unlockMem func()) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			h.release()
			unlockMem()
		})
	}
}

// heldLock is a lock file this process holds, kept open to be touched.
type heldLock struct {
	name string
	info os.FileInfo // of the file as created, to know it is still ours

	mu    sync.Mutex
	f     *os.File // nil once released
	timer *time.Timer
}

// refresh touches the lock file, through the open file so that only ours
// is touched, and schedules the next touch.
func (h *heldLock) refresh(every time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.f == nil {
		return
	}
	touch(h.f)
	h.timer.Reset(every)
}

// release stops the refreshes and removes the lock file if it is still
// ours (another process may have broken it, then taken it).
func (h *heldLock) release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.timer.Stop()
	if info, err := os.Lstat(h.name); err == nil && os.SameFile(info, h.info) {
		os.Remove(h.name)
	}
	h.f.Close()
	h.f = nil
}

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	crand.Read(b)
	return hex.EncodeToString(b)
}
