package proxy

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/pires/go-proxyproto"
)

// smtpHang is a hang guard, never a timing that a test asserts.
const smtpHang = 60 * time.Second

// fakeSMTP is a backend for the proxy's SMTP tests: a real go-smtp server
// (SMTP or LMTP) on loopback that records what it receives.
type fakeSMTP struct {
	t    *testing.T
	addr string // host:port
	srv  *smtp.Server
	ln   net.Listener

	mu sync.Mutex
	// What it received.
	mails    []fakeMail
	sessions []*fakeSMTPSession
	// What it answers.
	users      map[string]string          // AUTH PLAIN user -> password (nil: AUTH refused)
	rcptReply  map[string]*smtp.SMTPError // RCPT refusals by recipient
	dataReply  map[string]*smtp.SMTPError // LMTP replies after DATA by recipient
	onData     func(s *fakeSMTPSession, r io.Reader) error
	progress   func(n int64) // called with the byte count as a message arrives
	delivered  chan fakeMail
	connClosed chan struct{} // a token each time a connection ends
}

// fakeMail is one message the backend took.
type fakeMail struct {
	from    string
	rcpts   []string
	body    []byte // nil for messages only hashed (see bodyHash)
	size    int64
	sum     [32]byte
	auth    string // the user it authenticated as
	xclient string // the XCLIENT arguments of the connection
	remote  string // the connection's remote address (the PROXY header's, with one)
	tls     bool
}

type fakeSMTPOpts struct {
	lmtp        bool
	xclient     bool        // announce and take XCLIENT
	proxyHeader bool        // read a PROXY header
	tls         *tls.Config // offer STARTTLS
	keepBody    bool        // keep bodies (else only size and hash)
}

func startFakeSMTP(t *testing.T, o fakeSMTPOpts) *fakeSMTP {
	t.Helper()
	f := &fakeSMTP{t: t, users: map[string]string{}, rcptReply: map[string]*smtp.SMTPError{},
		dataReply: map[string]*smtp.SMTPError{}, delivered: make(chan fakeMail, 100), connClosed: make(chan struct{}, 100)}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		s := &fakeSMTPSession{f: f, c: c, keep: o.keepBody}
		if xc, ok := smtpFindXclient(c.Conn()); ok {
			s.xclient = xc.args()
		}
		s.remote = c.Conn().RemoteAddr().String()
		_, s.tls = c.TLSConnectionState()
		f.mu.Lock()
		f.sessions = append(f.sessions, s)
		f.mu.Unlock()
		return s, nil
	}))
	srv.LMTP = o.lmtp
	srv.Domain = "backend.test"
	srv.AllowInsecureAuth = true
	srv.TLSConfig = o.tls
	srv.MaxMessageBytes = 100 << 20
	srv.ErrorLog = smtpTestLogger{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = ln.Addr().String()
	if o.proxyHeader {
		ln = &proxyproto.Listener{Listener: ln}
	}
	ln = &fakeSMTPListener{Listener: ln, f: f, xclient: o.xclient}
	f.srv, f.ln = srv, ln
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return f
}

type smtpTestLogger struct{}

func (smtpTestLogger) Printf(string, ...any) {}
func (smtpTestLogger) Println(...any)        {}

// stop closes the backend's listener and connections (a backend down).
func (f *fakeSMTP) stop() { f.srv.Close() }

func (f *fakeSMTP) got() []fakeMail {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeMail(nil), f.mails...)
}

// wait returns the next message the backend takes.
func (f *fakeSMTP) wait(t *testing.T) fakeMail {
	t.Helper()
	select {
	case m := <-f.delivered:
		return m
	case <-time.After(smtpHang):
		t.Fatal("backend got no message")
		return fakeMail{}
	}
}

// fakeSMTPListener wraps each connection to count its end and, when
// asked, to play Postfix's XCLIENT, which go-smtp's server lacks.
type fakeSMTPListener struct {
	net.Listener
	f       *fakeSMTP
	xclient bool
}

func (l *fakeSMTPListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &fakeSMTPConn{Conn: c, f: l.f, xclient: l.xclient, br: bufio.NewReader(c)}, nil
}

// fakeSMTPConn adds "250-XCLIENT NAME ADDR" to the EHLO/LHLO reply and
// answers XCLIENT itself (with a new greeting, as Postfix does), until
// the first MAIL; it records the XCLIENT arguments.
type fakeSMTPConn struct {
	net.Conn
	f       *fakeSMTP
	xclient bool
	br      *bufio.Reader
	pending []byte
	mu      sync.Mutex
	xargs   string
	passed  bool // MAIL seen: nothing more to look at
	once    sync.Once
}

func (c *fakeSMTPConn) args() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.xargs
}

func (c *fakeSMTPConn) Read(b []byte) (int, error) {
	for len(c.pending) == 0 {
		if c.passed || !c.xclient {
			return c.br.Read(b)
		}
		line, err := c.br.ReadString('\n')
		if line == "" && err != nil {
			return 0, err
		}
		up := strings.ToUpper(line)
		switch {
		case strings.HasPrefix(up, "XCLIENT "):
			c.mu.Lock()
			c.xargs = strings.TrimSpace(line[len("XCLIENT "):])
			c.mu.Unlock()
			io.WriteString(c.Conn, "220 backend.test ESMTP after XCLIENT\r\n")
			continue
		case strings.HasPrefix(up, "MAIL "):
			c.passed = true
		}
		c.pending = []byte(line)
	}
	n := copy(b, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

func (c *fakeSMTPConn) Write(b []byte) (int, error) {
	if c.xclient && bytes.HasPrefix(b, []byte("250-PIPELINING")) {
		if _, err := io.WriteString(c.Conn, "250-XCLIENT NAME ADDR\r\n"); err != nil {
			return 0, err
		}
	}
	return c.Conn.Write(b)
}

func (c *fakeSMTPConn) Close() error {
	c.once.Do(func() { c.f.connClosed <- struct{}{} })
	return c.Conn.Close()
}

// smtpFindXclient finds the fakeSMTPConn under c (TLS may be on top).
func smtpFindXclient(c net.Conn) (*fakeSMTPConn, bool) {
	for {
		switch t := c.(type) {
		case *fakeSMTPConn:
			return t, true
		case *tls.Conn:
			c = t.NetConn()
		default:
			return nil, false
		}
	}
}

type fakeSMTPSession struct {
	f       *fakeSMTP
	c       *smtp.Conn
	keep    bool
	auth    string
	xclient string
	remote  string
	tls     bool
	from    string
	rcpts   []string
}

func (s *fakeSMTPSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *fakeSMTPSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, user, pass string) error {
		s.f.mu.Lock()
		want, ok := s.f.users[user]
		s.f.mu.Unlock()
		if !ok || want != pass {
			return smtp.ErrAuthFailed
		}
		s.auth = user
		return nil
	}), nil
}

func (s *fakeSMTPSession) Mail(from string, _ *smtp.MailOptions) error {
	s.from, s.rcpts = from, nil
	return nil
}

func (s *fakeSMTPSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.f.mu.Lock()
	e := s.f.rcptReply[to]
	s.f.mu.Unlock()
	if e != nil {
		return e
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}

func (s *fakeSMTPSession) receive(r io.Reader) (fakeMail, error) {
	if xc, ok := smtpFindXclient(s.c.Conn()); ok && s.xclient == "" {
		s.xclient = xc.args()
	}
	m := fakeMail{from: s.from, rcpts: append([]string(nil), s.rcpts...), auth: s.auth,
		xclient: s.xclient, remote: s.remote, tls: s.tls}
	s.f.mu.Lock()
	onData, progress := s.f.onData, s.f.progress
	s.f.mu.Unlock()
	if onData != nil {
		return m, onData(s, r)
	}
	h := sha256.New()
	var body bytes.Buffer
	w := io.Writer(h)
	if s.keep {
		w = io.MultiWriter(h, &body)
	}
	buf := make([]byte, 64<<10)
	for {
		n, err := r.Read(buf)
		w.Write(buf[:n])
		m.size += int64(n)
		if progress != nil && n > 0 {
			progress(m.size)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return m, err
		}
	}
	copy(m.sum[:], h.Sum(nil))
	if s.keep {
		m.body = body.Bytes()
	}
	return m, nil
}

func (s *fakeSMTPSession) record(m fakeMail) {
	s.f.mu.Lock()
	s.f.mails = append(s.f.mails, m)
	s.f.mu.Unlock()
	s.f.delivered <- m
}

// Data takes the message; the reply is the first recipient's dataReply
// if it has one (a 250 with a text of its own, say).
func (s *fakeSMTPSession) Data(r io.Reader) error {
	m, err := s.receive(r)
	if err != nil {
		return err
	}
	s.record(m)
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	if len(m.rcpts) > 0 && s.f.dataReply[m.rcpts[0]] != nil {
		return s.f.dataReply[m.rcpts[0]]
	}
	return nil
}

// LMTPData delivers to the recipients without a dataReply and answers
// each with its own.
func (s *fakeSMTPSession) LMTPData(r io.Reader, st smtp.StatusCollector) error {
	m, err := s.receive(r)
	if err != nil {
		return err
	}
	var ok []string
	for _, rc := range m.rcpts {
		s.f.mu.Lock()
		e := s.f.dataReply[rc]
		s.f.mu.Unlock()
		if e != nil {
			st.SetStatus(rc, e)
			continue
		}
		ok = append(ok, rc)
		st.SetStatus(rc, nil)
	}
	if len(ok) > 0 {
		m.rcpts = ok
		s.record(m)
	}
	return nil
}

func (s *fakeSMTPSession) Reset()        { s.from, s.rcpts = "", nil }
func (s *fakeSMTPSession) Logout() error { return nil }

// ---- clients ----

// smtpRaw is a client over a raw socket.
type smtpRaw struct {
	t *testing.T
	c net.Conn
	r *textproto.Reader
}

func dialSMTPRaw(t *testing.T, addr string) *smtpRaw {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(smtpHang))
	r := &smtpRaw{t: t, c: c, r: textproto.NewReader(bufio.NewReader(c))}
	r.expect(220)
	return r
}

// reply reads one reply: its code and its text (lines joined by \n).
func (r *smtpRaw) reply() (int, string) {
	r.t.Helper()
	var lines []string
	for {
		line, err := r.r.ReadLine()
		if err != nil {
			r.t.Fatalf("reading a reply: %v (so far %q)", err, lines)
		}
		if len(line) < 4 {
			r.t.Fatalf("bad reply line %q", line)
		}
		lines = append(lines, line[4:])
		if line[3] == ' ' {
			code, _ := strconv.Atoi(line[:3])
			return code, strings.Join(lines, "\n")
		}
	}
}

func (r *smtpRaw) send(line string) {
	r.t.Helper()
	if _, err := io.WriteString(r.c, line+"\r\n"); err != nil {
		r.t.Fatal(err)
	}
}

// cmd sends line and returns the reply as "code text".
func (r *smtpRaw) cmd(line string) string {
	r.t.Helper()
	r.send(line)
	code, text := r.reply()
	return fmt.Sprintf("%d %s", code, text)
}

func (r *smtpRaw) expect(code int) string {
	r.t.Helper()
	c, text := r.reply()
	if c != code {
		r.t.Fatalf("reply %d %q, want %d", c, text, code)
	}
	return text
}

// want sends line and checks that the reply starts with prefix.
func (r *smtpRaw) want(line, prefix string) string {
	r.t.Helper()
	got := r.cmd(line)
	if !strings.HasPrefix(got, prefix) {
		r.t.Fatalf("%s: got %q, want %q...", line, got, prefix)
	}
	return got
}

// closed checks that the proxy closed the connection.
func (r *smtpRaw) closed() {
	r.t.Helper()
	if line, err := r.r.ReadLine(); err == nil {
		r.t.Fatalf("connection still open: read %q", line)
	} else if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		r.t.Fatalf("connection not closed: %v", err)
	}
}

func plainIR(user, pass string) string {
	return b64("\x00" + user + "\x00" + pass)
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// smtpTestCert makes a self-signed certificate for 127.0.0.1 and returns
// the server's configuration and a client configuration that trusts it.
func smtpTestCert(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}}}
	client = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	return server, client
}
