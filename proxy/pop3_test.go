package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tohost/tohost/internal/penalty"
)

// pop3Env is a proxy serving POP3 in front of one fake backend, with a
// directory of two users living there.
type pop3Env struct {
	dir *fakeDir
	be  *pop3FakeBackend
	px  *proxyHarness
}

var pop3TestUsers = map[string]string{"alice": "secret", "bob": "two words"}

func newPOP3Env(t *testing.T, cfg Config, bopt pop3BackendOptions) *pop3Env {
	t.Helper()
	be := startPOP3Backend(t, bopt, pop3TestUsers)
	dir := newFakeDir()
	for u, pw := range pop3TestUsers {
		dir.add(u, pw, be.addr)
	}
	if cfg.Directory == nil {
		cfg.Directory = dir
	}
	return &pop3Env{dir: dir, be: be, px: startProxy(t, cfg, POP3)}
}

func (e *pop3Env) dial(t *testing.T, local ...string) *pop3Client {
	t.Helper()
	return dialPOP3(t, e.px.addr, local...)
}

func (e *pop3Env) checks() []string {
	e.dir.mu.Lock()
	defer e.dir.mu.Unlock()
	return slices.Clone(e.dir.checks)
}

// relayed checks that the session now talks to the backend: STAT, a
// retrieval with a dot-stuffed line, QUIT, and the end of the connection.
func (pc *pop3Client) relayed() {
	pc.t.Helper()
	total := len(pop3TestMessages[0]) + len(pop3TestMessages[1])
	pc.cmd("STAT", fmt.Sprintf("+OK 2 %d", total))
	pc.cmd("RETR 2", "+OK")
	body := pc.multi()
	if want := []string{"From: b@example.org", "Subject: two", "", "Second message,", "..with a dot line."}; !slices.Equal(body, want) {
		pc.t.Fatalf("RETR 2: %q, want %q", body, want)
	}
	pc.cmd("QUIT", "+OK bye")
	pc.closed()
}

func TestPOP3Greeting(t *testing.T) {
	e := newPOP3Env(t, Config{Hostname: "px.example"}, pop3BackendOptions{})
	pc := e.dial(t)
	if pc.greeting != "+OK px.example POP3 ready" {
		t.Fatalf("greeting %q", pc.greeting)
	}
	pc.cmd("QUIT", "+OK")
	pc.closed()
}

func TestPOP3Capa(t *testing.T) {
	e := newPOP3Env(t, Config{}, pop3BackendOptions{})
	pc := e.dial(t)
	want := []string{"USER", "SASL PLAIN LOGIN", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"}
	if got := pc.capa(); !slices.Equal(got, want) {
		t.Fatalf("CAPA %q, want %q", got, want)
	}
	pc.cmd("STLS", "-ERR") // no certificate configured
	pc.cmd("AUTH", "+OK")
	if got := pc.multi(); !slices.Equal(got, []string{"PLAIN", "LOGIN"}) {
		t.Fatalf("AUTH lists %q", got)
	}
}

func TestPOP3STLS(t *testing.T) {
	cert, pool := pop3TestCert(t)
	e := newPOP3Env(t, Config{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}}, pop3BackendOptions{})
	pc := e.dial(t)
	if got := pc.capa(); !slices.Contains(got, "STLS") || !slices.Contains(got, "USER") {
		t.Fatalf("CAPA before TLS: %q", got)
	}
	pc.cmd("USER alice", "+OK") // forgotten by STLS
	pc.cmd("STLS", "+OK")
	pc.startTLS(pool)
	if got := pc.capa(); slices.Contains(got, "STLS") || !slices.Contains(got, "SASL PLAIN LOGIN") {
		t.Fatalf("CAPA after TLS: %q", got)
	}
	pc.cmd("STLS", "-ERR")
	pc.cmd("PASS secret", "-ERR") // the USER before STLS does not count
	pc.cmd("USER alice", "+OK")
	pc.cmd("PASS secret", "+OK Logged in as alice.")
	pc.relayed()
}

func TestPOP3STLSInjection(t *testing.T) {
	cert, _ := pop3TestCert(t)
	e := newPOP3Env(t, Config{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}}, pop3BackendOptions{})
	pc := e.dial(t)
	pc.send("STLS\r\nUSER alice\r\n") // a command before the handshake
	pc.expect("+OK")
	pc.gone()
}

func TestPOP3RequireTLS(t *testing.T) {
	cert, pool := pop3TestCert(t)
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	e := newPOP3Env(t, Config{RequireTLS: true, Metrics: m,
		TLS: &tls.Config{Certificates: []tls.Certificate{cert}}}, pop3BackendOptions{})
	pc := e.dial(t)
	if got, want := pc.capa(), []string{"STLS", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"}; !slices.Equal(got, want) {
		t.Fatalf("CAPA without TLS %q, want %q", got, want)
	}
	pc.cmd("USER alice", "-ERR [AUTH] TLS required")
	pc.cmd("PASS secret", "-ERR [AUTH] TLS required")
	pc.cmd("AUTH PLAIN "+pop3B64("\x00alice\x00secret"), "-ERR [AUTH] TLS required")
	if n := len(e.checks()); n != 0 {
		t.Fatalf("%d directory checks without TLS", n)
	}
	if got := testutil.ToFloat64(m.logins.WithLabelValues("pop3", outcomeRefused)); got != 3 {
		t.Fatalf("refused logins counted %v, want 3", got)
	}
	pc.cmd("STLS", "+OK")
	pc.startTLS(pool)
	if got := pc.capa(); !slices.Contains(got, "USER") {
		t.Fatalf("CAPA with TLS: %q", got)
	}
	pc.cmd("AUTH PLAIN "+pop3B64("\x00alice\x00secret"), "+OK Logged in as alice.")
	pc.relayed()
}

func TestPOP3UserPass(t *testing.T) {
	for _, sasl := range []bool{false, true} {
		t.Run(fmt.Sprintf("backend-sasl=%v", sasl), func(t *testing.T) {
			e := newPOP3Env(t, Config{}, pop3BackendOptions{sasl: sasl})
			pc := e.dial(t)
			pc.cmd("USER bob", "+OK")
			ok := pc.cmd("PASS two words", "+OK Logged in")
			l := e.be.login(t)
			method, wantOK := "USER", "+OK Logged in as bob."
			if sasl {
				method, wantOK = "PLAIN", "+OK Logged in (PLAIN) as bob."
			}
			if l.user != "bob" || l.method != method {
				t.Fatalf("backend login %+v, want bob by %s", l, method)
			}
			if ok != wantOK {
				t.Fatalf("client got %q, want the backend's %q", ok, wantOK)
			}
			pc.relayed()
		})
	}
}

func TestPOP3AuthPlain(t *testing.T) {
	e := newPOP3Env(t, Config{}, pop3BackendOptions{})
	t.Run("initial-response", func(t *testing.T) {
		pc := e.dial(t)
		pc.cmd("AUTH PLAIN "+pop3B64("\x00alice\x00secret"), "+OK Logged in as alice.")
		pc.relayed()
	})
	t.Run("challenge", func(t *testing.T) {
		pc := e.dial(t)
		if l := pc.cmd("auth plain", "+ "); l != "+ " { // an empty challenge
			t.Fatalf("challenge %q", l)
		}
		pc.cmd(pop3B64("alice\x00alice\x00secret"), "+OK Logged in as alice.") // own authzid
		pc.relayed()
	})
	t.Run("unpadded", func(t *testing.T) {
		pc := e.dial(t)
		pc.cmd("AUTH PLAIN "+strings.TrimRight(pop3B64("\x00bob\x00two words"), "="), "+OK Logged in as bob.")
		pc.relayed()
	})
	t.Run("refused", func(t *testing.T) {
		pc := e.dial(t)
		pc.cmd("AUTH PLAIN =", "-ERR Invalid authentication data")                             // empty
		pc.cmd("AUTH PLAIN "+pop3B64("bob\x00alice\x00secret"), "-ERR Invalid authentication") // another authzid
		pc.cmd("AUTH PLAIN "+pop3B64("alice\x00secret"), "-ERR Invalid authentication")
		pc.cmd("AUTH PLAIN "+pop3B64("\x00alice\r\nDELE 1\x00secret"), "-ERR Invalid authentication")
		pc.cmd("AUTH PLAIN "+pop3B64("\x00alice\x00wrong"), "-ERR [AUTH] Authentication failed.")
		pc.cmd("AUTH CRAM-MD5", "-ERR Unsupported")
	})
}

func TestPOP3AuthLogin(t *testing.T) {
	e := newPOP3Env(t, Config{}, pop3BackendOptions{})
	t.Run("initial-response", func(t *testing.T) {
		pc := e.dial(t)
		pc.cmd("AUTH LOGIN "+pop3B64("alice"), "+ UGFzc3dvcmQ6")
		pc.cmd(pop3B64("secret"), "+OK Logged in as alice.")
		pc.relayed()
	})
	t.Run("challenge", func(t *testing.T) {
		pc := e.dial(t)
		pc.cmd("AUTH LOGIN", "+ VXNlcm5hbWU6")
		pc.cmd(pop3B64("bob"), "+ UGFzc3dvcmQ6")
		pc.cmd(pop3B64("two words"), "+OK Logged in as bob.")
		pc.relayed()
	})
	t.Run("empty", func(t *testing.T) {
		pc := e.dial(t)
		pc.cmd("AUTH LOGIN =", "-ERR Invalid authentication data")
		pc.cmd("AUTH LOGIN", "+ ")
		pc.cmd(pop3B64("alice"), "+ ")
		pc.cmd("", "-ERR Invalid authentication data")
	})
}

func TestPOP3AuthCancel(t *testing.T) {
	e := newPOP3Env(t, Config{}, pop3BackendOptions{})
	pc := e.dial(t)
	pc.cmd("AUTH PLAIN", "+ ")
	pc.cmd("*", "-ERR Authentication cancelled")
	pc.cmd("AUTH LOGIN", "+ ")
	pc.cmd("*", "-ERR Authentication cancelled")
	pc.cmd("AUTH LOGIN "+pop3B64("alice"), "+ ")
	pc.cmd("*", "-ERR Authentication cancelled")
	if c := e.checks(); len(c) != 0 {
		t.Fatalf("cancelled logins reached the directory: %q", c)
	}
	pc.cmd("AUTH PLAIN "+pop3B64("\x00alice\x00secret"), "+OK Logged in")
	pc.relayed()
}

func TestPOP3BadBase64(t *testing.T) {
	e := newPOP3Env(t, Config{}, pop3BackendOptions{})
	pc := e.dial(t)
	pc.cmd("AUTH PLAIN !!!!", "-ERR Invalid base64")
	pc.cmd("AUTH PLAIN", "+ ")
	pc.cmd("AG@#YWxpY2UAc2VjcmV0", "-ERR Invalid base64")
	pc.cmd("AUTH LOGIN", "+ ")
	pc.cmd("YWxpY2U", "+ ") // unpadded is fine
	pc.cmd("c2VjcmV0=", "-ERR Invalid base64")
	if c := e.checks(); len(c) != 0 {
		t.Fatalf("bad base64 reached the directory: %q", c)
	}
	pc.cmd("USER alice", "+OK")
	pc.cmd("PASS secret", "+OK Logged in")
	pc.relayed()
}

func TestPOP3OutOfOrder(t *testing.T) {
	e := newPOP3Env(t, Config{}, pop3BackendOptions{})
	pc := e.dial(t)
	pc.cmd("PASS secret", "-ERR No user name")
	pc.cmd("STAT", "-ERR")
	pc.cmd("RETR 1", "-ERR")
	pc.cmd("", "-ERR")
	pc.cmd("USER", "-ERR")
	pc.cmd("USER alice", "+OK")
	pc.cmd("PASS", "-ERR")
	pc.cmd("PASS secret", "-ERR No user name") // the failed PASS used up the USER
	if c := e.checks(); len(c) != 0 {
		t.Fatalf("directory checked: %q", c)
	}
	pc.cmd("user alice", "+OK")
	pc.cmd("pass secret", "+OK Logged in")
	pc.relayed()
}

func TestPOP3TooManyBadCommands(t *testing.T) {
	e := newPOP3Env(t, Config{}, pop3BackendOptions{})
	pc := e.dial(t)
	for range pop3MaxBadCommands - 1 {
		pc.cmd("NOPE", "-ERR Unknown command")
	}
	pc.cmd("CAPA", "+OK") // good commands do not count
	pc.multi()
	pc.cmd("NOPE", "-ERR Too many invalid commands")
	pc.gone()
}

func TestPOP3Pipelined(t *testing.T) {
	e := newPOP3Env(t, Config{}, pop3BackendOptions{})
	pc := e.dial(t)
	pc.send("CAPA\r\nUSER alice\r\nPASS secret\r\nSTAT\r\nLIST\r\nQUIT\r\n")
	pc.expect("+OK")
	pc.multi()
	pc.expect("+OK")
	pc.expect("+OK Logged in as alice.")
	pc.expect(fmt.Sprintf("+OK 2 %d", len(pop3TestMessages[0])+len(pop3TestMessages[1])))
	pc.expect("+OK")
	if got := pc.multi(); !slices.Equal(got, []string{fmt.Sprint("1 ", len(pop3TestMessages[0])), fmt.Sprint("2 ", len(pop3TestMessages[1]))}) {
		t.Fatalf("LIST %q", got)
	}
	pc.expect("+OK bye")
	pc.closed()
}

func TestPOP3LineTooLong(t *testing.T) {
	e := newPOP3Env(t, Config{}, pop3BackendOptions{})
	t.Run("command", func(t *testing.T) {
		pc := e.dial(t)
		pc.send("USER " + strings.Repeat("a", MaxLine+10) + "\r\n")
		pc.expect("-ERR line too long")
		pc.closed()
	})
	t.Run("sasl", func(t *testing.T) {
		pc := e.dial(t)
		pc.cmd("AUTH PLAIN", "+ ")
		pc.send(strings.Repeat("A", MaxLine+10) + "\r\n")
		pc.expect("-ERR line too long")
		pc.closed()
	})
}

func TestPOP3QuitBeforeLogin(t *testing.T) {
	e := newPOP3Env(t, Config{}, pop3BackendOptions{})
	pc := e.dial(t)
	pc.cmd("USER alice", "+OK")
	pc.cmd("QUIT", "+OK")
	pc.closed()
}

func TestPOP3XCLIENT(t *testing.T) {
	for _, fwd := range []bool{false, true} {
		t.Run(fmt.Sprintf("forward=%v", fwd), func(t *testing.T) {
			e := newPOP3Env(t, Config{ForwardClientIP: fwd}, pop3BackendOptions{})
			pc := e.dial(t, "127.0.0.2")
			pc.cmd("USER alice", "+OK")
			pc.cmd("PASS secret", "+OK Logged in")
			l := e.be.login(t)
			want := ""
			if fwd {
				want = fmt.Sprintf("XCLIENT ADDR=127.0.0.2 PORT=%d", pc.c.LocalAddr().(*net.TCPAddr).Port)
			}
			if l.xclient != want {
				t.Fatalf("backend saw XCLIENT %q, want %q", l.xclient, want)
			}
			pc.relayed()
		})
	}
}

func TestPOP3ProxyHeader(t *testing.T) {
	e := newPOP3Env(t, Config{BackendProxyProtocol: true}, pop3BackendOptions{proxyProtocol: true})
	pc := e.dial(t, "127.0.0.2")
	pc.cmd("USER alice", "+OK")
	pc.cmd("PASS secret", "+OK Logged in")
	if l, want := e.be.login(t), pc.c.LocalAddr().String(); l.remote != want {
		t.Fatalf("backend saw the client as %s, want %s", l.remote, want)
	}
	pc.relayed()
}

func TestPOP3BackendStartTLS(t *testing.T) {
	cert, pool := pop3TestCert(t)
	btls := &tls.Config{Certificates: []tls.Certificate{cert}}
	t.Run("ok", func(t *testing.T) {
		e := newPOP3Env(t, Config{BackendTLS: BackendStartTLS, ForwardClientIP: true,
			BackendTLSConfig: &tls.Config{RootCAs: pool}}, pop3BackendOptions{tls: btls, sasl: true})
		pc := e.dial(t)
		pc.cmd("USER alice", "+OK")
		pc.cmd("PASS secret", "+OK Logged in")
		if l := e.be.login(t); !l.tls || l.method != "PLAIN" || !strings.HasPrefix(l.xclient, "XCLIENT ADDR=127.0.0.1 ") {
			t.Fatalf("backend login %+v, want PLAIN over TLS after XCLIENT", l)
		}
		pc.relayed()
	})
	t.Run("untrusted", func(t *testing.T) {
		e := newPOP3Env(t, Config{BackendTLS: BackendStartTLS}, pop3BackendOptions{tls: btls})
		pc := e.dial(t)
		pc.cmd("USER alice", "+OK")
		pc.cmd("PASS secret", "-ERR [SYS/TEMP] Backend unavailable")
	})
	t.Run("no-stls", func(t *testing.T) {
		e := newPOP3Env(t, Config{BackendTLS: BackendStartTLS, BackendTLSConfig: &tls.Config{RootCAs: pool}}, pop3BackendOptions{})
		pc := e.dial(t)
		pc.cmd("USER alice", "+OK")
		pc.cmd("PASS secret", "-ERR [SYS/TEMP] Backend unavailable")
	})
}

func TestPOP3DefaultBackend(t *testing.T) {
	be := startPOP3Backend(t, pop3BackendOptions{}, map[string]string{"carol": "pw"})
	dir := newFakeDir()
	dir.add("carol", "pw", "")
	t.Run("none", func(t *testing.T) {
		px := startProxy(t, Config{Directory: dir}, POP3)
		pc := dialPOP3(t, px.addr)
		pc.cmd("USER carol", "+OK")
		pc.cmd("PASS pw", "-ERR [SYS/TEMP]")
	})
	t.Run("set", func(t *testing.T) {
		px := startProxy(t, Config{Directory: dir, DefaultBackend: be.addr}, POP3)
		pc := dialPOP3(t, px.addr)
		pc.cmd("USER carol", "+OK")
		pc.cmd("PASS pw", "+OK Logged in as carol.")
		pc.relayed()
	})
}

func TestPOP3Loop(t *testing.T) {
	e := newPOP3Env(t, Config{Self: []string{"mail.example"}}, pop3BackendOptions{})
	e.dir.add("alice", "secret", "mail.example")
	e.dir.add("bob", "two words", "mail.example:110")
	pc := e.dial(t)
	pc.cmd("USER alice", "+OK")
	pc.cmd("PASS secret", "-ERR [SYS/TEMP]")
	pc.cmd("USER bob", "+OK")
	pc.cmd("PASS two words", "-ERR [SYS/TEMP]")
	pc.cmd("QUIT", "+OK")
}

func TestPOP3DirectoryDown(t *testing.T) {
	e := newPOP3Env(t, Config{MaxLoginFailures: 2}, pop3BackendOptions{})
	e.dir.setDown(true)
	pc := e.dial(t)
	for range 4 { // outages are not failures: more than MaxLoginFailures
		pc.cmd("USER alice", "+OK")
		pc.cmd("PASS secret", "-ERR [SYS/TEMP]")
		pc.cmd("AUTH PLAIN "+pop3B64("\x00nobody\x00x"), "-ERR [SYS/TEMP]")
	}
	e.dir.setDown(false)
	pc.cmd("USER alice", "+OK")
	pc.cmd("PASS secret", "+OK Logged in")
	pc.relayed()
}

func TestPOP3BackendDownThenUp(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	dir := newFakeDir()
	dir.add("alice", "secret", addr)
	px := startProxy(t, Config{Directory: dir, Metrics: m, MaxLoginFailures: 1}, POP3)
	pc := dialPOP3(t, px.addr)
	pc.cmd("USER alice", "+OK")
	pc.cmd("PASS secret", "-ERR [SYS/TEMP] Backend unavailable")
	if got := testutil.ToFloat64(m.logins.WithLabelValues("pop3", outcomeUnavailable)); got != 1 {
		t.Fatalf("unavailable logins %v, want 1", got)
	}
	be := startPOP3Backend(t, pop3BackendOptions{addr: addr}, pop3TestUsers)
	pc.cmd("USER alice", "+OK") // the same connection: an outage is no failure
	pc.cmd("PASS secret", "+OK Logged in")
	be.login(t)
	pc.relayed()
}

func TestPOP3BackendRefusesLogin(t *testing.T) {
	for _, sasl := range []bool{false, true} {
		t.Run(fmt.Sprintf("backend-sasl=%v", sasl), func(t *testing.T) {
			be := startPOP3Backend(t, pop3BackendOptions{sasl: sasl}, map[string]string{"alice": "stale"})
			dir := newFakeDir()
			dir.add("alice", "secret", be.addr)
			dir.add("bob", "pw", be.addr) // unknown to the backend
			px := startProxy(t, Config{Directory: dir}, POP3)
			pc := dialPOP3(t, px.addr)
			pc.cmd("USER alice", "+OK")
			pc.cmd("PASS secret", "-ERR [SYS/TEMP] Backend login failed")
			pc.cmd("AUTH PLAIN "+pop3B64("\x00bob\x00pw"), "-ERR [SYS/TEMP] Backend login failed")
			pc.cmd("QUIT", "+OK")
		})
	}
}

func TestPOP3TooManyFailures(t *testing.T) {
	e := newPOP3Env(t, Config{MaxLoginFailures: 3}, pop3BackendOptions{})
	pc := e.dial(t)
	pc.cmd("USER alice", "+OK")
	if l := pc.cmd("PASS wrong", "-ERR [AUTH]"); l != "-ERR [AUTH] Authentication failed." {
		t.Fatalf("wrong password: %q", l)
	}
	pc.cmd("USER nobody", "+OK")
	if l := pc.cmd("PASS secret", "-ERR [AUTH]"); l != "-ERR [AUTH] Authentication failed." {
		t.Fatalf("unknown user: %q", l) // the same words as a wrong password
	}
	pc.cmd("AUTH PLAIN "+pop3B64("\x00alice\x00nope"), "-ERR [AUTH] Authentication failed.")
	pc.gone()
}

func TestPOP3Penalty(t *testing.T) {
	pen := penalty.New[netip.Addr](penalty.Config{Base: time.Hour, Max: time.Hour})
	e := newPOP3Env(t, Config{Penalty: pen}, pop3BackendOptions{})
	bad, good := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
	pc := e.dial(t, "127.0.0.1")
	pc.cmd("USER alice", "+OK")
	pc.cmd("PASS wrong", "-ERR [AUTH]")
	if d := pen.Delay(bad); d != time.Hour {
		t.Fatalf("delay after a failure %v, want 1h", d)
	}
	// Another address does not wait (it would for an hour: the hang
	// guard would fail the test).
	other := e.dial(t, "127.0.0.2")
	other.cmd("USER alice", "+OK")
	other.cmd("PASS secret", "+OK Logged in")
	other.relayed()
	if d := pen.Delay(good); d != 0 {
		t.Fatalf("delay of the other address %v", d)
	}
	if d := pen.Delay(bad); d != time.Hour {
		t.Fatalf("delay after another address's success %v, want 1h", d)
	}
}

func TestPOP3PenaltyClearedBySuccess(t *testing.T) {
	pen := penalty.New[netip.Addr](penalty.Config{Base: time.Microsecond, Max: time.Microsecond})
	e := newPOP3Env(t, Config{Penalty: pen}, pop3BackendOptions{})
	ip := netip.MustParseAddr("127.0.0.1")
	pc := e.dial(t, "127.0.0.1")
	pc.cmd("USER alice", "+OK")
	pc.cmd("PASS wrong", "-ERR [AUTH]")
	if d := pen.Delay(ip); d == 0 {
		t.Fatal("no delay after a failure")
	}
	pc.cmd("USER alice", "+OK")
	pc.cmd("PASS secret", "+OK Logged in")
	if d := pen.Delay(ip); d != 0 {
		t.Fatalf("delay after a success %v", d)
	}
	pc.relayed()
}

func TestPOP3Metrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	e := newPOP3Env(t, Config{Metrics: m}, pop3BackendOptions{})
	pc := e.dial(t)
	pc.cmd("USER alice", "+OK")
	pc.cmd("PASS wrong", "-ERR [AUTH]")
	pc.cmd("USER alice", "+OK")
	pc.cmd("PASS secret", "+OK Logged in")
	for outcome, want := range map[string]float64{outcomeOK: 1, outcomeFailed: 1, outcomeUnavailable: 0} {
		if got := testutil.ToFloat64(m.logins.WithLabelValues("pop3", outcome)); got != want {
			t.Errorf("logins %s = %v, want %v", outcome, got, want)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, mf := range mfs {
		if mf.GetName() == "tohost_proxy_backend_seconds" {
			n = mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	if n != 1 {
		t.Errorf("backend hand-overs observed %d, want 1", n)
	}
	pc.relayed()
}

// TestPOP3Curl runs curl through the proxy: a listing and retrievals,
// with curl's own choice of login (AUTH PLAIN, the response after a
// challenge), with AUTH PLAIN and an initial response, and with AUTH
// LOGIN.
func TestPOP3Curl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatalf("curl is needed for this test: %v", err)
	}
	e := newPOP3Env(t, Config{}, pop3BackendOptions{sasl: true})
	run := func(t *testing.T, path string, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a hang guard
		defer cancel()
		args = append([]string{"-s", "-S", "pop3://" + e.px.addr + path, "-u", "bob:two words"}, args...)
		out, err := exec.CommandContext(ctx, curl, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %q: %v: %s", args, err, out)
		}
		return string(out)
	}
	list := fmt.Sprintf("1 %d\r\n2 %d\r\n", len(pop3TestMessages[0]), len(pop3TestMessages[1]))
	t.Run("list", func(t *testing.T) {
		if out := run(t, "/"); out != list {
			t.Fatalf("listing %q, want %q", out, list)
		}
		if l := e.be.login(t); l.user != "bob" {
			t.Fatalf("backend login %+v", l)
		}
	})
	t.Run("retrieve", func(t *testing.T) {
		if out := run(t, "/1"); out != pop3TestMessages[0] {
			t.Fatalf("message 1: %q, want %q", out, pop3TestMessages[0])
		}
		e.be.login(t)
	})
	t.Run("plain-ir", func(t *testing.T) {
		if out := run(t, "/2", "--login-options", "AUTH=PLAIN", "--sasl-ir"); out != pop3TestMessages[1] {
			t.Fatalf("message 2: %q, want %q", out, pop3TestMessages[1])
		}
		e.be.login(t)
	})
	t.Run("login", func(t *testing.T) {
		if out := run(t, "/1", "--login-options", "AUTH=LOGIN"); out != pop3TestMessages[0] {
			t.Fatalf("message 1: %q, want %q", out, pop3TestMessages[0])
		}
		e.be.login(t)
	})
	t.Run("wrong-password", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a hang guard
		defer cancel()
		out, err := exec.CommandContext(ctx, curl, "-s", "pop3://"+e.px.addr+"/", "-u", "bob:bad").CombinedOutput()
		if err == nil {
			t.Fatalf("curl succeeded with a wrong password: %s", out)
		}
	})
}
