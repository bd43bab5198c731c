package proxy

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tohost/tohost/internal/penalty"
)

// imapConn is a test client on a raw socket.
type imapConn struct {
	t        *testing.T
	c        net.Conn
	r        *bufio.Reader
	greeting string
}

// hangGuard bounds every wait of a test client; no test relies on it.
const hangGuard = 10 * time.Second

func dialIMAP(t *testing.T, addr string) *imapConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ic := &imapConn{t: t, c: c, r: bufio.NewReader(c)}
	ic.greeting = ic.line()
	if !strings.HasPrefix(ic.greeting, "* OK ") {
		t.Fatalf("greeting %q", ic.greeting)
	}
	return ic
}

func (c *imapConn) send(s string) {
	c.t.Helper()
	c.c.SetWriteDeadline(time.Now().Add(hangGuard))
	if _, err := io.WriteString(c.c, s); err != nil {
		c.t.Fatalf("send %q: %v", s, err)
	}
}

// line reads one line, without CR LF.
func (c *imapConn) line() string {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(hangGuard))
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (after %q)", err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

// cmd sends tag+" "+command and returns the lines of the answer, the
// tagged one last.
func (c *imapConn) cmd(tag, command string) []string {
	c.t.Helper()
	c.send(tag + " " + command + "\r\n")
	return c.until(tag)
}

// until reads lines up to tag's.
func (c *imapConn) until(tag string) []string {
	c.t.Helper()
	var lines []string
	for {
		l := c.line()
		lines = append(lines, l)
		if strings.HasPrefix(l, tag+" ") {
			return lines
		}
	}
}

// expectEOF reads to the end of the stream, failing on anything else.
func (c *imapConn) expectEOF() {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(hangGuard))
	rest, err := io.ReadAll(c.r)
	if err != nil && !errors.Is(err, net.ErrClosed) && !isReset(err) {
		c.t.Fatalf("expected the end of the stream, got %v after %q", err, rest)
	}
	if len(rest) > 0 {
		c.t.Fatalf("expected the end of the stream, got %q", rest)
	}
}

func isReset(err error) bool { return strings.Contains(err.Error(), "connection reset") }

func last(lines []string) string { return lines[len(lines)-1] }

func wantPrefix(t *testing.T, got, prefix string) {
	t.Helper()
	if !strings.HasPrefix(got, prefix) {
		t.Fatalf("got %q, want %q...", got, prefix)
	}
}

// imapEnv is a directory, a fake backend and a proxy in front of it.
type imapEnv struct {
	dir *fakeDir
	be  *fakeIMAP
	px  *proxyHarness
	cfg Config
}

// newIMAPEnv starts a backend (bob/secret) and a proxy; bob's tohost is
// the backend. cfg's Directory is set.
func newIMAPEnv(t *testing.T, cfg Config, bcfg fakeIMAPConfig) *imapEnv {
	t.Helper()
	e := &imapEnv{dir: newFakeDir(), be: startFakeIMAP(t, bcfg)}
	e.dir.add("bob", "secret", e.be.addr)
	cfg.Directory = e.dir
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = time.Second
	}
	e.cfg = cfg
	e.px = startProxy(t, cfg, IMAP)
	return e
}

func (e *imapEnv) dial(t *testing.T) *imapConn { return dialIMAP(t, e.px.addr) }

func hasCap(caps, c string) bool {
	for _, f := range strings.Fields(strings.NewReplacer("[", " ", "]", " ").Replace(caps)) {
		if f == c {
			return true
		}
	}
	return false
}

func TestIMAPGreetingAndCapabilities(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cfg       Config
		want, not []string
	}{
		{"plain", Config{}, []string{"IMAP4rev1", "SASL-IR", "LITERAL+", "ID", "AUTH=PLAIN"}, []string{"STARTTLS", "LOGINDISABLED"}},
		{"tls", Config{TLS: serverTLS()}, []string{"IMAP4rev1", "STARTTLS", "AUTH=PLAIN"}, []string{"LOGINDISABLED"}},
		{"require tls", Config{TLS: serverTLS(), RequireTLS: true}, []string{"IMAP4rev1", "STARTTLS", "LOGINDISABLED"}, []string{"AUTH=PLAIN"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Hostname = "px.example"
			e := newIMAPEnv(t, tc.cfg, fakeIMAPConfig{})
			c := e.dial(t)
			wantPrefix(t, c.greeting, "* OK [CAPABILITY IMAP4rev1 ")
			if !strings.HasSuffix(c.greeting, "] px.example ready") {
				t.Errorf("greeting %q", c.greeting)
			}
			lines := c.cmd("a", "CAPABILITY")
			if len(lines) != 2 || lines[1] != "a OK CAPABILITY completed" {
				t.Fatalf("CAPABILITY: %q", lines)
			}
			for _, caps := range []string{c.greeting, lines[0]} {
				for _, w := range tc.want {
					if !hasCap(caps, w) {
						t.Errorf("%q lacks %s", caps, w)
					}
				}
				for _, n := range tc.not {
					if hasCap(caps, n) {
						t.Errorf("%q has %s", caps, n)
					}
				}
			}
			if got := c.cmd("b", "NOOP"); last(got) != "b OK NOOP completed" {
				t.Errorf("NOOP: %q", got)
			}
			got := c.cmd("c", `ID ("name" "test" "version" {1+}`+"\r\n1)")
			if len(got) != 2 || got[0] != `* ID ("name" "tohost")` || got[1] != "c OK ID completed" {
				t.Errorf("ID: %q", got)
			}
			if got := c.cmd("d", "ID NIL"); last(got) != "d OK ID completed" {
				t.Errorf("ID NIL: %q", got)
			}
			got = c.cmd("e", "LOGOUT")
			if len(got) != 2 || !strings.HasPrefix(got[0], "* BYE ") || got[1] != "e OK LOGOUT completed" {
				t.Errorf("LOGOUT: %q", got)
			}
			c.expectEOF()
		})
	}
}

// loginOK checks that the answer to a login is the backend's, relayed.
func loginOK(t *testing.T, lines []string, tag string) {
	t.Helper()
	wantPrefix(t, last(lines), tag+" OK ")
}

func TestIMAPLoginForms(t *testing.T) {
	e := newIMAPEnv(t, Config{}, fakeIMAPConfig{okCaps: true, users: map[string]string{
		`we"ird\user`: `pa ss"\`, "ütf": "pässwörd",
	}})
	e.dir.add(`we"ird\user`, `pa ss"\`, e.be.addr)
	e.dir.add("ütf", "pässwörd", e.be.addr)

	t.Run("atoms", func(t *testing.T) {
		c := e.dial(t)
		loginOK(t, c.cmd("a", "LOGIN bob secret"), "a")
		if l := e.be.lastLogin(t); l.user != "bob" || l.pass != "secret" || l.raw != `P1 LOGIN "bob" "secret"`+"\r\n" {
			t.Errorf("backend got %+v", l)
		}
	})
	t.Run("quoted with escapes", func(t *testing.T) {
		c := e.dial(t)
		loginOK(t, c.cmd("a", `LOGIN "we\"ird\\user" "pa ss\"\\"`), "a")
		l := e.be.lastLogin(t)
		if l.user != `we"ird\user` || l.pass != `pa ss"\` {
			t.Errorf("backend got %+v", l)
		}
		// Quotes and backslashes go to the backend as literals; it does
		// not announce LITERAL+, so synchronising ones.
		if l.raw != "P1 LOGIN {11}\r\n"+`we"ird\user`+" {7}\r\n"+`pa ss"\`+"\r\n" {
			t.Errorf("backend got %q", l.raw)
		}
	})
	t.Run("8-bit", func(t *testing.T) {
		c := e.dial(t)
		loginOK(t, c.cmd("a", `LOGIN "ütf" pässwörd`), "a")
		if l := e.be.lastLogin(t); l.user != "ütf" || l.pass != "pässwörd" || !strings.Contains(l.raw, "{4}\r\nütf") {
			t.Errorf("backend got %+v", l)
		}
	})
	t.Run("synchronising literals", func(t *testing.T) {
		c := e.dial(t)
		c.send("a LOGIN {3}\r\n")
		wantPrefix(t, c.line(), "+ ")
		c.send("bob {6}\r\n")
		wantPrefix(t, c.line(), "+ ")
		c.send("secret\r\n")
		loginOK(t, c.until("a"), "a")
	})
	t.Run("non-synchronising literals", func(t *testing.T) {
		c := e.dial(t)
		c.send("a LOGIN {3+}\r\nbob {6+}\r\nsecret\r\n")
		lines := c.until("a")
		if len(lines) != 1 {
			t.Fatalf("expected the tagged answer alone, got %q", lines)
		}
		loginOK(t, lines, "a")
	})
	t.Run("wrong password", func(t *testing.T) {
		c := e.dial(t)
		if got := c.cmd("a", "LOGIN bob wrong"); last(got) != "a NO [AUTHENTICATIONFAILED] Authentication failed." {
			t.Fatalf("got %q", got)
		}
		if got := c.cmd("b", "LOGIN nobody secret"); last(got) != "b NO [AUTHENTICATIONFAILED] Authentication failed." {
			t.Fatalf("unknown user: got %q", got)
		}
		loginOK(t, c.cmd("c", "LOGIN bob secret"), "c")
	})
}

func TestIMAPBackendLiteralPlus(t *testing.T) {
	e := newIMAPEnv(t, Config{}, fakeIMAPConfig{greetCaps: true, literalPlus: true, users: map[string]string{"bob": `se"cret`}})
	e.dir.add("bob", `se"cret`, e.be.addr)
	c := e.dial(t)
	loginOK(t, c.cmd("a", `LOGIN bob "se\"cret"`), "a")
	if l := e.be.lastLogin(t); l.raw != `P1 LOGIN "bob" {7+}`+"\r\n"+`se"cret`+"\r\n" {
		t.Errorf("backend got %q", l.raw)
	}
}

func TestIMAPBackendRefusesLiteral(t *testing.T) {
	e := newIMAPEnv(t, Config{}, fakeIMAPConfig{noSyncLit: true, users: map[string]string{"bob": `se"cret`}})
	e.dir.add("bob", `se"cret`, e.be.addr)
	c := e.dial(t)
	if got := last(c.cmd("a", `LOGIN bob "se\"cret"`)); got != "a NO [UNAVAILABLE] Backend unavailable, try again later" {
		t.Fatalf("got %q", got)
	}
	// The literal's data was not sent after the refusal. The fake backend
	// records the refusal just after sending it: wait for the record (the
	// deadline is a hang guard).
	for deadline := time.Now().Add(20 * time.Second); len(e.be.commands()) == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if cmds := e.be.commands(); strings.Join(cmds, ",") != "(literal refused)" {
		t.Errorf("backend commands %q", cmds)
	}
}

func plain(authz, user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte(authz + "\x00" + user + "\x00" + pass))
}

func TestIMAPAuthenticatePlain(t *testing.T) {
	e := newIMAPEnv(t, Config{}, fakeIMAPConfig{okCaps: true})
	t.Run("initial response", func(t *testing.T) {
		c := e.dial(t)
		loginOK(t, c.cmd("a", "AUTHENTICATE PLAIN "+plain("", "bob", "secret")), "a")
		if l := e.be.lastLogin(t); l.user != "bob" || l.pass != "secret" {
			t.Errorf("backend got %+v", l)
		}
	})
	t.Run("continuation", func(t *testing.T) {
		c := e.dial(t)
		c.send("a authenticate plain\r\n")
		if l := c.line(); l != "+ " {
			t.Fatalf("continuation %q", l)
		}
		c.send(plain("bob", "bob", "secret") + "\r\n")
		loginOK(t, c.until("a"), "a")
	})
	t.Run("refusals", func(t *testing.T) {
		e.dir.mu.Lock()
		before := len(e.dir.checks)
		e.dir.mu.Unlock()
		c := e.dial(t)
		c.send("a AUTHENTICATE PLAIN\r\n")
		c.line()
		c.send("*\r\n")
		if l := c.line(); l != "a BAD AUTHENTICATE cancelled" {
			t.Errorf("cancel: %q", l)
		}
		if got := last(c.cmd("b", "AUTHENTICATE PLAIN %%%notbase64")); !strings.HasPrefix(got, "b BAD ") {
			t.Errorf("bad base64: %q", got)
		}
		c.send("c AUTHENTICATE PLAIN\r\n")
		c.line()
		c.send("!!!!\r\n")
		if got := c.line(); !strings.HasPrefix(got, "c BAD ") {
			t.Errorf("bad base64 after the continuation: %q", got)
		}
		if got := last(c.cmd("d", "AUTHENTICATE PLAIN =")); !strings.HasPrefix(got, "d BAD ") {
			t.Errorf("empty response: %q", got)
		}
		if got := last(c.cmd("e", "AUTHENTICATE PLAIN "+plain("alice", "bob", "secret"))); !strings.HasPrefix(got, "e NO [AUTHORIZATIONFAILED]") {
			t.Errorf("authzid of another user: %q", got)
		}
		if got := last(c.cmd("f", "AUTHENTICATE CRAM-MD5")); !strings.HasPrefix(got, "f NO ") {
			t.Errorf("other mechanism: %q", got)
		}
		if got := last(c.cmd("g", "AUTHENTICATE PLAIN "+plain("", "bob", "wrong"))); got != "g NO [AUTHENTICATIONFAILED] Authentication failed." {
			t.Errorf("wrong password: %q", got)
		}
		e.dir.mu.Lock()
		checks := len(e.dir.checks) - before
		e.dir.mu.Unlock()
		if checks != 1 {
			t.Errorf("the directory was asked %d times, want once (only for the wrong password)", checks)
		}
		loginOK(t, c.cmd("h", "AUTHENTICATE PLAIN "+plain("", "bob", "secret")), "h")
	})
}

// startTLS upgrades a test client after STARTTLS.
func (c *imapConn) startTLS() {
	c.t.Helper()
	if got := c.cmd("tls", "STARTTLS"); len(got) != 1 || got[0] != "tls OK Begin TLS negotiation now" {
		c.t.Fatalf("STARTTLS: %q", got)
	}
	if c.r.Buffered() > 0 {
		c.t.Fatal("data after STARTTLS")
	}
	tc := tls.Client(c.c, clientTLS())
	tc.SetDeadline(time.Now().Add(hangGuard))
	if err := tc.Handshake(); err != nil {
		c.t.Fatal(err)
	}
	c.c, c.r = tc, bufio.NewReader(tc)
}

func TestIMAPStartTLS(t *testing.T) {
	e := newIMAPEnv(t, Config{TLS: serverTLS(), RequireTLS: true}, fakeIMAPConfig{okCaps: true})
	c := e.dial(t)
	if !hasCap(c.greeting, "LOGINDISABLED") {
		t.Fatalf("greeting %q", c.greeting)
	}
	if got := last(c.cmd("a", "LOGIN bob secret")); got != "a NO [PRIVACYREQUIRED] Use STARTTLS before logging in" {
		t.Fatalf("LOGIN before TLS: %q", got)
	}
	if got := last(c.cmd("b", "AUTHENTICATE PLAIN "+plain("", "bob", "secret"))); !strings.HasPrefix(got, "b NO [PRIVACYREQUIRED]") {
		t.Fatalf("AUTHENTICATE before TLS: %q", got)
	}
	c.startTLS()
	caps := c.cmd("c", "CAPABILITY")[0]
	if !hasCap(caps, "AUTH=PLAIN") || hasCap(caps, "STARTTLS") || hasCap(caps, "LOGINDISABLED") {
		t.Fatalf("capabilities after TLS: %q", caps)
	}
	if got := last(c.cmd("d", "STARTTLS")); !strings.HasPrefix(got, "d BAD ") {
		t.Fatalf("STARTTLS twice: %q", got)
	}
	loginOK(t, c.cmd("e", "LOGIN bob secret"), "e")
	got := c.cmd("f", "SELECT INBOX")
	if last(got) != "f OK [READ-WRITE] SELECT completed" {
		t.Fatalf("SELECT over TLS: %q", got)
	}
}

func TestIMAPStartTLSRefused(t *testing.T) {
	t.Run("no certificate", func(t *testing.T) {
		e := newIMAPEnv(t, Config{}, fakeIMAPConfig{})
		c := e.dial(t)
		if got := last(c.cmd("a", "STARTTLS")); !strings.HasPrefix(got, "a BAD ") {
			t.Fatalf("STARTTLS: %q", got)
		}
		if got := last(c.cmd("b", "NOOP")); got != "b OK NOOP completed" {
			t.Fatalf("NOOP: %q", got)
		}
	})
	t.Run("commands injected before the handshake", func(t *testing.T) {
		e := newIMAPEnv(t, Config{TLS: serverTLS()}, fakeIMAPConfig{})
		c := e.dial(t)
		c.send("a STARTTLS\r\nb LOGIN bob secret\r\n")
		if got := c.line(); got != "a OK Begin TLS negotiation now" {
			t.Fatalf("STARTTLS: %q", got)
		}
		c.expectEOF()
	})
}

func TestIMAPLimits(t *testing.T) {
	e := newIMAPEnv(t, Config{}, fakeIMAPConfig{})
	t.Run("long line", func(t *testing.T) {
		c := e.dial(t)
		c.send("a LOGIN " + strings.Repeat("x", MaxLine+10) + "\r\n")
		if got := c.line(); got != "* BYE Line too long" {
			t.Fatalf("got %q", got)
		}
		c.expectEOF()
	})
	t.Run("synchronising literal too big", func(t *testing.T) {
		c := e.dial(t)
		c.send("a LOGIN {" + strconv.Itoa(maxLiteral+1) + "}\r\n")
		if got := c.line(); got != "a BAD Literal too big" {
			t.Fatalf("got %q", got)
		}
		if got := last(c.cmd("b", "NOOP")); got != "b OK NOOP completed" {
			t.Fatalf("NOOP after the refusal: %q", got)
		}
		// A client that sends the data anyway is cut off.
		c.send("c LOGIN {" + strconv.Itoa(maxLiteral+1) + "}\r\n")
		if got := c.line(); got != "c BAD Literal too big" {
			t.Fatalf("got %q", got)
		}
		c.send(strings.Repeat("x", maxLiteral+1) + "\r\n")
		if got := c.line(); !strings.HasPrefix(got, "* BYE ") {
			t.Fatalf("got %q", got)
		}
		c.expectEOF()
		// The same with data that has line ends early.
		c = e.dial(t)
		c.send("a LOGIN {" + strconv.Itoa(maxLiteral+1) + "}\r\n")
		if got := c.line(); got != "a BAD Literal too big" {
			t.Fatalf("got %q", got)
		}
		c.send("password\r\n")
		if got := c.line(); got != "* BYE Invalid input" {
			t.Fatalf("got %q", got)
		}
		c.expectEOF()
	})
	t.Run("non-synchronising literal too big", func(t *testing.T) {
		c := e.dial(t)
		c.send("a LOGIN {" + strconv.Itoa(maxLiteral+1) + "+}\r\n")
		if got := c.line(); got != "a BAD Literal too big" {
			t.Fatalf("got %q", got)
		}
		if got := c.line(); !strings.HasPrefix(got, "* BYE ") {
			t.Fatalf("got %q", got)
		}
		c.expectEOF()
	})
}

func TestIMAPIdleBeforeLogin(t *testing.T) {
	e := newIMAPEnv(t, Config{LoginTimeout: 50 * time.Millisecond}, fakeIMAPConfig{})
	c := e.dial(t)
	if got := c.line(); got != "* BYE Autologout; idle for too long" {
		t.Fatalf("got %q", got)
	}
	c.expectEOF()
}

func TestIMAPBeforeLogin(t *testing.T) {
	e := newIMAPEnv(t, Config{}, fakeIMAPConfig{})
	c := e.dial(t)
	// Pipelined: answered in order.
	c.send("a SELECT INBOX\r\nb NOOP\r\n\r\nc\r\nd LOGIN \"open\r\n+ NOOP\r\ne LOGIN bob\r\nf FETCH 1:* (FLAGS)\r\ng NOOP\r\n")
	want := []string{
		"a BAD Please log in first",
		"b OK NOOP completed",
		"* BAD Missing or invalid tag",
		"c BAD Missing command",
		"d BAD Unterminated quoted string",
		"* BAD Missing or invalid tag",
		"e BAD LOGIN takes a user name and a password",
		"f BAD Please log in first",
		"g OK NOOP completed",
	}
	for _, w := range want {
		if got := c.line(); got != w {
			t.Fatalf("got %q, want %q", got, w)
		}
	}
	if cmds := e.be.commands(); len(cmds) != 0 {
		t.Errorf("the backend got %q before any login", cmds)
	}
}

func TestIMAPPipelinedAfterLogin(t *testing.T) {
	e := newIMAPEnv(t, Config{}, fakeIMAPConfig{okCaps: true})
	c := e.dial(t)
	c.send("a LOGIN bob secret\r\nb SELECT INBOX\r\n")
	loginOK(t, c.until("a"), "a")
	got := c.until("b")
	if last(got) != "b OK [READ-WRITE] SELECT completed" || !strings.Contains(strings.Join(got, "\n"), "* OK fake backend has selected INBOX for bob") {
		t.Fatalf("SELECT: %q", got)
	}
	e.be.waitEvent(t, "select bob INBOX")
	got = c.cmd("z", "LOGOUT")
	if last(got) != "z OK LOGOUT completed" {
		t.Fatalf("LOGOUT: %q", got)
	}
	c.expectEOF()
	e.be.waitEvent(t, "closed")
}

func TestIMAPPostLoginCapabilities(t *testing.T) {
	t.Run("in the OK", func(t *testing.T) {
		e := newIMAPEnv(t, Config{}, fakeIMAPConfig{okCaps: true})
		c := e.dial(t)
		got := c.cmd("a", "LOGIN bob secret")
		if len(got) != 1 || got[0] != "a OK [CAPABILITY "+postLoginCaps+"] Logged in" {
			t.Fatalf("got %q", got)
		}
		if cmds := e.be.commands(); strings.Join(cmds, " ") != "LOGIN" {
			t.Errorf("backend commands %q", cmds)
		}
	})
	t.Run("asked for", func(t *testing.T) {
		e := newIMAPEnv(t, Config{}, fakeIMAPConfig{})
		c := e.dial(t)
		got := c.cmd("a", "LOGIN bob secret")
		if len(got) != 2 || got[0] != "* CAPABILITY "+postLoginCaps || got[1] != "a OK Logged in" {
			t.Fatalf("got %q", got)
		}
		if cmds := e.be.commands(); strings.Join(cmds, " ") != "LOGIN CAPABILITY" {
			t.Errorf("backend commands %q", cmds)
		}
	})
}

func TestIMAPForwardClientIP(t *testing.T) {
	e := newIMAPEnv(t, Config{ForwardClientIP: true}, fakeIMAPConfig{okCaps: true})
	c := e.dial(t)
	loginOK(t, c.cmd("a", "LOGIN bob secret"), "a")
	e.be.mu.Lock()
	ids := e.be.ids
	e.be.mu.Unlock()
	if len(ids) != 1 {
		t.Fatalf("backend got %d IDs", len(ids))
	}
	local := netip.MustParseAddrPort(c.c.LocalAddr().String())
	proxy := netip.MustParseAddrPort(e.px.addr)
	for k, want := range map[string]string{
		"x-originating-ip":   local.Addr().String(),
		"x-originating-port": strconv.Itoa(int(local.Port())),
		"x-connected-ip":     proxy.Addr().String(),
		"x-connected-port":   strconv.Itoa(int(proxy.Port())),
	} {
		if got := idValue(ids[0], k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if cmds := e.be.commands(); strings.Join(cmds, " ") != "ID LOGIN" {
		t.Errorf("backend commands %q", cmds)
	}
}

func TestIMAPBackendProxyHeader(t *testing.T) {
	e := newIMAPEnv(t, Config{BackendProxyProtocol: true}, fakeIMAPConfig{okCaps: true, proxyHeader: true})
	c := e.dial(t)
	loginOK(t, c.cmd("a", "LOGIN bob secret"), "a")
	e.be.mu.Lock()
	remotes := e.be.remotes
	e.be.mu.Unlock()
	if len(remotes) != 1 || remotes[0] != c.c.LocalAddr().String() {
		t.Fatalf("backend saw %q, the client is %s", remotes, c.c.LocalAddr())
	}
}

func TestIMAPBackendStartTLS(t *testing.T) {
	e := newIMAPEnv(t, Config{BackendTLS: BackendStartTLS, BackendTLSConfig: clientTLS(), ForwardClientIP: true},
		fakeIMAPConfig{tls: serverTLS(), greetCaps: true})
	c := e.dial(t)
	got := c.cmd("a", "LOGIN bob secret")
	if len(got) != 2 || got[0] != "* CAPABILITY "+postLoginCaps {
		t.Fatalf("got %q", got)
	}
	if l := e.be.lastLogin(t); !l.tls {
		t.Error("LOGIN reached the backend without TLS")
	}
	if cmds := e.be.commands(); strings.Join(cmds, " ") != "STARTTLS ID LOGIN CAPABILITY" {
		t.Errorf("backend commands %q", cmds)
	}
}

func TestIMAPBackendStartTLSUntrusted(t *testing.T) {
	// The backend's certificate is not trusted: no login goes to it.
	e := newIMAPEnv(t, Config{BackendTLS: BackendStartTLS}, fakeIMAPConfig{tls: serverTLS()})
	c := e.dial(t)
	if got := last(c.cmd("a", "LOGIN bob secret")); got != "a NO [UNAVAILABLE] Backend unavailable, try again later" {
		t.Fatalf("got %q", got)
	}
	if cmds := e.be.commands(); strings.Join(cmds, " ") != "STARTTLS" {
		t.Errorf("backend commands %q", cmds)
	}
}

func TestIMAPRouting(t *testing.T) {
	be := startFakeIMAP(t, fakeIMAPConfig{okCaps: true})
	dir := newFakeDir()
	dir.add("nohost", "secret", "")
	dir.add("loop", "secret", "px.example:143")
	be.setUser("nohost", "secret")
	be.setUser("loop", "secret")
	t.Run("default backend", func(t *testing.T) {
		px := startProxy(t, Config{Directory: dir, DefaultBackend: be.addr}, IMAP)
		c := dialIMAP(t, px.addr)
		loginOK(t, c.cmd("a", "LOGIN nohost secret"), "a")
		if l := be.lastLogin(t); l.user != "nohost" {
			t.Errorf("backend got %+v", l)
		}
	})
	t.Run("no backend", func(t *testing.T) {
		px := startProxy(t, Config{Directory: dir}, IMAP)
		c := dialIMAP(t, px.addr)
		if got := last(c.cmd("a", "LOGIN nohost secret")); !strings.HasPrefix(got, "a NO [UNAVAILABLE] ") {
			t.Fatalf("got %q", got)
		}
	})
	t.Run("loop", func(t *testing.T) {
		px := startProxy(t, Config{Directory: dir, DefaultBackend: be.addr, Self: []string{"px.example"}}, IMAP)
		c := dialIMAP(t, px.addr)
		if got := last(c.cmd("a", "LOGIN loop secret")); !strings.HasPrefix(got, "a NO [UNAVAILABLE] ") {
			t.Fatalf("got %q", got)
		}
		if got := last(c.cmd("b", "NOOP")); got != "b OK NOOP completed" {
			t.Fatalf("NOOP: %q", got)
		}
	})
}

func TestIMAPDirectoryDown(t *testing.T) {
	e := newIMAPEnv(t, Config{MaxLoginFailures: 1}, fakeIMAPConfig{okCaps: true})
	c := e.dial(t)
	e.dir.setDown(true)
	for _, tag := range []string{"a", "b"} { // never counted as failures
		if got := last(c.cmd(tag, "LOGIN bob secret")); !strings.HasPrefix(got, tag+" NO [UNAVAILABLE] ") {
			t.Fatalf("got %q", got)
		}
	}
	e.dir.setDown(false)
	loginOK(t, c.cmd("c", "LOGIN bob secret"), "c")
}

func TestIMAPBackendDown(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	e := newIMAPEnv(t, Config{Metrics: m}, fakeIMAPConfig{okCaps: true})
	c := e.dial(t)
	e.be.down()
	if got := last(c.cmd("a", "LOGIN bob secret")); got != "a NO [UNAVAILABLE] Backend unavailable, try again later" {
		t.Fatalf("backend down: %q", got)
	}
	e.be.up()
	// The backend refuses a password the directory took.
	e.be.setUser("bob", "other")
	if got := last(c.cmd("b", "LOGIN bob secret")); got != "b NO [UNAVAILABLE] Backend unavailable, try again later" {
		t.Fatalf("backend refusing: %q", got)
	}
	e.be.waitEvent(t, "login refused bob")
	e.be.setUser("bob", "secret")
	loginOK(t, c.cmd("c", "LOGIN bob secret"), "c")
	if got := testutil.ToFloat64(m.backendErrors); got != 2 {
		t.Errorf("backend errors %v, want 2", got)
	}
	for outcome, want := range map[string]float64{outcomeOK: 1, outcomeUnavailable: 2, outcomeFailed: 0} {
		if got := testutil.ToFloat64(m.logins.WithLabelValues("imap", outcome)); got != want {
			t.Errorf("logins %s: %v, want %v", outcome, got, want)
		}
	}
}

func TestIMAPPenalty(t *testing.T) {
	pen := penalty.New[netip.Addr](penalty.Config{Base: time.Millisecond, Max: time.Millisecond})
	e := newIMAPEnv(t, Config{Penalty: pen}, fakeIMAPConfig{okCaps: true})
	ip := netip.MustParseAddr("127.0.0.1")
	c := e.dial(t)
	if got := last(c.cmd("a", "LOGIN bob wrong")); !strings.HasPrefix(got, "a NO [AUTHENTICATIONFAILED]") {
		t.Fatalf("got %q", got)
	}
	if d := pen.Delay(ip); d != time.Millisecond {
		t.Fatalf("delay after a failure %v, want the base", d)
	}
	loginOK(t, c.cmd("b", "LOGIN bob secret"), "b")
	if d := pen.Delay(ip); d != 0 {
		t.Fatalf("delay after a success %v", d)
	}
	e.dir.mu.Lock()
	checks := strings.Join(e.dir.checks, ",")
	e.dir.mu.Unlock()
	if checks != "bob 127.0.0.1,bob 127.0.0.1" {
		t.Errorf("directory checks %q", checks)
	}
}

func TestIMAPTooManyFailures(t *testing.T) {
	e := newIMAPEnv(t, Config{MaxLoginFailures: 2}, fakeIMAPConfig{})
	c := e.dial(t)
	if got := last(c.cmd("a", "LOGIN bob wrong")); got != "a NO [AUTHENTICATIONFAILED] Authentication failed." {
		t.Fatalf("got %q", got)
	}
	if got := last(c.cmd("b", "AUTHENTICATE PLAIN "+plain("", "bob", "wrong"))); got != "b NO [AUTHENTICATIONFAILED] Authentication failed." {
		t.Fatalf("got %q", got)
	}
	if got := c.line(); got != "* BYE Too many failures" {
		t.Fatalf("got %q", got)
	}
	c.expectEOF()
}

func TestIMAPShutdownDrains(t *testing.T) {
	e := newIMAPEnv(t, Config{DrainTimeout: 50 * time.Millisecond}, fakeIMAPConfig{okCaps: true})
	c := e.dial(t)
	loginOK(t, c.cmd("a", "LOGIN bob secret"), "a")
	if got := last(c.cmd("b", "SELECT INBOX")); got != "b OK [READ-WRITE] SELECT completed" {
		t.Fatalf("SELECT: %q", got)
	}
	e.px.stop(t) // returns once every session has ended
	c.expectEOF()
	e.be.waitEvent(t, "closed")
}

func TestIMAPGoIMAPClient(t *testing.T) {
	e := newIMAPEnv(t, Config{}, fakeIMAPConfig{})
	conn, err := net.Dial("tcp", e.px.addr)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(hangGuard))
	client := imapclient.New(conn, nil)
	defer client.Close()
	if err := client.Login("bob", "secret").Wait(); err != nil {
		t.Fatalf("login: %v", err)
	}
	data, err := client.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatalf("select: %v", err)
	}
	if data.NumMessages != 3 || data.UIDValidity != 7 {
		t.Errorf("select data %+v", data)
	}
	e.be.waitEvent(t, "select bob INBOX")
	if err := client.Logout().Wait(); err != nil {
		t.Fatalf("logout: %v", err)
	}
}

func TestIMAPCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatalf("curl is needed for this test: %v", err)
	}
	e := newIMAPEnv(t, Config{}, fakeIMAPConfig{})
	cmd := exec.Command(curl, "-s", "-S", "--max-time", "20", "imap://"+e.px.addr+"/", "-u", "bob:secret")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), `* LIST (\HasNoChildren) "/" Archive-of-bob`) {
		t.Fatalf("curl printed %q", out)
	}
	e.be.waitEvent(t, "list bob")
}
