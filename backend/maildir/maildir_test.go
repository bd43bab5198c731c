package maildir

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// recorder is a fileOps that records its calls, with paths relative to the
// Store root, and passes them on.
type recorder struct {
	root string
	next fileOps
	mu   sync.Mutex
	ops  []string
}

func (r *recorder) rel(p string) string {
	if q, err := filepath.Rel(r.root, p); err == nil {
		return q
	}
	return p
}

func (r *recorder) add(op string) {
	r.mu.Lock()
	r.ops = append(r.ops, op)
	r.mu.Unlock()
}

func (r *recorder) fsync(f *os.File) error {
	r.add("fsync " + r.rel(f.Name()))
	return r.next.fsync(f)
}

func (r *recorder) fsyncDir(dir string) error {
	r.add("fsyncdir " + r.rel(dir))
	return r.next.fsyncDir(dir)
}

func (r *recorder) link(o, n string) error {
	r.add("link " + r.rel(o) + " " + r.rel(n))
	return r.next.link(o, n)
}

func (r *recorder) rename(o, n string) error {
	r.add("rename " + r.rel(o) + " " + r.rel(n))
	return r.next.rename(o, n)
}

func (r *recorder) remove(p string) error {
	r.add("remove " + r.rel(p))
	return r.next.remove(p)
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	ops := r.ops
	r.ops = nil
	return ops
}

func openStore(t testing.TB) (*Store, string) {
	t.Helper()
	root := t.TempDir()
	s, err := Open(root, Options{Hostname: "mx1.example"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, root
}

func record(s *Store, root string) *recorder {
	r := &recorder{root: root, next: s.fs}
	s.fs = r
	return r
}

func mustFolder(t testing.TB, s *Store, user, name string) *Folder {
	t.Helper()
	mb, err := s.Mailbox(user)
	if err != nil {
		t.Fatal(err)
	}
	f, err := mb.Folder(name)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func mustSync(t testing.TB, f *Folder) []Message {
	t.Helper()
	msgs, err := f.Sync()
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

func readMsg(t testing.TB, f *Folder, uid uint32) string {
	t.Helper()
	fh, err := f.Open(uid)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	b, err := io.ReadAll(fh)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDeliverBytesAndFsyncOrder(t *testing.T) {
	s, root := openStore(t)
	if _, err := s.Mailbox("Bob@Example.org"); err != nil {
		t.Fatal(err)
	}
	rec := record(s, root)
	body := "Subject: hi\r\n\r\nhello\x00\xff world\r\n"
	key, err := s.Deliver("bob@example.ORG", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(root, "example.org", "bob", "new", key))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != body {
		t.Fatalf("new/%s holds %q, want %q", key, got, body)
	}
	want := []string{
		"fsync example.org/bob/tmp/" + key,
		"link example.org/bob/tmp/" + key + " example.org/bob/new/" + key,
		"fsyncdir example.org/bob/new",
		"remove example.org/bob/tmp/" + key,
	}
	if ops := rec.take(); strings.Join(ops, "\n") != strings.Join(want, "\n") {
		t.Fatalf("file-system calls:\n%s\nwant:\n%s", strings.Join(ops, "\n"), strings.Join(want, "\n"))
	}
	if ents, _ := os.ReadDir(filepath.Join(root, "example.org", "bob", "tmp")); len(ents) != 0 {
		t.Fatalf("tmp/ not empty: %v", ents)
	}
	sec, _, pid, host, ok := keyParts(key)
	if !ok || sec == 0 || pid != os.Getpid() || host != "mx1.example" {
		t.Fatalf("key %q: parts %d %d %q %v", key, sec, pid, host, ok)
	}
}

func TestDeliverCreatesMaildir(t *testing.T) {
	s, root := openStore(t)
	rec := record(s, root)
	key, err := s.Deliver("carol", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"cur", "new", "tmp"} {
		if fi, err := os.Stat(filepath.Join(root, "_", "carol", sub)); err != nil || !fi.IsDir() {
			t.Fatalf("%s: %v", sub, err)
		}
	}
	// The new directories are durable before the message is linked.
	ops := strings.Join(rec.take(), "\n")
	for _, want := range []string{"fsyncdir .\n", "fsyncdir _\n", "fsyncdir _/carol\n", "fsync _/carol/tmp/" + key + "\nlink"} {
		if !strings.Contains(ops, want) {
			t.Fatalf("no %q in\n%s", want, ops)
		}
	}
}

func TestHostEscaped(t *testing.T) {
	root := t.TempDir()
	s, err := Open(root, Options{Hostname: "a/b:c.example"})
	if err != nil {
		t.Fatal(err)
	}
	key, err := s.Deliver("u", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(key, `.a\057b\072c.example`) || strings.ContainsAny(key, "/:") {
		t.Fatalf("key %q", key)
	}
}

func TestSyncOpenUIDs(t *testing.T) {
	s, root := openStore(t)
	f := mustFolder(t, s, "dave@example.com", "inbox")
	if f.Name() != "INBOX" || f.UIDNext() != 1 || f.UIDValidity() == 0 {
		t.Fatalf("fresh folder: %q next %d validity %d", f.Name(), f.UIDNext(), f.UIDValidity())
	}
	var keys []string
	for i := 0; i < 3; i++ {
		k, err := s.Deliver("dave@example.com", strings.NewReader(fmt.Sprintf("message %d", i)))
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	msgs := mustSync(t, f)
	if len(msgs) != 3 {
		t.Fatalf("%d messages", len(msgs))
	}
	for i, m := range msgs {
		if m.UID != uint32(i+1) || m.Key != keys[i] || m.Size != int64(len("message 0")) {
			t.Fatalf("message %d: %+v", i, m)
		}
		if len(m.Flags) != 1 || m.Flags[0] != `\Recent` {
			t.Fatalf("flags %v", m.Flags)
		}
		if got := readMsg(t, f, m.UID); got != fmt.Sprintf("message %d", i) {
			t.Fatalf("uid %d: %q", m.UID, got)
		}
	}
	if f.UIDNext() != 4 {
		t.Fatalf("UIDNext %d", f.UIDNext())
	}
	// Moved to cur/ with an empty info.
	if _, err := os.Stat(filepath.Join(root, "example.com", "dave", "cur", keys[0]+":2,")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Open(99); err != ErrNoMessage {
		t.Fatalf("Open(99): %v", err)
	}
	// Another session sees the same UIDs, not \Recent.
	g := mustFolder(t, s, "dave@example.com", "INBOX")
	for i, m := range mustSync(t, g) {
		if m.UID != msgs[i].UID || m.Key != msgs[i].Key || len(m.Flags) != 0 {
			t.Fatalf("second session: %+v", m)
		}
	}
	// A new Store (a restart) keeps UIDs and UIDVALIDITY.
	s2, err := Open(root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	h := mustFolder(t, s2, "dave@example.com", "INBOX")
	if h.UIDValidity() != f.UIDValidity() {
		t.Fatalf("UIDVALIDITY %d, was %d", h.UIDValidity(), f.UIDValidity())
	}
	for i, m := range mustSync(t, h) {
		if m.UID != msgs[i].UID || m.Key != msgs[i].Key {
			t.Fatalf("after reopening: %+v", m)
		}
	}
	// Vanished files lose their UIDs, which are never given again.
	os.Remove(filepath.Join(root, "example.com", "dave", "cur", keys[1]+":2,"))
	if _, err := s.Deliver("dave@example.com", strings.NewReader("later")); err != nil {
		t.Fatal(err)
	}
	got := mustSync(t, h)
	if len(got) != 3 || got[0].UID != 1 || got[1].UID != 3 || got[2].UID != 4 {
		t.Fatalf("after removal: %+v", got)
	}
	if _, err := h.Open(2); err != ErrNoMessage {
		t.Fatalf("Open(2): %v", err)
	}
}

func TestUIDListFormat(t *testing.T) {
	s, root := openStore(t)
	f := mustFolder(t, s, "erin", "INBOX")
	k, _ := s.Deliver("erin", strings.NewReader("a"))
	mustSync(t, f)
	b, err := os.ReadFile(filepath.Join(root, "_", "erin", uidListName))
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("3 V%d N2\n1 :%s\n", f.UIDValidity(), k)
	if string(b) != want {
		t.Fatalf("UID list %q, want %q", b, want)
	}
	if l, err := parseList(b); err != nil || l.validity != f.UIDValidity() || l.next != 2 || len(l.ents) != 1 {
		t.Fatalf("parse: %+v %v", l, err)
	}
	for _, bad := range []string{"", "3 V0 N1\n", "3 V1 N1\n2 :a\n1 :b\n", "3 V1 N1\nx :a\n", "3 V1 N1\n1 a\n"} {
		if _, err := parseList([]byte(bad)); err == nil {
			t.Errorf("parseList(%q) accepted", bad)
		}
	}
}

func TestUIDListWriteOrder(t *testing.T) {
	s, root := openStore(t)
	f := mustFolder(t, s, "erin", "INBOX")
	s.Deliver("erin", strings.NewReader("a"))
	rec := record(s, root)
	msgs := mustSync(t, f)
	want := []string{
		"rename _/erin/new/" + msgs[0].Key + " _/erin/cur/" + msgs[0].Key + ":2,",
		"fsync _/erin/" + uidListTmp,
		"rename _/erin/" + uidListTmp + " _/erin/" + uidListName,
		"fsyncdir _/erin",
	}
	if ops := rec.take(); strings.Join(ops, "\n") != strings.Join(want, "\n") {
		t.Fatalf("file-system calls:\n%s\nwant:\n%s", strings.Join(ops, "\n"), strings.Join(want, "\n"))
	}
}

func TestDeliverMany(t *testing.T) {
	s, root := openStore(t)
	body := bytes.Repeat([]byte("0123456789"), 1000)
	errs := s.DeliverMany([]string{"a@x.org", "../evil", "b@y.org", "A@X.org"}, bytes.NewReader(body))
	if errs[0] != nil || errs[1] != ErrBadName || errs[2] != nil || errs[3] != nil {
		t.Fatalf("errors %v", errs)
	}
	for _, u := range []string{"x.org/a", "y.org/b"} {
		ents, err := os.ReadDir(filepath.Join(root, u, "new"))
		if err != nil || len(ents) != 1 {
			t.Fatalf("%s: %v %v", u, ents, err)
		}
		b, _ := os.ReadFile(filepath.Join(root, u, "new", ents[0].Name()))
		if !bytes.Equal(b, body) {
			t.Fatalf("%s: wrong bytes", u)
		}
		if ents, _ := os.ReadDir(filepath.Join(root, u, "tmp")); len(ents) != 0 {
			t.Fatalf("%s: tmp/ not empty", u)
		}
	}
	if n, err := s.Usage("a@x.org"); err != nil || n != int64(len(body)) {
		t.Fatalf("Usage %d %v", n, err)
	}
}

// TestDeliverManyChecked: the check comes once the whole message has been
// read, and the users it refuses get nothing and their own error.
func TestDeliverManyChecked(t *testing.T) {
	s, root := openStore(t)
	errMoved := errors.New("moved")
	body := "Subject: checked\r\n\r\nx\r\n"
	r := strings.NewReader(body)
	read := -1
	errs := s.DeliverManyChecked([]string{"a@x.org", "b@y.org", "c@z.org", "B@Y.org"}, r,
		func() []error {
			read = int(r.Size()) - r.Len()
			return []error{nil, errMoved, nil, nil}
		})
	if read != len(body) {
		t.Fatalf("check called with %d bytes read, want the whole message (%d)", read, len(body))
	}
	if errs[0] != nil || errs[1] != errMoved || errs[2] != nil || errs[3] != errMoved {
		t.Fatalf("errors %v, want b's mailbox refused for both its names", errs)
	}
	for u, want := range map[string]int{"x.org/a": 1, "y.org/b": 0, "z.org/c": 1} {
		ents, _ := os.ReadDir(filepath.Join(root, u, "new"))
		if len(ents) != want {
			t.Errorf("%s: %d messages, want %d", u, len(ents), want)
		}
	}
	// Everyone refused: nothing anywhere, nothing left in tmp/.
	errs = s.DeliverManyChecked([]string{"d@x.org"}, strings.NewReader(body),
		func() []error { return []error{errMoved} })
	if errs[0] != errMoved {
		t.Fatalf("errors %v", errs)
	}
	for _, sub := range []string{"new", "tmp"} {
		if ents, _ := os.ReadDir(filepath.Join(root, "x.org/d", sub)); len(ents) != 0 {
			t.Errorf("d's %s/ holds %d files", sub, len(ents))
		}
	}
}

func TestRelativeRoot(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	s, err := Open("mail", Options{})
	if err != nil {
		t.Fatal(err)
	}
	rec := record(s, filepath.Join(dir, "mail"))
	key, err := s.Deliver("pat@example.org", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "mail", "example.org", "pat", "new", key)); err != nil {
		t.Fatal(err)
	}
	if ops := strings.Join(rec.take(), "\n"); !strings.HasPrefix(ops, "fsyncdir .\nfsyncdir example.org\n") {
		t.Fatalf("new directories not fsynced in their parents:\n%s", ops)
	}
}

// xdev is a fileOps whose links into the Maildir under prefix from
// outside it fail with EXDEV, as if it were another file system.
type xdev struct {
	fileOps
	prefix string
}

func (x xdev) link(o, n string) error {
	if strings.HasPrefix(n, x.prefix) && !strings.HasPrefix(o, x.prefix) {
		return &os.LinkError{Op: "link", Old: o, New: n, Err: syscall.EXDEV}
	}
	return x.fileOps.link(o, n)
}

func TestDeliverManyAcrossFileSystems(t *testing.T) {
	s, root := openStore(t)
	s.Mailbox("a@x.org")
	s.Mailbox("b@y.org")
	rec := record(s, root)
	s.fs = xdev{fileOps: rec, prefix: filepath.Join(root, "y.org", "b") + "/"}
	body := "copied across file systems"
	errs := s.DeliverMany([]string{"a@x.org", "b@y.org"}, strings.NewReader(body))
	if errs[0] != nil || errs[1] != nil {
		t.Fatal(errs)
	}
	ents, _ := os.ReadDir(filepath.Join(root, "y.org", "b", "new"))
	if len(ents) != 1 {
		t.Fatalf("b's new/: %v", ents)
	}
	key := ents[0].Name()
	if b, _ := os.ReadFile(filepath.Join(root, "y.org", "b", "new", key)); string(b) != body {
		t.Fatalf("copy holds %q", b)
	}
	want := []string{
		"fsync x.org/a/tmp/" + key,
		"link x.org/a/tmp/" + key + " x.org/a/new/" + key,
		"fsyncdir x.org/a/new",
		"fsync y.org/b/tmp/" + key,
		"link y.org/b/tmp/" + key + " y.org/b/new/" + key,
		"remove y.org/b/tmp/" + key,
		"fsyncdir y.org/b/new",
		"remove x.org/a/tmp/" + key,
	}
	if ops := rec.take(); strings.Join(ops, "\n") != strings.Join(want, "\n") {
		t.Fatalf("file-system calls:\n%s\nwant:\n%s", strings.Join(ops, "\n"), strings.Join(want, "\n"))
	}
	for _, u := range []string{"x.org/a", "y.org/b"} {
		if ents, _ := os.ReadDir(filepath.Join(root, u, "tmp")); len(ents) != 0 {
			t.Fatalf("%s: tmp/ not empty", u)
		}
	}
}
