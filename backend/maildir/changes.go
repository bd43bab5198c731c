package maildir

import (
	"os"
	"syscall"
	"time"
)

// settleTime is how long after a directory's mtime a look at it may still
// miss a change made in the same clock tick: file systems (NFS servers
// among them) may keep mtimes to the second.
const settleTime = 2 * time.Second

// dirStamp is what a stat of a folder's new/, cur/ and UID list says about
// their contents: any delivery, flag change (a rename in cur/), expunge or
// new UID changes one of them.
type dirStamp struct {
	parts [3]fileID
	dirty bool // taken within settleTime of a change: a later one may not show
}

type fileID struct {
	ino, size uint64
	mtime     int64 // ns
}

// stamp stats the folder now.
func (f *Folder) stamp() dirStamp {
	var st dirStamp
	now := time.Now()
	for i, name := range []string{join(f.dir, "new"), join(f.dir, "cur"), join(f.dir, uidListName)} {
		info, err := os.Stat(name)
		if err != nil {
			st.dirty = true // gone or unreadable: look again next time
			continue
		}
		id := fileID{size: uint64(info.Size()), mtime: info.ModTime().UnixNano()}
		if sys, ok := info.Sys().(*syscall.Stat_t); ok {
			id.ino = uint64(sys.Ino)
		}
		st.parts[i] = id
		if d := now.Sub(info.ModTime()); d < settleTime && d > -settleTime {
			st.dirty = true
		}
	}
	return st
}

// Changed reports whether the folder may have changed since the last Sync
// of this Folder: new/, cur/ or the UID list differ from what a stat
// showed just before that Sync read them, or they had changed too
// recently then to be sure. It costs three stats; other processes
// sharing the root (Options.Shared) make changes that nothing in this
// process is told of, and an IMAP IDLE asks this every second.
func (f *Folder) Changed() bool {
	now := f.stamp()
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last.dirty || now != f.last
}
