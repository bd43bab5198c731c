package move

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// folder is what has been copied of one folder.
type folder struct {
	name     string
	validity uint32 // the old side's UIDVALIDITY; 0 until first seen
	last     imap.UID
	copied   map[imap.UID]copied // by the old side's UID
	gone     bool                // no longer on the old side
}

// copied is one message copied: its UID on the target, and its flags on
// the old side when they were last brought over (what a later change on
// the old side is told apart from).
type copied struct {
	uid   imap.UID
	flags []imap.Flag
}

// oldMsg is a message as listed on the old side.
type oldMsg struct {
	uid   imap.UID
	flags []imap.Flag
	date  time.Time
}

// syncFolder copies the folder's messages not copied yet, brings over
// the flags changed on the old side since the copy, and expunges on the
// target the messages gone from the old side.
func (m *mover) syncFolder(step string, f *folder) error {
	where := fmt.Sprintf("%s: folder %q", step, f.name)
	sel, err := m.old.selectFolder(f.name, true)
	if err != nil {
		return fmt.Errorf("%s: examine on the old backend: %w", where, err)
	}
	if f.validity != 0 && sel.UIDValidity != f.validity {
		return fmt.Errorf("%s: UIDVALIDITY changed on the old backend (%d, was %d): the UIDs copied no longer name the same messages",
			where, sel.UIDValidity, f.validity)
	}
	f.validity = sel.UIDValidity
	msgs, err := m.old.list(sel.NumMessages)
	if err != nil {
		return fmt.Errorf("%s: fetch the message list on the old backend: %w", where, err)
	}
	present := make(map[imap.UID]bool, len(msgs))
	var changed []oldMsg
	for _, om := range msgs {
		present[om.uid] = true
		if c, ok := f.copied[om.uid]; ok {
			if !sameFlags(c.flags, om.flags) {
				changed = append(changed, om)
			}
			continue
		}
		if om.uid <= f.last {
			continue // below what was copied: listed by a pass already
		}
		if err := m.copyMessage(where, f, om); err != nil {
			return err
		}
	}
	var gone []imap.UID
	for uid := range f.copied {
		if !present[uid] {
			gone = append(gone, uid)
		}
	}
	if len(changed) == 0 && len(gone) == 0 {
		return nil
	}
	if _, err := m.new.selectFolder(f.name, false); err != nil {
		return fmt.Errorf("%s: select on the new backend: %w", where, err)
	}
	if err := m.syncFlags(where, f, changed); err != nil {
		return err
	}
	return m.expungeGone(where, f, gone)
}

// list returns the selected folder's messages (n of them, as SELECT
// said): UID, flags, internal date.
func (cn *conn) list(n uint32) ([]oldMsg, error) {
	if n == 0 {
		return nil, nil
	}
	all := imap.UIDSet{imap.UIDRange{Start: 1, Stop: 0}} // 1:*
	bufs, err := cn.c.Fetch(all, &imap.FetchOptions{UID: true, Flags: true, InternalDate: true}).Collect()
	if err != nil {
		return nil, err
	}
	msgs := make([]oldMsg, 0, len(bufs))
	for _, b := range bufs {
		msgs = append(msgs, oldMsg{uid: b.UID, flags: keptFlags(b.Flags), date: b.InternalDate})
	}
	slices.SortFunc(msgs, func(a, b oldMsg) int { return cmp.Compare(a.uid, b.uid) })
	return msgs, nil
}

// copyMessage streams one message from the old side into an APPEND on
// the target: one message at a time, never held whole in memory.
func (m *mover) copyMessage(where string, f *folder, om oldMsg) error {
	where = fmt.Sprintf("%s: uid %d", where, om.uid)
	cmd := m.old.c.Fetch(imap.UIDSetNum(om.uid), &imap.FetchOptions{
		UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
	var newUID imap.UID
	var size int64
	var aerr error
	found := false
	if msg := cmd.Next(); msg != nil {
		for item := msg.Next(); item != nil; item = msg.Next() {
			body, ok := item.(imapclient.FetchItemDataBodySection)
			if !ok || body.Literal == nil || found {
				continue
			}
			found = true
			size = body.Literal.Size()
			newUID, aerr = m.appendMessage(f.name, om, body.Literal)
		}
	}
	if err := cmd.Close(); err != nil {
		return fmt.Errorf("%s: fetch on the old backend: %w", where, err)
	}
	if aerr != nil {
		return fmt.Errorf("%s: append on the new backend: %w", where, aerr)
	}
	if !found {
		return nil // expunged since the list was fetched: nothing to copy
	}
	f.copied[om.uid] = copied{uid: newUID, flags: om.flags}
	f.last = max(f.last, om.uid)
	m.sum.Messages++
	m.sum.Bytes += size
	return nil
}

// appendMessage appends the message read from lit to the target's
// folder with om's flags and date, and returns its UID there.
func (m *mover) appendMessage(name string, om oldMsg, lit imap.LiteralReader) (imap.UID, error) {
	cmd := m.new.c.Append(name, lit.Size(), &imap.AppendOptions{Flags: om.flags, Time: om.date})
	_, err := io.Copy(cmd, lit)
	if cerr := cmd.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		// The literal is cut short: the connection is of no further use.
		m.new.close()
		return 0, err
	}
	data, err := cmd.Wait()
	if err != nil {
		return 0, err
	}
	if data.UID == 0 {
		return 0, fmt.Errorf("no APPENDUID in the reply: the new backend does not say which UID the message got")
	}
	return data.UID, nil
}

// syncFlags changes, on the target, the flags of messages that changed on
// the old side since they were copied, by the same change: a flag set or
// cleared on the target by the user since the switch stays so unless the
// old side changed that same flag.
func (m *mover) syncFlags(where string, f *folder, changed []oldMsg) error {
	for _, om := range changed {
		c := f.copied[om.uid]
		added, removed := flagDiff(c.flags, om.flags)
		for _, op := range []struct {
			op    imap.StoreFlagsOp
			flags []imap.Flag
		}{{imap.StoreFlagsAdd, added}, {imap.StoreFlagsDel, removed}} {
			if len(op.flags) == 0 {
				continue
			}
			err := m.new.c.Store(imap.UIDSetNum(c.uid), &imap.StoreFlags{Op: op.op, Silent: true, Flags: op.flags}, nil).Close()
			if err != nil {
				return fmt.Errorf("%s: uid %d (uid %d on the new backend): store flags: %w", where, om.uid, c.uid, err)
			}
		}
		c.flags = om.flags
		f.copied[om.uid] = c
		m.sum.FlagsSynced++
	}
	return nil
}

// expungeGone expunges on the target the copies of the messages gone
// from the old side (gone: their old UIDs), and only those.
func (m *mover) expungeGone(where string, f *folder, gone []imap.UID) error {
	if len(gone) == 0 {
		return nil
	}
	var set imap.UIDSet
	for _, uid := range gone {
		set.AddNum(f.copied[uid].uid)
	}
	deleted := &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}
	if err := m.new.c.Store(set, deleted, nil).Close(); err != nil {
		return fmt.Errorf("%s: flag \\Deleted the messages gone from the old backend (%v on the new one): %w", where, set, err)
	}
	if err := m.new.c.UIDExpunge(set).Close(); err != nil {
		return fmt.Errorf("%s: expunge the messages gone from the old backend (%v on the new one): %w", where, set, err)
	}
	for _, uid := range gone {
		delete(f.copied, uid)
	}
	m.sum.Expunged += len(gone)
	return nil
}

// folderGone handles a folder no longer on the old side (deleted, or
// renamed: then it comes back under its new name as a new folder): its
// copies are expunged on the target, and the folder deleted there if
// nothing else is in it.
func (m *mover) folderGone(step string, f *folder) error {
	where := fmt.Sprintf("%s: folder %q (gone from the old backend)", step, f.name)
	f.gone = true
	m.sum.FoldersGone++
	if len(f.copied) > 0 {
		if _, err := m.new.selectFolder(f.name, false); err != nil {
			return fmt.Errorf("%s: select on the new backend: %w", where, err)
		}
		gone := make([]imap.UID, 0, len(f.copied))
		for uid := range f.copied {
			gone = append(gone, uid)
		}
		if err := m.expungeGone(where, f, gone); err != nil {
			return err
		}
	}
	return m.deleteIfEmpty(where, m.new, f.name)
}

// deleteIfEmpty deletes a folder that holds no message, INBOX and folders
// with children aside.
func (m *mover) deleteIfEmpty(where string, cn *conn, name string) error {
	if strings.EqualFold(name, "INBOX") {
		return nil
	}
	st, err := cn.c.Status(name, &imap.StatusOptions{NumMessages: true}).Wait()
	if err != nil {
		return fmt.Errorf("%s: status on the %s backend: %w", where, cn.side, err)
	}
	if st.NumMessages == nil || *st.NumMessages > 0 {
		return nil
	}
	if cn.selected == name {
		if err := cn.c.Unselect().Wait(); err != nil {
			return fmt.Errorf("%s: unselect on the %s backend: %w", where, cn.side, err)
		}
		cn.selected = ""
	}
	// A folder with children stays: deleting it would not remove them.
	kids, err := cn.c.List("", name+"/%", nil).Collect()
	if err != nil {
		return fmt.Errorf("%s: list children on the %s backend: %w", where, cn.side, err)
	}
	if len(kids) > 0 {
		return nil
	}
	if err := cn.c.Delete(name).Wait(); err != nil {
		return fmt.Errorf("%s: delete on the %s backend: %w", where, cn.side, err)
	}
	return nil
}

// deleteOld expunges from the old mailbox the messages copied, and
// deletes the folders left empty, children first.
func (m *mover) deleteOld() error {
	for i := len(m.order) - 1; i >= 0; i-- {
		f := m.folders[m.order[i]]
		if f.gone {
			continue
		}
		where := fmt.Sprintf("delete the old mailbox: folder %q", f.name)
		if len(f.copied) > 0 {
			if _, err := m.old.selectFolder(f.name, false); err != nil {
				return fmt.Errorf("%s: select on the old backend: %w", where, err)
			}
			var set imap.UIDSet
			for uid := range f.copied {
				set.AddNum(uid)
			}
			deleted := &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}
			if err := m.old.c.Store(set, deleted, nil).Close(); err != nil {
				return fmt.Errorf("%s: flag \\Deleted: %w", where, err)
			}
			if err := m.old.c.UIDExpunge(set).Close(); err != nil {
				return fmt.Errorf("%s: expunge: %w", where, err)
			}
			m.sum.DeletedOld += len(f.copied)
		}
		if err := m.deleteIfEmpty(where, m.old, f.name); err != nil {
			return err
		}
	}
	return nil
}

// keptFlags drops \Recent, which no client may set.
func keptFlags(flags []imap.Flag) []imap.Flag {
	out := make([]imap.Flag, 0, len(flags))
	for _, fl := range flags {
		if !strings.EqualFold(string(fl), `\Recent`) {
			out = append(out, fl)
		}
	}
	slices.Sort(out)
	return out
}

func sameFlags(a, b []imap.Flag) bool {
	added, removed := flagDiff(a, b)
	return len(added) == 0 && len(removed) == 0
}

// flagDiff returns the flags of now not in before, and those of before
// not in now (case aside, as IMAP flags are).
func flagDiff(before, now []imap.Flag) (added, removed []imap.Flag) {
	has := func(set []imap.Flag, f imap.Flag) bool {
		return slices.ContainsFunc(set, func(g imap.Flag) bool { return strings.EqualFold(string(f), string(g)) })
	}
	for _, f := range now {
		if !has(before, f) {
			added = append(added, f)
		}
	}
	for _, f := range before {
		if !has(now, f) {
			removed = append(removed, f)
		}
	}
	return added, removed
}
