package pop3

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tohost/tohost/backend/maildir"
)

// Two messages: one stored with LF endings, lines starting with dots and
// no newline at the end; one with CR LF.
const (
	msg1 = "From: a@example\nSubject: one\n\nhello\n.\n..dots\nend"
	msg2 = "Subject: two\r\n\r\nline1\r\n.line2\r\nline3\r\n"
	// What RETR sends, byte-stuffed, before the terminating dot.
	wire1 = "From: a@example\r\nSubject: one\r\n\r\nhello\r\n..\r\n...dots\r\nend\r\n"
	wire2 = "Subject: two\r\n\r\nline1\r\n..line2\r\nline3\r\n"
)

// size1 and size2 are the sizes POP3 gives: CR LF endings, stuffing not
// counted.
var (
	size1 = len("From: a@example\r\nSubject: one\r\n\r\nhello\r\n.\r\n..dots\r\nend\r\n")
	size2 = len(msg2)
)

func TestLoginUserPass(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.deliver("alice", msg1)
	cl := ts.dial()
	cl.cmdPrefix("USER alice", "+OK")
	cl.expectReply("PASS secret", "+OK Logged in, 1 messages.")
	cl.expectReply("STAT", fmt.Sprintf("+OK 1 %d", size1))
	cl.expectReply("QUIT", "+OK Bye, 0 messages deleted.")
	cl.expectClosed()

	// A password with spaces, and a tohost with a port and in capitals.
	cl = ts.dial()
	cl.login("bob", "pass word")
	cl.expectReply("STAT", "+OK 0 0")
}

func TestAuthPlain(t *testing.T) {
	ts := newTestServer(t, nil)
	plain := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

	// With an initial response.
	cl := ts.dial()
	cl.cmdPrefix("AUTH PLAIN "+plain("\x00alice\x00secret"), "+OK Logged in")
	cl.cmdPrefix("STAT", "+OK 0 0")
	cl.cmdPrefix("QUIT", "+OK")
	cl.expectClosed()

	// Without: the server asks with "+ ". An authorization identity that
	// is the user's own is fine.
	cl = ts.dial()
	cl.expectReply("AUTH PLAIN", "+ ")
	cl.cmdPrefix(plain("bob\x00bob\x00pass word"), "+OK Logged in")
	cl.cmdPrefix("QUIT", "+OK")
	cl.expectClosed()
	ts.waitEnded(2)

	// Someone else's identity, bad base64, a cancelled exchange, the
	// wrong password.
	cl = ts.dial()
	cl.expectReply("AUTH PLAIN "+plain("alice\x00bob\x00pass word"), replyBadSASL[:len(replyBadSASL)-2])
	cl.expectReply("AUTH PLAIN !!!!", "-ERR Invalid base64 data.")
	cl.expectReply("AUTH PLAIN", "+ ")
	cl.expectReply("*", "-ERR Authentication cancelled.")
	cl.expectReply("AUTH PLAIN "+plain("\x00alice\x00wrong"), "-ERR [AUTH] Authentication failed.")
	cl.expectReply("AUTH CRAM-MD5", "-ERR Unsupported authentication mechanism.")

	// AUTH LOGIN, as curl may choose it.
	cl.expectReply("AUTH LOGIN", "+ VXNlcm5hbWU6")
	cl.expectReply(plain("alice"), "+ UGFzc3dvcmQ6")
	cl.cmdPrefix(plain("secret"), "+OK Logged in")
}

func TestWrongPassword(t *testing.T) {
	ts := newTestServer(t, nil)
	cl := ts.dial()
	cl.cmdPrefix("USER alice", "+OK")
	cl.expectReply("PASS wrong", "-ERR [AUTH] Authentication failed.")
	cl.cmdPrefix("USER nobody", "+OK")
	cl.expectReply("PASS secret", "-ERR [AUTH] Authentication failed.")
	// PASS needs a USER just before it.
	cl.expectReply("PASS secret", "-ERR No user name given: USER first.")
	// The third failure closes the connection.
	cl.cmdPrefix("USER alice", "+OK")
	cl.expectReply("PASS wrong", "-ERR [AUTH] Too many failed logins.")
	cl.expectClosed()
}

func TestOtherBackend(t *testing.T) {
	ts := newTestServer(t, nil)
	cl := ts.dial()
	cl.cmdPrefix("USER carol", "+OK")
	cl.expectReply("PASS secret", "-ERR [SYS/TEMP] Mailbox not on this server.")
	// A user without tohost is not taken unless AcceptDefault says so.
	cl.cmdPrefix("USER dave", "+OK")
	cl.expectReply("PASS secret", "-ERR [SYS/TEMP] Mailbox not on this server.")
	// Still in AUTHORIZATION: a user of this backend may log in.
	cl.login("alice", "secret")

	ts = newTestServer(t, func(c *Config) { c.AcceptDefault = true })
	cl = ts.dial()
	cl.login("dave", "secret")
	cl = ts.dial()
	cl.cmdPrefix("USER carol", "+OK")
	cl.expectReply("PASS secret", "-ERR [SYS/TEMP] Mailbox not on this server.")
}

func TestDirectoryDown(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.dir.setDown(true)
	cl := ts.dial()
	cl.cmdPrefix("USER alice", "+OK")
	cl.expectReply("PASS secret", "-ERR [SYS/TEMP] Temporary failure, try again later.")
	// An outage is not a failed login: no disconnection after three.
	for range 3 {
		cl.cmdPrefix("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00alice\x00secret")), "-ERR [SYS/TEMP]")
	}
	ts.dir.setDown(false)
	cl.login("alice", "secret")
}

func TestRetrieve(t *testing.T) {
	ts := newTestServer(t, nil)
	key1 := ts.deliver("alice", msg1)
	key2 := ts.deliver("alice", msg2)
	cl := ts.dial()
	cl.login("alice", "secret")
	cl.expectReply("STAT", fmt.Sprintf("+OK 2 %d", size1+size2))
	first, body := cl.multi("LIST")
	if want := fmt.Sprintf("1 %d\r\n2 %d\r\n", size1, size2); body != want {
		t.Errorf("LIST: %q, want %q", body, want)
	}
	if want := fmt.Sprintf("+OK 2 messages (%d octets).", size1+size2); first != want {
		t.Errorf("LIST: %q, want %q", first, want)
	}
	cl.expectReply("LIST 2", fmt.Sprintf("+OK 2 %d", size2))
	_, body = cl.multi("UIDL")
	if want := "1 " + key1 + "\r\n2 " + key2 + "\r\n"; body != want {
		t.Errorf("UIDL: %q, want %q", body, want)
	}
	cl.expectReply("UIDL 1", "+OK 1 "+key1)

	first, body = cl.multi("RETR 1")
	if first != fmt.Sprintf("+OK %d octets.", size1) || body != wire1 {
		t.Errorf("RETR 1: %q %q, want %q", first, body, wire1)
	}
	if _, body = cl.multi("RETR 2"); body != wire2 {
		t.Errorf("RETR 2: %q, want %q", body, wire2)
	}
	if _, body = cl.multi("TOP 2 0"); body != "Subject: two\r\n\r\n" {
		t.Errorf("TOP 2 0: %q", body)
	}
	if _, body = cl.multi("TOP 2 2"); body != "Subject: two\r\n\r\nline1\r\n..line2\r\n" {
		t.Errorf("TOP 2 2: %q", body)
	}
	if _, body = cl.multi("TOP 1 99"); body != wire1 {
		t.Errorf("TOP 1 99: %q", body)
	}
	cl.expectReply("RETR 3", "-ERR No such message.")
	cl.expectReply("LIST 0", "-ERR No such message.")
	cl.expectReply("TOP 3 1", "-ERR No such message.")
	cl.expectReply("RETR x", "-ERR Invalid message number.")
	cl.expectReply("TOP 1", "-ERR Usage: TOP message lines.")
	cl.expectReply("NOOP", "+OK")

	// CAPA after login lists no login mechanisms.
	_, body = cl.multi("CAPA")
	if strings.Contains(body, "USER") || strings.Contains(body, "SASL") || !strings.Contains(body, "UIDL\r\n") {
		t.Errorf("CAPA after login: %q", body)
	}
}

func TestPipelining(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.deliver("alice", msg2)
	cl := ts.dial()
	cl.send("USER alice\r\nPASS secret\r\nSTAT\r\nRETR 1\r\nNOOP\r\nQUIT\r\n")
	cl.expect("+OK")
	cl.expect("+OK Logged in, 1 messages.")
	cl.expect(fmt.Sprintf("+OK 1 %d", size2))
	cl.expect(fmt.Sprintf("+OK %d octets.", size2))
	var b strings.Builder
	for l := cl.line(); l != "."; l = cl.line() {
		b.WriteString(l + "\r\n")
	}
	if b.String() != wire2 {
		t.Errorf("RETR: %q", b.String())
	}
	cl.expect("+OK")
	cl.expect("+OK Bye, 0 messages deleted.")
	cl.expectClosed()
}

func TestDeleteAtQuit(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.deliver("alice", msg1)
	key2 := ts.deliver("alice", msg2)
	cl := ts.dial()
	cl.login("alice", "secret")
	cl.expectReply("DELE 1", "+OK Message 1 deleted.")
	// A deleted message is gone from the session, and not yet from the disk.
	cl.expectReply("DELE 1", "-ERR Message 1 already deleted.")
	cl.expectReply("RETR 1", "-ERR Message 1 already deleted.")
	cl.expectReply("STAT", fmt.Sprintf("+OK 1 %d", size2))
	if _, body := cl.multi("LIST"); body != fmt.Sprintf("2 %d\r\n", size2) {
		t.Errorf("LIST: %q", body)
	}
	if n := len(ts.inbox("alice")); n != 2 {
		t.Fatalf("%d messages before QUIT, want 2", n)
	}
	cl.expectReply("QUIT", "+OK Bye, 1 messages deleted.")
	cl.expectClosed()
	if got := ts.inbox("alice"); len(got) != 1 || got[0].Key != key2 {
		t.Fatalf("after QUIT: %v", got)
	}
}

func TestDropDeletesNothing(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.deliver("alice", msg1)
	cl := ts.dial()
	cl.login("alice", "secret")
	cl.cmdPrefix("DELE 1", "+OK")
	cl.c.Close()
	ts.waitEnded(1)
	if n := len(ts.inbox("alice")); n != 1 {
		t.Fatalf("%d messages after a dropped connection, want 1", n)
	}
	// And the lock went with the connection.
	cl = ts.dial()
	cl.login("alice", "secret")
	cl.expectReply("STAT", fmt.Sprintf("+OK 1 %d", size1))
}

func TestRset(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.deliver("alice", msg1)
	ts.deliver("alice", msg2)
	cl := ts.dial()
	cl.login("alice", "secret")
	cl.cmdPrefix("DELE 1", "+OK")
	cl.cmdPrefix("DELE 2", "+OK")
	cl.expectReply("STAT", "+OK 0 0")
	cl.expectReply("RSET", fmt.Sprintf("+OK 2 messages (%d octets).", size1+size2))
	cl.cmdPrefix("RETR 1", "+OK")
	for cl.line() != "." {
	}
	cl.cmdPrefix("DELE 2", "+OK")
	cl.expectReply("QUIT", "+OK Bye, 1 messages deleted.")
	cl.expectClosed()
	if got := ts.inbox("alice"); len(got) != 1 {
		t.Fatalf("after QUIT: %v", got)
	}
}

func TestUIDLStable(t *testing.T) {
	ts := newTestServer(t, nil)
	key1 := ts.deliver("alice", msg1)
	key2 := ts.deliver("alice", msg2)
	uidl := func() string {
		cl := ts.dial()
		cl.login("alice", "secret")
		_, body := cl.multi("UIDL")
		cl.cmdPrefix("QUIT", "+OK")
		cl.expectClosed()
		ts.waitEnded(1)
		return body
	}
	first := uidl()
	if first != "1 "+key1+"\r\n2 "+key2+"\r\n" {
		t.Fatalf("UIDL: %q", first)
	}
	if again := uidl(); again != first {
		t.Fatalf("UIDL changed between sessions: %q, then %q", first, again)
	}
	key3 := ts.deliver("alice", "Subject: three\n\nx\n")
	if after := uidl(); after != first+"3 "+key3+"\r\n" {
		t.Fatalf("UIDL after a delivery: %q", after)
	}
	// After deleting the first, the others keep their ids (and are
	// renumbered).
	cl := ts.dial()
	cl.login("alice", "secret")
	cl.cmdPrefix("DELE 1", "+OK")
	cl.cmdPrefix("QUIT", "+OK")
	cl.expectClosed()
	ts.waitEnded(1)
	if after := uidl(); after != "1 "+key2+"\r\n2 "+key3+"\r\n" {
		t.Fatalf("UIDL after a deletion: %q", after)
	}
}

func TestUIDLNotValid(t *testing.T) {
	// Keys too long or with spaces become a hash, the same every time.
	long := strings.Repeat("k", 71)
	if u := uidl(long); u == long || len(u) != 32 || u != uidl(long) {
		t.Errorf("uidl(%q) = %q", long, u)
	}
	if u := uidl("a b"); u == "a b" || strings.Contains(u, " ") {
		t.Errorf("uidl(%q) = %q", "a b", u)
	}
	if u := uidl("1700000000.M1P2Q3.host"); u != "1700000000.M1P2Q3.host" {
		t.Errorf("a valid key changed: %q", u)
	}
}

func TestInUse(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.deliver("alice", msg1)
	first := ts.dial()
	first.login("alice", "secret")

	second := ts.dial()
	second.cmdPrefix("USER alice", "+OK")
	second.expectReply("PASS secret", replyInUse[:len(replyInUse)-2])
	// Another user is not concerned.
	other := ts.dial()
	other.login("bob", "pass word")

	first.cmdPrefix("QUIT", "+OK")
	first.expectClosed()
	ts.waitEnded(1)
	// The second session, still in AUTHORIZATION, may now log in.
	second.login("alice", "secret")
	second.expectReply("STAT", fmt.Sprintf("+OK 1 %d", size1))
}

func TestMarkSeen(t *testing.T) {
	for _, mark := range []bool{true, false} {
		t.Run(fmt.Sprint(mark), func(t *testing.T) {
			ts := newTestServer(t, func(c *Config) { c.MarkSeen = mark })
			ts.deliver("alice", msg1)
			ts.deliver("alice", msg2)
			// Message 2 is flagged (by an IMAP client): it stays so.
			mb, _ := ts.store.Mailbox("alice")
			f, _ := mb.Folder("INBOX")
			msgs, _ := f.Sync()
			if err := f.SetFlags(msgs[1].UID, []string{`\Flagged`}); err != nil {
				t.Fatal(err)
			}
			cl := ts.dial()
			cl.login("alice", "secret")
			cl.multi("RETR 2")
			cl.multi("TOP 1 1") // TOP does not mark
			cl.cmdPrefix("QUIT", "+OK")
			cl.expectClosed()
			got := ts.inbox("alice")
			if len(got) != 2 {
				t.Fatalf("messages: %v", got)
			}
			if slices.Contains(got[0].Flags, `\Seen`) {
				t.Errorf("message 1 (TOP only) flagged %v", got[0].Flags)
			}
			if slices.Contains(got[1].Flags, `\Seen`) != mark {
				t.Errorf("message 2 (RETR) flagged %v with MarkSeen %v", got[1].Flags, mark)
			}
			if !slices.Contains(got[1].Flags, `\Flagged`) {
				t.Errorf("message 2 lost its flag: %v", got[1].Flags)
			}
		})
	}
}

func TestXCLIENT(t *testing.T) {
	// From a trusted peer: the directory sees the address XCLIENT gives.
	ts := newTestServer(t, func(c *Config) { c.TrustedProxies = []netip.Prefix{loopbackNet} })
	cl := ts.dial()
	if _, body := cl.multi("CAPA"); !strings.Contains(body, "XCLIENT\r\n") {
		t.Errorf("CAPA to a trusted proxy: %q", body)
	}
	cl.expectReply("XCLIENT ADDR=192.0.2.7 PORT=4242", "+OK")
	cl.login("alice", "secret")
	if ip := ts.dir.lastIP(); ip != "192.0.2.7" {
		t.Errorf("directory saw %q, want the XCLIENT address", ip)
	}
	cl.expectReply("XCLIENT ADDR=192.0.2.8", "-ERR Already logged in.")

	cl = ts.dial()
	cl.expectReply("XCLIENT ADDR=IPV6:2001:db8::1 PORT=1", "+OK")
	cl.login("bob", "pass word")
	if ip := ts.dir.lastIP(); ip != "2001:db8::1" {
		t.Errorf("directory saw %q", ip)
	}
	cl = ts.dial()
	cl.expectReply("XCLIENT ADDR=not-an-address", "-ERR Invalid XCLIENT ADDR.")

	// From anyone else: refused, and the peer's own address is used.
	ts = newTestServer(t, func(c *Config) { c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")} })
	cl = ts.dial()
	if _, body := cl.multi("CAPA"); strings.Contains(body, "XCLIENT") {
		t.Errorf("CAPA to an untrusted peer: %q", body)
	}
	cl.expectReply("XCLIENT ADDR=192.0.2.7 PORT=4242", "-ERR XCLIENT not allowed.")
	cl.login("alice", "secret")
	if ip := ts.dir.lastIP(); ip != "127.0.0.1" {
		t.Errorf("directory saw %q, want the peer's address", ip)
	}
}

func TestBadInput(t *testing.T) {
	ts := newTestServer(t, nil)
	cl := ts.dial()
	cl.expectReply("HELO", "-ERR Unknown command.")
	cl.expectReply("RETR 1", "-ERR Not logged in.")
	cl.expectReply("", "-ERR Empty command.")
	cl.expectReply("RE TR", "-ERR Unknown command.")
	cl.expectReply("R3TR 1", "-ERR Invalid command.")
	cl.expectReply("STLS", "-ERR STLS not available.")
	// Lower case is fine.
	cl.cmdPrefix("user alice", "+OK")
	cl.cmdPrefix("pass secret", "+OK Logged in")
	cl.expectReply("USER bob", "-ERR Already logged in.")
	cl.expectReply("STAT 1", "-ERR STAT takes no argument.")
	cl.expectReply("LIST -1", "-ERR Invalid message number.")
	// That is nine: the tenth closes the connection.
	cl.expectReply("FOO", replyTooManyBad[:len(replyTooManyBad)-2])
	cl.expectClosed()
	// The maildrop was not touched and its lock is free again.
	ts.waitEnded(1)
	cl = ts.dial()
	cl.login("alice", "secret")
}

func TestLineTooLong(t *testing.T) {
	ts := newTestServer(t, nil)
	cl := ts.dial()
	// A line of MaxLine is read whole.
	cl.expectReply("NOOP"+strings.Repeat("x", MaxLine-4), "-ERR Invalid command.")
	cl.expectReply("USER "+strings.Repeat("a", MaxLine-5), "+OK")
	// One more byte is too much, with CR LF or a bare LF: the answer
	// arrives, then the end.
	cl.send("USER " + strings.Repeat("a", MaxLine-4) + "\n")
	cl.expect("-ERR Line too long.")
	cl.expectClosed()
	cl = ts.dial()
	cl.send("USER " + strings.Repeat("a", 64<<10) + "\r\nNOOP\r\n")
	cl.expect("-ERR Line too long.")
	cl.expectClosed()
}

func TestShutdown(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.deliver("alice", msg1)
	cl := ts.dial()
	cl.login("alice", "secret")
	cl.cmdPrefix("DELE 1", "+OK")
	idle := ts.dial()
	ts.stop()
	cl.expect("-ERR [SYS/TEMP] Server shutting down.")
	cl.expectClosed()
	idle.expect("-ERR [SYS/TEMP] Server shutting down.")
	idle.expectClosed()
	select {
	case err := <-ts.done:
		ts.done <- err // for the cleanup
	case <-time.After(hangGuard):
		t.Fatal("Serve did not return")
	}
	if n := len(ts.inbox("alice")); n != 1 {
		t.Fatalf("%d messages after shutdown, want 1: only QUIT deletes", n)
	}
}

// expectReply sends a command and checks its one-line answer.
func (cl *client) expectReply(line, want string) {
	cl.t.Helper()
	if got := cl.cmd(line); got != want {
		cl.t.Fatalf("%s: got %q, want %q", line, got, want)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	ts := newTestServer(t, func(c *Config) { c.Metrics = m })
	ts.deliver("alice", msg1)
	ts.deliver("alice", msg2)
	cl := ts.dial()
	cl.cmdPrefix("USER alice", "+OK")
	cl.cmdPrefix("PASS wrong", "-ERR [AUTH]")
	cl.login("alice", "secret")
	second := ts.dial()
	second.cmdPrefix("USER alice", "+OK")
	second.cmdPrefix("PASS secret", "-ERR [IN-USE]")
	if n := testutil.ToFloat64(m.sessions); n != 2 {
		t.Errorf("sessions open: %v, want 2", n)
	}
	cl.multi("RETR 1")
	cl.multi("RETR 2")
	cl.cmdPrefix("DELE 1", "+OK")
	cl.cmdPrefix("QUIT", "+OK")
	cl.expectClosed()
	second.c.Close()
	ts.waitEnded(2)
	for outcome, want := range map[string]float64{outcomeOK: 1, outcomeFailed: 1, outcomeInUse: 1, outcomeUnavailable: 0} {
		if n := testutil.ToFloat64(m.logins.WithLabelValues(outcome)); n != want {
			t.Errorf("logins %s: %v, want %v", outcome, n, want)
		}
	}
	if n := testutil.ToFloat64(m.retrieved); n != 2 {
		t.Errorf("retrieved: %v, want 2", n)
	}
	if n := testutil.ToFloat64(m.deleted); n != 1 {
		t.Errorf("deleted: %v, want 1", n)
	}
	if n := testutil.ToFloat64(m.sessions); n != 0 {
		t.Errorf("sessions open after both ended: %v", n)
	}
}

func TestShutdownDrain(t *testing.T) {
	// A client that stops reading in the middle of a big RETR holds its
	// session in a write: after the drain time its connection is closed
	// and Serve returns, with nothing deleted.
	ts := newTestServer(t, func(c *Config) { c.DrainTimeout = time.Millisecond })
	big := "Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("x", 998)+"\r\n", 16<<10) // 16 MiB
	ts.deliver("alice", big)
	ts.deliver("alice", msg2)
	cl := ts.dial()
	cl.c.(*net.TCPConn).SetReadBuffer(4096)
	cl.login("alice", "secret")
	cl.cmdPrefix("DELE 2", "+OK")
	cl.send("RETR 1\r\n")
	cl.expect(fmt.Sprintf("+OK %d octets.", len(big)))
	ts.stop()
	select {
	case err := <-ts.done:
		ts.done <- err
	case <-time.After(hangGuard):
		t.Fatal("Serve did not return: the stalled session was not closed")
	}
	if n := len(ts.inbox("alice")); n != 2 {
		t.Fatalf("%d messages, want 2", n)
	}
}

// lockProbe is a server-side connection that, when the server writes the
// goodbye of QUIT, tries the user's POP3 lock: a client reading that
// goodbye and logging in again at once must find the maildrop free.
type lockProbe struct {
	net.Conn
	mb     *maildir.Mailbox
	inUse  chan bool
	probed atomic.Bool
}

func (p *lockProbe) Write(b []byte) (int, error) {
	if bytes.Contains(b, []byte("+OK Bye")) && !p.probed.Swap(true) {
		unlock, err := p.mb.LockPOP3()
		if err == nil {
			unlock()
		}
		p.inUse <- errors.Is(err, maildir.ErrInUse)
	}
	return p.Conn.Write(b)
}

type probeListener struct {
	net.Listener
	mb    *maildir.Mailbox
	inUse chan bool
}

func (l probeListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &lockProbe{Conn: c, mb: l.mb, inUse: l.inUse}, nil
}

// TestQuitUnlocksBeforeReply: the POP3 lock is released (after the
// deletions) before QUIT's +OK is written.
func TestQuitUnlocksBeforeReply(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.deliver("alice", msg1)
	mb, err := ts.store.Mailbox("alice")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	inUse := make(chan bool, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ts.srv.Serve(ctx, probeListener{Listener: ln, mb: mb, inUse: inUse}) }()
	defer func() { cancel(); <-done }()
	ts.addr = ln.Addr().String()

	cl := ts.dial()
	cl.login("alice", "secret")
	cl.cmdPrefix("DELE 1", "+OK")
	cl.cmdPrefix("QUIT", "+OK Bye, 1 messages deleted.")
	select {
	case held := <-inUse:
		if held {
			t.Fatal("QUIT's +OK was written while the session still held the POP3 lock")
		}
	case <-time.After(hangGuard):
		t.Fatal("no goodbye written")
	}
	if got := ts.inbox("alice"); len(got) != 0 {
		t.Fatalf("INBOX after DELE and QUIT: %+v", got)
	}
}
