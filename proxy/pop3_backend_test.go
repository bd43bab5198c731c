package proxy

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
)

// The fake backend's mailbox: the same two messages for every user.
var pop3TestMessages = []string{
	"From: a@example.org\r\nSubject: one\r\n\r\nFirst message.\r\n",
	"From: b@example.org\r\nSubject: two\r\n\r\nSecond message,\r\n.with a dot line.\r\n",
}

// pop3BackendLogin is what the fake backend saw of one login.
type pop3BackendLogin struct {
	user    string
	method  string // "PLAIN" or "USER"
	remote  string // the client address it saw (the PROXY header's, when parsed)
	xclient string // the XCLIENT line, "" if none
	tls     bool   // logged in over STLS
}

// pop3BackendOptions configure a fake backend.
type pop3BackendOptions struct {
	addr          string      // listen here ("" : any loopback port)
	sasl          bool        // offer SASL PLAIN in CAPA
	tls           *tls.Config // offer STLS
	proxyProtocol bool        // require a PROXY header on each connection
}

// pop3FakeBackend is a small POP3 server on loopback standing in for a
// mailbox backend: greeting, CAPA, STLS, XCLIENT, USER/PASS, AUTH PLAIN,
// then STAT, LIST, UIDL, RETR, NOOP and QUIT. It records every login.
type pop3FakeBackend struct {
	t     *testing.T
	opt   pop3BackendOptions
	ln    net.Listener
	addr  string
	users map[string]string

	logins chan pop3BackendLogin
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
}

// startPOP3Backend serves a fake backend with users (name: password)
// until it is stopped or the test ends.
func startPOP3Backend(t *testing.T, opt pop3BackendOptions, users map[string]string) *pop3FakeBackend {
	t.Helper()
	addr := opt.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	b := &pop3FakeBackend{t: t, opt: opt, addr: ln.Addr().String(), users: users,
		logins: make(chan pop3BackendLogin, 100), conns: map[net.Conn]struct{}{}}
	if opt.proxyProtocol {
		ln = &proxyproto.Listener{Listener: ln,
			ConnPolicy: func(proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) { return proxyproto.REQUIRE, nil }}
	}
	b.ln = ln
	b.wg.Add(1)
	go b.accept()
	t.Cleanup(b.stop)
	return b
}

func (b *pop3FakeBackend) accept() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.mu.Lock()
		b.conns[c] = struct{}{}
		b.mu.Unlock()
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			defer func() {
				b.mu.Lock()
				delete(b.conns, c)
				b.mu.Unlock()
				c.Close()
			}()
			b.serve(c)
		}()
	}
}

// stop closes the listener and every connection and waits for them.
func (b *pop3FakeBackend) stop() {
	b.ln.Close()
	b.mu.Lock()
	for c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// login waits for the backend's next login.
func (b *pop3FakeBackend) login(t *testing.T) pop3BackendLogin {
	t.Helper()
	select {
	case l := <-b.logins:
		return l
	case <-time.After(30 * time.Second): // a hang guard
		t.Fatal("no login on the backend")
		return pop3BackendLogin{}
	}
}

func (b *pop3FakeBackend) serve(c net.Conn) {
	c.SetDeadline(time.Now().Add(time.Minute)) // a hang guard
	r := bufio.NewReader(c)
	say := func(s string) bool { _, err := c.Write([]byte(s + "\r\n")); return err == nil }
	if !say("+OK fake backend ready") {
		return
	}
	rec := pop3BackendLogin{remote: c.RemoteAddr().String()}
	var user string
	loggedIn := false
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		cmd, arg, _ := strings.Cut(line, " ")
		cmd = strings.ToUpper(cmd)
		if loggedIn {
			if !b.transaction(say, cmd, arg) {
				return
			}
			continue
		}
		switch cmd {
		case "CAPA":
			caps := "+OK\r\nUSER\r\nPIPELINING\r\nUIDL\r\n"
			if b.opt.sasl {
				caps += "SASL PLAIN\r\n"
			}
			if b.opt.tls != nil && !rec.tls {
				caps += "STLS\r\n"
			}
			say(caps + ".")
		case "STLS":
			if b.opt.tls == nil || rec.tls {
				say("-ERR no STLS")
				continue
			}
			say("+OK go ahead")
			tc := tls.Server(c, b.opt.tls)
			if tc.Handshake() != nil {
				return
			}
			c, rec.tls = tc, true
			r = bufio.NewReader(tc)
		case "XCLIENT":
			rec.xclient = line
			say("+OK Updated")
		case "USER":
			user = arg
			say("+OK")
		case "PASS":
			if pw, ok := b.users[user]; !ok || pw != arg {
				say("-ERR [AUTH] Authentication failed.")
				continue
			}
			rec.user, rec.method, loggedIn = user, "USER", true
			b.logins <- rec
			say("+OK Logged in as " + user + ".")
		case "AUTH":
			mech, ir, _ := strings.Cut(arg, " ")
			if !b.opt.sasl || !strings.EqualFold(mech, "PLAIN") || ir == "" {
				say("-ERR unsupported")
				continue
			}
			d, err := base64.StdEncoding.DecodeString(ir)
			parts := strings.Split(string(d), "\x00")
			if err != nil || len(parts) != 3 {
				say("-ERR bad response")
				continue
			}
			if pw, ok := b.users[parts[1]]; !ok || pw != parts[2] {
				say("-ERR [AUTH] Authentication failed.")
				continue
			}
			rec.user, rec.method, loggedIn = parts[1], "PLAIN", true
			b.logins <- rec
			say("+OK Logged in (PLAIN) as " + parts[1] + ".")
		case "QUIT":
			say("+OK bye")
			return
		default:
			say("-ERR not logged in")
		}
	}
}

// transaction answers one command of the transaction state; false ends
// the connection.
func (b *pop3FakeBackend) transaction(say func(string) bool, cmd, arg string) bool {
	total := 0
	for _, m := range pop3TestMessages {
		total += len(m)
	}
	msg := func() (int, bool) {
		var n int
		if _, err := fmt.Sscanf(arg, "%d", &n); err != nil || n < 1 || n > len(pop3TestMessages) {
			say("-ERR no such message")
			return 0, false
		}
		return n, true
	}
	switch cmd {
	case "STAT":
		return say(fmt.Sprintf("+OK %d %d", len(pop3TestMessages), total))
	case "LIST", "UIDL":
		if arg != "" {
			n, ok := msg()
			if ok {
				say(fmt.Sprintf("+OK %d %d", n, len(pop3TestMessages[n-1])))
			}
			return true
		}
		var sb strings.Builder
		sb.WriteString("+OK\r\n")
		for i, m := range pop3TestMessages {
			if cmd == "LIST" {
				fmt.Fprintf(&sb, "%d %d\r\n", i+1, len(m))
			} else {
				fmt.Fprintf(&sb, "%d uid%d\r\n", i+1, i+1)
			}
		}
		sb.WriteString(".")
		return say(sb.String())
	case "RETR":
		n, ok := msg()
		if !ok {
			return true
		}
		body := strings.ReplaceAll("\r\n"+pop3TestMessages[n-1], "\r\n.", "\r\n..")[2:]
		return say(fmt.Sprintf("+OK %d octets\r\n%s.", len(pop3TestMessages[n-1]), body))
	case "NOOP":
		return say("+OK")
	case "QUIT":
		say("+OK bye")
		return false
	default:
		return say("-ERR unknown command")
	}
}

// pop3TestCert returns a self-signed certificate for 127.0.0.1 and
// localhost, and a pool that trusts it.
func pop3TestCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "localhost"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// pop3Client is a raw POP3 client for tests.
type pop3Client struct {
	t        *testing.T
	c        net.Conn
	r        *bufio.Reader
	greeting string
}

// dialPOP3 connects to addr, from local if it is set, and reads the
// greeting.
func dialPOP3(t *testing.T, addr string, local ...string) *pop3Client {
	t.Helper()
	d := net.Dialer{}
	if len(local) > 0 {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local[0])}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second)) // a hang guard
	pc := &pop3Client{t: t, c: c, r: bufio.NewReader(c)}
	pc.greeting = pc.expect("+OK ")
	return pc
}

// send writes raw text.
func (pc *pop3Client) send(s string) {
	pc.t.Helper()
	if _, err := pc.c.Write([]byte(s)); err != nil {
		pc.t.Fatalf("send %q: %v", s, err)
	}
}

// line reads one reply line without its CR LF.
func (pc *pop3Client) line() string {
	pc.t.Helper()
	l, err := pc.r.ReadString('\n')
	if err != nil {
		pc.t.Fatalf("read: %v (got %q)", err, l)
	}
	if !strings.HasSuffix(l, "\r\n") {
		pc.t.Fatalf("line without CR LF: %q", l)
	}
	return strings.TrimSuffix(l, "\r\n")
}

// expect reads a line and checks that it starts with prefix.
func (pc *pop3Client) expect(prefix string) string {
	pc.t.Helper()
	l := pc.line()
	if !strings.HasPrefix(l, prefix) {
		pc.t.Fatalf("got %q, want %q...", l, prefix)
	}
	return l
}

// cmd sends a command line and checks the reply's start.
func (pc *pop3Client) cmd(line, prefix string) string {
	pc.t.Helper()
	pc.send(line + "\r\n")
	return pc.expect(prefix)
}

// multi reads a multi-line answer's lines up to the final dot.
func (pc *pop3Client) multi() []string {
	pc.t.Helper()
	var out []string
	for {
		l := pc.line()
		if l == "." {
			return out
		}
		out = append(out, l)
	}
}

// capa sends CAPA and returns the capabilities.
func (pc *pop3Client) capa() []string {
	pc.t.Helper()
	pc.cmd("CAPA", "+OK")
	return pc.multi()
}

// closed checks that the server closes the connection without another
// line.
func (pc *pop3Client) closed() {
	pc.t.Helper()
	l, err := pc.r.ReadString('\n')
	if err == nil || l != "" {
		pc.t.Fatalf("connection open: read %q, %v", l, err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		pc.t.Fatalf("connection not closed: %v", err)
	}
}

// gone checks that the server has closed the connection: a probe
// command gets no answer (an open connection would answer it at once).
func (pc *pop3Client) gone() {
	pc.t.Helper()
	pc.c.Write([]byte("NOOP\r\n")) // may fail: the connection is closed
	pc.closed()
}

// startTLS upgrades the client after +OK to STLS, trusting pool.
func (pc *pop3Client) startTLS(pool *x509.CertPool) {
	pc.t.Helper()
	if pc.r.Buffered() > 0 {
		pc.t.Fatal("data before the TLS handshake")
	}
	tc := tls.Client(pc.c, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err := tc.Handshake(); err != nil {
		pc.t.Fatalf("TLS: %v", err)
	}
	pc.c, pc.r = tc, bufio.NewReader(tc)
}

func pop3B64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
