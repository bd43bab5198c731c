package maildir

import (
	"errors"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

// Folder is one Maildir folder with persistent IMAP UIDs: a UID list file
// per folder (like Dovecot's dovecot-uidlist: UIDVALIDITY, next UID, one
// "uid key" line per message), rewritten atomically (write tmp, fsync,
// rename) under a lock whenever new messages get UIDs or messages go.
// UIDVALIDITY never changes for a folder that keeps its list.
//
// A Folder is one session's view of the folder; its methods may be called
// from several goroutines.
type Folder struct {
	s    *Store
	udir string // the user's directory, for notifications
	name string
	dir  string

	mu       sync.Mutex
	validity uint32
	next     uint32
	files    map[string]fileRef  // by key: where the file was last seen
	stats    map[string]fileStat // by file name (the name changes with the flags)
	byUID    map[uint32]string   // UID -> key
	recent   map[string]bool     // keys a Sync of this Folder moved from new/
	last     dirStamp            // taken before the last Sync read the folder
}

// Message is one message of a Folder.
type Message struct {
	UID          uint32
	Key          string   // the unique base name (stable: POP3 UIDL uses it)
	Flags        []string // IMAP system flags from the Maildir info ":2,DFPRST" (\Draft \Flagged \Answered \Seen \Deleted), plus "\Recent" for messages a Sync of this Folder moved from new/
	Size         int64
	InternalDate time.Time // the file's mtime (set on Append)
}

type fileRef struct {
	sub  string // "cur" or "new"
	name string // file name
}

type fileStat struct {
	size  int64
	mtime time.Time
}

func (r fileRef) path(dir string) string { return join(dir, r.sub, r.name) }

func (f *Folder) lockName() string {
	if f.dir == f.udir {
		return uidListLockPath(f.udir, "")
	}
	_, base := splitPath(f.dir)
	return uidListLockPath(f.udir, base)
}

// Name returns the folder's IMAP name.
func (f *Folder) Name() string { return f.name }

// UIDValidity returns the folder's UIDVALIDITY.
func (f *Folder) UIDValidity() uint32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.validity
}

// UIDNext returns the next UID as of the last Sync, Append or CopyTo of
// this Folder.
func (f *Folder) UIDNext() uint32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.next
}

// open loads (or creates) the folder's UID list.
func (f *Folder) open() error {
	unlock, err := f.s.lk.lock(f.lockName())
	if err != nil {
		return err
	}
	defer unlock()
	l, fresh, err := f.s.loadList(f.dir)
	if err != nil {
		return err
	}
	if fresh {
		if err := f.s.writeList(f.dir, l); err != nil {
			return err
		}
	}
	f.files = make(map[string]fileRef)
	f.stats = make(map[string]fileStat)
	f.byUID = make(map[uint32]string)
	f.recent = make(map[string]bool)
	f.setList(l)
	return nil
}

// setList takes the list's UIDVALIDITY, UIDNEXT and UIDs.
func (f *Folder) setList(l *uidList) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.validity, f.next = l.validity, l.next
	clear(f.byUID)
	for _, e := range l.ents {
		f.byUID[e.uid] = e.key
	}
}

// scan lists the message files of new/ and cur/ by key; a key in both
// (which a crash cannot make, but another tool might) is taken from cur/.
func (f *Folder) scan() (map[string]fileRef, error) {
	files := make(map[string]fileRef)
	for _, sub := range []string{"new", "cur"} {
		ents, err := os.ReadDir(join(f.dir, sub))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, ErrNoFolder
			}
			return nil, err
		}
		for _, e := range ents {
			name := e.Name()
			if name[0] == '.' || strings.IndexByte(name, '\n') >= 0 || !e.Type().IsRegular() {
				continue
			}
			key, _ := splitName(name)
			if key == "" {
				continue
			}
			files[key] = fileRef{sub: sub, name: name}
		}
	}
	return files, nil
}

// deliveryOrder sorts keys by the time in their names (the file's mtime
// for names not of the time.M<usec>P<pid>Q<n>.host form), then by name.
func (f *Folder) deliveryOrder(keys []string, files map[string]fileRef) {
	type tk struct {
		t   int64
		key string
	}
	v := make([]tk, len(keys))
	for i, k := range keys {
		var t int64
		if sec, usec, _, _, ok := keyParts(k); ok {
			t = sec*1e6 + usec
		} else if info, err := os.Lstat(files[k].path(f.dir)); err == nil {
			t = info.ModTime().UnixMicro()
		}
		v[i] = tk{t, k}
	}
	sort.Slice(v, func(i, j int) bool {
		if v[i].t != v[j].t {
			return v[i].t < v[j].t
		}
		return v[i].key < v[j].key
	})
	for i := range v {
		keys[i] = v[i].key
	}
}

// Sync scans new/ and cur/, moves new/ to cur/, gives new messages UIDs in
// delivery order and drops vanished ones; it returns all messages, sorted
// by UID.
func (f *Folder) Sync() ([]Message, error) {
	unlock, err := f.s.lk.lock(f.lockName())
	if err != nil {
		return nil, err
	}
	st := f.stamp()
	l, changed, moved, files, err := f.syncLocked()
	unlock()
	if err != nil {
		return nil, err
	}
	if changed {
		f.s.notify(f.udir)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.last = st
	for _, k := range moved {
		f.recent[k] = true
	}
	f.validity, f.next = l.validity, l.next
	clear(f.byUID)
	f.files = files
	msgs := make([]Message, 0, len(l.ents))
	stats := make(map[string]fileStat, len(l.ents))
	for _, e := range l.ents {
		f.byUID[e.uid] = e.key
		ref := files[e.key]
		st, ok := f.stats[ref.name]
		if !ok {
			info, err := os.Lstat(ref.path(f.dir))
			if err != nil {
				continue // gone since the scan; the next Sync drops it
			}
			st = fileStat{size: info.Size(), mtime: info.ModTime()}
		}
		stats[ref.name] = st
		_, info := splitName(ref.name)
		fl := flagsOf(info)
		if f.recent[e.key] {
			fl = append(fl, `\Recent`)
		}
		msgs = append(msgs, Message{UID: e.uid, Key: e.key, Flags: fl, Size: st.size, InternalDate: st.mtime})
	}
	f.stats = stats
	for k := range f.recent {
		if _, ok := files[k]; !ok {
			delete(f.recent, k)
		}
	}
	return msgs, nil
}

// syncLocked is Sync's work under the folder lock: it returns the new
// list, whether it changed, the keys moved from new/ and the files by key.
func (f *Folder) syncLocked() (l *uidList, changed bool, moved []string, files map[string]fileRef, err error) {
	l, fresh, err := f.s.loadList(f.dir)
	if err != nil {
		return nil, false, nil, nil, err
	}
	changed = fresh
	files, err = f.scan()
	if err != nil {
		return nil, false, nil, nil, err
	}
	for key, ref := range files {
		if ref.sub != "new" {
			continue
		}
		name := ref.name
		if !strings.Contains(name, ":") {
			name += ":2,"
		}
		if err := f.s.fs.rename(ref.path(f.dir), join(f.dir, "cur", name)); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				delete(files, key)
				continue
			}
			return nil, false, nil, nil, err
		}
		files[key] = fileRef{sub: "cur", name: name}
		moved = append(moved, key)
	}
	listed := make(map[string]bool, len(l.ents))
	kept := l.ents[:0]
	for _, e := range l.ents {
		if _, ok := files[e.key]; ok && !listed[e.key] {
			kept = append(kept, e)
			listed[e.key] = true
		} else {
			changed = true
		}
	}
	l.ents = kept
	var fresh2 []string
	for k := range files {
		if !listed[k] {
			fresh2 = append(fresh2, k)
		}
	}
	f.deliveryOrder(fresh2, files)
	for _, k := range fresh2 {
		l.ents = append(l.ents, listEntry{uid: l.next, key: k})
		l.next++
		changed = true
	}
	if changed {
		if err := f.s.writeList(f.dir, l); err != nil {
			return nil, false, nil, nil, err
		}
	}
	return l, changed || len(moved) > 0, moved, files, nil
}

// locate finds the key and file of a UID: from what this Folder saw last
// when that file is still there, else from the UID list and a scan.
// locked tells whether the caller holds the folder lock.
func (f *Folder) locate(uid uint32, locked bool) (string, fileRef, error) {
	f.mu.Lock()
	key, ok := f.byUID[uid]
	ref, ok2 := f.files[key]
	f.mu.Unlock()
	if ok && ok2 {
		if _, err := os.Lstat(ref.path(f.dir)); err == nil {
			return key, ref, nil
		}
	}
	if !locked {
		unlock, err := f.s.lk.lock(f.lockName())
		if err != nil {
			return "", fileRef{}, err
		}
		defer unlock()
	}
	l, err := readList(f.dir)
	if err != nil {
		return "", fileRef{}, err
	}
	i := l.index(uid)
	if i < 0 {
		return "", fileRef{}, ErrNoMessage
	}
	key = l.ents[i].key
	files, err := f.scan()
	if err != nil {
		return "", fileRef{}, err
	}
	ref, ok = files[key]
	if !ok {
		return "", fileRef{}, ErrNoMessage
	}
	f.mu.Lock()
	f.byUID[uid] = key
	f.files[key] = ref
	f.mu.Unlock()
	return key, ref, nil
}

// Open opens the message file of a UID; ErrNoMessage when there is none.
func (f *Folder) Open(uid uint32) (*os.File, error) {
	for try := 0; ; try++ {
		_, ref, err := f.locate(uid, false)
		if err != nil {
			return nil, err
		}
		fh, err := os.Open(ref.path(f.dir))
		if errors.Is(err, os.ErrNotExist) && try < 3 {
			continue // renamed meanwhile (flags changed)
		}
		return fh, err
	}
}

// SetFlags replaces the system flags of a message (a rename in cur/);
// unknown keywords and \Recent are ignored.
func (f *Folder) SetFlags(uid uint32, flags []string) error {
	unlock, err := f.s.lk.lock(f.lockName())
	if err != nil {
		return err
	}
	key, ref, err := f.locate(uid, true)
	if err != nil {
		unlock()
		return err
	}
	_, info := splitName(ref.name)
	name := key + ":2," + withFlags(info, flags)
	if name != ref.name || ref.sub != "cur" {
		err = f.s.fs.rename(ref.path(f.dir), join(f.dir, "cur", name))
	}
	unlock()
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.files[key] = fileRef{sub: "cur", name: name}
	f.mu.Unlock()
	f.s.notify(f.udir)
	return nil
}

// Append adds a message with flags and internal date (the zero time: now),
// as durably as Deliver, and gives it a UID at once.
func (f *Folder) Append(r io.Reader, flags []string, date time.Time) (uid uint32, err error) {
	key, tmp, err := f.s.writeTmp(f.dir, r, date)
	if errors.Is(err, os.ErrNotExist) {
		return 0, ErrNoFolder
	}
	if err != nil {
		return 0, err
	}
	name := key + ":2," + withFlags("", flags)
	err = f.s.fs.link(tmp, join(f.dir, "cur", name))
	if err == nil {
		err = f.s.fs.fsyncDir(join(f.dir, "cur"))
	}
	f.s.fs.remove(tmp)
	if err != nil {
		return 0, err
	}
	uids, err := f.addKeys([]string{key}, []string{name})
	if err != nil {
		return 0, err
	}
	f.s.notify(f.udir)
	return uids[0], nil
}

// addKeys gives UIDs to keys just put in cur/ under these names (or
// returns those a concurrent Sync gave them).
func (f *Folder) addKeys(keys, names []string) ([]uint32, error) {
	unlock, err := f.s.lk.lock(f.lockName())
	if err != nil {
		return nil, err
	}
	defer unlock()
	l, _, err := f.s.loadList(f.dir)
	if err != nil {
		return nil, err
	}
	have := make(map[string]uint32, len(l.ents))
	for _, e := range l.ents {
		have[e.key] = e.uid
	}
	uids := make([]uint32, len(keys))
	for i, k := range keys {
		if u, ok := have[k]; ok {
			uids[i] = u
			continue
		}
		uids[i] = l.next
		l.ents = append(l.ents, listEntry{uid: l.next, key: k})
		l.next++
	}
	if err := f.s.writeList(f.dir, l); err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.validity, f.next = l.validity, l.next
	for i, k := range keys {
		f.byUID[uids[i]] = k
		f.files[k] = fileRef{sub: "cur", name: names[i]}
	}
	f.mu.Unlock()
	return uids, nil
}

// Expunge removes the files of these UIDs and the UIDs from the list.
// UIDs not in the folder are ignored.
func (f *Folder) Expunge(uids []uint32) error {
	unlock, err := f.s.lk.lock(f.lockName())
	if err != nil {
		return err
	}
	defer unlock()
	l, _, err := f.s.loadList(f.dir)
	if err != nil {
		return err
	}
	files, err := f.scan()
	if err != nil {
		return err
	}
	gone := make(map[uint32]bool)
	dirty := map[string]bool{}
	for _, uid := range uids {
		i := l.index(uid)
		if i < 0 || gone[uid] {
			continue
		}
		gone[uid] = true
		if ref, ok := files[l.ents[i].key]; ok {
			if err := f.s.fs.remove(ref.path(f.dir)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			dirty[ref.sub] = true
		}
	}
	if len(gone) == 0 {
		return nil
	}
	// The removals are durable before the list forgets the UIDs: a crash
	// in between leaves listed UIDs whose files are gone, which the next
	// Sync drops, never a file that comes back under a new UID.
	for sub := range dirty {
		if err := f.s.fs.fsyncDir(join(f.dir, sub)); err != nil {
			return err
		}
	}
	kept := l.ents[:0]
	for _, e := range l.ents {
		if !gone[e.uid] {
			kept = append(kept, e)
		}
	}
	l.ents = kept
	if err := f.s.writeList(f.dir, l); err != nil {
		return err
	}
	f.mu.Lock()
	for uid := range gone {
		if k, ok := f.byUID[uid]; ok {
			delete(f.files, k)
			delete(f.recent, k)
			delete(f.byUID, uid)
		}
	}
	f.validity, f.next = l.validity, l.next
	f.mu.Unlock()
	f.s.notify(f.udir)
	return nil
}

// CopyTo copies messages into dest (hard links where possible, keeping
// flags and internal date) and returns old UID -> new UID in dest. UIDs not
// in the folder are left out.
func (f *Folder) CopyTo(uids []uint32, dest *Folder) (map[uint32]uint32, error) {
	sorted := append([]uint32(nil), uids...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	var from []uint32
	var keys, names []string
	cleanup := func() {
		for _, n := range names {
			os.Remove(join(dest.dir, "cur", n))
		}
	}
	for i, uid := range sorted {
		if i > 0 && uid == sorted[i-1] {
			continue
		}
		var err error
		for try := 0; ; try++ {
			var ref fileRef
			_, ref, err = f.locate(uid, false)
			if err != nil {
				break
			}
			key := f.s.newKey()
			_, info := splitName(ref.name)
			name := key + ":2," + info
			dst := join(dest.dir, "cur", name)
			err = f.s.fs.link(ref.path(f.dir), dst)
			if err != nil && isCrossDevice(err) {
				err = f.s.copyInto(ref.path(f.dir), join(dest.dir, "tmp"), dst)
			}
			if err == nil {
				from, keys, names = append(from, uid), append(keys, key), append(names, name)
				break
			}
			if !errors.Is(err, os.ErrNotExist) || try >= 3 {
				break
			}
			if _, serr := os.Stat(join(dest.dir, "cur")); serr != nil {
				err = ErrNoFolder
				break
			}
		}
		if errors.Is(err, ErrNoMessage) {
			continue
		}
		if err != nil {
			cleanup()
			return nil, err
		}
	}
	out := make(map[uint32]uint32, len(from))
	if len(from) == 0 {
		return out, nil
	}
	if err := f.s.fs.fsyncDir(join(dest.dir, "cur")); err != nil {
		cleanup()
		return nil, err
	}
	newUIDs, err := dest.addKeys(keys, names)
	if err != nil {
		return nil, err // the copies are in cur/: a Sync gives them UIDs
	}
	for i, u := range from {
		out[u] = newUIDs[i]
	}
	f.s.notify(dest.udir)
	return out, nil
}
