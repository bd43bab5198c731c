package backend

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/tohost/tohost/backend/queue"
	"github.com/tohost/tohost/protocol/authent"
)

// loginDirectory checks passwords from a map over testDirectory's users.
type loginDirectory struct {
	*fakeDirectory
	passwords map[string]string
	down      atomic.Bool
}

func (d *loginDirectory) Check(ctx context.Context, user, pass, ip string) (authent.User, error) {
	// As *authent.Client: credentials that cannot travel on a request
	// line are refused before anything is sent.
	if _, err := authent.CheckLine(user, pass, ip); err != nil {
		return authent.User{}, err
	}
	if d.down.Load() {
		return authent.User{}, fmt.Errorf("%w: connection refused", authent.ErrUnavailable)
	}
	u, err := d.Lookup(ctx, user)
	if err != nil {
		return u, err
	}
	if p, ok := d.passwords[u.Name]; !ok || p != pass {
		return authent.User{}, fmt.Errorf("%w: wrong password", authent.ErrBadCredentials)
	}
	return u, nil
}

// testRelay is a real SMTP server standing for the relay host.
type testRelay struct {
	addr string
	got  chan relayed
}

type relayed struct {
	from string
	to   []string
	data string
}

type testRelaySession struct {
	r    *testRelay
	from string
	to   []string
}

func (s *testRelaySession) Mail(from string, _ *smtp.MailOptions) error { s.from = from; return nil }
func (s *testRelaySession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = append(s.to, to)
	return nil
}
func (s *testRelaySession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err == nil {
		s.r.got <- relayed{s.from, s.to, string(b)}
	}
	return err
}
func (s *testRelaySession) Reset()        { s.from, s.to = "", nil }
func (s *testRelaySession) Logout() error { return nil }

func startTestRelay(t *testing.T) *testRelay {
	r := &testRelay{got: make(chan relayed, 100)}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &testRelaySession{r: r}, nil }))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return r
}

// submissionHarness is a Submitter on loopback over a real queue that
// delivers to a test relay.
type submissionHarness struct {
	addr  string
	dir   *loginDirectory
	relay *testRelay
	spool string
}

func startSubmission(t *testing.T) *submissionHarness {
	t.Helper()
	return startSubmissionRelay(t, "")
}

// startSubmissionRelay is startSubmission with the queue delivering to
// relayAddr ("": the test relay).
func startSubmissionRelay(t *testing.T, relayAddr string) *submissionHarness {
	t.Helper()
	h := &submissionHarness{relay: startTestRelay(t), spool: filepath.Join(t.TempDir(), ".queue")}
	if relayAddr == "" {
		relayAddr = h.relay.addr
	}
	h.dir = &loginDirectory{fakeDirectory: testDirectory(),
		passwords: map[string]string{"alice@example.com": "secret", "bob@example.com": "bobpw"}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	q, err := queue.Open(queue.Config{Dir: h.spool, Relay: relayAddr, Hostname: "backend1.example", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSubmitter(SubmissionConfig{Name: "backend1.example", Directory: h.dir, Queue: q,
		MaxMessageBytes: 10000, MaxRecipients: 3, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	served, ran := make(chan error, 1), make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	go func() { ran <- q.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		for _, c := range []chan error{served, ran} {
			select {
			case err := <-c:
				if err != nil {
					t.Error(err)
				}
			case <-time.After(hangGuard):
				t.Error("submission did not stop")
			}
		}
	})
	return h
}

func plain(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// login opens a session logged in as alice.
func (h *submissionHarness) login(t *testing.T) *client {
	c := dialClient(t, h.addr)
	c.cmd("EHLO client.test", "250 ")
	c.cmd("AUTH PLAIN "+plain("alice@example.com", "secret"), "235 ")
	return c
}

func TestSubmissionNeedsAuth(t *testing.T) {
	h := startSubmission(t)
	c := dialClient(t, h.addr)
	c.send("EHLO client.test")
	var caps []string
	for {
		l, _ := c.r.ReadString('\n')
		caps = append(caps, strings.TrimSpace(l[4:]))
		if l[3] == ' ' {
			break
		}
	}
	if !strings.Contains(strings.Join(caps, "\n"), "AUTH PLAIN LOGIN") {
		t.Fatalf("EHLO: %q", caps)
	}
	c.cmd("MAIL FROM:<alice@example.com>", "530 5.7.0")
	c.cmd("RCPT TO:<bob@example.com>", "502 ") // go-smtp: no MAIL yet
	c.cmd("AUTH PLAIN "+plain("alice@example.com", "secret"), "235 ")
	c.cmd("MAIL FROM:<alice@example.com>", "250 ")
}

func TestSubmissionLoginFailures(t *testing.T) {
	h := startSubmission(t)
	c := dialClient(t, h.addr)
	c.cmd("EHLO client.test", "250 ")
	c.cmd("AUTH PLAIN "+plain("alice@example.com", "wrong"), "535 5.7.8")
	c.cmd("AUTH PLAIN "+plain("nobody@example.com", "secret"), "535 5.7.8")
	// Acting as another user is refused, even with the right password.
	c.cmd("AUTH PLAIN "+b64("bob@example.com\x00alice@example.com\x00secret"), "535 5.7.8")
	// A user of another backend, right password: refused here.
	c.cmd("AUTH PLAIN "+plain("bob@example.com", "bobpw"), "535 5.7.8 This account is not served")
	h.dir.down.Store(true)
	c.cmd("AUTH PLAIN "+plain("alice@example.com", "secret"), "454 4.7.0")
	h.dir.down.Store(false)
	// AUTH LOGIN, with the challenges.
	c.cmd("AUTH LOGIN", "334 "+b64("Username:"))
	c.cmd(b64("alice@example.com"), "334 "+b64("Password:"))
	c.cmd(b64("wrong"), "535 5.7.8")
	c.cmd("AUTH LOGIN "+b64("alice@example.com"), "334 "+b64("Password:"))
	c.cmd(b64("secret"), "235 ")
	c.cmd("MAIL FROM:<alice@example.com>", "250 ")
}

// Credentials the directory cannot even be asked about (a space in the
// name, an empty password, a line break) are the client's mistake: 535,
// not a 454 that invites it to try again.
func TestSubmissionMalformedCredentials(t *testing.T) {
	h := startSubmission(t)
	c := dialClient(t, h.addr)
	c.cmd("EHLO client.test", "250 ")
	c.cmd("AUTH PLAIN "+plain("alice example.com", "secret"), "535 5.7.8")
	c.cmd("AUTH PLAIN "+plain("alice@example.com", ""), "535 5.7.8")
	c.cmd("AUTH PLAIN "+plain("", "secret"), "535 5.7.8")
	c.cmd("AUTH LOGIN "+b64("alice@example.com\r\nquit"), "334 "+b64("Password:"))
	c.cmd(b64("secret"), "535 5.7.8")
	c.cmd("AUTH PLAIN "+plain("alice@example.com", "secret"), "235 ")
}

func TestSubmissionSenderMustBeOwn(t *testing.T) {
	h := startSubmission(t)
	c := h.login(t)
	if l := c.cmd("MAIL FROM:<bob@example.com>", "553 5.7.1"); !strings.Contains(l, "<bob@example.com>") {
		t.Fatalf("reply does not name the address: %q", l)
	}
	c.cmd("MAIL FROM:<>", "553 5.7.1")
	c.cmd("MAIL FROM:<Alice@Example.COM>", "250 ")
}

// A message is queued (250 with its queue id) and reaches the relay with
// a Received: header in front, byte for byte otherwise; remote and local
// recipients alike.
func TestSubmissionQueuesAndRelays(t *testing.T) {
	h := startSubmission(t)
	c := h.login(t)
	msg := message("submitted", 200)
	c.cmd("MAIL FROM:<alice@example.com> SIZE=20000", "552 5.3.4") // over --max-message-size
	c.cmd("MAIL FROM:<alice@example.com>", "250 ")
	c.cmd("RCPT TO:<bob@example.com>", "250 ")
	c.cmd("RCPT TO:<someone@elsewhere.example>", "250 ")
	c.cmd("RCPT TO:<postmaster>", "501 ")
	c.data(msg)
	l := c.expect("250 2.0.0 queued as ")
	id := strings.TrimPrefix(l, "250 2.0.0 queued as ")

	var got relayed
	select {
	case got = <-h.relay.got:
	case <-time.After(hangGuard):
		t.Fatal("nothing reached the relay")
	}
	if got.from != "alice@example.com" || strings.Join(got.to, ",") != "bob@example.com,someone@elsewhere.example" {
		t.Fatalf("relay envelope %q -> %q", got.from, got.to)
	}
	re := regexp.MustCompile(`^Received: from client\.test \(\[127\.0\.0\.1\]\)\r\n\tby backend1\.example \(tohost\) with ESMTPA id ` +
		id + `;\r\n\t[A-Z][a-z]{2}, \d{1,2} [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [-+]\d{4}\r\n`)
	loc := re.FindStringIndex(got.data)
	if loc == nil {
		t.Fatalf("no Received: header in front:\n%s", got.data[:min(300, len(got.data))])
	}
	if got.data[loc[1]:] != msg {
		t.Fatal("the message was changed on its way")
	}
}

// Too many recipients get 452; a message over the size limit is refused
// whole and nothing is queued.
func TestSubmissionLimits(t *testing.T) {
	h := startSubmission(t)
	c := h.login(t)
	c.cmd("MAIL FROM:<alice@example.com>", "250 ")
	for i := range 3 {
		c.cmd(fmt.Sprintf("RCPT TO:<r%d@example.net>", i), "250 ")
	}
	c.cmd("RCPT TO:<r4@example.net>", "452 4.5.3")
	c.data(message("big", 20000))
	c.expect("552 5.3.4")
	ents, err := os.ReadDir(h.spool)
	if err != nil || len(ents) != 0 {
		t.Fatalf("spool after a refused message: %v %v", ents, err)
	}
}

// The 250 comes once the message is committed to the queue: with the
// relay down, the message and its envelope are on disk when the client
// reads the reply.
func TestSubmissionQueuedBeforeReply(t *testing.T) {
	h := startSubmissionRelay(t, "127.0.0.1:1") // nothing listens there
	c := h.login(t)
	c.cmd("MAIL FROM:<alice@example.com>", "250 ")
	c.cmd("RCPT TO:<bob@example.com>", "250 ")
	c.data(message("kept", 100))
	id := strings.TrimPrefix(c.expect("250 2.0.0 queued as "), "250 2.0.0 queued as ")
	for _, ext := range []string{".env", ".msg"} {
		if _, err := os.Stat(filepath.Join(h.spool, id+ext)); err != nil {
			t.Fatalf("acknowledged but not in the queue: %v", err)
		}
	}
}
