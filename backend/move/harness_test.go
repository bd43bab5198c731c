package move

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"

	backendimap "github.com/tohost/tohost/backend/imap"
	"github.com/tohost/tohost/backend/maildir"
	"github.com/tohost/tohost/protocol/authent"
)

const (
	masterUser = "mover"
	masterPass = "master-secret"
	user       = "alice@example.org"
	userPass   = "alice-pw"
)

// hangGuard bounds waits for events that must come; it never measures.
const hangGuard = 20 * time.Second

// directory is the users' directory both backends share: alice, on be1
// until a move switches her.
type directory struct {
	mu     sync.Mutex
	tohost map[string]string
}

func (d *directory) get(name string) (authent.User, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	th, ok := d.tohost[name]
	return authent.User{Name: name, Fields: []authent.Field{{Label: "tohost", Value: th}}}, ok
}

func (d *directory) set(name, tohost string) {
	d.mu.Lock()
	d.tohost[name] = tohost
	d.mu.Unlock()
}

func (d *directory) Lookup(_ context.Context, name string) (authent.User, error) {
	u, ok := d.get(name)
	if !ok {
		return authent.User{}, fmt.Errorf("%s: %w", name, authent.ErrNotFound)
	}
	return u, nil
}

func (d *directory) Check(_ context.Context, name, pass, _ string) (authent.User, error) {
	u, ok := d.get(name)
	if !ok || pass != userPass {
		return authent.User{}, fmt.Errorf("%s: %w", name, authent.ErrBadCredentials)
	}
	return u, nil
}

// backend is a backend's IMAP server over its own Maildir store.
type backend struct {
	name, addr string
}

func startBackend(t *testing.T, name string, dir *directory) *backend {
	t.Helper()
	st, err := maildir.Open(t.TempDir(), maildir.Options{NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("TOHOST_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	srv := backendimap.New(backendimap.Config{Store: st, Directory: dir, Name: name,
		MasterUser: masterUser, MasterPassword: masterPass, Logger: log})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(hangGuard):
			t.Error("IMAP server did not stop")
		}
		st.Close()
	})
	return &backend{name: name, addr: ln.Addr().String()}
}

// env is two backends, be1 holding alice's mailbox, and a directory.
type env struct {
	t        *testing.T
	dir      *directory
	old, new *backend
}

func newEnv(t *testing.T) *env {
	dir := &directory{tohost: map[string]string{user: "be1"}}
	return &env{t: t, dir: dir, old: startBackend(t, "be1", dir), new: startBackend(t, "be2", dir)}
}

// master logs in to b as alice with the master login.
func (e *env) master(b *backend) *imapclient.Client {
	e.t.Helper()
	c, err := imapclient.DialInsecure(b.addr, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	if err := c.Authenticate(sasl.NewPlainClient(user, masterUser, masterPass)); err != nil {
		e.t.Fatalf("master login on %s: %v", b.name, err)
	}
	return c
}

// login logs in to b as alice herself: only where she lives.
func (e *env) login(b *backend) *imapclient.Client {
	e.t.Helper()
	c, err := imapclient.DialInsecure(b.addr, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	if err := c.Login(user, userPass).Wait(); err != nil {
		e.t.Fatalf("alice's login on %s: %v", b.name, err)
	}
	return c
}

// config is a move of alice from be1 to be2; hook, if set, runs right
// after the switch (the mail that arrives on be1 just before it would
// land there).
func (e *env) config(hook func()) Config {
	return Config{User: user, Old: e.old.addr, New: e.new.addr, MasterUser: masterUser, MasterPassword: masterPass,
		Switch: func(context.Context) error {
			e.dir.set(user, "be2")
			if hook != nil {
				hook()
			}
			return nil
		}}
}

func testMessage(id string) string {
	return "From: bob@example.org\r\nTo: alice@example.org\r\nSubject: message " + id + "\r\n" +
		"Message-ID: <" + id + "@example.org>\r\n\r\nbody of " + id + "\r\n"
}

// put appends message id to mbox with flags and date and returns its UID.
func put(t *testing.T, c *imapclient.Client, mbox, id string, date time.Time, flags ...imap.Flag) imap.UID {
	t.Helper()
	msg := testMessage(id)
	cmd := c.Append(mbox, int64(len(msg)), &imap.AppendOptions{Flags: flags, Time: date})
	io.WriteString(cmd, msg)
	if err := cmd.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := cmd.Wait()
	if err != nil {
		t.Fatalf("APPEND %s to %s: %v", id, mbox, err)
	}
	return data.UID
}

// msg is a message as a client sees it.
type msg struct {
	uid   imap.UID
	flags string // sorted, space-separated
	date  time.Time
	body  string
}

// folderMsgs fetches every message of mbox, keyed by Message-ID.
func folderMsgs(t *testing.T, c *imapclient.Client, mbox string) map[string]msg {
	t.Helper()
	sel, err := c.Select(mbox, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatalf("EXAMINE %s: %v", mbox, err)
	}
	out := map[string]msg{}
	if sel.NumMessages == 0 {
		return out
	}
	section := &imap.FetchItemBodySection{Peek: true}
	bufs, err := c.Fetch(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}, &imap.FetchOptions{
		UID: true, Flags: true, InternalDate: true, BodySection: []*imap.FetchItemBodySection{section}}).Collect()
	if err != nil {
		t.Fatalf("FETCH %s: %v", mbox, err)
	}
	for _, b := range bufs {
		body := string(b.FindBodySection(section))
		_, id, _ := strings.Cut(body, "Message-ID: <")
		id, _, _ = strings.Cut(id, "@")
		fl := make([]string, len(b.Flags))
		for i, f := range b.Flags {
			fl[i] = string(f)
		}
		sort.Strings(fl)
		if _, dup := out[id]; dup {
			t.Errorf("%s: message %s twice", mbox, id)
		}
		out[id] = msg{uid: b.UID, flags: strings.Join(fl, " "), date: b.InternalDate, body: body}
	}
	return out
}

// folderNames lists c's folders (or subscriptions), sorted.
func folderNames(t *testing.T, c *imapclient.Client, subscribed bool) []string {
	t.Helper()
	list, err := c.List("", "*", &imap.ListOptions{SelectSubscribed: subscribed}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range list {
		names = append(names, l.Mailbox)
	}
	slices.Sort(names)
	return names
}

// sameMailbox fails unless new holds what old holds: folders,
// subscriptions, and in each folder the same messages with the same
// flags, internal dates and bytes.
func sameMailbox(t *testing.T, old, new *imapclient.Client) {
	t.Helper()
	for _, subs := range []bool{false, true} {
		o, n := folderNames(t, old, subs), folderNames(t, new, subs)
		if !slices.Equal(o, n) {
			t.Errorf("folders (subscribed only: %v): old %q, new %q", subs, o, n)
		}
	}
	for _, name := range folderNames(t, old, false) {
		o, n := folderMsgs(t, old, name), folderMsgs(t, new, name)
		if len(o) != len(n) {
			t.Errorf("%s: %d messages on the old side, %d on the new", name, len(o), len(n))
		}
		for id, om := range o {
			nm, ok := n[id]
			switch {
			case !ok:
				t.Errorf("%s: message %s not copied", name, id)
			case om.flags != nm.flags:
				t.Errorf("%s: message %s: flags %q, were %q", name, id, nm.flags, om.flags)
			case !om.date.Equal(nm.date):
				t.Errorf("%s: message %s: internal date %v, was %v", name, id, nm.date, om.date)
			case !bytes.Equal([]byte(om.body), []byte(nm.body)):
				t.Errorf("%s: message %s: bytes differ", name, id)
			}
		}
	}
}
