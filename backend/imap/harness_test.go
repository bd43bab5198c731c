package imap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/tohost/tohost/backend/maildir"
	"github.com/tohost/tohost/protocol/authent"
)

// hangGuard bounds waits for events that must come; it never measures.
const hangGuard = 20 * time.Second

type fakeUser struct{ pass, tohost string }

// fakeDir is the directory: a few users, an outage switch, and the
// addresses the checks came with.
type fakeDir struct {
	mu    sync.Mutex
	users map[string]fakeUser
	ips   []string
	down  atomic.Bool
}

func newFakeDir() *fakeDir {
	return &fakeDir{users: map[string]fakeUser{
		"alice@example.org": {"secret", "be1"},
		"bob@example.org":   {"hunter2", "be1:143"},
		"carol@example.org": {"pw", "be2"},
		"dave@example.org":  {"pw", ""},
	}}
}

func (d *fakeDir) Check(ctx context.Context, user, pass, ip string) (authent.User, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ips = append(d.ips, ip)
	if d.down.Load() {
		return authent.User{}, fmt.Errorf("check: %w", authent.ErrUnavailable)
	}
	u, ok := d.users[user]
	if !ok || u.pass != pass {
		return authent.User{}, fmt.Errorf("check: %w", authent.ErrBadCredentials)
	}
	au := authent.User{Name: user}
	if u.tohost != "" {
		au.Fields = []authent.Field{{Label: "tohost", Value: u.tohost}}
	}
	return au, nil
}

func (d *fakeDir) Lookup(ctx context.Context, user string) (authent.User, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.down.Load() {
		return authent.User{}, fmt.Errorf("lookup: %w", authent.ErrUnavailable)
	}
	u, ok := d.users[user]
	if !ok {
		return authent.User{}, fmt.Errorf("lookup: %w", authent.ErrNotFound)
	}
	au := authent.User{Name: user}
	if u.tohost != "" {
		au.Fields = []authent.Field{{Label: "tohost", Value: u.tohost}}
	}
	return au, nil
}

func (d *fakeDir) lastIP() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.ips) == 0 {
		return ""
	}
	return d.ips[len(d.ips)-1]
}

// env is a server on a temporary mail directory.
type env struct {
	t     testing.TB
	root  string
	store *maildir.Store
	dir   *fakeDir
	cfg   Config
	srv   *Server
	addr  string
	stop  func() error
}

func newEnv(t testing.TB, mod func(*Config)) *env {
	t.Helper()
	e := &env{t: t, root: t.TempDir(), dir: newFakeDir()}
	e.cfg = Config{Directory: e.dir, Name: "be1", Logger: testLogger()}
	if mod != nil {
		mod(&e.cfg)
	}
	e.openStore()
	e.start()
	t.Cleanup(func() {
		if e.stop != nil {
			e.stop()
		}
		e.store.Close()
	})
	return e
}

func (e *env) openStore() {
	// A server that polls for others' changes is one of several sharing
	// the mail directory.
	st, err := maildir.Open(e.root, maildir.Options{NoFsync: true, Shared: e.cfg.PollInterval > 0})
	if err != nil {
		e.t.Fatal(err)
	}
	e.store = st
	e.cfg.Store = st
}

func (e *env) start() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	e.srv = New(e.cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.srv.Serve(ctx, ln) }()
	e.addr = ln.Addr().String()
	e.stop = func() error {
		cancel()
		select {
		case err := <-done:
			e.stop = nil
			return err
		case <-time.After(hangGuard):
			e.t.Error("Serve did not return")
			return errors.New("hang")
		}
	}
}

// restart stops the server, closes the Store, and starts both again on
// the same mail directory.
func (e *env) restart() {
	if err := e.stop(); err != nil {
		e.t.Fatal(err)
	}
	e.store.Close()
	e.openStore()
	e.start()
}

func (e *env) dial(h *imapclient.UnilateralDataHandler) *imapclient.Client {
	e.t.Helper()
	c, err := imapclient.DialInsecure(e.addr, &imapclient.Options{UnilateralDataHandler: h})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

func (e *env) login(user string, h *imapclient.UnilateralDataHandler) *imapclient.Client {
	e.t.Helper()
	c := e.dial(h)
	if err := c.Login(user, e.dir.users[user].pass).Wait(); err != nil {
		e.t.Fatalf("login %s: %v", user, err)
	}
	return c
}

// must returns v, or stops the test run with err (a failed command the
// test did not expect).
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// appendMsg APPENDs msg and returns its UID.
func appendMsg(t testing.TB, c *imapclient.Client, mbox, msg string, opt *imap.AppendOptions) imap.UID {
	t.Helper()
	cmd := c.Append(mbox, int64(len(msg)), opt)
	if _, err := io.WriteString(cmd, msg); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := cmd.Wait()
	if err != nil {
		t.Fatalf("APPEND: %v", err)
	}
	return data.UID
}

// imapCode returns the response code of a NO or BAD.
func imapCode(err error) imap.ResponseCode {
	var ie *imap.Error
	if errors.As(err, &ie) {
		return ie.Code
	}
	return ""
}

func testMessage(subject, body string) string {
	return "From: Alice <alice@example.org>\r\n" +
		"To: Bob <bob@example.org>\r\n" +
		"Subject: " + subject + "\r\n" +
		"Date: Mon, 02 Jan 2006 15:04:05 +0000\r\n" +
		"Message-ID: <" + strings.ReplaceAll(subject, " ", ".") + "@example.org>\r\n" +
		"\r\n" + body + "\r\n"
}

// testLogger discards the server's log unless TOHOST_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("TOHOST_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}
