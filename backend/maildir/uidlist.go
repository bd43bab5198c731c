package maildir

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// The UID list of a folder, in <folder>/tohost-uidlist:
//
//	3 V<uidvalidity> N<uidnext>
//	<uid> :<key>
//	...
//
// one line per message, sorted by UID. It is rewritten whole: written to
// tohost-uidlist.tmp, fsynced, renamed over the list, and the folder
// directory fsynced; always under the folder's lock.
const (
	uidListName = "tohost-uidlist"
	uidListTmp  = "tohost-uidlist.tmp"
)

var errCorrupt = errors.New("maildir: corrupt UID list")

type listEntry struct {
	uid uint32
	key string
}

type uidList struct {
	validity uint32
	next     uint32
	ents     []listEntry // by UID
}

func (l *uidList) index(uid uint32) int {
	lo, hi := 0, len(l.ents)
	for lo < hi {
		m := (lo + hi) / 2
		if l.ents[m].uid < uid {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(l.ents) && l.ents[lo].uid == uid {
		return lo
	}
	return -1
}

func parseList(b []byte) (*uidList, error) {
	line, rest, _ := bytes.Cut(b, []byte("\n"))
	var l uidList
	if _, err := fmt.Sscanf(string(line), "3 V%d N%d", &l.validity, &l.next); err != nil || l.validity == 0 || l.next == 0 {
		return nil, errCorrupt
	}
	var last uint32
	for len(rest) > 0 {
		line, rest, _ = bytes.Cut(rest, []byte("\n"))
		if len(line) == 0 {
			continue
		}
		u, k, ok := strings.Cut(string(line), " :")
		n, err := strconv.ParseUint(u, 10, 32)
		if !ok || err != nil || n == 0 || uint32(n) <= last || k == "" {
			return nil, errCorrupt
		}
		last = uint32(n)
		l.ents = append(l.ents, listEntry{uid: last, key: k})
	}
	if l.next <= last {
		l.next = last + 1
	}
	return &l, nil
}

// readList reads the UID list of dir; os.ErrNotExist when there is none.
func readList(dir string) (*uidList, error) {
	b, err := os.ReadFile(join(dir, uidListName))
	if err != nil {
		return nil, err
	}
	return parseList(b)
}

// loadList reads the UID list of dir, starting a new one (new UIDVALIDITY)
// when there is none or it cannot be parsed; a list that cannot be parsed
// is kept aside as tohost-uidlist.broken. Under the folder lock.
func (s *Store) loadList(dir string) (l *uidList, fresh bool, err error) {
	l, err = readList(dir)
	switch {
	case err == nil:
		return l, false, nil
	case errors.Is(err, errCorrupt):
		if err := s.fs.rename(join(dir, uidListName), join(dir, uidListName+".broken")); err != nil {
			return nil, false, err
		}
	case !errors.Is(err, os.ErrNotExist):
		return nil, false, err
	}
	return &uidList{validity: newValidity(), next: 1}, true, nil
}

// writeList replaces the UID list of dir atomically. Under the folder lock.
func (s *Store) writeList(dir string, l *uidList) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "3 V%d N%d\n", l.validity, l.next)
	for _, e := range l.ents {
		fmt.Fprintf(&b, "%d :%s\n", e.uid, e.key)
	}
	tmp := join(dir, uidListTmp)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	_, err = w.Write(b.Bytes())
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = s.fs.fsync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = s.fs.rename(tmp, join(dir, uidListName))
	}
	if err == nil {
		err = s.fs.fsyncDir(dir)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}
