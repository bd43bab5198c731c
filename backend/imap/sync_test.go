package imap

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/tohost/tohost/backend/maildir"
)

// events collects a client's unilateral data.
type events struct {
	exists  chan uint32
	expunge chan uint32
	flags   chan *imapclient.FetchMessageBuffer
}

func newEvents() (*events, *imapclient.UnilateralDataHandler) {
	ev := &events{exists: make(chan uint32, 100), expunge: make(chan uint32, 100), flags: make(chan *imapclient.FetchMessageBuffer, 100)}
	return ev, &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				ev.exists <- *d.NumMessages
			}
		},
		Expunge: func(seq uint32) { ev.expunge <- seq },
		Fetch: func(m *imapclient.FetchMessageData) {
			if b, err := m.Collect(); err == nil {
				ev.flags <- b
			}
		},
	}
}

func wait[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(hangGuard):
		t.Fatalf("no %s", what)
		panic("unreachable")
	}
}

func fetchUIDs(t *testing.T, c *imapclient.Client) []imap.UID {
	t.Helper()
	var uids []imap.UID
	for _, m := range must(c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true}).Collect()) {
		uids = append(uids, m.UID)
	}
	return uids
}

func TestStoreSeenBySecondSession(t *testing.T) {
	e := newEnv(t, nil)
	a := e.login("alice@example.org", nil)
	ev, h := newEvents()
	b := e.login("alice@example.org", h)
	uid := appendMsg(t, a, "INBOX", testMessage("one", "1"), nil)
	appendMsg(t, a, "INBOX", testMessage("two", "2"), nil)
	appendMsg(t, a, "INBOX", testMessage("three", "3"), nil)
	must(a.Select("INBOX", nil).Wait())
	must(b.Select("INBOX", nil).Wait())

	res := must(a.Store(imap.UIDSetNum(uid), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged, imap.FlagSeen}}, nil).Collect())
	if len(res) != 1 || !slices.Equal(res[0].Flags, []imap.Flag{imap.FlagFlagged, imap.FlagSeen}) {
		t.Errorf("STORE answer %+v", res)
	}
	if err := b.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	got := wait(t, ev.flags, "FETCH FLAGS in the second session")
	if got.SeqNum != 1 || !slices.Equal(got.Flags, []imap.Flag{imap.FlagFlagged, imap.FlagSeen}) {
		t.Errorf("second session heard %+v", got)
	}
	msgs := must(b.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Flags: true}).Collect())
	if !slices.Equal(msgs[0].Flags, []imap.Flag{imap.FlagFlagged, imap.FlagSeen}) {
		t.Errorf("second session FETCH FLAGS %v", msgs[0].Flags)
	}

	// An expunge in one session reaches the other.
	must(a.Store(imap.SeqSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsSet, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect())
	if err := a.Expunge().Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	if seq := wait(t, ev.expunge, "EXPUNGE in the second session"); seq != 2 {
		t.Errorf("second session expunged %d", seq)
	}
	if uids := fetchUIDs(t, b); !slices.Equal(uids, []imap.UID{1, 3}) {
		t.Errorf("second session UIDs %v", uids)
	}
	// Read-only sessions do not store.
	c := e.login("alice@example.org", nil)
	must(c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait())
	if _, err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagSeen}}, nil).Collect(); err == nil {
		t.Errorf("STORE in an EXAMINEd folder succeeded")
	}
}

func TestCopyMoveExpungeRestart(t *testing.T) {
	e := newEnv(t, nil)
	c := e.login("alice@example.org", nil)
	if err := c.Create("Archive", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 4; i++ {
		appendMsg(t, c, "INBOX", testMessage(fmt.Sprintf("m%d", i), "x"), nil)
	}
	sel := must(c.Select("INBOX", nil).Wait())
	inboxValidity := sel.UIDValidity
	arch := must(c.Status("Archive", &imap.StatusOptions{UIDValidity: true}).Wait())

	cp := must(c.Copy(imap.UIDSetNum(1), "Archive").Wait())
	if cp.UIDValidity != arch.UIDValidity || cp.SourceUIDs.String() != "1" || cp.DestUIDs.String() != "1" {
		t.Errorf("COPYUID %+v", cp)
	}
	if _, err := c.Copy(imap.UIDSetNum(1), "Nope").Wait(); imapCode(err) != imap.ResponseCodeTryCreate {
		t.Errorf("COPY to a missing folder: %v", err)
	}
	mv := must(c.Move(imap.UIDSetNum(2, 3), "Archive").Wait())
	if mv.SourceUIDs.String() != "2:3" || mv.DestUIDs.String() != "2:3" {
		t.Errorf("MOVE COPYUID %+v", mv)
	}
	if uids := fetchUIDs(t, c); !slices.Equal(uids, []imap.UID{1, 4}) {
		t.Fatalf("INBOX after MOVE: %v", uids)
	}
	must(c.Store(imap.UIDSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect())
	exp := must(c.Expunge().Collect())
	if !slices.Equal(exp, []uint32{1}) {
		t.Errorf("EXPUNGE said %v", exp)
	}
	if uids := fetchUIDs(t, c); !slices.Equal(uids, []imap.UID{4}) {
		t.Fatalf("INBOX after EXPUNGE: %v", uids)
	}
	appendMsg(t, c, "INBOX", testMessage("m5", "x"), nil)

	e.restart()
	c = e.login("alice@example.org", nil)
	sel = must(c.Select("INBOX", nil).Wait())
	if sel.UIDValidity != inboxValidity || sel.UIDNext != 6 {
		t.Errorf("after restart: UIDVALIDITY %d (was %d), UIDNEXT %d", sel.UIDValidity, inboxValidity, sel.UIDNext)
	}
	if uids := fetchUIDs(t, c); !slices.Equal(uids, []imap.UID{4, 5}) {
		t.Errorf("INBOX UIDs after restart: %v", uids)
	}
	sel = must(c.Select("Archive", nil).Wait())
	if sel.UIDValidity != arch.UIDValidity {
		t.Errorf("Archive UIDVALIDITY %d, was %d", sel.UIDValidity, arch.UIDValidity)
	}
	msgs := must(c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Envelope: true}).Collect())
	var got []string
	for _, m := range msgs {
		got = append(got, fmt.Sprintf("%d:%s", m.UID, m.Envelope.Subject))
	}
	if want := []string{"1:m1", "2:m2", "3:m3"}; !slices.Equal(got, want) {
		t.Errorf("Archive after restart: %v, want %v", got, want)
	}
	// UID EXPUNGE only takes what it names.
	must(c.Store(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect())
	must(c.UIDExpunge(imap.UIDSetNum(2)).Collect())
	if uids := fetchUIDs(t, c); !slices.Equal(uids, []imap.UID{1, 3}) {
		t.Errorf("Archive after UID EXPUNGE 2: %v", uids)
	}
}

func TestSearch(t *testing.T) {
	e := newEnv(t, nil)
	c := e.login("alice@example.org", nil)
	appendMsg(t, c, "INBOX", testMessage("apples", "red fruit"), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagSeen}})
	appendMsg(t, c, "INBOX", testMessage("pears", "green fruit"), nil)
	appendMsg(t, c, "INBOX", multipart, &imap.AppendOptions{Flags: []imap.Flag{imap.FlagFlagged}})
	must(c.Select("INBOX", nil).Wait())
	for _, tc := range []struct {
		name string
		c    imap.SearchCriteria
		want []uint32
	}{
		{"all", imap.SearchCriteria{}, []uint32{1, 2, 3}},
		{"unseen", imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, []uint32{2, 3}},
		{"flagged", imap.SearchCriteria{Flag: []imap.Flag{imap.FlagFlagged}}, []uint32{3}},
		{"subject", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "PEAR"}}}, []uint32{2}},
		{"body", imap.SearchCriteria{Body: []string{"fruit"}}, []uint32{1, 2}},
		{"text in a part", imap.SearchCriteria{Text: []string{"numbers are up"}}, []uint32{3}},
		{"larger", imap.SearchCriteria{Larger: 300}, []uint32{3}},
		{"not", imap.SearchCriteria{Not: []imap.SearchCriteria{{Body: []string{"red"}}}}, []uint32{2, 3}},
		{"or", imap.SearchCriteria{Or: [][2]imap.SearchCriteria{{{Body: []string{"red"}}, {Flag: []imap.Flag{imap.FlagFlagged}}}}}, []uint32{1, 3}},
		{"sent before", imap.SearchCriteria{SentBefore: time.Date(2006, 1, 3, 0, 0, 0, 0, time.UTC)}, []uint32{1, 2}},
		{"seq", imap.SearchCriteria{SeqNum: []imap.SeqSet{{{Start: 2, Stop: 0}}}}, []uint32{2, 3}},
	} {
		data := must(c.Search(&tc.c, nil).Wait())
		if got := data.AllSeqNums(); !slices.Equal(got, tc.want) {
			t.Errorf("SEARCH %s: %v, want %v", tc.name, got, tc.want)
		}
	}
	data := must(c.UIDSearch(&imap.SearchCriteria{Body: []string{"green"}}, nil).Wait())
	if got := data.AllUIDs(); !slices.Equal(got, []imap.UID{2}) {
		t.Errorf("UID SEARCH: %v", got)
	}
}

func TestIdleSeesDelivery(t *testing.T) {
	e := newEnv(t, nil)
	ev, h := newEvents()
	c := e.login("alice@example.org", h)
	if _, err := e.store.Deliver("alice@example.org", strings.NewReader(testMessage("before", "x"))); err != nil {
		t.Fatal(err)
	}
	sel := must(c.Select("INBOX", nil).Wait())
	if sel.NumMessages != 1 {
		t.Fatalf("%d messages at SELECT", sel.NumMessages)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Deliver("alice@example.org", strings.NewReader(testMessage("during", "y"))); err != nil {
		t.Fatal(err)
	}
	if n := wait(t, ev.exists, "EXISTS during IDLE"); n != 2 {
		t.Errorf("EXISTS %d, want 2", n)
	}
	// The server is surely idling now: this one can only come through
	// the Store's notification.
	if _, err := e.store.Deliver("alice@example.org", strings.NewReader(testMessage("later", "z"))); err != nil {
		t.Fatal(err)
	}
	if n := wait(t, ev.exists, "EXISTS of a second delivery during IDLE"); n != 3 {
		t.Errorf("EXISTS %d, want 3", n)
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
	msgs := must(c.Fetch(imap.SeqSetNum(2), &imap.FetchOptions{UID: true, Envelope: true}).Collect())
	if len(msgs) != 1 || msgs[0].UID != 2 || msgs[0].Envelope.Subject != "during" {
		t.Errorf("new message: %+v", msgs)
	}

	// Another session's flag change reaches an idling one too.
	other := e.login("alice@example.org", nil)
	must(other.Select("INBOX", nil).Wait())
	idle, err = c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	must(other.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagAnswered}}, nil).Collect())
	got := wait(t, ev.flags, "FETCH FLAGS during IDLE")
	if got.SeqNum != 1 || !slices.Equal(got.Flags, []imap.Flag{imap.FlagAnswered}) {
		t.Errorf("idle heard %+v", got)
	}
	idle.Close()
	idle.Wait()
}

// testCert is a self-signed certificate for 127.0.0.1.
var testCert = sync.OnceValues(func() (tls.Certificate, *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tohost test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
})

func TestIDFromTrustedProxy(t *testing.T) {
	cert, pool := testCert()
	e := newEnv(t, func(c *Config) {
		c.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	c := e.dial(nil)
	if !c.Caps().Has("ID") || !c.Caps().Has(imap.CapStartTLS) {
		t.Errorf("greeting capabilities %v lack ID or STARTTLS", c.Caps())
	}

	// Plain connection: ID (as the proxy sends it), then LOGIN.
	r := dialRaw(t, e.addr)
	r.send(`a ID ("x-originating-ip" "203.0.113.7" "x-originating-port" "5555" "x-connected-ip" "127.0.0.1" "x-connected-port" "143")` + "\r\n")
	if l := r.line(); !strings.HasPrefix(l, "* ID ") {
		t.Errorf("ID answer %q", l)
	}
	if l := r.line(); !strings.HasPrefix(l, "a OK") {
		t.Fatalf("ID: %q", l)
	}
	r.send("b LOGIN alice@example.org secret\r\n")
	if l := r.until("b "); !strings.HasPrefix(l, "b OK") {
		t.Fatalf("LOGIN: %q", l)
	}
	if got := e.dir.lastIP(); got != "203.0.113.7" {
		t.Errorf("directory saw %q, want the forwarded 203.0.113.7", got)
	}
	// ID after login is answered, and the session goes on.
	r.send("c ID NIL\r\nd NOOP\r\n")
	r.until("c OK")
	r.until("d OK")

	// STARTTLS, then ID, then LOGIN: the proxy's order with TLS to backends.
	r = dialRaw(t, e.addr)
	r.send("a STARTTLS\r\n")
	if l := r.line(); !strings.HasPrefix(l, "a OK") {
		t.Fatalf("STARTTLS: %q", l)
	}
	tc := tls.Client(r.c, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	r.c, r.r = tc, bufio.NewReader(tc)
	r.send("b CAPABILITY\r\n")
	if l := r.line(); !strings.HasPrefix(l, "* CAPABILITY ") || strings.Contains(l, "STARTTLS") || !strings.Contains(l, "AUTH=PLAIN") {
		t.Errorf("capabilities after STARTTLS: %q", l)
	}
	r.until("b OK")
	r.send(`c ID ("x-originating-ip" "2001:db8::9")` + "\r\n")
	r.until("c OK")
	r.send("d LOGIN alice@example.org secret\r\n")
	if l := r.until("d "); !strings.HasPrefix(l, "d OK") {
		t.Fatalf("LOGIN after STARTTLS: %q", l)
	}
	if got := e.dir.lastIP(); got != "2001:db8::9" {
		t.Errorf("directory saw %q after STARTTLS, want 2001:db8::9", got)
	}
	r.send("e STARTTLS\r\n")
	if l := r.until("e "); !strings.HasPrefix(l, "e BAD") {
		t.Errorf("second STARTTLS: %q", l)
	}

	// imapclient's STARTTLS works too.
	ic, err := imapclient.DialStartTLS(e.addr, &imapclient.Options{TLSConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}})
	if err != nil {
		t.Fatalf("imapclient STARTTLS: %v", err)
	}
	defer ic.Close()
	if err := ic.Login("alice@example.org", "secret").Wait(); err != nil {
		t.Errorf("login over STARTTLS: %v", err)
	}
}

func TestIDFromUntrustedPeer(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	})
	r := dialRaw(t, e.addr)
	r.send(`a ID ("x-originating-ip" "203.0.113.7")` + "\r\n")
	r.until("a OK")
	r.send("b LOGIN alice@example.org secret\r\n")
	if l := r.until("b "); !strings.HasPrefix(l, "b OK") {
		t.Fatalf("LOGIN: %q", l)
	}
	if got := e.dir.lastIP(); got != "127.0.0.1" {
		t.Errorf("directory saw %q: an untrusted peer's x-originating-ip was taken", got)
	}
}

// rawConn is a line-level client for what imapclient does not do.
type rawConn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(hangGuard))
	r := &rawConn{t: t, c: c, r: bufio.NewReader(c)}
	r.line() // greeting
	return r
}

func (r *rawConn) send(s string) {
	if _, err := r.c.Write([]byte(s)); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rawConn) line() string {
	l, err := r.r.ReadString('\n')
	if err != nil {
		r.t.Fatalf("read: %v (after %q)", err, l)
	}
	return l
}

// until reads lines up to the one starting with prefix.
func (r *rawConn) until(prefix string) string {
	for {
		if l := r.line(); strings.HasPrefix(l, prefix) {
			return l
		}
	}
}

func TestLiteralLimits(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxMessageSize = 1000 })
	r := dialRaw(t, e.addr)
	r.send("a LOGIN alice@example.org secret\r\n")
	r.until("a OK")
	// A non-synchronizing APPEND over the limit: refused, its bytes never
	// read as commands.
	body := strings.Repeat("b LOGOUT\r\n", 150)
	r.send(fmt.Sprintf("b APPEND INBOX {%d+}\r\n%s\r\n", len(body), body))
	if l := r.until("b "); !strings.HasPrefix(l, "b NO [TOOBIG]") {
		t.Errorf("oversized APPEND: %q", l)
	}
	// A synchronizing one is refused before the client sends it.
	r.send("c APPEND INBOX {5000}\r\n")
	if l := r.line(); !strings.HasPrefix(l, "c NO [TOOBIG]") {
		t.Errorf("oversized synchronizing APPEND: %q", l)
	}
	// A non-synchronizing literal over 4096 bytes anywhere.
	big := strings.Repeat("d LOGOUT\r\n", 500)
	r.send(fmt.Sprintf("d CREATE {%d+}\r\n%s\r\n", len(big), big))
	if l := r.until("d "); !strings.HasPrefix(l, "d BAD") {
		t.Errorf("5000-byte non-synchronizing literal: %q", l)
	}
	r.send("e NOOP\r\n")
	if l := r.until("e "); !strings.HasPrefix(l, "e OK") {
		t.Errorf("session after the refusals: %q", l)
	}
	// An APPEND within the limit, with a literal.
	msg := testMessage("raw", "x")
	r.send(fmt.Sprintf("f APPEND INBOX (\\Seen) {%d}\r\n", len(msg)))
	if l := r.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("no continuation: %q", l)
	}
	r.send(msg + "\r\n")
	if l := r.until("f "); !strings.HasPrefix(l, "f OK [APPENDUID") {
		t.Errorf("APPEND: %q", l)
	}
}

func TestShutdown(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.DrainTimeout = hangGuard })
	r := dialRaw(t, e.addr)
	r.send("a LOGIN alice@example.org secret\r\n")
	r.until("a OK")
	r.send("b SELECT INBOX\r\n")
	r.until("b OK")
	done := make(chan error, 1)
	go func() { done <- e.stop() }()
	// The idle session is told BYE and closed; Serve returns.
	if l := r.line(); !strings.HasPrefix(l, "* BYE") {
		t.Errorf("at shutdown: %q, want BYE", l)
	}
	if err := wait(t, done, "Serve's return"); err != nil {
		t.Errorf("Serve: %v", err)
	}
	if _, err := net.Dial("tcp", e.addr); err == nil {
		t.Errorf("still accepting after shutdown")
	}
}

// TestIdleSeesOtherProcess: with a poll interval, a session in IDLE hears
// of a delivery, a flag change and an expunge made through another Store
// on the same mail directory (another process, which tells this one
// nothing), with the UIDs that process gave.
func TestIdleSeesOtherProcess(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.PollInterval = 50 * time.Millisecond })
	other, err := maildir.Open(e.root, maildir.Options{NoFsync: true, Shared: true, Hostname: "be2.example"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	const user = "alice@example.org"
	ev, h := newEvents()
	c := e.login(user, h)
	if _, err := other.Deliver(user, strings.NewReader(testMessage("before", "x"))); err != nil {
		t.Fatal(err)
	}
	if sel := must(c.Select("INBOX", nil).Wait()); sel.NumMessages != 1 {
		t.Fatalf("%d messages at SELECT", sel.NumMessages)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { idle.Close(); idle.Wait() }()
	if _, err := other.Deliver(user, strings.NewReader(testMessage("during", "y"))); err != nil {
		t.Fatal(err)
	}
	if n := wait(t, ev.exists, "EXISTS of the other process's delivery"); n != 2 {
		t.Fatalf("EXISTS %d, want 2", n)
	}
	mb, err := other.Mailbox(user)
	if err != nil {
		t.Fatal(err)
	}
	f, err := mb.Folder("INBOX")
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := f.Sync()
	if err != nil || len(msgs) != 2 || msgs[0].UID != 1 || msgs[1].UID != 2 {
		t.Fatalf("the other process's view: %+v %v", msgs, err)
	}
	if err := f.SetFlags(1, []string{`\Flagged`}); err != nil {
		t.Fatal(err)
	}
	got := wait(t, ev.flags, "FETCH FLAGS of the other process's change")
	if got.SeqNum != 1 || !slices.Equal(got.Flags, []imap.Flag{imap.FlagFlagged}) {
		t.Errorf("idle heard %+v", got)
	}
	if err := f.Expunge([]uint32{1}); err != nil {
		t.Fatal(err)
	}
	if seq := wait(t, ev.expunge, "EXPUNGE of the other process's expunge"); seq != 1 {
		t.Errorf("EXPUNGE %d, want 1", seq)
	}
}
