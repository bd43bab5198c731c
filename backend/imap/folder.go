package imap

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/tohost/tohost/backend/maildir"
)

// userState is what the sessions of one user share: the Mailbox, the
// folders some session has selected, and a watcher that syncs those
// folders when the Store says the user's mail changed.
type userState struct {
	s    *Server
	name string
	mbox *maildir.Mailbox
	refs int // sessions; under Server.mu

	mu      sync.Mutex
	folders map[string]*folderState // by canonical name

	notify      <-chan struct{}
	unsubscribe func()
	stop        chan struct{}
	done        chan struct{}
}

// acquireUser returns the shared state of user, made on first use.
func (s *Server) acquireUser(name string) (*userState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u := s.users[name]; u != nil {
		u.refs++
		return u, nil
	}
	mbox, err := s.cfg.Store.Mailbox(name)
	if err != nil {
		return nil, err
	}
	u := &userState{s: s, name: name, mbox: mbox, refs: 1, folders: make(map[string]*folderState),
		stop: make(chan struct{}), done: make(chan struct{})}
	u.notify, u.unsubscribe = s.cfg.Store.Notify(name)
	s.users[name] = u
	go u.watch()
	return u, nil
}

func (s *Server) releaseUser(u *userState) {
	s.mu.Lock()
	u.refs--
	last := u.refs == 0
	if last {
		delete(s.users, u.name)
	}
	s.mu.Unlock()
	if last {
		u.unsubscribe()
		close(u.stop)
		<-u.done
	}
}

// watch syncs the open folders whenever the Store reports a change, so
// that IDLE sessions hear of it; with a poll interval, also those of the
// folders watched by IDLE that another process changed.
func (u *userState) watch() {
	defer close(u.done)
	var tick <-chan time.Time
	if every := u.s.cfg.PollInterval; every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-u.stop:
			return
		case <-u.notify:
			u.refreshAll()
		case <-tick:
			u.refreshIdle()
		}
	}
}

// refreshIdle syncs the folders some session is IDLE in whose files show
// a change (a few stats each).
func (u *userState) refreshIdle() {
	for _, f := range u.openFolders() {
		if f.idlers.Load() > 0 && f.f.Changed() {
			f.mu.Lock()
			f.refreshLocked()
			f.mu.Unlock()
		}
	}
}

func (u *userState) openFolders() []*folderState {
	u.mu.Lock()
	defer u.mu.Unlock()
	open := make([]*folderState, 0, len(u.folders))
	for _, f := range u.folders {
		open = append(open, f)
	}
	return open
}

func (u *userState) refreshAll() {
	for _, f := range u.openFolders() {
		f.mu.Lock()
		f.refreshLocked()
		f.mu.Unlock()
	}
}

// openFolder returns the shared state of the folder name (as the client
// spelled it), synced, with one more reference.
func (u *userState) openFolder(name string) (*folderState, error) {
	mf, err := u.mbox.Folder(name)
	if err != nil {
		return nil, err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if f := u.folders[mf.Name()]; f != nil {
		f.refs++
		return f, nil
	}
	f := &folderState{u: u, name: mf.Name(), f: mf, refs: 1, changed: make(chan struct{})}
	msgs, err := mf.Sync()
	if err != nil {
		return nil, err
	}
	f.msgs = make([]*message, 0, len(msgs))
	for _, m := range msgs {
		f.msgs = append(f.msgs, newMessage(m))
	}
	f.validity = mf.UIDValidity()
	f.tracker = imapserver.NewMailboxTracker(uint32(len(f.msgs)))
	u.folders[f.name] = f
	return f, nil
}

func (u *userState) closeFolder(f *folderState) {
	u.mu.Lock()
	defer u.mu.Unlock()
	f.refs--
	if f.refs == 0 && u.folders[f.name] == f {
		delete(u.folders, f.name)
	}
}

// openedFolder returns the shared state of a folder if some session has
// it selected (nil otherwise).
func (u *userState) openedFolder(canon string) *folderState {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.folders[canon]
}

// folderState is one selected folder, shared by the sessions that have it
// selected: the messages in sequence order, as every session has been (or
// will be, through the tracker) told of them.
type folderState struct {
	u        *userState
	name     string
	f        *maildir.Folder
	tracker  *imapserver.MailboxTracker
	validity uint32
	refs     int          // under u.mu
	idlers   atomic.Int32 // sessions in IDLE here

	mu      sync.Mutex
	msgs    []*message    // sorted by UID; len(msgs) is the tracker's count
	changed chan struct{} // closed (and replaced) when updates are queued
}

// changedLocked wakes the IDLE sessions after updates were queued.
func (f *folderState) changedLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// changes returns the channel the next queued update closes.
func (f *folderState) changes() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

// message is one message of a folderState. Its flags change under the
// folderState's mu; a copy is taken to use them outside.
type message struct {
	uid   imap.UID
	key   string
	flags []imap.Flag // system flags, sorted
	size  int64
	date  time.Time
	// envelope is the message's ENVELOPE once a FETCH has parsed it: a
	// message's content never changes, and clients ask for envelopes on
	// every folder listing, as Dovecot answers them from its cache.
	envelope atomic.Pointer[imap.Envelope]
}

func newMessage(m maildir.Message) *message {
	return &message{uid: imap.UID(m.UID), key: m.Key, flags: imapFlags(m.Flags), size: m.Size, date: m.InternalDate}
}

// imapFlags turns the Store's flags into IMAP flags: \Recent is left out
// (every session shares one view; RECENT is always 0).
func imapFlags(fl []string) []imap.Flag {
	out := make([]imap.Flag, 0, len(fl))
	for _, f := range fl {
		if strings.EqualFold(f, `\Recent`) {
			continue
		}
		out = append(out, imap.Flag(f))
	}
	slices.Sort(out)
	return out
}

// refreshLocked syncs the folder and queues, for every session, the
// expunges, flag changes and new messages it finds.
func (f *folderState) refreshLocked() error {
	msgs, err := f.f.Sync()
	if err != nil {
		return err
	}
	if v := f.f.UIDValidity(); v != f.validity {
		// The folder's UID list was lost and rebuilt: the sessions'
		// UIDs mean nothing now. They keep the old view until they
		// select again; new messages are not shown to them.
		f.u.s.log.Error("imap: UIDVALIDITY of a selected folder changed", "user", f.u.name, "folder", f.name, "old", f.validity, "new", v)
		return nil
	}
	// Merge by UID: gone, changed, new.
	var gone []int // indexes into f.msgs, ascending
	var keep []*message
	changed := make(map[*message]bool)
	i, j := 0, 0
	for i < len(f.msgs) || j < len(msgs) {
		switch {
		case j >= len(msgs) || (i < len(f.msgs) && f.msgs[i].uid < imap.UID(msgs[j].UID)):
			gone = append(gone, i)
			i++
		case i >= len(f.msgs) || imap.UID(msgs[j].UID) < f.msgs[i].uid:
			nm := newMessage(msgs[j])
			if len(f.msgs) == 0 || nm.uid > f.msgs[len(f.msgs)-1].uid {
				keep = append(keep, nm)
			}
			j++
		default:
			m := f.msgs[i]
			fl := imapFlags(msgs[j].Flags)
			if !slices.Equal(fl, m.flags) {
				m.flags = fl
				changed[m] = true
			}
			m.size, m.date = msgs[j].Size, msgs[j].InternalDate
			keep = append(keep, m)
			i++
			j++
		}
	}
	for k := len(gone) - 1; k >= 0; k-- {
		f.tracker.QueueExpunge(uint32(gone[k]) + 1)
	}
	old := len(f.msgs) - len(gone)
	f.msgs = keep
	if len(changed) > 0 {
		for seq, m := range f.msgs {
			if changed[m] {
				f.tracker.QueueMessageFlags(uint32(seq)+1, m.uid, slices.Clone(m.flags), nil)
			}
		}
	}
	// One EXISTS per new message: the tracker's sequence number mapping
	// only knows steps of one.
	for n := old + 1; n <= len(f.msgs); n++ {
		f.tracker.QueueNumMessages(uint32(n))
	}
	if len(gone) > 0 || len(changed) > 0 || len(f.msgs) > old {
		f.changedLocked()
	}
	return nil
}

// seqOf returns the sequence number (server view) of uid, 0 if absent.
func (f *folderState) seqOf(uid imap.UID) uint32 {
	i, ok := slices.BinarySearchFunc(f.msgs, uid, func(m *message, u imap.UID) int {
		switch {
		case m.uid < u:
			return -1
		case m.uid > u:
			return 1
		}
		return 0
	})
	if !ok {
		return 0
	}
	return uint32(i) + 1
}
