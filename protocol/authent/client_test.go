package authent_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tohost/tohost/protocol/authent"
)

// fakeDir is a small authent server with canned answers. Its lookup reply
// names the user and the server, so a reply matched to the wrong request
// or coming from the wrong server is visible:
//
//	lookup <u>          +OK <u> config 0 n="<u>" srv="<name>"
//	lookup missing...   -ERR <u> does not exist
//	lookup dead...      -DEAD database down
//	lookup stall...     no answer, ever (this connection is stuck)
//	lookup drop         the connection is closed without an answer
//	<any> drop<name>    the same, on the server called <name> only
//	check <u> good      +OK ...; any other password -ERR
//	set, del, rename, search, ping: plausible answers
type fakeDir struct {
	t    testing.TB
	name string
	addr string

	// closeOnAccept makes the server accept and close at once.
	closeOnAccept atomic.Bool

	tls *tls.Config // serve TLS when set (before listen)

	mu       sync.Mutex
	secret   string // required with auth when set
	ln       net.Listener
	accepted int
	lines    []string
	newLine  chan struct{} // closed and replaced when a line is added
	live     map[net.Conn]struct{}
	wg       sync.WaitGroup
}

// hangGuard bounds a wait for something that must happen. It only keeps
// a broken build from hanging the suite: it says nothing about speed.
const hangGuard = 30 * time.Second

// waitUntil polls cond until it holds; the hang guard fails the test.
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not after %v", what, hangGuard)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func startFake(t testing.TB, name, addr string) *fakeDir {
	t.Helper()
	return startFakeTLS(t, name, addr, nil)
}

func startFakeTLS(t testing.TB, name, addr string, conf *tls.Config) *fakeDir {
	t.Helper()
	f := &fakeDir{t: t, name: name, tls: conf, live: map[net.Conn]struct{}{}, newLine: make(chan struct{})}
	f.listen(addr)
	t.Cleanup(f.Close)
	return f
}

func (f *fakeDir) listen(addr string) {
	f.t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		f.t.Fatal(err)
	}
	if f.tls != nil {
		ln = tls.NewListener(ln, f.tls)
	}
	f.mu.Lock()
	f.ln = ln
	f.addr = ln.Addr().String()
	f.mu.Unlock()
	f.wg.Add(1)
	go f.accept(ln)
}

// Restart listens again on the same address after Close.
func (f *fakeDir) Restart() { f.listen(f.addr) }

// Close stops listening and closes every connection.
func (f *fakeDir) Close() {
	f.mu.Lock()
	if f.ln != nil {
		f.ln.Close()
		f.ln = nil
	}
	for c := range f.live {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

func (f *fakeDir) Accepted() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.accepted
}

func (f *fakeDir) Lines() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.lines...)
}

// record adds a line the server received and wakes WaitLine.
func (f *fakeDir) record(line string) {
	f.mu.Lock()
	f.lines = append(f.lines, line)
	close(f.newLine)
	f.newLine = make(chan struct{})
	f.mu.Unlock()
}

// WaitLine returns once the server has received line.
func (f *fakeDir) WaitLine(line string) {
	f.t.Helper()
	guard := time.NewTimer(hangGuard)
	defer guard.Stop()
	for {
		f.mu.Lock()
		got, wake := slices.Contains(f.lines, line), f.newLine
		f.mu.Unlock()
		if got {
			return
		}
		select {
		case <-wake:
		case <-guard.C:
			f.t.Fatalf("the server never received %q", line)
		}
	}
}

func (f *fakeDir) accept(ln net.Listener) {
	defer f.wg.Done()
	for {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		f.mu.Lock()
		f.accepted++
		f.live[nc] = struct{}{}
		f.mu.Unlock()
		if f.closeOnAccept.Load() {
			f.forget(nc)
			continue
		}
		f.wg.Add(1)
		go f.serve(nc)
	}
}

func (f *fakeDir) forget(nc net.Conn) {
	nc.Close()
	f.mu.Lock()
	delete(f.live, nc)
	f.mu.Unlock()
}

func (f *fakeDir) serve(nc net.Conn) {
	defer f.wg.Done()
	defer f.forget(nc)
	r := bufio.NewReader(nc)
	w := bufio.NewWriter(nc)
	f.mu.Lock()
	secret := f.secret
	f.mu.Unlock()
	authed := secret == ""
	for {
		if r.Buffered() == 0 && w.Flush() != nil {
			return
		}
		raw, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if !strings.HasSuffix(raw, "\r\n") {
			fmt.Fprintf(w, "-ERR requests must end with CRLF\r\n")
			continue
		}
		line := strings.TrimRight(raw, "\r\n ")
		f.record(line)
		args := strings.Split(line, " ")
		arg := func(i int) string {
			if i < len(args) {
				return args[i]
			}
			return ""
		}
		if !authed && args[0] != "auth" {
			fmt.Fprintf(w, "-ERR authentication required\r\n")
			continue
		}
		switch cmd, u := args[0], arg(1); {
		case cmd == "auth":
			if u == secret {
				authed = true
				fmt.Fprintf(w, "+OK\r\n")
			} else {
				fmt.Fprintf(w, "-ERR bad secret\r\n")
			}
		case cmd == "lookup" && strings.HasPrefix(u, "stall"):
			w.Flush()
			for { // what comes next is recorded, never answered
				raw, err := r.ReadString('\n')
				if err != nil {
					return
				}
				f.record(strings.TrimRight(raw, "\r\n "))
			}
		case cmd == "lookup" && u == "drop", u == "drop"+f.name:
			w.Flush()
			return
		case cmd == "lookup" && strings.HasPrefix(u, "missing"):
			fmt.Fprintf(w, "-ERR %s does not exist\r\n", u)
		case cmd == "lookup" && strings.HasPrefix(u, "dead"):
			fmt.Fprintf(w, "-DEAD database down\r\n")
		case cmd == "lookup":
			fmt.Fprintf(w, "+OK %s config 0 n=\"%s\" srv=\"%s\" name=\"A B\"\r\n", u, u, f.name)
		case cmd == "check" && arg(2) == "good":
			fmt.Fprintf(w, "+OK %s config 0 n=\"%s\"\r\n", u, u)
		case cmd == "check":
			fmt.Fprintf(w, "-ERR %s password wrong or not a valid user\r\n", u)
		case cmd == "set":
			fmt.Fprintf(w, "+OK %s added to database\r\n", u)
		case cmd == "del" && strings.HasPrefix(u, "missing"):
			fmt.Fprintf(w, "-ERR %s does not exist\r\n", u)
		case cmd == "del":
			fmt.Fprintf(w, "+OK %s deleted\r\n", u)
		case cmd == "rename":
			fmt.Fprintf(w, "+OK %s renamed\r\n", arg(2))
		case cmd == "search":
			fmt.Fprintf(w, "+DATA alice\r\n+DATA bob\r\n+OK Search Complete 2 items found out of 7\r\n")
		case cmd == "ping":
			fmt.Fprintf(w, "+OK pong\r\n")
		case cmd == "exit" || cmd == "quit":
			fmt.Fprintf(w, "+OK\r\n")
			w.Flush()
			return
		default:
			fmt.Fprintf(w, "-ERR unknown command\r\n")
		}
	}
}

// deadAddr returns a loopback address nobody listens on.
func deadAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func newClient(t testing.TB, cfg authent.ClientConfig) *authent.Client {
	t.Helper()
	if cfg.Timeout == 0 {
		cfg.Timeout = hangGuard // a test that needs a request to time out says so
	}
	if cfg.RetryAfter == 0 {
		cfg.RetryAfter = 50 * time.Millisecond // short backoffs keep the failover tests quick
	}
	c, err := authent.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestClientHelpers(t *testing.T) {
	f := startFake(t, "A", "127.0.0.1:0")
	c := newClient(t, authent.ClientConfig{Addrs: []string{f.addr}})
	ctx := context.Background()

	u, err := c.Lookup(ctx, "Bob@Test.com")
	if err != nil {
		t.Fatal(err)
	}
	if u.Name != "Bob@Test.com" || u.Get("n") != "Bob@Test.com" || u.Get("name") != "A B" || u.Get("none") != "" || len(u.Fields) != 3 {
		t.Errorf("lookup: %+v", u)
	}

	_, err = c.Lookup(ctx, "missing@x")
	if !errors.Is(err, authent.ErrNotFound) || !errors.Is(err, authent.ErrRejected) || errors.Is(err, authent.ErrUnavailable) {
		t.Errorf("lookup missing: %v", err)
	}
	var re *authent.ReplyError
	if !errors.As(err, &re) || re.Text != "missing@x does not exist" {
		t.Errorf("lookup missing: text %+v", re)
	}

	_, err = c.Lookup(ctx, "dead")
	if !errors.Is(err, authent.ErrUnavailable) || errors.Is(err, authent.ErrRejected) {
		t.Errorf("lookup -DEAD: %v", err)
	}
	r, err := c.Do(ctx, "lookup dead")
	if err != nil || r.Status != authent.StatusDead || r.Text != "database down" {
		t.Errorf("Do -DEAD: %+v %v", r, err)
	}

	if u, err := c.Check(ctx, "bob", "good", "192.0.2.1"); err != nil || u.Get("n") != "bob" {
		t.Errorf("check good: %+v %v", u, err)
	}
	_, err = c.Check(ctx, "bob", "bad", "")
	if !errors.Is(err, authent.ErrBadCredentials) || !errors.Is(err, authent.ErrRejected) {
		t.Errorf("check bad: %v", err)
	}

	fields := []authent.Field{{Label: "quota", Value: "200"}, {Label: "name", Value: "Bob Smith"}}
	if err := c.Set(ctx, "bob@test.com", "", fields); err != nil {
		t.Error(err)
	}
	if err := c.Set(ctx, "bob@test.com", "{SSHA}abc=", nil); err != nil {
		t.Error(err)
	}
	if err := c.Delete(ctx, "bob@test.com"); err != nil {
		t.Error(err)
	}
	if err := c.Delete(ctx, "missing@test.com"); !errors.Is(err, authent.ErrNotFound) {
		t.Errorf("del missing: %v", err)
	}
	if err := c.Rename(ctx, "a@x", "b@x"); err != nil {
		t.Error(err)
	}
	if err := c.Ping(ctx); err != nil {
		t.Error(err)
	}
	names, total, err := c.Search(ctx, "*", 2, 10)
	if err != nil || strings.Join(names, ",") != "alice,bob" || total != 7 {
		t.Errorf("search: %q %d %v", names, total, err)
	}
	if _, _, err := c.Search(ctx, "ali", 0, -1); err != nil {
		t.Error(err)
	}

	want := []string{
		"lookup Bob@Test.com",
		"lookup missing@x",
		"lookup dead",
		"lookup dead",
		"check bob good 192.0.2.1",
		"check bob bad",
		`set bob@test.com (NULL) quota="200" name="Bob Smith"`,
		"set bob@test.com {SSHA}abc=",
		"del bob@test.com",
		"del missing@test.com",
		"rename a@x b@x",
		"ping",
		"search * -from 2 -max 10",
		"search ali",
	}
	if got := f.Lines(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("server got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestClientRefusesBadInput(t *testing.T) {
	f := startFake(t, "A", "127.0.0.1:0")
	c := newClient(t, authent.ClientConfig{Addrs: []string{f.addr}})
	ctx := context.Background()
	bad := map[string]error{}
	_, bad["user with space"] = c.Lookup(ctx, "bob smith")
	_, bad["empty user"] = c.Lookup(ctx, "")
	_, bad["user with LF"] = c.Lookup(ctx, "bob\nping")
	_, bad["password with space"] = c.Check(ctx, "bob", "se cret", "")
	_, bad["password with CR"] = c.Check(ctx, "bob", "se\rcret", "")
	_, bad["password with NUL"] = c.Check(ctx, "bob", "se\x00cret", "")
	bad["set password with space"] = c.Set(ctx, "bob", "a b", nil)
	bad["bad label"] = c.Set(ctx, "bob", "pw", []authent.Field{{Label: "a b", Value: "x"}})
	bad["quote in value"] = c.Set(ctx, "bob", "pw", []authent.Field{{Label: "a", Value: `x"y`}})
	bad["rename to space"] = c.Rename(ctx, "bob", "b b")
	_, _, bad["negative from"] = c.Search(ctx, "*", -1, 0)
	_, bad["Do CRLF"] = c.Do(ctx, "lookup a\r\nlookup b")
	_, bad["Do NUL"] = c.Do(ctx, "lookup a\x00")
	_, bad["Do exit"] = c.Do(ctx, "exit")
	_, bad["Do QUIT"] = c.Do(ctx, "  QUIT")
	_, bad["Do auth"] = c.Do(ctx, "auth x")
	_, bad["Do empty"] = c.Do(ctx, "  ")
	_, bad["Do too long"] = c.Do(ctx, "lookup "+strings.Repeat("x", authent.MaxLine))
	for name, err := range bad {
		if !errors.Is(err, authent.ErrInvalidRequest) {
			t.Errorf("%s: got %v, want ErrInvalidRequest", name, err)
		}
	}
	_, err := c.Check(ctx, "bob", "se cret", "")
	if strings.Contains(err.Error(), "se cret") {
		t.Errorf("error shows the password: %v", err)
	}
	if n := len(f.Lines()); n != 0 {
		t.Errorf("%d bad requests reached the server", n)
	}
	// A check's name or password that cannot be sent is bad credentials
	// (a failed login), its client address is the caller's error.
	for name, err := range bad {
		want := strings.HasPrefix(name, "password with")
		if got := errors.Is(err, authent.ErrBadCredentials); got != want {
			t.Errorf("%s: ErrBadCredentials %v, want %v (%v)", name, got, want, err)
		}
	}
	for name, creds := range map[string][3]string{"user with space": {"bob smith", "pw", ""},
		"empty user": {"", "pw", ""}, "empty password": {"bob", "", ""}} {
		if _, err := c.Check(ctx, creds[0], creds[1], creds[2]); !errors.Is(err, authent.ErrBadCredentials) || !errors.Is(err, authent.ErrInvalidRequest) {
			t.Errorf("check, %s: got %v, want ErrBadCredentials and ErrInvalidRequest", name, err)
		}
	}
	if _, err := c.Check(ctx, "bob", "pw", "not an address"); errors.Is(err, authent.ErrBadCredentials) || !errors.Is(err, authent.ErrInvalidRequest) {
		t.Errorf("check with a bad client address: got %v, want ErrInvalidRequest only", err)
	}
}

func TestClientPipelining(t *testing.T) {
	f := startFake(t, "A", "127.0.0.1:0")
	c := newClient(t, authent.ClientConfig{Addrs: []string{f.addr}, Conns: 2, Timeout: 10 * time.Second})
	ctx := context.Background()
	const n = 1000
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			user := fmt.Sprintf("user%d@example.com", i)
			u, err := c.Lookup(ctx, user)
			switch {
			case err != nil:
				errs <- err
			case u.Name != user || u.Get("n") != user:
				errs <- fmt.Errorf("asked %s, got %+v", user, u)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := f.Accepted(); got > 2 {
		t.Errorf("%d connections for a pool of 2", got)
	}
	if got := len(f.Lines()); got != n {
		t.Errorf("server saw %d requests, want %d", got, n)
	}
}

func TestClientFailoverRefused(t *testing.T) {
	b := startFake(t, "B", "127.0.0.1:0")
	c := newClient(t, authent.ClientConfig{Addrs: []string{deadAddr(t), b.addr}, RetryAfter: time.Second})
	for range 3 {
		u, err := c.Lookup(context.Background(), "bob")
		if err != nil || u.Get("srv") != "B" {
			t.Fatalf("lookup: %+v %v", u, err)
		}
	}
}

func TestClientFailoverClosing(t *testing.T) {
	a := startFake(t, "A", "127.0.0.1:0")
	a.closeOnAccept.Store(true)
	b := startFake(t, "B", "127.0.0.1:0")
	c := newClient(t, authent.ClientConfig{Addrs: []string{a.addr, b.addr}, Conns: 1, RetryAfter: time.Second})
	u, err := c.Lookup(context.Background(), "bob")
	if err != nil || u.Get("srv") != "B" {
		t.Fatalf("lookup: %+v %v", u, err)
	}

}

// A request whose connection dies after it was sent is sent again on the
// next address, unless it is del or rename: those may have happened.
func TestClientResendAfterDrop(t *testing.T) {
	a := startFake(t, "A", "127.0.0.1:0")
	b := startFake(t, "B", "127.0.0.1:0")
	ctx := context.Background()
	c := newClient(t, authent.ClientConfig{Addrs: []string{a.addr, b.addr}, Conns: 1, RetryAfter: time.Second})
	u, err := c.Lookup(ctx, "dropA")
	if err != nil || u.Get("srv") != "B" {
		t.Fatalf("lookup: %+v %v", u, err)
	}

	// Fresh clients: after a failure A is skipped for a while.
	c2 := newClient(t, authent.ClientConfig{Addrs: []string{a.addr, b.addr}, Conns: 1})
	if err := c2.Delete(ctx, "dropA"); !errors.Is(err, authent.ErrUnavailable) {
		t.Errorf("del: %v", err)
	}
	c3 := newClient(t, authent.ClientConfig{Addrs: []string{a.addr, b.addr}, Conns: 1})
	if err := c3.Rename(ctx, "dropA", "x"); !errors.Is(err, authent.ErrUnavailable) {
		t.Errorf("rename: %v", err)
	}
	if got := a.Lines(); len(got) != 3 {
		t.Errorf("A got %q", got)
	}
	for _, l := range b.Lines() {
		if !strings.HasPrefix(l, "lookup") {
			t.Errorf("resent to B: %q", l)
		}
	}
}

func TestClientAllDown(t *testing.T) {
	c := newClient(t, authent.ClientConfig{Addrs: []string{deadAddr(t), deadAddr(t)}})
	_, err := c.Lookup(context.Background(), "bob")
	if !errors.Is(err, authent.ErrUnavailable) || errors.Is(err, authent.ErrRejected) {
		t.Fatalf("got %v, want ErrUnavailable", err)
	}
}

func TestClientRecovery(t *testing.T) {
	a := startFake(t, "A", "127.0.0.1:0")
	b := startFake(t, "B", "127.0.0.1:0")
	c := newClient(t, authent.ClientConfig{Addrs: []string{a.addr, b.addr}, Conns: 2})
	ctx := context.Background()
	srv := func() string {
		t.Helper()
		u, err := c.Lookup(ctx, "bob")
		if err != nil {
			t.Fatalf("lookup: %v", err)
		}
		return u.Get("srv")
	}
	for range 4 {
		if s := srv(); s != "A" {
			t.Fatalf("primary up: answered by %s", s)
		}
	}
	a.Close()
	for range 4 {
		if s := srv(); s != "B" {
			t.Fatalf("primary down: answered by %s", s)
		}
	}
	a.Restart()
	// Each pooled connection returns to the primary once its backoff is
	// over: wait until a round of lookups over both is answered by A.
	waitUntil(t, "client did not return to the primary on every pooled connection", func() bool {
		for range 4 {
			if srv() != "A" {
				return false
			}
		}
		return true
	})
	for range 8 {
		if s := srv(); s != "A" {
			t.Fatalf("after recovery: answered by %s", s)
		}
	}
}

func TestClientTimeoutPoisonsConn(t *testing.T) {
	f := startFake(t, "A", "127.0.0.1:0")
	// The stalled request times out after Timeout; the queued one must be
	// on the connection before then, which one round trip easily is.
	c := newClient(t, authent.ClientConfig{Addrs: []string{f.addr}, Conns: 1, Timeout: time.Second})
	ctx := context.Background()
	if _, err := c.Lookup(ctx, "warmup"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var stallErr, queuedErr error
	wg.Go(func() { _, stallErr = c.Lookup(ctx, "stall") })
	// Queue the next request behind the stalled one on the same connection.
	f.WaitLine("lookup stall")
	wg.Go(func() { _, queuedErr = c.Lookup(ctx, "queued") })
	wg.Wait()
	if !errors.Is(stallErr, authent.ErrUnavailable) {
		t.Errorf("stalled request: %v", stallErr)
	}
	if !errors.Is(queuedErr, authent.ErrUnavailable) {
		t.Errorf("request queued behind it: %v", queuedErr)
	}
	u, err := c.Lookup(ctx, "bob")
	if err != nil || u.Get("n") != "bob" {
		t.Fatalf("after the timeout: %+v %v", u, err)
	}
	if got := f.Accepted(); got != 2 {
		t.Errorf("%d connections, want 2 (the poisoned one and a fresh one)", got)
	}
}

func TestClientDropMidRequest(t *testing.T) {
	f := startFake(t, "A", "127.0.0.1:0")
	c := newClient(t, authent.ClientConfig{Addrs: []string{f.addr}, Conns: 1})
	_, err := c.Lookup(context.Background(), "drop")
	if !errors.Is(err, authent.ErrUnavailable) {
		t.Errorf("dropped: %v", err)
	}
	if _, err := c.Lookup(context.Background(), "bob"); err != nil {
		t.Errorf("after a drop: %v", err)
	}
}

func TestClientContext(t *testing.T) {
	f := startFake(t, "A", "127.0.0.1:0")
	c := newClient(t, authent.ClientConfig{Addrs: []string{f.addr}, Conns: 1})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { _, err := c.Lookup(ctx, "stall"); errc <- err }()
	f.WaitLine("lookup stall") // the request is out, its reply never comes
	cancel()
	err := <-errc // without the cancel: the client's timeout, a hang guard
	if !errors.Is(err, context.Canceled) || !errors.Is(err, authent.ErrUnavailable) {
		t.Errorf("got %v", err)
	}
	// The same with a deadline already past: nothing is sent.
	ctx, cancel = context.WithDeadline(context.Background(), time.Now())
	defer cancel()
	if _, err := c.Lookup(ctx, "bob"); !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, authent.ErrUnavailable) {
		t.Errorf("past deadline: %v", err)
	}
	if slices.Contains(f.Lines(), "lookup bob") {
		t.Error("a request whose deadline had passed was sent")
	}
}

func TestClientSecret(t *testing.T) {
	f := startFake(t, "A", "127.0.0.1:0")
	f.mu.Lock()
	f.secret = "s3cret"
	f.mu.Unlock()
	ctx := context.Background()

	c := newClient(t, authent.ClientConfig{Addrs: []string{f.addr}, Secret: "s3cret"})
	if _, err := c.Lookup(ctx, "bob"); err != nil {
		t.Errorf("with the secret: %v", err)
	}
	wrong := newClient(t, authent.ClientConfig{Addrs: []string{f.addr}, Secret: "nope"})
	if _, err := wrong.Lookup(ctx, "bob"); !errors.Is(err, authent.ErrUnavailable) || strings.Contains(err.Error(), "nope") {
		t.Errorf("wrong secret: %v", err)
	}
	// Without the secret every answer is -ERR authentication required:
	// an outage (the caller must retry later), not "no such user".
	none := newClient(t, authent.ClientConfig{Addrs: []string{f.addr}})
	if _, err := none.Lookup(ctx, "bob"); !errors.Is(err, authent.ErrUnavailable) || errors.Is(err, authent.ErrNotFound) || errors.Is(err, authent.ErrRejected) {
		t.Errorf("no secret: %v", err)
	}
	if _, err := none.Check(ctx, "bob", "good", ""); !errors.Is(err, authent.ErrUnavailable) || errors.Is(err, authent.ErrBadCredentials) {
		t.Errorf("no secret, check: %v", err)
	}
	var out strings.Builder
	if err := authent.Relay(ctx, strings.NewReader("lookup bob\n"), &out, none); err != nil || !strings.HasPrefix(out.String(), "-DEAD ") {
		t.Errorf("no secret, relay: %q %v", out.String(), err)
	}
	if _, err := authent.NewClient(authent.ClientConfig{Addrs: []string{f.addr}, Secret: "a b"}); err == nil {
		t.Error("secret with a space accepted")
	}
}

func TestClientTLS(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "directory"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	f := startFakeTLS(t, "A", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
	})
	ctx := context.Background()

	roots := x509.NewCertPool()
	roots.AddCert(cert)
	c := newClient(t, authent.ClientConfig{Addrs: []string{f.addr}, TLS: &tls.Config{RootCAs: roots}})
	if u, err := c.Lookup(ctx, "bob"); err != nil || u.Get("n") != "bob" {
		t.Errorf("TLS lookup: %+v %v", u, err)
	}
	untrusted := newClient(t, authent.ClientConfig{Addrs: []string{f.addr}, TLS: &tls.Config{}})
	if _, err := untrusted.Lookup(ctx, "bob"); !errors.Is(err, authent.ErrUnavailable) {
		t.Errorf("untrusted certificate: %v", err)
	}
}

func TestClientClose(t *testing.T) {
	f := startFake(t, "A", "127.0.0.1:0")
	c := newClient(t, authent.ClientConfig{Addrs: []string{f.addr}})
	if err := c.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := c.Ping(context.Background()); !errors.Is(err, authent.ErrUnavailable) {
		t.Errorf("after Close: %v", err)
	}
}

func TestNewClientConfig(t *testing.T) {
	for _, addrs := range [][]string{nil, {"no-port"}} {
		if _, err := authent.NewClient(authent.ClientConfig{Addrs: addrs}); err == nil {
			t.Errorf("addrs %q accepted", addrs)
		}
	}
}

func TestParseUserLine(t *testing.T) {
	for _, tc := range []struct {
		text   string
		name   string
		fields int
		ok     bool
	}{
		{`bob@test.com config 0`, "bob@test.com", 0, true},
		{`bob@test.com config 0 quota="200" fwd="fred@test.com"`, "bob@test.com", 2, true},
		{`bob config 0 name="Bob Smith" tohost=b1:25`, "bob", 2, true},
		{`bob quota="1"`, "bob", 1, true},
		{`bob`, "bob", 0, true},
		{``, "", 0, false},
		{`bob config 0 quota="1`, "", 0, false},
	} {
		u, err := authent.ParseUserLine(tc.text)
		if (err == nil) != tc.ok || tc.ok && (u.Name != tc.name || len(u.Fields) != tc.fields) {
			t.Errorf("%q: %+v %v", tc.text, u, err)
		}
	}
}

func TestParseFieldArg(t *testing.T) {
	for arg, want := range map[string]authent.Field{
		`quota=200`:         {Label: "quota", Value: "200"},
		`name="Bob Smith"`:  {Label: "name", Value: "Bob Smith"},
		`name=Bob Smith`:    {Label: "name", Value: "Bob Smith"},
		`fwd=`:              {Label: "fwd", Value: ""},
		`tohost=b1:25`:      {Label: "tohost", Value: "b1:25"},
		`x=a=b`:             {Label: "x", Value: "a=b"},
		`status=""`:         {Label: "status", Value: ""},
		`spf_block="1"`:     {Label: "spf_block", Value: "1"},
		`mailaccess="imap"`: {Label: "mailaccess", Value: "imap"},
	} {
		if got, err := authent.ParseFieldArg(arg); err != nil || got != want {
			t.Errorf("%s: %+v %v", arg, got, err)
		}
	}
	for _, arg := range []string{"quota", "=1", `a=b"c`, "a b=c"} {
		if _, err := authent.ParseFieldArg(arg); !errors.Is(err, authent.ErrInvalidRequest) {
			t.Errorf("%s: %v", arg, err)
		}
	}
}

func BenchmarkClientLookup(b *testing.B) {
	f := startFake(b, "A", "127.0.0.1:0")
	c := newClient(b, authent.ClientConfig{Addrs: []string{f.addr}, Conns: 2})
	ctx := context.Background()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Lookup(ctx, "bob"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// FuzzParseUserLine: whatever a server sends, parsing neither panics nor
// yields a field that could not be written back on one line.
func FuzzParseUserLine(f *testing.F) {
	for _, s := range []string{
		`bob@test.com config 0 quota="200" fwd="fred@test.com"`,
		`bob config 0 name="A B" x=y`, `bob`, ``, `bob config 0 a="`, `Search Complete 2 items found out of 7`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		authent.SearchTotal(s)
		u, err := authent.ParseUserLine(s)
		if err != nil {
			return
		}
		if u.Name == "" || strings.ContainsAny(u.Name, " =") {
			t.Errorf("name %q", u.Name)
		}
		for _, fl := range u.Fields {
			if !authent.ValidLabel(fl.Label) || !authent.ValidValue(fl.Value) {
				t.Errorf("field %+v", fl)
			}
		}
	})
}

// TestClientSetSecret: after SetSecret new connections send the new
// secret; a secret the protocol cannot carry is refused.
func TestClientSetSecret(t *testing.T) {
	f := startFake(t, "A", "127.0.0.1:0")
	f.mu.Lock()
	f.secret = "new-secret"
	f.mu.Unlock()
	c := newClient(t, authent.ClientConfig{Addrs: []string{f.addr}, Secret: "old-secret", RetryAfter: 10 * time.Millisecond})
	if _, err := c.Lookup(context.Background(), "bob"); !errors.Is(err, authent.ErrUnavailable) {
		t.Fatalf("with the old secret: %v", err)
	}
	if err := c.SetSecret("new secret"); err == nil {
		t.Fatal("a secret with a space accepted")
	}
	if err := c.SetSecret("new-secret"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		_, err := c.Lookup(context.Background(), "bob")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("with the new secret: %v", err)
		}
	}
}
