// Package maildir stores each user's mail as a Maildir++ under one root,
// for the backend mail server: LMTP delivery, IMAP and POP3 all go through
// a Store.
//
// User "local@domain" lives in <root>/<domain>/<local>/, a bare "local" in
// <root>/_/<local>/; each is a Maildir (cur/ new/ tmp/) whose folders are
// Maildir++ subdirectories ".A.B" (IMAP "A/B"). Message flags are in the
// file names (":2,DFPRST"), so Dovecot, mutt and other Maildir tools can
// read the same directories.
//
// Nothing acknowledged is ever lost: a delivery is written in tmp/,
// fsynced, linked into new/, and new/ is fsynced before Deliver returns.
// A crash leaves at most a file in tmp/, removed by Open.
//
// Each folder keeps its IMAP UIDs in a UID list file (tohost-uidlist),
// rewritten atomically under a per-folder lock. The locks go through one
// small internal interface so that a lock file can replace the in-process
// mutex when several processes share a mail directory.
package maildir

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Errors returned by the Store, Mailbox and Folder methods.
var (
	ErrBadName   = errors.New("maildir: bad user or folder name")
	ErrNoFolder  = errors.New("maildir: no such folder")
	ErrExists    = errors.New("maildir: folder exists")
	ErrInUse     = errors.New("maildir: mailbox in use")
	ErrNoMessage = errors.New("maildir: no such message")
)

// Options configure a Store.
type Options struct {
	Hostname string // in unique file names (default os.Hostname); each host sharing a root needs its own
	NoFsync  bool   // tests of speed only; default: fsync everything a delivery acknowledges

	// Shared: other processes, on this host or others (a networked
	// drive), use the same root at the same time. Locks are then lock
	// files (see fileLocker) instead of in-process mutexes, unique names
	// carry a random part besides host and pid, and Folder.Changed tells
	// a process of changes the others made.
	Shared bool
	// LockStale is how long a lock file may go without being refreshed by
	// its holder before it is broken (default DefaultLockStale). Shared
	// only.
	LockStale time.Duration
}

// tmpMaxAge is the age after which any file left in a tmp/ is removed by
// Open, whatever host made it.
const tmpMaxAge = 36 * time.Hour

// Store is every user's mail under one root: user "local@domain" lives in
// <root>/<domain>/<local>/ (a Maildir++: cur/ new/ tmp/ and folders ".Name"),
// a bare "local" in <root>/_/<local>/. Names are lower-cased; a name that
// could escape the root ("..", "/", NUL) is refused with ErrBadName.
type Store struct {
	root string
	host string // escaped
	pid  int
	fs   fileOps
	lk   locker
	// shared: see Options.Shared
	shared bool

	mu   sync.Mutex
	subs map[string]map[*subscriber]struct{} // by user directory
}

type subscriber struct{ ch chan struct{} }

// Open opens the Store at root, creating root if needed, and removes the
// tmp/ leftovers of crashed deliveries: files older than 36 hours, and
// those made by a process of this host that no longer runs (or by an
// earlier process with this process's pid).
func Open(root string, opt Options) (*Store, error) {
	host := opt.Hostname
	if host == "" {
		host, _ = os.Hostname()
		if host == "" {
			host = "localhost"
		}
	}
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, err
	}
	s := &Store{
		root:   root,
		host:   escapeHost(host),
		pid:    os.Getpid(),
		fs:     osOps{noFsync: opt.NoFsync},
		lk:     newMemLocker(),
		shared: opt.Shared,
		subs:   make(map[string]map[*subscriber]struct{}),
	}
	if opt.Shared {
		stale := opt.LockStale
		if stale <= 0 {
			stale = DefaultLockStale
		}
		s.lk = newFileLocker(s.host, s.pid, stale)
	}
	if err := s.cleanAll(); err != nil {
		return nil, err
	}
	return s, nil
}

// cleanAll cleans the tmp/ of every Maildir and folder under the root.
func (s *Store) cleanAll() error {
	domains, err := os.ReadDir(s.root)
	if err != nil {
		return err
	}
	for _, d := range domains {
		if !d.IsDir() {
			continue
		}
		users, err := os.ReadDir(join(s.root, d.Name()))
		if err != nil {
			return err
		}
		for _, u := range users {
			if !u.IsDir() {
				continue
			}
			udir := join(s.root, d.Name(), u.Name())
			if err := s.cleanTmp(udir); err != nil {
				return err
			}
			ents, err := os.ReadDir(udir)
			if err != nil {
				return err
			}
			for _, e := range ents {
				if e.IsDir() && strings.HasPrefix(e.Name(), ".") {
					if err := s.cleanTmp(join(udir, e.Name())); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

// cleanTmp removes the leftovers in dir/tmp.
func (s *Store) cleanTmp(dir string) error {
	tmp := join(dir, "tmp")
	ents, err := os.ReadDir(tmp)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	now := time.Now()
	for _, e := range ents {
		info, err := e.Info()
		if err != nil {
			continue
		}
		stale := now.Sub(info.ModTime()) > tmpMaxAge
		if _, _, pid, host, ok := keyParts(e.Name()); ok && host == s.host && !pidRunning(pid, info.ModTime()) {
			stale = true
		}
		if stale {
			if err := os.RemoveAll(join(tmp, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
	}
	return nil
}

// userDir returns the absolute directory of a user.
func (s *Store) userDir(user string) (string, error) {
	p, err := userPath(user)
	if err != nil {
		return "", err
	}
	return join(s.root, p), nil
}

// makeMaildir creates the Maildir of a user if needed, with fsyncs of
// every directory it creates and of its parent.
func (s *Store) makeMaildir(udir string) error {
	if _, err := os.Stat(join(udir, "tmp")); err == nil {
		return nil
	}
	// Create the missing directories from the top, fsyncing each parent.
	var missing []string
	for d := udir; ; d = parentDir(d) {
		if _, err := os.Stat(d); err == nil || d == s.root {
			break
		}
		missing = append(missing, d)
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := os.Mkdir(missing[i], 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
		if err := s.fs.fsyncDir(parentDir(missing[i])); err != nil {
			return err
		}
	}
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.Mkdir(join(udir, sub), 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	}
	return s.fs.fsyncDir(udir)
}

func parentDir(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i <= 0 {
		return "/"
	}
	return p[:i]
}

// Deliver delivers a message into the user's INBOX: it is written in
// tmp/, fsynced, linked into new/, new/ is fsynced, and the tmp/ name is
// removed. Only when Deliver returns nil is the delivery acknowledged. The
// key is the message's unique base name.
func (s *Store) Deliver(user string, r io.Reader) (key string, err error) {
	udir, err := s.userDir(user)
	if err != nil {
		return "", err
	}
	key, errs := s.deliver([]string{udir}, r, nil)
	if errs[0] != nil {
		return "", errs[0]
	}
	return key, nil
}

// DeliverMany delivers one message to several users (LMTP): it is written
// once and linked (or copied across file systems) into each INBOX. It
// returns one error per user; a user named twice gets the message once.
func (s *Store) DeliverMany(users []string, r io.Reader) []error {
	return s.DeliverManyChecked(users, r, nil)
}

// DeliverManyChecked is DeliverMany with a last word: once the message is
// written and synced in tmp/, and before it is linked into any INBOX,
// check (when not nil) returns one error per user; a user with an error
// does not get the message, and that error is the user's result. A check
// made this late lets the caller learn of a change (the user moved to
// another server) that happened while the message was being received.
func (s *Store) DeliverManyChecked(users []string, r io.Reader, check func() []error) []error {
	errs := make([]error, len(users))
	var dirs []string
	idx := make([]int, len(users)) // users[i] -> dirs[idx[i]], -1 when bad
	seen := make(map[string]int)
	for i, u := range users {
		d, err := s.userDir(u)
		if err != nil {
			errs[i], idx[i] = err, -1
			continue
		}
		j, ok := seen[d]
		if !ok {
			j = len(dirs)
			seen[d] = j
			dirs = append(dirs, d)
		}
		idx[i] = j
	}
	if len(dirs) == 0 {
		return errs
	}
	var dirCheck func() []error
	if check != nil {
		dirCheck = func() []error {
			// A mailbox named by several users is refused when one of
			// them is; each user keeps its own error.
			cerrs := check()
			derrs := make([]error, len(dirs))
			for i := range users {
				if idx[i] >= 0 && cerrs[i] != nil {
					errs[i] = cerrs[i]
					if derrs[idx[i]] == nil {
						derrs[idx[i]] = cerrs[i]
					}
				}
			}
			return derrs
		}
	}
	_, derrs := s.deliver(dirs, r, dirCheck)
	for i := range users {
		if idx[i] >= 0 && errs[i] == nil {
			errs[i] = derrs[idx[i]]
		}
	}
	return errs
}

// writeTmp writes r into a new file dir/tmp/<key>, with its mtime set to
// date when date is not zero, and fsyncs it. On error nothing is left.
func (s *Store) writeTmp(dir string, r io.Reader, date time.Time) (key, path string, err error) {
	for {
		key = s.newKey()
		path = join(dir, "tmp", key)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return "", "", err
		}
		_, err = io.Copy(f, r)
		if err == nil && !date.IsZero() {
			err = os.Chtimes(path, date, date)
		}
		if err == nil {
			err = s.fs.fsync(f)
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
			return "", "", err
		}
		return key, path, nil
	}
}

// deliver writes r once in the first user's tmp/ and links it into the
// new/ of each user that check (when not nil) does not refuse.
func (s *Store) deliver(udirs []string, r io.Reader, check func() []error) (string, []error) {
	errs := make([]error, len(udirs))
	key, tmp, err := s.writeTmp(udirs[0], r, time.Time{})
	if errors.Is(err, os.ErrNotExist) {
		if err = s.makeMaildir(udirs[0]); err == nil {
			key, tmp, err = s.writeTmp(udirs[0], r, time.Time{})
		}
	}
	if err != nil {
		for i := range errs {
			errs[i] = err
		}
		return "", errs
	}
	defer s.fs.remove(tmp)
	var refused []error
	if check != nil {
		refused = check()
	}
	for i, udir := range udirs {
		if refused != nil && refused[i] != nil {
			errs[i] = refused[i]
			continue
		}
		errs[i] = s.linkInto(tmp, udir, key)
		if errs[i] == nil {
			s.notify(udir)
		}
	}
	return key, errs
}

// linkInto links the fsynced file src as udir/new/key and fsyncs new/;
// across file systems it copies it through udir/tmp/.
func (s *Store) linkInto(src, udir, key string) error {
	dst := join(udir, "new", key)
	err := s.fs.link(src, dst)
	if errors.Is(err, os.ErrNotExist) {
		if err = s.makeMaildir(udir); err == nil {
			err = s.fs.link(src, dst)
		}
	}
	if err != nil && isCrossDevice(err) {
		err = s.copyInto(src, join(udir, "tmp"), dst)
	}
	if err != nil {
		return err
	}
	return s.fs.fsyncDir(join(udir, "new"))
}

// copyInto copies src to tmpdir/<name of dst>, fsyncs it and links it as
// dst.
func (s *Store) copyInto(src, tmpdir, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	info, err := in.Stat()
	if err != nil {
		return err
	}
	_, base := splitPath(dst)
	key, _ := splitName(base)
	tmp := join(tmpdir, key)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, in)
	if err == nil {
		err = os.Chtimes(tmp, info.ModTime(), info.ModTime())
	}
	if err == nil {
		err = s.fs.fsync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = s.fs.link(tmp, dst)
	}
	s.fs.remove(tmp)
	return err
}

func splitPath(p string) (dir, base string) {
	i := strings.LastIndexByte(p, '/')
	return p[:i], p[i+1:]
}

// Usage returns the bytes in the user's mailbox (all folders), for quotas.
func (s *Store) Usage(user string) (int64, error) {
	udir, err := s.userDir(user)
	if err != nil {
		return 0, err
	}
	ents, err := os.ReadDir(udir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	dirs := []string{udir}
	for _, e := range ents {
		if _, ok := folderName(e.Name()); ok && e.IsDir() {
			dirs = append(dirs, join(udir, e.Name()))
		}
	}
	var n int64
	for _, d := range dirs {
		for _, sub := range []string{"cur", "new"} {
			ents, err := os.ReadDir(join(d, sub))
			if err != nil {
				if errors.Is(err, os.ErrNotExist) {
					continue
				}
				return 0, err
			}
			for _, e := range ents {
				if info, err := e.Info(); err == nil && info.Mode().IsRegular() {
					n += info.Size()
				}
			}
		}
	}
	return n, nil
}

// Mailbox returns the mailbox of a user, creating the user's Maildir if
// needed.
func (s *Store) Mailbox(user string) (*Mailbox, error) {
	udir, err := s.userDir(user)
	if err != nil {
		return nil, err
	}
	if err := s.makeMaildir(udir); err != nil {
		return nil, err
	}
	return &Mailbox{s: s, dir: udir}, nil
}

// Notify returns a channel that fires (non-blocking, coalesced) after any
// change to the user's mail made through this Store, and a func that
// unsubscribes. For IMAP IDLE. A bad user name gets a channel that never
// fires.
func (s *Store) Notify(user string) (<-chan struct{}, func()) {
	sub := &subscriber{ch: make(chan struct{}, 1)}
	udir, err := s.userDir(user)
	if err != nil {
		return sub.ch, func() {}
	}
	s.mu.Lock()
	m := s.subs[udir]
	if m == nil {
		m = make(map[*subscriber]struct{})
		s.subs[udir] = m
	}
	m[sub] = struct{}{}
	s.mu.Unlock()
	var once sync.Once
	return sub.ch, func() {
		once.Do(func() {
			s.mu.Lock()
			delete(s.subs[udir], sub)
			if len(s.subs[udir]) == 0 {
				delete(s.subs, udir)
			}
			s.mu.Unlock()
		})
	}
}

// notify fires the subscribers of a user directory.
func (s *Store) notify(udir string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for sub := range s.subs[udir] {
		select {
		case sub.ch <- struct{}{}:
		default:
		}
	}
}

// Close releases the Store. Deliveries under way finish; nothing else is
// held open between calls.
func (s *Store) Close() error {
	s.mu.Lock()
	s.subs = make(map[string]map[*subscriber]struct{})
	s.mu.Unlock()
	return nil
}
