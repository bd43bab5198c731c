package backend

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tohost/tohost/backend/home"
	"github.com/tohost/tohost/backend/maildir"
	"github.com/tohost/tohost/protocol/authent"
)

// hangGuard bounds every wait of these tests; it is never what a test
// measures.
const hangGuard = 30 * time.Second

// fakeDirectory answers lookups from a map; down makes every lookup an
// outage.
type fakeDirectory struct {
	mu    sync.Mutex
	users map[string]authent.User
	down  atomic.Bool
}

// set replaces a user while the servers run.
func (f *fakeDirectory) set(u authent.User) {
	f.mu.Lock()
	f.users[u.Name] = u
	f.mu.Unlock()
}

func (f *fakeDirectory) Lookup(_ context.Context, user string) (authent.User, error) {
	if f.down.Load() {
		return authent.User{}, fmt.Errorf("%w: connection refused", authent.ErrUnavailable)
	}
	f.mu.Lock()
	u, ok := f.users[strings.ToLower(user)]
	f.mu.Unlock()
	if !ok {
		return authent.User{}, fmt.Errorf("%w: %s does not exist", authent.ErrNotFound, user)
	}
	return u, nil
}

func dirUser(name string, fields ...string) authent.User {
	u := authent.User{Name: name}
	for i := 0; i+1 < len(fields); i += 2 {
		u.Fields = append(u.Fields, authent.Field{Label: fields[i], Value: fields[i+1]})
	}
	return u
}

// testDirectory: this backend is backend1.example.
func testDirectory() *fakeDirectory {
	users := []authent.User{
		dirUser("alice@example.com", "tohost", "backend1.example"),
		dirUser("alice2@example.com", "tohost", "BACKEND1.Example:24"), // case and port aside, ours
		dirUser("bob@example.com", "tohost", "backend2.example"),
		dirUser("carol@example.com", "tohost", "backend1.example", "quota", "100"),
		dirUser("dave@example.com", "tohost", "backend1.example", "quota", "300"),
		dirUser("erin@example.com"), // no tohost
		dirUser("frank@example.com", "tohost", "backend1.example", "quota", "1000000000"),
		dirUser("../evil@example.com", "tohost", "backend1.example"), // a name the store refuses
	}
	f := &fakeDirectory{users: map[string]authent.User{}}
	for _, u := range users {
		f.users[u.Name] = u
	}
	return f
}

type harness struct {
	t       *testing.T
	d       *Deliverer
	store   MailStore
	root    string
	lmtp    string
	smtp    string
	reg     *prometheus.Registry
	cancel  context.CancelFunc
	stopped chan error // one value per server
}

// start runs a Deliverer for testDirectory (unless cfg has a directory)
// over a store in a temporary directory, with LMTP and SMTP on loopback.
// wrap, if set, wraps the store.
func start(t *testing.T, cfg DeliveryConfig, wrap func(MailStore) MailStore) *harness {
	t.Helper()
	h := &harness{t: t, root: t.TempDir(), reg: prometheus.NewRegistry(), stopped: make(chan error, 2)}
	st, err := maildir.Open(h.root, maildir.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h.store = st
	if wrap != nil {
		h.store = wrap(st)
	}
	if cfg.Name == "" {
		cfg.Name = "backend1.example"
	}
	if cfg.Directory == nil {
		cfg.Directory = testDirectory()
	}
	cfg.Store = h.store
	cfg.Metrics = NewDeliveryMetrics(h.reg)
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	h.d, err = NewDeliverer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	for _, lmtp := range []bool{true, false} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if lmtp {
			h.lmtp = ln.Addr().String()
			go func() { h.stopped <- h.d.ServeLMTP(ctx, ln) }()
		} else {
			h.smtp = ln.Addr().String()
			go func() { h.stopped <- h.d.ServeSMTP(ctx, ln) }()
		}
	}
	t.Cleanup(h.stop)
	return h
}

// stop stops the servers and waits until both returned.
func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	for range 2 {
		select {
		case err := <-h.stopped:
			if err != nil {
				h.t.Errorf("serve: %v", err)
			}
		case <-time.After(hangGuard):
			h.t.Fatal("servers did not stop")
		}
	}
}

// mail returns the messages in user's Maildir new/, sorted.
func (h *harness) mail(user string) []string {
	h.t.Helper()
	local, domain, _ := strings.Cut(strings.ToLower(user), "@")
	dir := filepath.Join(h.root, domain, local, "new")
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		h.t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			h.t.Fatal(err)
		}
		out = append(out, string(b))
	}
	sort.Strings(out)
	return out
}

// expectMail fails unless user's new/ holds exactly msgs.
func (h *harness) expectMail(user string, msgs ...string) {
	h.t.Helper()
	got := h.mail(user)
	if len(got) != len(msgs) {
		h.t.Fatalf("%s has %d messages, want %d", user, len(got), len(msgs))
	}
	sort.Strings(msgs)
	for i := range got {
		if got[i] != msgs[i] {
			h.t.Fatalf("%s: message on disk %q, want %q", user, got[i], msgs[i])
		}
	}
}

func (h *harness) counter(proto, outcome string) float64 {
	return testutil.ToFloat64(h.d.cfg.Metrics.recipients.WithLabelValues(proto, outcome))
}

// client is a raw SMTP/LMTP client.
type client struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

func dialClient(t *testing.T, addr string) *client {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(hangGuard))
	c := &client{t: t, nc: nc, r: bufio.NewReader(nc)}
	c.expect("220 ")
	return c
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.nc, s+"\r\n"); err != nil {
		c.t.Fatal(err)
	}
}

// reply reads one reply (all its lines) and returns its last line.
func (c *client) reply() string {
	c.t.Helper()
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("read: %v (got %q)", err, l)
		}
		l = strings.TrimRight(l, "\r\n")
		if len(l) < 4 || l[3] != '-' {
			return l
		}
	}
}

// expect reads a reply and fails unless it starts with want.
func (c *client) expect(want string) string {
	c.t.Helper()
	l := c.reply()
	if !strings.HasPrefix(l, want) {
		c.t.Fatalf("reply %q, want %q...", l, want)
	}
	return l
}

// cmd sends a command and expects a reply starting with want.
func (c *client) cmd(line, want string) string {
	c.t.Helper()
	c.send(line)
	return c.expect(want)
}

// data sends DATA and the message (lines ending in CRLF, dot-stuffed here).
func (c *client) data(msg string) {
	c.t.Helper()
	c.cmd("DATA", "354 ")
	var b strings.Builder
	for _, l := range strings.SplitAfter(msg, "\r\n") {
		if strings.HasPrefix(l, ".") {
			b.WriteString(".")
		}
		b.WriteString(l)
	}
	b.WriteString(".\r\n")
	if _, err := io.WriteString(c.nc, b.String()); err != nil {
		c.t.Fatal(err)
	}
}

func message(subject string, bodyBytes int) string {
	var b strings.Builder
	b.WriteString("From: sender@example.org\r\nTo: someone@example.com\r\nSubject: " + subject + "\r\n\r\n")
	b.WriteString(".a line that starts with a dot\r\n")
	for b.Len() < bodyBytes {
		b.WriteString("0123456789012345678901234567890123456789012345678901234567890123456789\r\n")
	}
	return b.String()
}

// TestLMTPRecipients: one LMTP transaction with a recipient of this
// backend, one of another backend, an unknown one and two over quota (one
// known at RCPT from SIZE=, one at DATA); each gets its own reply, and the
// message is on disk, byte for byte, for those who got 250 only.
func TestLMTPRecipients(t *testing.T) {
	h := start(t, DeliveryConfig{}, nil)
	c := dialClient(t, h.lmtp)
	c.cmd("LHLO mta.example.org", "250 ")

	msg := message("first", 200)
	c.cmd(fmt.Sprintf("MAIL FROM:<sender@example.org> SIZE=%d", len(msg)), "250 ")
	c.cmd("RCPT TO:<alice@example.com>", "250 ")
	c.cmd("RCPT TO:<bob@example.com>", "450 4.2.0 ")
	c.cmd("RCPT TO:<nobody@example.com>", "550 5.1.1 ")
	c.cmd("RCPT TO:<carol@example.com>", "552 5.2.2 ") // quota 100 < SIZE
	c.cmd("RCPT TO:<Alice2@Example.com>", "250 ")
	c.data(msg)
	c.expect("250 2.0.0 <alice@example.com>")
	c.expect("250 2.0.0 <Alice2@Example.com>")

	// Without SIZE=, dave (quota 300) is accepted at RCPT and refused at
	// DATA, when the message (over 300 bytes) has come; alice still gets it.
	msg2 := message("second", 400)
	c.cmd("MAIL FROM:<sender@example.org>", "250 ")
	c.cmd("RCPT TO:<dave@example.com>", "250 ")
	c.cmd("RCPT TO:<alice@example.com>", "250 ")
	c.data(msg2)
	c.expect("552 5.2.2 <dave@example.com>")
	c.expect("250 2.0.0 <alice@example.com>")
	// A message that fits dave's quota reaches him.
	small := "Subject: small\r\n\r\nhi\r\n"
	c.cmd("MAIL FROM:<sender@example.org>", "250 ")
	c.cmd("RCPT TO:<dave@example.com>", "250 ")
	c.data(small)
	c.expect("250 2.0.0 <dave@example.com>")
	c.cmd("QUIT", "221 ")

	h.expectMail("alice@example.com", msg, msg2)
	h.expectMail("alice2@example.com", msg)
	h.expectMail("dave@example.com", small)
	for _, u := range []string{"bob@example.com", "nobody@example.com", "carol@example.com"} {
		h.expectMail(u)
	}
	for _, tc := range []struct {
		outcome string
		want    float64
	}{{outcomeDelivered, 4}, {outcomeOtherServer, 1}, {outcomeUnknown, 1}, {outcomeOverQuota, 2}} {
		if got := h.counter("lmtp", tc.outcome); got != tc.want {
			t.Errorf("deliveries_total{lmtp,%s} = %v, want %v", tc.outcome, got, tc.want)
		}
	}
	if got := testutil.ToFloat64(h.d.cfg.Metrics.bytes.WithLabelValues("lmtp")); got != float64(len(msg)+len(msg2)+len(small)) {
		t.Errorf("delivered bytes %v, want %d", got, len(msg)+len(msg2)+len(small))
	}
}

// TestLMTPSameMailboxTwice: two RCPTs of one mailbox get a reply each and
// one copy.
func TestLMTPSameMailboxTwice(t *testing.T) {
	h := start(t, DeliveryConfig{}, nil)
	c := dialClient(t, h.lmtp)
	c.cmd("LHLO mta.example.org", "250 ")
	c.cmd("MAIL FROM:<>", "250 ")
	c.cmd("RCPT TO:<alice@example.com>", "250 ")
	c.cmd("RCPT TO:<ALICE@example.com>", "250 ")
	msg := message("twice", 100)
	c.data(msg)
	c.expect("250 2.0.0 <alice@example.com>")
	c.expect("250 2.0.0 <ALICE@example.com>")
	h.expectMail("alice@example.com", msg)
}

// TestBadMailboxName: a directory name the store refuses (it would
// leave the mail directory) is a permanent failure of that recipient only.
func TestBadMailboxName(t *testing.T) {
	h := start(t, DeliveryConfig{}, nil)
	c := dialClient(t, h.lmtp)
	c.cmd("LHLO mta.example.org", "250 ")
	c.cmd("MAIL FROM:<>", "250 ")
	c.cmd("RCPT TO:<../evil@example.com>", "250 ")
	c.cmd("RCPT TO:<alice@example.com>", "250 ")
	c.data("Subject: x\r\n\r\nx\r\n")
	c.expect("550 5.1.3 <../evil@example.com>")
	c.expect("250 2.0.0 <alice@example.com>")
	h.expectMail("alice@example.com", "Subject: x\r\n\r\nx\r\n")
	if _, err := os.Stat(filepath.Join(filepath.Dir(h.root), "evil")); !os.IsNotExist(err) {
		t.Fatalf("something was made outside the mail directory: %v", err)
	}
}

// TestLMTPChunking: BDAT chunks make one message, stored as sent; a
// transfer reset between chunks stores nothing.
func TestLMTPChunking(t *testing.T) {
	h := start(t, DeliveryConfig{}, nil)
	c := dialClient(t, h.lmtp)
	c.cmd("LHLO mta.example.org", "250 ")
	part1, part2 := "Subject: chunks\r\n\r\n.first ", "and second\r\n"
	c.cmd("MAIL FROM:<sender@example.org>", "250 ")
	c.cmd("RCPT TO:<alice@example.com>", "250 ")
	c.send(fmt.Sprintf("BDAT %d", len(part1)))
	io.WriteString(c.nc, part1)
	c.expect("250 ")
	c.send(fmt.Sprintf("BDAT %d LAST", len(part2)))
	io.WriteString(c.nc, part2)
	c.expect("250 2.0.0 <alice@example.com>")

	c.cmd("MAIL FROM:<sender@example.org>", "250 ")
	c.cmd("RCPT TO:<alice@example.com>", "250 ")
	c.send(fmt.Sprintf("BDAT %d", len(part1)))
	io.WriteString(c.nc, part1)
	c.expect("250 ")
	c.cmd("RSET", "250 ")
	c.cmd("NOOP", "250 ")
	eventually(t, func() bool { return h.counter("lmtp", outcomeFailed) == 1 })
	h.expectMail("alice@example.com", part1+part2)
}

// TestSMTP: SMTP gives one reply for all recipients: 250 when all have
// the message, the failure otherwise.
func TestSMTP(t *testing.T) {
	h := start(t, DeliveryConfig{}, nil)
	c := dialClient(t, h.smtp)
	c.cmd("LHLO mta.example.org", "500 ") // not an LMTP server
	c.cmd("EHLO mta.example.org", "250 ")
	msg := message("smtp", 1000)
	c.cmd("MAIL FROM:<sender@example.org>", "250 ")
	c.cmd("RCPT TO:<alice@example.com>", "250 ")
	c.cmd("RCPT TO:<bob@example.com>", "450 4.2.0 ")
	c.cmd("RCPT TO:<nobody@example.com>", "550 5.1.1 ")
	c.data(msg)
	c.expect("250 2.0.0 ")
	h.expectMail("alice@example.com", msg)

	// dave over quota at DATA: alice has it, and the one reply is dave's.
	c.cmd("MAIL FROM:<sender@example.org>", "250 ")
	c.cmd("RCPT TO:<alice@example.com>", "250 ")
	c.cmd("RCPT TO:<dave@example.com>", "250 ")
	c.data(msg)
	c.expect("552 5.2.2 ")
	h.expectMail("alice@example.com", msg, msg)
	h.expectMail("dave@example.com")
	if got := h.counter("smtp", outcomeDelivered); got != 2 {
		t.Errorf("deliveries_total{smtp,delivered} = %v, want 2", got)
	}
}

// TestDirectoryDown: with the directory out, every recipient is a
// temporary failure, never "no such user"; back, mail flows.
func TestDirectoryDown(t *testing.T) {
	dir := testDirectory()
	h := start(t, DeliveryConfig{Directory: dir}, nil)
	dir.down.Store(true)
	for _, addr := range []string{h.lmtp, h.smtp} {
		c := dialClient(t, addr)
		if addr == h.lmtp {
			c.cmd("LHLO mta.example.org", "250 ")
		} else {
			c.cmd("EHLO mta.example.org", "250 ")
		}
		c.cmd("MAIL FROM:<sender@example.org>", "250 ")
		c.cmd("RCPT TO:<alice@example.com>", "451 4.3.0 ")
		c.cmd("RCPT TO:<nobody@example.com>", "451 4.3.0 ")
		c.cmd("RSET", "250 ")
	}
	if got := h.counter("lmtp", outcomeUnavailable); got != 2 {
		t.Errorf("deliveries_total{lmtp,directory_unavailable} = %v, want 2", got)
	}
	dir.down.Store(false)
	c := dialClient(t, h.lmtp)
	c.cmd("LHLO mta.example.org", "250 ")
	c.cmd("MAIL FROM:<sender@example.org>", "250 ")
	c.cmd("RCPT TO:<alice@example.com>", "250 ")
	c.data("Subject: back\r\n\r\nback\r\n")
	c.expect("250 2.0.0 <alice@example.com>")
	h.expectMail("alice@example.com", "Subject: back\r\n\r\nback\r\n")
}

// TestMaxMessageSize: over --max-message-size is 552 5.3.4, announced
// (SIZE=) or not, and nothing is stored; a message under it goes.
func TestMaxMessageSize(t *testing.T) {
	h := start(t, DeliveryConfig{MaxMessageBytes: 1000}, nil)
	for _, addr := range []string{h.lmtp, h.smtp} {
		c := dialClient(t, addr)
		lmtp := addr == h.lmtp
		if lmtp {
			c.cmd("LHLO mta.example.org", "250 ")
		} else {
			c.cmd("EHLO mta.example.org", "250 ")
		}
		c.cmd("MAIL FROM:<sender@example.org> SIZE=1001", "552 5.3.4 ")
		c.cmd("MAIL FROM:<sender@example.org>", "250 ")
		c.cmd("RCPT TO:<alice@example.com>", "250 ")
		c.cmd("RCPT TO:<frank@example.com>", "250 ") // a quota, far from full
		c.data(message("big", 5000))
		c.expect("552 5.3.4 ")
		if lmtp {
			c.expect("552 5.3.4 ")
		}
		// The connection is still usable.
		c.cmd("MAIL FROM:<sender@example.org>", "250 ")
		c.cmd("RCPT TO:<alice@example.com>", "250 ")
		c.data("Subject: ok\r\n\r\nok\r\n")
		c.expect("250 ")
	}
	h.expectMail("alice@example.com", "Subject: ok\r\n\r\nok\r\n", "Subject: ok\r\n\r\nok\r\n")
	h.expectMail("frank@example.com")
	if got := h.counter("lmtp", outcomeTooLarge); got != 2 {
		t.Errorf("deliveries_total{lmtp,too_large} = %v, want 2", got)
	}
}

// TestAcceptDefault: a user without tohost is another backend's (450)
// unless AcceptDefault is set.
func TestAcceptDefault(t *testing.T) {
	for _, accept := range []bool{false, true} {
		t.Run(fmt.Sprint(accept), func(t *testing.T) {
			h := start(t, DeliveryConfig{AcceptDefault: accept}, nil)
			c := dialClient(t, h.lmtp)
			c.cmd("LHLO mta.example.org", "250 ")
			c.cmd("MAIL FROM:<sender@example.org>", "250 ")
			if !accept {
				c.cmd("RCPT TO:<erin@example.com>", "450 4.2.0 ")
				c.cmd("RCPT TO:<bob@example.com>", "450 4.2.0 ")
				h.expectMail("erin@example.com")
				return
			}
			c.cmd("RCPT TO:<erin@example.com>", "250 ")
			c.cmd("RCPT TO:<bob@example.com>", "450 4.2.0 ") // another backend's still
			c.data("Subject: default\r\n\r\nx\r\n")
			c.expect("250 2.0.0 <erin@example.com>")
			h.expectMail("erin@example.com", "Subject: default\r\n\r\nx\r\n")
		})
	}
}

// TestCutShort: a message whose client goes away before the end is never
// stored.
func TestCutShort(t *testing.T) {
	h := start(t, DeliveryConfig{}, nil)
	c := dialClient(t, h.lmtp)
	c.cmd("LHLO mta.example.org", "250 ")
	c.cmd("MAIL FROM:<sender@example.org>", "250 ")
	c.cmd("RCPT TO:<alice@example.com>", "250 ")
	c.cmd("DATA", "354 ")
	io.WriteString(c.nc, message("cut", 3000))
	c.nc.Close()
	eventually(t, func() bool { return h.counter("lmtp", outcomeFailed) == 1 })
	h.expectMail("alice@example.com")
}

// eventually polls cond until it holds (a hang guard away).
func eventually(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(hangGuard); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition never held")
		}
	}
}

// gatedStore holds DeliverManyChecked until released, and records whether it
// had returned each time the server wrote a reply to a client.
type gatedStore struct {
	MailStore
	entered  chan struct{}
	release  chan struct{}
	fail     error
	returned atomic.Bool
}

func (g *gatedStore) DeliverManyChecked(users []string, r io.Reader, check func() []error) []error {
	g.entered <- struct{}{}
	<-g.release
	errs := g.MailStore.DeliverManyChecked(users, r, check)
	if g.fail != nil {
		for i := range errs {
			errs[i] = g.fail
		}
	}
	g.returned.Store(true)
	return errs
}

// TestReplyAfterStore: the 250 is written only after the store returned,
// and a store failure is a temporary failure, not a 250.
func TestReplyAfterStore(t *testing.T) {
	g := &gatedStore{entered: make(chan struct{}, 1), release: make(chan struct{})}
	h := start(t, DeliveryConfig{}, func(s MailStore) MailStore { g.MailStore = s; return g })
	c := dialClient(t, h.lmtp)
	c.cmd("LHLO mta.example.org", "250 ")
	c.cmd("MAIL FROM:<sender@example.org>", "250 ")
	c.cmd("RCPT TO:<alice@example.com>", "250 ")
	c.data("Subject: wait\r\n\r\nx\r\n")
	<-g.entered
	// Nothing may be answered now; the reader below records whether the
	// store had returned when the reply came.
	got := make(chan string, 1)
	go func() {
		l, _ := c.r.ReadString('\n')
		if !g.returned.Load() {
			l = "before the store returned: " + l
		}
		got <- l
	}()
	close(g.release)
	if l := <-got; !strings.HasPrefix(l, "250 2.0.0 <alice@example.com>") {
		t.Fatalf("reply %q", l)
	}

	g.fail = errors.New("disk on fire")
	c.cmd("MAIL FROM:<sender@example.org>", "250 ")
	c.cmd("RCPT TO:<alice@example.com>", "250 ")
	c.data("Subject: fail\r\n\r\nx\r\n")
	<-g.entered
	c.expect("451 4.3.0 <alice@example.com>")
	if got := h.counter("lmtp", outcomeFailed); got != 1 {
		t.Errorf("deliveries_total{lmtp,failed} = %v, want 1", got)
	}
}

// TestShutdown: at a stop, a connection between transactions is told 421
// and closed at once; a transaction under way gets its reply, then its
// connection closes; the servers return once both are done.
func TestShutdown(t *testing.T) {
	g := &gatedStore{entered: make(chan struct{}, 1), release: make(chan struct{})}
	h := start(t, DeliveryConfig{}, func(s MailStore) MailStore { g.MailStore = s; return g })
	idle := dialClient(t, h.lmtp)
	idle.cmd("LHLO mta.example.org", "250 ")
	busy := dialClient(t, h.lmtp)
	busy.cmd("LHLO mta.example.org", "250 ")
	busy.cmd("MAIL FROM:<sender@example.org>", "250 ")
	busy.cmd("RCPT TO:<alice@example.com>", "250 ")
	busy.data("Subject: drain\r\n\r\nx\r\n")
	<-g.entered

	stopped := make(chan struct{})
	go func() { h.stop(); close(stopped) }()
	idle.expect("421 4.3.2 ")
	if _, err := idle.r.ReadString('\n'); err != io.EOF {
		t.Fatalf("idle connection after 421: %v", err)
	}
	select {
	case <-stopped:
		t.Fatal("servers stopped with a delivery under way")
	default:
	}
	close(g.release)
	busy.expect("250 2.0.0 <alice@example.com>")
	if _, err := busy.r.ReadString('\n'); err != io.EOF {
		t.Fatalf("connection after its transaction: %v", err)
	}
	<-stopped
	h.expectMail("alice@example.com", "Subject: drain\r\n\r\nx\r\n")
}

// TestStopAtOnce: a server stopped before it got to accepting returns.
func TestStopAtOnce(t *testing.T) {
	d, err := NewDeliverer(DeliveryConfig{Name: "b", Directory: testDirectory(), Store: &gatedStore{}})
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		done := make(chan error, 1)
		go func() { done <- d.ServeSMTP(ctx, ln) }()
		select {
		case <-done:
		case <-time.After(hangGuard):
			t.Fatal("a server stopped before it started never returned")
		}
	}
}

// TestHostOf: the tohost forms that name this backend.
func TestHostOf(t *testing.T) {
	for in, want := range map[string]string{
		"backend1.example":      "backend1.example",
		"backend1.example:24":   "backend1.example",
		"backend1.example.":     "backend1.example",
		"[::1]:2424":            "::1",
		"::1":                   "::1",
		"[::1]":                 "::1",
		"192.0.2.1:24":          "192.0.2.1",
		"BACKEND1.EXAMPLE:2424": "BACKEND1.EXAMPLE",
	} {
		if got := home.HostOf(in); got != want {
			t.Errorf("hostOf(%q) = %q, want %q", in, got, want)
		}
	}
}

// ---- real clients ----

// need fails the test when a client program is missing (make test
// installs them: scripts/test-services.sh).
func need(t *testing.T, prog string) string {
	t.Helper()
	p, err := exec.LookPath(prog)
	if err != nil {
		t.Fatalf("%s is not installed (apt-get install -y %s; make test installs it)", prog, prog)
	}
	return p
}

// TestSwaks delivers with swaks over LMTP and SMTP.
func TestSwaks(t *testing.T) {
	swaks := need(t, "swaks")
	h := start(t, DeliveryConfig{}, nil)
	for _, tc := range []struct {
		proto, addr string
	}{{"LMTP", h.lmtp}, {"ESMTP", h.smtp}} {
		body := "Subject: via swaks " + tc.proto + "\r\n\r\nHello from swaks.\r\n"
		cmd := exec.Command(swaks, "--protocol", tc.proto, "--server", tc.addr,
			"--from", "sender@example.org", "--to", "alice@example.com,bob@example.com,dave@example.com",
			"--data", "-", "--helo", "mta.example.org", "--timeout", "30")
		cmd.Stdin = strings.NewReader(body)
		out, err := cmd.CombinedOutput()
		// bob (another backend's) is refused; swaks goes on with the others.
		if err != nil && !strings.Contains(string(out), "450 4.2.0") {
			t.Fatalf("swaks %s: %v\n%s", tc.proto, err, out)
		}
		for _, want := range []string{"<** 450 4.2.0", "<-  250 2.0.0"} {
			if !strings.Contains(string(out), want) {
				t.Fatalf("swaks %s: no %q in\n%s", tc.proto, want, out)
			}
		}
	}
	got := h.mail("alice@example.com")
	if len(got) != 2 || !strings.Contains(got[0]+got[1], "Hello from swaks.\r\n") {
		t.Fatalf("alice's mail: %q", got)
	}
	if n := len(h.mail("dave@example.com")); n != 2 {
		t.Fatalf("dave has %d messages, want 2", n)
	}
	h.expectMail("bob@example.com")
}

// TestCurl delivers with curl's SMTP client.
func TestCurl(t *testing.T) {
	curl := need(t, "curl")
	h := start(t, DeliveryConfig{}, nil)
	msg := "From: sender@example.org\r\nSubject: via curl\r\n\r\nHello from curl.\r\n"
	cmd := exec.Command(curl, "--silent", "--show-error", "--max-time", "30", "smtp://"+h.smtp+"/mta.example.org",
		"--mail-from", "sender@example.org", "--mail-rcpt", "alice@example.com", "--upload-file", "-")
	cmd.Stdin = strings.NewReader(msg)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("curl: %v\n%s", err, out)
	}
	h.expectMail("alice@example.com", msg)

	// A recipient of no one: curl fails.
	cmd = exec.Command(curl, "--silent", "--show-error", "--max-time", "30", "smtp://"+h.smtp,
		"--mail-from", "sender@example.org", "--mail-rcpt", "nobody@example.com", "--upload-file", "-")
	cmd.Stdin = strings.NewReader(msg)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "550") {
		t.Fatalf("curl to an unknown user: %v\n%s", err, out)
	}
}

// usageGate holds each Usage call, once armed, until a second one comes
// (or a hang guard passes): two deliveries that check the room left at
// the same time both get to check it.
type usageGate struct {
	MailStore
	armed   atomic.Bool
	mu      sync.Mutex
	waiting int
	both    chan struct{}
}

func (g *usageGate) Usage(user string) (int64, error) {
	if g.armed.Load() {
		g.mu.Lock()
		g.waiting++
		if g.waiting == 2 {
			close(g.both)
		}
		g.mu.Unlock()
		select {
		case <-g.both:
		case <-time.After(2 * time.Second): // the other is kept out by a lock
		}
	}
	return g.MailStore.Usage(user)
}

// TestQuotaNotOverrunByConcurrentDeliveries: two messages that each fit
// dave's quota (300 bytes) but not both, delivered at once: one is
// stored, the other refused 552.
func TestQuotaNotOverrunByConcurrentDeliveries(t *testing.T) {
	g := &usageGate{both: make(chan struct{})}
	h := start(t, DeliveryConfig{}, func(s MailStore) MailStore { g.MailStore = s; return g })
	msg := "Subject: q\r\n\r\n" + strings.Repeat("x", 180) + "\r\n"
	var cs []*client
	for range 2 {
		c := dialClient(t, h.lmtp)
		c.cmd("LHLO mta.example.org", "250 ")
		c.cmd("MAIL FROM:<sender@example.org>", "250 ")
		c.cmd("RCPT TO:<dave@example.com>", "250 ")
		cs = append(cs, c)
	}
	g.armed.Store(true)
	replies := make(chan string, 2)
	for _, c := range cs {
		go func() {
			c.data(msg)
			replies <- c.reply()
		}()
	}
	got := []string{<-replies, <-replies}
	slices.Sort(got)
	if !strings.HasPrefix(got[0], "250 ") || !strings.HasPrefix(got[1], "552 5.2.2") {
		t.Fatalf("replies %q: want one 250 and one 552 5.2.2", got)
	}
	h.expectMail("dave@example.com", msg)
}
