package maildir

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestFlagsInFileNames(t *testing.T) {
	s, root := openStore(t)
	f := mustFolder(t, s, "fay", "INBOX")
	key, _ := s.Deliver("fay", strings.NewReader("m"))
	mustSync(t, f)
	cur := filepath.Join(root, "_", "fay", "cur")
	if err := f.SetFlags(1, []string{`\Seen`, `\Answered`, `\Deleted`, `\Draft`, `\Flagged`, `\Recent`, "$Junk"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(cur, key+":2,DFRST")); err != nil {
		t.Fatal(err)
	}
	// Letters that are not IMAP system flags (P, Dovecot keywords) stay.
	os.Rename(filepath.Join(cur, key+":2,DFRST"), filepath.Join(cur, key+":2,FPRSTa"))
	if err := f.SetFlags(1, []string{`\seen`}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(cur, key+":2,PSa")); err != nil {
		t.Fatal(err)
	}
	// Another tool sets flags by renaming; Sync reads them.
	os.Rename(filepath.Join(cur, key+":2,PSa"), filepath.Join(cur, key+":2,FRT"))
	g := mustFolder(t, s, "fay", "INBOX")
	msgs := mustSync(t, g)
	if want := []string{`\Flagged`, `\Answered`, `\Deleted`}; len(msgs) != 1 || !reflect.DeepEqual(msgs[0].Flags, want) {
		t.Fatalf("flags %+v, want %v", msgs, want)
	}
	// The session that first saw the message still has it \Recent.
	msgs = mustSync(t, f)
	if want := []string{`\Flagged`, `\Answered`, `\Deleted`, `\Recent`}; !reflect.DeepEqual(msgs[0].Flags, want) {
		t.Fatalf("flags %v, want %v", msgs[0].Flags, want)
	}
	if got := readMsg(t, f, 1); got != "m" {
		t.Fatalf("read %q after renames", got)
	}
	if err := f.SetFlags(7, nil); err != ErrNoMessage {
		t.Fatalf("SetFlags(7): %v", err)
	}
}

func TestAppendCopyExpunge(t *testing.T) {
	s, root := openStore(t)
	mb, err := s.Mailbox("gus@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if err := mb.Create("Archive"); err != nil {
		t.Fatal(err)
	}
	inbox, _ := mb.Folder("INBOX")
	arch, err := mb.Folder("Archive")
	if err != nil {
		t.Fatal(err)
	}
	date := time.Date(2020, 2, 3, 4, 5, 6, 0, time.UTC)
	rec := record(s, root)
	uid, err := inbox.Append(strings.NewReader("appended"), []string{`\Seen`, `\Draft`}, date)
	if err != nil || uid != 1 || inbox.UIDNext() != 2 {
		t.Fatalf("Append: %d %v, UIDNext %d", uid, err, inbox.UIDNext())
	}
	// Durable like a delivery (into cur/, flags set), then the UID list.
	ops := rec.take()
	if len(ops) < 4 || !strings.HasPrefix(ops[0], "fsync example.com/gus/tmp/") || !strings.HasPrefix(ops[1], "link example.com/gus/tmp/") ||
		!strings.HasSuffix(ops[1], ":2,DS") || ops[2] != "fsyncdir example.com/gus/cur" || !strings.HasPrefix(ops[3], "remove example.com/gus/tmp/") {
		t.Fatalf("Append calls:\n%s", strings.Join(ops, "\n"))
	}
	s.Deliver("gus@example.com", strings.NewReader("delivered"))
	msgs := mustSync(t, inbox)
	if len(msgs) != 2 || !msgs[0].InternalDate.Equal(date) || !reflect.DeepEqual(msgs[0].Flags, []string{`\Draft`, `\Seen`}) || msgs[1].UID != 2 {
		t.Fatalf("after Append: %+v", msgs)
	}

	m, err := inbox.CopyTo([]uint32{2, 1, 99}, arch)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m, map[uint32]uint32{1: 1, 2: 2}) {
		t.Fatalf("CopyTo map %v", m)
	}
	am := mustSync(t, arch)
	if len(am) != 2 || readMsg(t, arch, 1) != "appended" || readMsg(t, arch, 2) != "delivered" ||
		!reflect.DeepEqual(am[0].Flags, []string{`\Draft`, `\Seen`}) || !am[0].InternalDate.Equal(date) {
		t.Fatalf("copies: %+v", am)
	}
	if am[0].Key == msgs[0].Key {
		t.Fatal("a copy has the key of its original")
	}
	a, _ := arch.Open(1)
	b, _ := inbox.Open(1)
	ai, _ := a.Stat()
	bi, _ := b.Stat()
	a.Close()
	b.Close()
	if !os.SameFile(ai, bi) {
		t.Fatal("the copy is not a hard link")
	}

	rec.take()
	if err := inbox.Expunge([]uint32{1, 42}); err != nil {
		t.Fatal(err)
	}
	// The removal is durable before the list forgets the UID.
	want := []string{
		"remove example.com/gus/cur/" + msgs[0].Key + ":2,DS",
		"fsyncdir example.com/gus/cur",
		"fsync example.com/gus/" + uidListTmp,
		"rename example.com/gus/" + uidListTmp + " example.com/gus/" + uidListName,
		"fsyncdir example.com/gus",
	}
	if ops := rec.take(); strings.Join(ops, "\n") != strings.Join(want, "\n") {
		t.Fatalf("Expunge calls:\n%s\nwant:\n%s", strings.Join(ops, "\n"), strings.Join(want, "\n"))
	}
	if _, err := inbox.Open(1); err != ErrNoMessage {
		t.Fatalf("Open of an expunged message: %v", err)
	}
	msgs = mustSync(t, inbox)
	if len(msgs) != 1 || msgs[0].UID != 2 {
		t.Fatalf("after Expunge: %+v", msgs)
	}
	ents, _ := os.ReadDir(filepath.Join(root, "example.com", "gus", "cur"))
	if len(ents) != 1 {
		t.Fatalf("cur/ after Expunge: %v", ents)
	}
	if readMsg(t, arch, 1) != "appended" {
		t.Fatal("the copy went with the original")
	}
	// An appended UID is never given again, even after an Expunge of the
	// last one and a restart.
	inbox.Expunge([]uint32{2})
	s2, _ := Open(root, Options{})
	g := mustFolder(t, s2, "gus@example.com", "INBOX")
	if g.UIDNext() != 3 {
		t.Fatalf("UIDNext %d after expunging all", g.UIDNext())
	}
	if n, err := s.Usage("gus@example.com"); err != nil || n != int64(len("appended")+len("delivered")) {
		t.Fatalf("Usage %d %v", n, err)
	}
}

func TestFolders(t *testing.T) {
	s, root := openStore(t)
	udir := filepath.Join(root, "example.com", "hal")
	mb, err := s.Mailbox("hal@example.com")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"Work", "Work/Projects", "Work/Projects/Old", "a.b", "100%", "Workshop"} {
		if err := mb.Create(n); err != nil {
			t.Fatalf("Create(%q): %v", n, err)
		}
	}
	for _, d := range []string{".Work", ".Work.Projects", ".Work.Projects.Old", ".a%2Eb", ".100%25"} {
		if _, err := os.Stat(filepath.Join(udir, d, maildirFolder)); err != nil {
			t.Fatal(err)
		}
		for _, sub := range []string{"cur", "new", "tmp"} {
			if _, err := os.Stat(filepath.Join(udir, d, sub)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := mb.Create("Work"); err != ErrExists {
		t.Fatalf("Create existing: %v", err)
	}
	if err := mb.Create("inbox"); err != ErrExists {
		t.Fatalf("Create INBOX: %v", err)
	}
	names, _ := mb.Folders()
	want := []string{"INBOX", "100%", "Work", "Work/Projects", "Work/Projects/Old", "Workshop", "a.b"}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("Folders %q, want %q", names, want)
	}

	w := mustFolder(t, s, "hal@example.com", "Work/Projects")
	w.Append(strings.NewReader("x"), nil, time.Time{})
	validity := w.UIDValidity()

	// Rename moves the children, not a sibling with the same prefix.
	if err := mb.Rename("Work", "Jobs"); err != nil {
		t.Fatal(err)
	}
	names, _ = mb.Folders()
	want = []string{"INBOX", "100%", "Jobs", "Jobs/Projects", "Jobs/Projects/Old", "Workshop", "a.b"}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("after Rename: %q, want %q", names, want)
	}
	j := mustFolder(t, s, "hal@example.com", "Jobs/Projects")
	if msgs := mustSync(t, j); j.UIDValidity() != validity || len(msgs) != 1 || msgs[0].UID != 1 {
		t.Fatalf("renamed folder: validity %d (was %d), %+v", j.UIDValidity(), validity, msgs)
	}
	if err := mb.Rename("Jobs", "a.b"); err != ErrExists {
		t.Fatalf("Rename onto a folder: %v", err)
	}
	if err := mb.Rename("Nope", "Other"); err != ErrNoFolder {
		t.Fatalf("Rename missing: %v", err)
	}
	if err := mb.Rename("Jobs", "INBOX"); err != ErrExists {
		t.Fatalf("Rename to INBOX: %v", err)
	}
	// Into its own child: the names are taken before anything moves.
	if err := mb.Rename("Jobs/Projects", "Jobs/Projects/New"); err != nil {
		t.Fatal(err)
	}
	names, _ = mb.Folders()
	want = []string{"INBOX", "100%", "Jobs", "Jobs/Projects/New", "Jobs/Projects/New/Old", "Workshop", "a.b"}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("after Rename into a child: %q, want %q", names, want)
	}

	if err := mb.Delete("Jobs"); err != nil {
		t.Fatal(err)
	}
	if _, err := mb.Folder("Jobs"); err != ErrNoFolder {
		t.Fatalf("Folder after Delete: %v", err)
	}
	if _, err := mb.Folder("Jobs/Projects/New"); err != nil {
		t.Fatalf("child after Delete: %v", err)
	}
	if err := mb.Delete("Jobs"); err != ErrNoFolder {
		t.Fatalf("Delete twice: %v", err)
	}
	if err := mb.Delete("INBOX"); err == nil {
		t.Fatal("INBOX deleted")
	}
	if ents, _ := os.ReadDir(filepath.Join(udir, "tmp")); len(ents) != 0 {
		t.Fatalf("tmp/ after Create and Delete: %v", ents)
	}
	// A folder created again gets a new UIDVALIDITY.
	mb.Create("Jobs")
	if f := mustFolder(t, s, "hal@example.com", "Jobs"); f.UIDValidity() == validity {
		t.Fatal("UIDVALIDITY reused")
	}
	if _, err := mb.Folder("Missing"); err != ErrNoFolder {
		t.Fatalf("Folder(Missing): %v", err)
	}
}

func TestRenameInbox(t *testing.T) {
	s, _ := openStore(t)
	mb, _ := s.Mailbox("ivy")
	in := mustFolder(t, s, "ivy", "INBOX")
	s.Deliver("ivy", strings.NewReader("one"))
	s.Deliver("ivy", strings.NewReader("two"))
	before := mustSync(t, in)
	if err := mb.Rename("Inbox", "Old"); err != nil {
		t.Fatal(err)
	}
	if msgs := mustSync(t, in); len(msgs) != 0 || in.UIDNext() != 3 {
		t.Fatalf("INBOX after rename: %+v next %d", msgs, in.UIDNext())
	}
	old := mustFolder(t, s, "ivy", "Old")
	after := mustSync(t, old)
	if len(after) != 2 || after[0].UID != before[0].UID || after[1].Key != before[1].Key || readMsg(t, old, 2) != "two" {
		t.Fatalf("Old: %+v", after)
	}
	if old.UIDValidity() == in.UIDValidity() {
		t.Fatal("Old has the UIDVALIDITY of INBOX")
	}
	if err := mb.Rename("INBOX", "Old"); err != ErrExists {
		t.Fatalf("Rename INBOX onto a folder: %v", err)
	}
}

func TestSubscriptions(t *testing.T) {
	s, root := openStore(t)
	mb, _ := s.Mailbox("jo")
	for _, n := range []string{"b", "inbox", "a/c", "b"} {
		if err := mb.Subscribe(n, true); err != nil {
			t.Fatal(err)
		}
	}
	if err := mb.Subscribe("b", false); err != nil {
		t.Fatal(err)
	}
	if err := mb.Subscribe("../x", true); err != ErrBadName {
		t.Fatalf("Subscribe bad name: %v", err)
	}
	got, err := mb.Subscriptions()
	if err != nil || !reflect.DeepEqual(got, []string{"INBOX", "a/c"}) {
		t.Fatalf("Subscriptions %q %v", got, err)
	}
	b, _ := os.ReadFile(filepath.Join(root, "_", "jo", subsFile))
	if string(b) != "INBOX\na/c\n" {
		t.Fatalf("subscriptions file %q", b)
	}
}

func TestBadNames(t *testing.T) {
	s, root := openStore(t)
	for _, u := range []string{"", "..", ".", "a/b", `a\b`, "../x", "x@..", "x@.", "x@", "@x", ".x@y", "a@b@c", "x@_", "a\x00b", "a\nb", "x@a/b", "\xff"} {
		if _, err := s.Mailbox(u); err != ErrBadName {
			t.Errorf("Mailbox(%q): %v", u, err)
		}
		if _, err := s.Deliver(u, strings.NewReader("x")); err != ErrBadName {
			t.Errorf("Deliver(%q): %v", u, err)
		}
	}
	mb, _ := s.Mailbox("kim")
	for _, n := range []string{"", "/", "/a", "a/", "a//b", "a\x00", "a\tb", "..", "../x", "a/../b", "a/.", `a\b`, "\xff", strings.Repeat("x", 300)} {
		if err := mb.Create(n); err != ErrBadName {
			t.Errorf("Create(%q): %v", n, err)
		}
		if _, err := mb.Folder(n); err != ErrBadName {
			t.Errorf("Folder(%q): %v", n, err)
		}
	}
	// Dots are escaped: a level cannot reach out of the Maildir.
	if err := mb.Create("a/..b"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "_", "kim", ".a.%2E%2Eb")); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(root)
	if len(ents) != 1 || ents[0].Name() != "_" {
		t.Fatalf("root holds %v", ents)
	}
}

func TestLockPOP3(t *testing.T) {
	s, _ := openStore(t)
	mb, _ := s.Mailbox("lee@example.com")
	unlock, err := mb.LockPOP3()
	if err != nil {
		t.Fatal(err)
	}
	mb2, _ := s.Mailbox("LEE@example.com")
	if _, err := mb2.LockPOP3(); err != ErrInUse {
		t.Fatalf("second POP3 lock: %v", err)
	}
	other, _ := s.Mailbox("max@example.com")
	u2, err := other.LockPOP3()
	if err != nil {
		t.Fatalf("another user: %v", err)
	}
	u2()
	unlock()
	unlock() // twice is harmless
	u3, err := mb2.LockPOP3()
	if err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	u3()
}

func TestNotify(t *testing.T) {
	s, _ := openStore(t)
	ch, cancel := s.Notify("Nia@example.com")
	other, cancelOther := s.Notify("zed@example.com")
	defer cancelOther()
	fired := func(c <-chan struct{}) bool {
		select {
		case <-c:
			return true
		default:
			return false
		}
	}
	// Notifications are sent before Deliver returns.
	s.Deliver("nia@example.com", strings.NewReader("1"))
	s.Deliver("nia@example.com", strings.NewReader("2"))
	if !fired(ch) {
		t.Fatal("no notification after Deliver")
	}
	if fired(ch) {
		t.Fatal("notifications not coalesced")
	}
	if fired(other) {
		t.Fatal("another user notified")
	}
	f := mustFolder(t, s, "nia@example.com", "INBOX")
	mustSync(t, f)
	if !fired(ch) {
		t.Fatal("no notification after a Sync that gave UIDs")
	}
	mustSync(t, f)
	if fired(ch) {
		t.Fatal("notification after a Sync that changed nothing")
	}
	f.SetFlags(1, []string{`\Seen`})
	if !fired(ch) {
		t.Fatal("no notification after SetFlags")
	}
	f.Append(strings.NewReader("3"), nil, time.Time{})
	if !fired(ch) {
		t.Fatal("no notification after Append")
	}
	f.Expunge([]uint32{1})
	if !fired(ch) {
		t.Fatal("no notification after Expunge")
	}
	cancel()
	s.Deliver("nia@example.com", strings.NewReader("4"))
	if fired(ch) {
		t.Fatal("notification after unsubscribing")
	}
}

// TestOpenCleansTmp: Open removes tmp/ files of dead processes of this
// host and old files of any host, and keeps the rest.
func TestOpenCleansTmp(t *testing.T) {
	root := t.TempDir()
	s, _ := Open(root, Options{Hostname: "mx1.example"})
	mb, _ := s.Mailbox("oz")
	mb.Create("Sent")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := cmd.Process.Pid
	now := time.Now().Unix()
	deadDir := fmt.Sprintf("%d.M2P%dQ2.mx1.example", now, dead)
	files := map[string]bool{ // name -> kept
		keyName(now, dead, "mx1.example"):             false,
		keyName(now, os.Getpid(), "mx1.example"):      true,
		keyName(now-3600, os.Getpid(), "mx1.example"): false, // an earlier process with our pid
		keyName(now, dead, "mx2.example"):             true,
		keyName(now-40*3600, dead, "mx2.example"):     false,
		"foreign-file": true,
	}
	for _, dir := range []string{filepath.Join(root, "_", "oz", "tmp"), filepath.Join(root, "_", "oz", ".Sent", "tmp")} {
		for name := range files {
			p := filepath.Join(dir, name)
			os.WriteFile(p, []byte("partial"), 0o600)
			if sec, _, _, _, ok := keyParts(name); ok && sec < now {
				ts := time.Unix(sec, 0)
				os.Chtimes(p, ts, ts)
			}
		}
		os.MkdirAll(filepath.Join(dir, deadDir, "cur"), 0o700)
	}
	if _, err := Open(root, Options{Hostname: "mx1.example"}); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{filepath.Join(root, "_", "oz", "tmp"), filepath.Join(root, "_", "oz", ".Sent", "tmp")} {
		for name, kept := range files {
			_, err := os.Stat(filepath.Join(dir, name))
			if kept != (err == nil) {
				t.Errorf("%s/%s: kept %v, stat %v", dir, name, kept, err)
			}
		}
		if _, err := os.Stat(filepath.Join(dir, deadDir)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("directory left in tmp/: %v", err)
		}
	}
}

func keyName(sec int64, pid int, host string) string {
	return fmt.Sprintf("%d.M1P%dQ1.%s", sec, pid, host)
}
