package proxy

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
)

// A fake IMAP backend on a loopback port: it greets, answers CAPABILITY,
// STARTTLS, ID, LOGIN, SELECT, LIST, NOOP and LOGOUT, and records what it
// was sent so that tests can see what the proxy did on their behalf.

// fakeIMAPConfig is how a fake backend behaves.
type fakeIMAPConfig struct {
	users       map[string]string // user: password (nil: bob/secret)
	tls         *tls.Config       // offer STARTTLS
	greetCaps   bool              // capabilities in the greeting
	okCaps      bool              // [CAPABILITY ...] in LOGIN's OK
	literalPlus bool              // announce LITERAL+ before login
	proxyHeader bool              // connections start with a PROXY header
	noSyncLit   bool              // refuse synchronising literals with a tagged NO
}

// fakeLogin is a LOGIN the backend received.
type fakeLogin struct {
	user, pass string
	raw        string // the command as sent, literals included
	tls        bool
}

type fakeIMAP struct {
	t    *testing.T
	cfg  fakeIMAPConfig
	addr string

	mu      sync.Mutex
	ln      net.Listener
	users   map[string]string
	logins  []fakeLogin
	ids     [][]string // ID parameters, flattened
	remotes []string   // each connection's peer, after the PROXY header
	cmds    []string   // command names, in order
	events  chan string
	wg      sync.WaitGroup
}

// postLoginCaps are what the backend announces after login: the client
// must see these, not the proxy's.
const postLoginCaps = "IMAP4rev1 LITERAL+ IDLE MOVE X-FAKE-BACKEND"

// startFakeIMAP starts a backend until the test ends.
func startFakeIMAP(t *testing.T, cfg fakeIMAPConfig) *fakeIMAP {
	t.Helper()
	f := &fakeIMAP{t: t, cfg: cfg, users: map[string]string{"bob": "secret"}, events: make(chan string, 1000)}
	for u, p := range cfg.users {
		f.users[u] = p
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = ln.Addr().String()
	f.serve(ln)
	t.Cleanup(func() {
		f.down()
		f.wg.Wait()
	})
	return f
}

func (f *fakeIMAP) serve(ln net.Listener) {
	if f.cfg.proxyHeader {
		ln = &proxyproto.Listener{Listener: ln} // a header is required
	}
	f.mu.Lock()
	f.ln = ln
	f.mu.Unlock()
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				f.conn(c)
			}()
		}
	}()
}

// down closes the listener: connections are refused until up.
func (f *fakeIMAP) down() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ln != nil {
		f.ln.Close()
		f.ln = nil
	}
}

// up listens again on the same address.
func (f *fakeIMAP) up() {
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		f.t.Fatal(err)
	}
	f.serve(ln)
}

func (f *fakeIMAP) setUser(user, pass string) {
	f.mu.Lock()
	f.users[user] = pass
	f.mu.Unlock()
}

func (f *fakeIMAP) event(e string) { f.events <- e }

// waitEvent waits for an event starting with prefix, skipping others.
func (f *fakeIMAP) waitEvent(t *testing.T, prefix string) string {
	t.Helper()
	timeout := time.After(10 * time.Second) // a hang guard
	for {
		select {
		case e := <-f.events:
			if strings.HasPrefix(e, prefix) {
				return e
			}
		case <-timeout:
			t.Fatalf("backend: no %q event", prefix)
			return ""
		}
	}
}

func (f *fakeIMAP) lastLogin(t *testing.T) fakeLogin {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.logins) == 0 {
		t.Fatal("the backend got no LOGIN")
	}
	return f.logins[len(f.logins)-1]
}

func (f *fakeIMAP) commands() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.cmds...)
}

// fakeSource reads a client's commands for the fake backend, recording
// them as sent.
type fakeSource struct {
	r         *bufio.Reader
	w         io.Writer
	raw       strings.Builder
	noSyncLit bool
}

// errLiteralRefused: a synchronising literal the fake backend refused.
var errLiteralRefused = errors.New("literal refused")

func (s *fakeSource) readLine() (string, error) {
	line, err := s.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	s.raw.WriteString(line)
	return strings.TrimRight(line, "\r\n"), nil
}

func (s *fakeSource) readLiteral(n int, sync bool) ([]byte, error) {
	if sync && s.noSyncLit {
		tag, _, _ := strings.Cut(s.raw.String(), " ")
		io.WriteString(s.w, tag+" NO No literals here\r\n")
		return nil, errLiteralRefused
	}
	if sync {
		io.WriteString(s.w, "+ go ahead\r\n")
	}
	b := make([]byte, n)
	_, err := io.ReadFull(s.r, b)
	s.raw.Write(b)
	return b, err
}

// conn serves one connection.
func (f *fakeIMAP) conn(c net.Conn) {
	defer func() {
		c.Close()
		f.event("closed")
	}()
	remote := c.RemoteAddr().String() // reads the PROXY header, if any
	f.mu.Lock()
	f.remotes = append(f.remotes, remote)
	f.mu.Unlock()
	f.event("connected " + remote)
	isTLS := false
	user := ""
	caps := func() string {
		if user != "" {
			return postLoginCaps
		}
		s := "IMAP4rev1 ID"
		if f.cfg.literalPlus {
			s += " LITERAL+"
		}
		if f.cfg.tls != nil && !isTLS {
			s += " STARTTLS"
		}
		return s
	}
	w := c
	src := &fakeSource{r: bufio.NewReader(c), w: w, noSyncLit: f.cfg.noSyncLit}
	say := func(lines ...string) {
		io.WriteString(w, strings.Join(lines, "\r\n")+"\r\n")
	}
	if f.cfg.greetCaps {
		say("* OK [CAPABILITY " + caps() + "] fake backend ready")
	} else {
		say("* OK fake backend ready")
	}
	for {
		src.raw.Reset()
		cmd, err := readIMAPCommand(src)
		var syntax *imapSyntaxError
		if errors.As(err, &syntax) {
			f.mu.Lock()
			f.cmds = append(f.cmds, "(bad)")
			f.mu.Unlock()
			say(syntax.tag + " BAD " + syntax.text)
			continue
		}
		if errors.Is(err, errLiteralRefused) {
			f.mu.Lock()
			f.cmds = append(f.cmds, "(literal refused)")
			f.mu.Unlock()
			continue
		}
		if err != nil {
			return
		}
		f.mu.Lock()
		f.cmds = append(f.cmds, cmd.name)
		f.mu.Unlock()
		t := cmd.tag
		switch cmd.name {
		case "CAPABILITY":
			say("* CAPABILITY "+caps(), t+" OK CAPABILITY completed")
		case "NOOP":
			say(t + " OK NOOP completed")
		case "STARTTLS":
			if f.cfg.tls == nil || isTLS {
				say(t + " BAD no STARTTLS")
				continue
			}
			say(t + " OK Begin TLS")
			tc := tls.Server(c, f.cfg.tls)
			if tc.Handshake() != nil {
				return
			}
			isTLS, w = true, tc
			src.r, src.w = bufio.NewReader(tc), tc
		case "ID":
			var kv []string
			if len(cmd.args) == 1 {
				for _, a := range cmd.args[0].list {
					kv = append(kv, a.s)
				}
			}
			f.mu.Lock()
			f.ids = append(f.ids, kv)
			f.mu.Unlock()
			f.event("id")
			say(`* ID ("name" "fakeimap")`, t+" OK ID completed")
		case "LOGIN":
			if len(cmd.args) != 2 || user != "" {
				say(t + " BAD LOGIN")
				continue
			}
			u, p := cmd.args[0].s, cmd.args[1].s
			f.mu.Lock()
			f.logins = append(f.logins, fakeLogin{user: u, pass: p, raw: src.raw.String(), tls: isTLS})
			want, ok := f.users[u]
			f.mu.Unlock()
			if !ok || want != p {
				f.event("login refused " + u)
				say(t + " NO [AUTHENTICATIONFAILED] Authentication failed.")
				continue
			}
			user = u
			f.event("login " + u)
			if f.cfg.okCaps {
				say(t + " OK [CAPABILITY " + postLoginCaps + "] Logged in")
			} else {
				say(t + " OK Logged in")
			}
		case "SELECT":
			if user == "" || len(cmd.args) != 1 {
				say(t + " BAD SELECT")
				continue
			}
			f.event("select " + user + " " + cmd.args[0].s)
			say(`* FLAGS (\Answered \Flagged \Deleted \Seen \Draft)`,
				"* 3 EXISTS",
				"* OK [UIDVALIDITY 7] UIDs valid",
				"* OK [UIDNEXT 4] Predicted next UID",
				"* OK fake backend has selected "+cmd.args[0].s+" for "+user,
				t+" OK [READ-WRITE] SELECT completed")
		case "LIST":
			if user == "" {
				say(t + " BAD LIST")
				continue
			}
			f.event("list " + user)
			say(`* LIST (\HasNoChildren) "/" INBOX`,
				`* LIST (\HasNoChildren) "/" Archive-of-`+user,
				t+" OK LIST completed")
		case "LOGOUT":
			say("* BYE fake backend logging out", t+" OK LOGOUT completed")
			return
		default:
			say(t + " BAD unknown command")
		}
	}
}

// testCert is a self-signed certificate for 127.0.0.1 and localhost, with
// a pool that trusts it.
var testCert = sync.OnceValues(func() (tls.Certificate, *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "tohost test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
})

func serverTLS() *tls.Config {
	cert, _ := testCert()
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

func clientTLS() *tls.Config {
	_, pool := testCert()
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
}

// idValue returns key's value in flattened ID parameters.
func idValue(kv []string, key string) string {
	for i := 0; i+1 < len(kv); i += 2 {
		if strings.EqualFold(kv[i], key) {
			return kv[i+1]
		}
	}
	return fmt.Sprintf("<no %s>", key)
}
