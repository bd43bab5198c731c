package pop3

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tohost/tohost/backend/maildir"
	"github.com/tohost/tohost/protocol/authent"
)

// hangGuard bounds every wait of a test; nothing is expected to take
// anywhere near it.
const hangGuard = 20 * time.Second

// fakeDir is a directory of users with passwords and tohost fields.
type fakeDir struct {
	mu    sync.Mutex
	users map[string]fakeUser
	down  bool
	ips   []string // the ip of every check, in order
}

type fakeUser struct{ pass, tohost string }

func (d *fakeDir) Check(ctx context.Context, user, pass, ip string) (authent.User, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ips = append(d.ips, ip)
	if d.down {
		return authent.User{}, fmt.Errorf("%w: connection refused", authent.ErrUnavailable)
	}
	u, ok := d.users[user]
	if !ok || u.pass != pass {
		return authent.User{}, fmt.Errorf("%w: %w", authent.ErrRejected, authent.ErrBadCredentials)
	}
	au := authent.User{Name: user}
	if u.tohost != "" {
		au.Fields = []authent.Field{{Label: "tohost", Value: u.tohost}}
	}
	return au, nil
}

func (d *fakeDir) setDown(down bool) {
	d.mu.Lock()
	d.down = down
	d.mu.Unlock()
}

func (d *fakeDir) lastIP() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.ips) == 0 {
		return ""
	}
	return d.ips[len(d.ips)-1]
}

// testServer is a POP3 server on a loopback port over a temporary store.
type testServer struct {
	t     *testing.T
	addr  string
	store *maildir.Store
	dir   *fakeDir
	srv   *Server
	ended chan struct{} // one value per session over
	stop  context.CancelFunc
	done  chan error // Serve's result
}

// users of every test server: alice and bob live here (backend "mx1"),
// carol on another backend, dave has no tohost.
func newTestServer(t *testing.T, edit func(*Config)) *testServer {
	t.Helper()
	store, err := maildir.Open(t.TempDir(), maildir.Options{NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	dir := &fakeDir{users: map[string]fakeUser{
		"alice": {"secret", "mx1"},
		"bob":   {"pass word", "MX1:110"},
		"carol": {"secret", "mx2"},
		"dave":  {"secret", ""},
	}}
	cfg := Config{Store: store, Directory: dir, Name: "mx1", Logger: slog.New(slog.DiscardHandler)}
	if edit != nil {
		edit(&cfg)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{t: t, addr: ln.Addr().String(), store: store, dir: dir, srv: New(cfg),
		ended: make(chan struct{}, 100), done: make(chan error, 1)}
	ts.srv.sessionEnded = func() { ts.ended <- struct{}{} }
	ctx, cancel := context.WithCancel(context.Background())
	ts.stop = cancel
	go func() { ts.done <- ts.srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-ts.done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(hangGuard):
			t.Error("Serve did not return after its context ended")
		}
	})
	return ts
}

// deliver stores a message for user and returns its key.
func (ts *testServer) deliver(user, msg string) string {
	ts.t.Helper()
	key, err := ts.store.Deliver(user, strings.NewReader(msg))
	if err != nil {
		ts.t.Fatal(err)
	}
	return key
}

// inbox returns the user's INBOX as the store has it now.
func (ts *testServer) inbox(user string) []maildir.Message {
	ts.t.Helper()
	mb, err := ts.store.Mailbox(user)
	if err != nil {
		ts.t.Fatal(err)
	}
	f, err := mb.Folder("INBOX")
	if err != nil {
		ts.t.Fatal(err)
	}
	msgs, err := f.Sync()
	if err != nil {
		ts.t.Fatal(err)
	}
	return msgs
}

// waitEnded waits until the server has finished n more sessions (their
// locks released).
func (ts *testServer) waitEnded(n int) {
	ts.t.Helper()
	for range n {
		select {
		case <-ts.ended:
		case <-time.After(hangGuard):
			ts.t.Fatal("no session ended")
		}
	}
}

// client is a raw POP3 connection.
type client struct {
	t  *testing.T
	c  net.Conn
	r  *bufio.Reader
	ts *testServer
}

// dial connects and reads the greeting.
func (ts *testServer) dial() *client {
	ts.t.Helper()
	c, err := net.Dial("tcp", ts.addr)
	if err != nil {
		ts.t.Fatal(err)
	}
	ts.t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(hangGuard))
	cl := &client{t: ts.t, c: c, r: bufio.NewReader(c), ts: ts}
	cl.expect("+OK mx1 POP3 ready.")
	return cl
}

// send writes raw text.
func (cl *client) send(s string) {
	cl.t.Helper()
	if _, err := cl.c.Write([]byte(s)); err != nil {
		cl.t.Fatal(err)
	}
}

// line reads one line, without its CR LF; it fails on a bare LF.
func (cl *client) line() string {
	cl.t.Helper()
	l, err := cl.r.ReadString('\n')
	if err != nil {
		cl.t.Fatalf("read: %v (got %q)", err, l)
	}
	if !strings.HasSuffix(l, "\r\n") {
		cl.t.Fatalf("line without CR LF: %q", l)
	}
	return strings.TrimSuffix(l, "\r\n")
}

// expect reads one line and checks it.
func (cl *client) expect(want string) {
	cl.t.Helper()
	if got := cl.line(); got != want {
		cl.t.Fatalf("got %q, want %q", got, want)
	}
}

// cmd sends a command and returns the one-line answer.
func (cl *client) cmd(line string) string {
	cl.t.Helper()
	cl.send(line + "\r\n")
	return cl.line()
}

// cmdPrefix sends a command and checks that the answer starts with want.
func (cl *client) cmdPrefix(line, want string) string {
	cl.t.Helper()
	got := cl.cmd(line)
	if !strings.HasPrefix(got, want) {
		cl.t.Fatalf("%s: got %q, want %q...", line, got, want)
	}
	return got
}

// multi sends a command, checks that the first line is +OK and returns
// the raw body after it: the CR LF lines up to the terminating dot,
// byte-stuffing left in.
func (cl *client) multi(line string) (first, body string) {
	cl.t.Helper()
	first = cl.cmdPrefix(line, "+OK")
	var b strings.Builder
	for {
		l := cl.line()
		if l == "." {
			return first, b.String()
		}
		b.WriteString(l + "\r\n")
	}
}

// login logs in with USER and PASS.
func (cl *client) login(user, pass string) {
	cl.t.Helper()
	cl.cmdPrefix("USER "+user, "+OK")
	cl.cmdPrefix("PASS "+pass, "+OK Logged in")
}

// expectClosed checks that the server closes the connection.
func (cl *client) expectClosed() {
	cl.t.Helper()
	if l, err := cl.r.ReadString('\n'); !errors.Is(err, io.EOF) {
		cl.t.Fatalf("connection still open: read %q, %v", l, err)
	}
	cl.c.Close()
}

// loopbackNet is 127.0.0.0/8.
var loopbackNet = netip.MustParsePrefix("127.0.0.0/8")
