package move

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

var day = time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)

// fill gives alice's mailbox on c folders, subscriptions and messages
// with various flags and dates; it returns how many messages and bytes.
func fill(t *testing.T, c *imapclient.Client) (int, int64) {
	t.Helper()
	for _, f := range []string{"Archive", "Archive/2020", "Sent", "Empty"} {
		if err := c.Create(f, nil).Wait(); err != nil {
			t.Fatalf("CREATE %s: %v", f, err)
		}
	}
	for _, f := range []string{"INBOX", "Archive/2020", "Sent"} {
		if err := c.Subscribe(f).Wait(); err != nil {
			t.Fatalf("SUBSCRIBE %s: %v", f, err)
		}
	}
	msgs := []struct {
		mbox, id string
		date     time.Time
		flags    []imap.Flag
	}{
		{"INBOX", "m1", day, []imap.Flag{imap.FlagSeen}},
		{"INBOX", "m2", day.Add(time.Hour), []imap.Flag{imap.FlagFlagged, imap.FlagSeen}},
		{"INBOX", "m3", day.Add(2 * time.Hour), nil},
		{"Archive/2020", "a1", day.AddDate(-1, 0, 0), []imap.Flag{imap.FlagAnswered, imap.FlagSeen}},
		{"Sent", "s1", day.AddDate(0, 0, -3), []imap.Flag{imap.FlagSeen, imap.FlagDraft}},
	}
	var size int64
	for _, m := range msgs {
		put(t, c, m.mbox, m.id, m.date, m.flags...)
		size += int64(len(testMessage(m.id)))
	}
	return len(msgs), size
}

// TestMoveCopiesEverything: folders, subscriptions, messages with their
// flags and internal dates are on the new backend; alice logs in there
// and no longer on the old one, where her mailbox is left as it was.
func TestMoveCopiesEverything(t *testing.T) {
	e := newEnv(t)
	n, size := fill(t, e.master(e.old))
	var progress strings.Builder
	cfg := e.config(nil)
	cfg.Progress = &progress
	sum, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("move: %v\n%s", err, progress.String())
	}
	if sum.Messages != n || sum.FirstPass != n || sum.Bytes != size || sum.Folders != 5 || sum.FinalPasses != 1 {
		t.Errorf("summary %+v: want %d messages in the first pass, %d bytes, 5 folders, one final pass", sum, n, size)
	}
	sameMailbox(t, e.master(e.old), e.login(e.new))
	if got := len(folderMsgs(t, e.master(e.old), "INBOX")); got != 3 {
		t.Errorf("old INBOX holds %d messages after the move, want the 3 left as they were", got)
	}
	c, err := imapclient.DialInsecure(e.old.addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(user, userPass).Wait(); err == nil {
		t.Error("alice still logs in on the old backend")
	}
	if !strings.Contains(progress.String(), "switched") {
		t.Errorf("progress does not tell of the switch:\n%s", progress.String())
	}
}

// TestMoveDeleteOld: with DeleteOld the old mailbox is emptied of what
// was copied, and its folders deleted.
func TestMoveDeleteOld(t *testing.T) {
	e := newEnv(t)
	n, _ := fill(t, e.master(e.old))
	cfg := e.config(nil)
	cfg.DeleteOld = true
	sum, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if sum.DeletedOld != n {
		t.Errorf("%d messages deleted on the old backend, want %d", sum.DeletedOld, n)
	}
	old := e.master(e.old)
	if got := folderNames(t, old, false); len(got) != 1 || got[0] != "INBOX" {
		t.Errorf("old folders %q, want INBOX only", got)
	}
	if got := len(folderMsgs(t, old, "INBOX")); got != 0 {
		t.Errorf("old INBOX holds %d messages", got)
	}
	if got := len(folderMsgs(t, e.login(e.new), "INBOX")); got != 3 {
		t.Errorf("new INBOX holds %d messages, want 3", got)
	}
}

// TestMoveRefusesNonEmptyTarget: a target with a message in any folder
// is refused before anything is copied or switched, so that a second run
// cannot copy everything twice.
func TestMoveRefusesNonEmptyTarget(t *testing.T) {
	e := newEnv(t)
	fill(t, e.master(e.old))
	nc := e.master(e.new)
	if err := nc.Create("Later", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	put(t, nc, "Later", "x1", day)
	switched := false
	cfg := e.config(func() { switched = true })
	_, err := Run(context.Background(), cfg)
	if !errors.Is(err, ErrTargetNotEmpty) || !strings.Contains(err.Error(), `"Later"`) {
		t.Fatalf("move to a target holding a message: %v, want ErrTargetNotEmpty naming the folder", err)
	}
	if u, _ := e.dir.get(user); switched || u.Get("tohost") != "be1" {
		t.Errorf("switched (tohost %q) though the move was refused", u.Get("tohost"))
	}
	if got := folderNames(t, e.master(e.new), false); len(got) != 2 {
		t.Errorf("target folders %q: something was copied", got)
	}
}

// TestMoveFinalPass: what changes on the old backend between the first
// pass and the end of the settle time (here: right after the switch) is
// brought over: new messages and folders, flag changes, expunges, a
// renamed folder. A flag the user set on the new backend meanwhile stays.
func TestMoveFinalPass(t *testing.T) {
	e := newEnv(t)
	old := e.master(e.old)
	fill(t, old)
	if err := old.Create("Work", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	put(t, old, "Work", "w1", day)
	hook := func() {
		put(t, old, "INBOX", "m4", day.Add(3*time.Hour), imap.FlagSeen)
		if err := old.Create("Late", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		put(t, old, "Late", "l1", day)
		inbox := folderUIDs(t, old, "INBOX")
		if _, err := old.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		store(t, old, inbox["m1"], imap.StoreFlagsDel, imap.FlagSeen)
		store(t, old, inbox["m1"], imap.StoreFlagsAdd, imap.FlagFlagged)
		store(t, old, inbox["m2"], imap.StoreFlagsAdd, imap.FlagAnswered)
		store(t, old, inbox["m3"], imap.StoreFlagsAdd, imap.FlagDeleted)
		if err := old.Expunge().Close(); err != nil {
			t.Fatal(err)
		}
		if err := old.Rename("Archive/2020", "Archive/Old", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		// alice, on her new backend already, flags s1 there.
		nc := e.login(e.new)
		sent := folderUIDs(t, nc, "Sent")
		if _, err := nc.Select("Sent", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		store(t, nc, sent["s1"], imap.StoreFlagsAdd, imap.FlagFlagged)
	}
	sum, err := Run(context.Background(), e.config(hook))
	if err != nil {
		t.Fatal(err)
	}
	if sum.FlagsSynced != 2 || sum.Expunged != 2 || sum.FoldersGone != 1 || sum.Messages != 6+3 {
		t.Errorf("summary %+v: want 2 flag changes, 2 expunged (m3 and a1 under its old folder name), 1 folder gone, 9 copies", sum)
	}
	nc := e.login(e.new)
	if m := folderMsgs(t, nc, "Sent")["s1"]; m.flags != `\Draft \Flagged \Seen` {
		t.Errorf("s1 on the new backend: flags %q, want alice's \\Flagged kept", m.flags)
	}
	s1 := folderUIDs(t, nc, "Sent")["s1"]
	if _, err := nc.Select("Sent", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	store(t, nc, s1, imap.StoreFlagsDel, imap.FlagFlagged)
	sameMailbox(t, e.master(e.old), nc)
	if _, ok := folderMsgs(t, nc, "INBOX")["m3"]; ok {
		t.Error("m3, expunged on the old backend, is on the new one")
	}
}

// TestMoveUIDValidityChanged: a folder deleted and made again on the old
// backend during the move has new UIDs; the final pass stops with an
// error naming the step and folder rather than guess.
func TestMoveUIDValidityChanged(t *testing.T) {
	e := newEnv(t)
	old := e.master(e.old)
	fill(t, old)
	hook := func() {
		if err := old.Delete("Sent").Wait(); err != nil {
			t.Fatal(err)
		}
		if err := old.Create("Sent", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		put(t, old, "Sent", "s2", day)
	}
	_, err := Run(context.Background(), e.config(hook))
	if err == nil || !strings.Contains(err.Error(), "UIDVALIDITY") || !strings.Contains(err.Error(), `final pass 1: folder "Sent"`) {
		t.Fatalf("move with UIDVALIDITY changed: %v", err)
	}
}

// folderUIDs maps the Message-IDs of mbox to UIDs.
func folderUIDs(t *testing.T, c *imapclient.Client, mbox string) map[string]imap.UID {
	t.Helper()
	out := map[string]imap.UID{}
	for id, m := range folderMsgs(t, c, mbox) {
		out[id] = m.uid
	}
	return out
}

// store changes the flags of uid in the folder selected (read-write).
func store(t *testing.T, c *imapclient.Client, uid imap.UID, op imap.StoreFlagsOp, flags ...imap.Flag) {
	t.Helper()
	if err := c.Store(imap.UIDSetNum(uid), &imap.StoreFlags{Op: op, Silent: true, Flags: flags}, nil).Close(); err != nil {
		t.Fatalf("STORE %d: %v", uid, err)
	}
}
