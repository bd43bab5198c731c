package maildir

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"sort"
	"strings"
)

// Mailbox is one user's mail: the INBOX and the folders.
type Mailbox struct {
	s   *Store
	dir string
}

const (
	subsFile      = "subscriptions" // Dovecot's name; one folder a line
	maildirFolder = "maildirfolder" // Maildir++ marks its folders with it

	// locksDir holds the user's lock files. It is at the user's top,
	// where Maildir++ readers take only names starting with "." for
	// folders, and out of the folder directories, which move on rename
	// and delete while their lock is held.
	locksDir    = "tohost-locks"
	foldersLock = "folders"       // create, delete, rename
	subsLock    = "subscriptions" // the subscriptions file
	pop3Lock    = "pop3"          // the POP3 session
	uidListLock = "uidlist"       // + the folder's directory name ("" for INBOX)
)

// lockPath is the name of a lock of the user directory udir.
func lockPath(udir, lock string) string { return join(udir, locksDir, lock) }

// uidListLockPath is the name of the UID list lock of the folder whose
// directory is dir ("" for INBOX) in the user directory udir.
func uidListLockPath(udir, dir string) string { return lockPath(udir, uidListLock+dir) }

// Folders returns the IMAP names of the folders, "/" delimiter, "INBOX"
// first; Maildir++ ".A.B" is "A/B".
func (m *Mailbox) Folders() ([]string, error) {
	ents, err := os.ReadDir(m.dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		if n, ok := folderName(e.Name()); ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return append([]string{folderInbox}, names...), nil
}

// Create creates a folder; ErrExists when it exists. Superior levels are
// not created (Maildir++ needs none).
func (m *Mailbox) Create(name string) error {
	canon, dir, err := folderDir(name)
	if err != nil {
		return err
	}
	if canon == folderInbox {
		return ErrExists
	}
	unlock, err := m.s.lk.lock(lockPath(m.dir, foldersLock))
	if err != nil {
		return err
	}
	defer unlock()
	return m.create(dir)
}

// create makes the folder directory dir complete in tmp/ and renames it
// into place, so that nobody sees a folder without cur/ new/ tmp/. Under
// the folders lock.
func (m *Mailbox) create(dir string) error {
	final := join(m.dir, dir)
	if _, err := os.Lstat(final); err == nil {
		return ErrExists
	}
	build := join(m.dir, "tmp", m.s.newKey())
	if err := os.Mkdir(build, 0o700); err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(build)
		}
	}()
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.Mkdir(join(build, sub), 0o700); err != nil {
			return err
		}
	}
	if err := os.WriteFile(join(build, maildirFolder), nil, 0o600); err != nil {
		return err
	}
	if err := m.s.fs.fsyncDir(build); err != nil {
		return err
	}
	if err := m.s.fs.rename(build, final); err != nil {
		return err
	}
	ok = true
	return m.s.fs.fsyncDir(m.dir)
}

// Delete deletes a folder and its messages; its children stay. INBOX
// cannot be deleted (ErrBadName).
func (m *Mailbox) Delete(name string) error {
	canon, dir, err := folderDir(name)
	if err != nil {
		return err
	}
	if canon == folderInbox {
		return ErrBadName
	}
	unlock, err := m.s.lk.lock(lockPath(m.dir, foldersLock))
	if err != nil {
		return err
	}
	defer unlock()
	final := join(m.dir, dir)
	if _, err := os.Lstat(final); err != nil {
		return ErrNoFolder
	}
	ulk, err := m.s.lk.lock(uidListLockPath(m.dir, dir))
	if err != nil {
		return err
	}
	// Out of sight in one rename, then removed; a crash in between leaves
	// it in tmp/, which Open cleans.
	trash := join(m.dir, "tmp", m.s.newKey())
	err = m.s.fs.rename(final, trash)
	ulk()
	if err != nil {
		return err
	}
	if err := m.s.fs.fsyncDir(m.dir); err != nil {
		return err
	}
	m.s.notify(m.dir)
	return os.RemoveAll(trash)
}

// Rename renames a folder; its children move too. Renaming INBOX moves
// its messages into a new folder and leaves INBOX empty (RFC 3501), with
// their UIDs.
func (m *Mailbox) Rename(old, new string) error {
	ocanon, odir, err := folderDir(old)
	if err != nil {
		return err
	}
	ncanon, ndir, err := folderDir(new)
	if err != nil {
		return err
	}
	if ncanon == folderInbox {
		return ErrExists
	}
	unlock, err := m.s.lk.lock(lockPath(m.dir, foldersLock))
	if err != nil {
		return err
	}
	defer unlock()
	if ocanon == folderInbox {
		return m.renameInbox(ndir)
	}
	if _, err := os.Lstat(join(m.dir, odir)); err != nil {
		return ErrNoFolder
	}
	if odir == ndir {
		return ErrExists
	}
	// The folder, then its children, whose names are all known before
	// anything moves (renaming "A" to "A/B" makes ".A.B" a child of ".A").
	ents, err := os.ReadDir(m.dir)
	if err != nil {
		return err
	}
	moves := [][2]string{{odir, ndir}}
	for _, e := range ents {
		if e.IsDir() && strings.HasPrefix(e.Name(), odir+".") {
			if _, ok := folderName(e.Name()); ok {
				moves = append(moves, [2]string{e.Name(), ndir + e.Name()[len(odir):]})
			}
		}
	}
	for _, mv := range moves {
		if _, err := os.Lstat(join(m.dir, mv[1])); err == nil {
			return ErrExists
		}
		if len(mv[1]) > 200 {
			return ErrBadName
		}
	}
	for _, mv := range moves {
		if err := m.s.fs.rename(join(m.dir, mv[0]), join(m.dir, mv[1])); err != nil {
			return err
		}
	}
	if err := m.s.fs.fsyncDir(m.dir); err != nil {
		return err
	}
	m.s.notify(m.dir)
	return nil
}

// renameInbox moves INBOX's messages into the new folder ndir, keeping
// their UIDs (the new folder has a UIDVALIDITY of its own). A crash midway
// leaves each message in one of the two; files without a UID in the new
// folder get one at its next Sync. Under the folders lock.
func (m *Mailbox) renameInbox(ndir string) error {
	if err := m.create(ndir); err != nil {
		return err
	}
	dst := join(m.dir, ndir)
	u1, err := m.s.lk.lock(uidListLockPath(m.dir, ""))
	if err != nil {
		return err
	}
	defer u1()
	u2, err := m.s.lk.lock(uidListLockPath(m.dir, ndir))
	if err != nil {
		return err
	}
	defer u2()
	src := &Folder{s: m.s, udir: m.dir, dir: m.dir}
	l, _, err := m.s.loadList(m.dir)
	if err != nil {
		return err
	}
	files, err := src.scan()
	if err != nil {
		return err
	}
	for _, ref := range files {
		if err := m.s.fs.rename(ref.path(m.dir), join(dst, ref.sub, ref.name)); err != nil {
			return err
		}
	}
	for _, sub := range []string{"cur", "new"} {
		if err := m.s.fs.fsyncDir(join(dst, sub)); err != nil {
			return err
		}
	}
	nl := &uidList{validity: newValidity(), next: l.next}
	for _, e := range l.ents {
		if _, ok := files[e.key]; ok {
			nl.ents = append(nl.ents, e)
		}
	}
	if err := m.s.writeList(dst, nl); err != nil {
		return err
	}
	l.ents = nil
	if err := m.s.writeList(m.dir, l); err != nil {
		return err
	}
	m.s.notify(m.dir)
	return nil
}

// Subscribe subscribes to a folder (on) or unsubscribes from it. The
// folder need not exist.
func (m *Mailbox) Subscribe(name string, on bool) error {
	canon, _, err := folderDir(name)
	if err != nil {
		return err
	}
	unlock, err := m.s.lk.lock(lockPath(m.dir, subsLock))
	if err != nil {
		return err
	}
	defer unlock()
	subs, err := m.readSubs()
	if err != nil {
		return err
	}
	var out []string
	found := false
	for _, s := range subs {
		if s == canon {
			found = true
			if !on {
				continue
			}
		}
		out = append(out, s)
	}
	if found == on {
		return nil
	}
	if on {
		out = append(out, canon)
	}
	var b bytes.Buffer
	for _, s := range out {
		b.WriteString(s)
		b.WriteByte('\n')
	}
	tmp := join(m.dir, subsFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b.Bytes())
	if err == nil {
		err = m.s.fs.fsync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = m.s.fs.rename(tmp, join(m.dir, subsFile))
	}
	if err == nil {
		err = m.s.fs.fsyncDir(m.dir)
	}
	return err
}

func (m *Mailbox) readSubs() ([]string, error) {
	f, err := os.Open(join(m.dir, subsFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var subs []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := sc.Text(); line != "" {
			subs = append(subs, line)
		}
	}
	return subs, sc.Err()
}

// Subscriptions returns the subscribed folder names, sorted.
func (m *Mailbox) Subscriptions() ([]string, error) {
	subs, err := m.readSubs()
	sort.Strings(subs)
	return subs, err
}

// Folder returns a folder by IMAP name ("INBOX" in any case); ErrNoFolder
// when it does not exist.
func (m *Mailbox) Folder(name string) (*Folder, error) {
	canon, dir, err := folderDir(name)
	if err != nil {
		return nil, err
	}
	fdir := m.dir
	if dir != "" {
		fdir = join(m.dir, dir)
	}
	if _, err := os.Stat(join(fdir, "cur")); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, ErrNoFolder
		}
		return nil, err
	}
	f := &Folder{s: m.s, udir: m.dir, name: canon, dir: fdir}
	if err := f.open(); err != nil {
		return nil, err
	}
	return f, nil
}

// LockPOP3 takes the user's POP3 lock; ErrInUse while another POP3 session
// of this user holds it. Call unlock when the session ends.
func (m *Mailbox) LockPOP3() (unlock func(), err error) {
	return m.s.lk.tryLock(lockPath(m.dir, pop3Lock))
}
