package maildir

import (
	"os"
	"sync"
)

// fileOps is every file-system call whose order makes a delivery durable:
// fsync of a file and of a directory, link, rename and remove. The Store
// goes through it so that tests can record the order of the calls.
type fileOps interface {
	fsync(f *os.File) error
	fsyncDir(dir string) error
	link(oldname, newname string) error
	rename(oldname, newname string) error
	remove(name string) error
}

type osOps struct{ noFsync bool }

func (o osOps) fsync(f *os.File) error {
	if o.noFsync {
		return nil
	}
	return f.Sync()
}

func (o osOps) fsyncDir(dir string) error {
	if o.noFsync {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

func (osOps) link(oldname, newname string) error   { return os.Link(oldname, newname) }
func (osOps) rename(oldname, newname string) error { return os.Rename(oldname, newname) }
func (osOps) remove(name string) error             { return os.Remove(name) }

// locker takes the named locks of a Store. Names are paths of the form a
// lock file would have (".../tohost-uidlist.lock"), so that a dotlock
// implementation (O_EXCL create, stale recovery) can replace the in-process
// one when several processes share a mail directory.
type locker interface {
	// lock blocks until the lock is held.
	lock(name string) (unlock func(), err error)
	// tryLock returns ErrInUse when the lock is held.
	tryLock(name string) (unlock func(), err error)
}

// memLocker is the in-process locker: one channel-based mutex per name,
// dropped when nobody holds or waits for it.
type memLocker struct {
	mu sync.Mutex
	m  map[string]*memLock
}

type memLock struct {
	ch   chan struct{}
	refs int
}

func newMemLocker() *memLocker { return &memLocker{m: make(map[string]*memLock)} }

func (l *memLocker) get(name string) *memLock {
	l.mu.Lock()
	defer l.mu.Unlock()
	ml := l.m[name]
	if ml == nil {
		ml = &memLock{ch: make(chan struct{}, 1)}
		l.m[name] = ml
	}
	ml.refs++
	return ml
}

func (l *memLocker) put(name string, ml *memLock) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ml.refs--
	if ml.refs == 0 {
		delete(l.m, name)
	}
}

func (l *memLocker) unlocker(name string, ml *memLock) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			<-ml.ch
			l.put(name, ml)
		})
	}
}

func (l *memLocker) lock(name string) (func(), error) {
	ml := l.get(name)
	ml.ch <- struct{}{}
	return l.unlocker(name, ml), nil
}

func (l *memLocker) tryLock(name string) (func(), error) {
	ml := l.get(name)
	select {
	case ml.ch <- struct{}{}:
		return l.unlocker(name, ml), nil
	default:
		l.put(name, ml)
		return nil, ErrInUse
	}
}
