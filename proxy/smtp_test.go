package proxy

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// smtpEnv is a directory, a proxy and what the test put behind it.
type smtpEnv struct {
	dir *fakeDir
	px  *proxyHarness
}

func startSMTPProxy(t *testing.T, cfg Config, proto Protocol, opt SMTPOptions) *smtpEnv {
	t.Helper()
	d, _ := cfg.Directory.(*fakeDir)
	if d == nil {
		d = newFakeDir()
		cfg.Directory = d
	}
	cfg.SMTP = opt
	h := startProxy(t, cfg, proto)
	return &smtpEnv{dir: d, px: h}
}

const smtpMsg = "From: alice@example.com\r\nTo: bob@example.org\r\nSubject: hi\r\n\r\nline one\r\n.a line that starts with a dot\r\n..two dots\r\n.\r\nthe end\r\n"

func TestSubmissionRelaysAsUser(t *testing.T) {
	be := startFakeSMTP(t, fakeSMTPOpts{keepBody: true})
	be.rcptReply["nobody@example.org"] = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 2}, Message: "backend says no"}
	c := dialAliceSubmission(t, be)
	if ok, _ := c.Extension("AUTH"); !ok {
		t.Fatal("AUTH not announced")
	}
	aliceToBob(t, c)
	// The backend's refusal is the reply, code and enhanced code.
	err := c.Rcpt("nobody@example.org", nil)
	var se *smtp.SMTPError
	if !errorsAs(err, &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 1, 2}) {
		t.Fatalf("RCPT refused by the backend: %v, want its 550 5.1.2", err)
	}
	w := writeSMTPMsg(t, c)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	m := be.wait(t)
	if string(m.body) != smtpMsg {
		t.Errorf("body:\n%q\nwant\n%q", m.body, smtpMsg)
	}
	if m.auth != "alice@example.com" || m.from != "alice@example.com" || strings.Join(m.rcpts, ",") != "bob@example.org" {
		t.Errorf("backend got auth %q from %q rcpts %q", m.auth, m.from, m.rcpts)
	}
	// A second transaction on the same connection.
	if err := c.SendMail("alice@example.com", []string{"carol@example.org"}, strings.NewReader("Subject: 2\r\n\r\nsecond\r\n")); err != nil {
		t.Fatal(err)
	}
	if m := be.wait(t); string(m.body) != "Subject: 2\r\n\r\nsecond\r\n" || m.rcpts[0] != "carol@example.org" {
		t.Errorf("second message: %q to %q", m.body, m.rcpts)
	}
	c.Quit()
}

func errorsAs(err error, se **smtp.SMTPError) bool { return errors.As(err, se) }

// dialAliceSubmission starts a submission proxy in front of be, where
// alice@example.com's password is secret, and connects to it; the
// connection is closed at the end of the test.
func dialAliceSubmission(t *testing.T, be *fakeSMTP) *smtp.Client {
	t.Helper()
	be.users["alice@example.com"] = "secret"
	env := startSMTPProxy(t, Config{}, Submission, SMTPOptions{})
	env.dir.add("alice@example.com", "secret", be.addr)
	c, err := smtp.Dial(env.px.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// aliceToBob logs in as alice@example.com and starts a transaction from
// her to bob@example.org.
func aliceToBob(t *testing.T, c *smtp.Client) {
	t.Helper()
	if err := c.Auth(sasl.NewPlainClient("", "alice@example.com", "secret")); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("alice@example.com", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("bob@example.org", nil); err != nil {
		t.Fatal(err)
	}
}

// writeSMTPMsg starts DATA and writes smtpMsg; the caller ends it.
func writeSMTPMsg(t *testing.T, c *smtp.Client) *smtp.DataCommand {
	t.Helper()
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, smtpMsg)
	return w
}

// The backend's 250 to DATA reaches the client as it is: its text names
// the backend's queue id.
func TestSubmissionPassesBackendOK(t *testing.T) {
	be := startFakeSMTP(t, fakeSMTPOpts{})
	be.dataReply["bob@example.org"] = &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "queued as 0123ABCD"}
	c := dialAliceSubmission(t, be)
	aliceToBob(t, c)
	w := writeSMTPMsg(t, c)
	resp, err := w.CloseWithResponse()
	if err != nil || resp.StatusText != "2.0.0 queued as 0123ABCD" {
		t.Fatalf("reply to DATA: %+v, %v", resp, err)
	}
}

func TestSubmissionAuthLogin(t *testing.T) {
	be := startFakeSMTP(t, fakeSMTPOpts{keepBody: true})
	be.users["bob"] = "pw"
	env := startSMTPProxy(t, Config{}, Submission, SMTPOptions{})
	env.dir.add("bob", "pw", be.addr)

	r := dialSMTPRaw(t, env.px.addr)
	ehlo := r.want("EHLO client.test", "250")
	if !strings.Contains(ehlo, "AUTH PLAIN LOGIN") {
		t.Errorf("EHLO reply %q does not announce AUTH PLAIN LOGIN", ehlo)
	}
	r.want("AUTH LOGIN", "334 "+b64("Username:"))
	r.want(b64("bob"), "334 "+b64("Password:"))
	r.want(b64("pw"), "235")
	r.want("MAIL FROM:<bob@example.com>", "250")
	r.want("RCPT TO:<x@example.org>", "250")
	r.want("DATA", "354")
	r.send("Subject: login\r\n\r\nbody\r\n.")
	r.expect(250)
	if m := be.wait(t); m.auth != "bob" || string(m.body) != "Subject: login\r\n\r\nbody\r\n" {
		t.Errorf("backend got %q as %q", m.body, m.auth)
	}

	// LOGIN with the user name as initial response; PLAIN with one.
	r2 := dialSMTPRaw(t, env.px.addr)
	r2.want("EHLO client.test", "250")
	r2.want("AUTH LOGIN "+b64("bob"), "334 "+b64("Password:"))
	r2.want(b64("wrong"), "535 5.7.8")
	r2.want("AUTH PLAIN "+plainIR("bob", "pw"), "235")
	r2.want("QUIT", "221")
}

func TestSubmissionMailBeforeAuth(t *testing.T) {
	env := startSMTPProxy(t, Config{}, Submission, SMTPOptions{})
	r := dialSMTPRaw(t, env.px.addr)
	r.want("EHLO client.test", "250")
	r.want("MAIL FROM:<a@example.com>", "530 5.7.0")
	r.want("RCPT TO:<b@example.com>", "502") // no MAIL was taken
	r.want("QUIT", "221")
}

func TestSubmissionBadPasswordOutageAndTooManyFailures(t *testing.T) {
	be := startFakeSMTP(t, fakeSMTPOpts{})
	be.users["alice"] = "secret"
	env := startSMTPProxy(t, Config{MaxLoginFailures: 3}, Submission, SMTPOptions{})
	env.dir.add("alice", "secret", be.addr)

	r := dialSMTPRaw(t, env.px.addr)
	r.want("EHLO client.test", "250")
	r.want("AUTH PLAIN "+plainIR("alice", "wrong"), "535 5.7.8")
	env.dir.setDown(true)
	r.want("AUTH PLAIN "+plainIR("alice", "secret"), "454 4.7.0") // an outage is not a wrong password
	env.dir.setDown(false)
	r.want("AUTH PLAIN "+plainIR("alice", "wrong"), "535 5.7.8")
	r.want("AUTH PLAIN "+plainIR("nobody", "x"), "421 4.7.0") // the third failure
	r.closed()

	// A good login after all that, on a new connection.
	r = dialSMTPRaw(t, env.px.addr)
	r.want("EHLO client.test", "250")
	r.want("AUTH PLAIN "+plainIR("alice", "secret"), "235")
}

func TestSubmissionBackendDown(t *testing.T) {
	be := startFakeSMTP(t, fakeSMTPOpts{})
	be.users["alice"] = "secret"
	env := startSMTPProxy(t, Config{}, Submission, SMTPOptions{})
	env.dir.add("alice", "secret", be.addr)

	// Logged in, then the backend goes away: MAIL gets a temporary failure.
	r := dialSMTPRaw(t, env.px.addr)
	r.want("EHLO client.test", "250")
	r.want("AUTH PLAIN "+plainIR("alice", "secret"), "235")
	be.stop()
	<-be.connClosed
	r.want("MAIL FROM:<alice@example.com>", "451 4.4.")
	// Now a login cannot reach the backend at all: 454.
	r2 := dialSMTPRaw(t, env.px.addr)
	r2.want("EHLO client.test", "250")
	r2.want("AUTH PLAIN "+plainIR("alice", "secret"), "454 4.7.0")

	// The backend's refusal of the user's credentials is no wrong password
	// here (the directory said yes): temporary.
	be2 := startFakeSMTP(t, fakeSMTPOpts{})
	env.dir.add("alice", "secret", be2.addr)
	r2.want("AUTH PLAIN "+plainIR("alice", "secret"), "454 4.7.0")
}

func TestSubmissionStartTLS(t *testing.T) {
	srvTLS, cliTLS := smtpTestCert(t)
	beTLS, beCli := smtpTestCert(t)
	be := startFakeSMTP(t, fakeSMTPOpts{keepBody: true, tls: beTLS})
	be.users["alice"] = "secret"
	env := startSMTPProxy(t, Config{TLS: srvTLS, RequireTLS: true,
		BackendTLS: BackendStartTLS, BackendTLSConfig: beCli}, Submission, SMTPOptions{})
	env.dir.add("alice", "secret", be.addr)

	r := dialSMTPRaw(t, env.px.addr)
	ehlo := r.want("EHLO client.test", "250")
	if !strings.Contains(ehlo, "STARTTLS") || strings.Contains(ehlo, "AUTH") {
		t.Errorf("EHLO before TLS: %q, want STARTTLS and no AUTH", ehlo)
	}
	r.want("AUTH PLAIN "+plainIR("alice", "secret"), "530 5.7.0")
	r.c.Close()

	c, err := smtp.DialStartTLS(env.px.addr, cliTLS.Clone())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !c.SupportsAuth("PLAIN") {
		t.Error("AUTH PLAIN not announced after STARTTLS")
	}
	if err := c.Auth(sasl.NewPlainClient("", "alice", "secret")); err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail("alice@example.com", []string{"bob@example.org"}, strings.NewReader(smtpMsg)); err != nil {
		t.Fatal(err)
	}
	m := be.wait(t)
	if !m.tls || m.auth != "alice" || string(m.body) != smtpMsg {
		t.Errorf("backend got tls=%v auth=%q body %q", m.tls, m.auth, m.body)
	}
}

func TestSubmissionImplicitTLS(t *testing.T) {
	srvTLS, cliTLS := smtpTestCert(t)
	be := startFakeSMTP(t, fakeSMTPOpts{})
	be.users["alice"] = "secret"
	env := startSMTPProxy(t, Config{TLS: srvTLS, RequireTLS: true}, Submission, SMTPOptions{})
	env.dir.add("alice", "secret", be.addr)
	// Port 465 style: the listener is TLS; here the test wraps the
	// connection as internal/listen does and serves it directly.
	p := env.px.p
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		tc := tls.Server(nc, srvTLS)
		defer tc.Close()
		p.submission(t.Context(), p.newSession(tc, Submission))
	}()
	c, err := smtp.DialTLS(ln.Addr().String(), cliTLS.Clone())
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Error("STARTTLS announced on a TLS connection")
	}
	if err := c.Auth(sasl.NewPlainClient("", "alice", "secret")); err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail("alice@example.com", []string{"b@example.org"}, strings.NewReader("x\r\n")); err != nil {
		t.Fatal(err)
	}
	be.wait(t)
	c.Quit()
	<-done
}

func TestSubmissionForwardsClientIP(t *testing.T) {
	t.Run("XCLIENT", func(t *testing.T) {
		be := startFakeSMTP(t, fakeSMTPOpts{xclient: true})
		be.users["alice"] = "secret"
		env := startSMTPProxy(t, Config{ForwardClientIP: true}, Submission, SMTPOptions{})
		env.dir.add("alice", "secret", be.addr)
		sendSubmission(t, env.px.addr, "alice", "secret")
		if m := be.wait(t); m.xclient != "ADDR=127.0.0.1" || m.auth != "alice" {
			t.Errorf("backend got XCLIENT %q, auth %q; want ADDR=127.0.0.1, alice", m.xclient, m.auth)
		}
	})
	t.Run("not announced", func(t *testing.T) {
		be := startFakeSMTP(t, fakeSMTPOpts{})
		be.users["alice"] = "secret"
		env := startSMTPProxy(t, Config{ForwardClientIP: true}, Submission, SMTPOptions{})
		env.dir.add("alice", "secret", be.addr)
		sendSubmission(t, env.px.addr, "alice", "secret")
		if m := be.wait(t); m.xclient != "" {
			t.Errorf("XCLIENT %q sent to a backend that did not announce it", m.xclient)
		}
	})
	t.Run("PROXY v2", func(t *testing.T) {
		be := startFakeSMTP(t, fakeSMTPOpts{proxyHeader: true})
		be.users["alice"] = "secret"
		env := startSMTPProxy(t, Config{BackendProxyProtocol: true}, Submission, SMTPOptions{})
		env.dir.add("alice", "secret", be.addr)
		local := sendSubmission(t, env.px.addr, "alice", "secret")
		if m := be.wait(t); m.remote != local {
			t.Errorf("backend saw the client as %q, want %q (from the PROXY header)", m.remote, local)
		}
	})
}

// sendSubmission sends one message as user and returns the client's
// address.
func sendSubmission(t *testing.T, addr, user, pass string) string {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	local := nc.LocalAddr().String()
	c := smtp.NewClient(nc)
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", user, pass)); err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail(user+"@example.com", []string{"rcpt@example.org"}, strings.NewReader("Subject: s\r\n\r\nhello\r\n")); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	return local
}

// TestSubmissionStreamsLargeMessage sends 20 MB in two halves and sends
// the second only once the backend has received most of the first: a
// proxy that held the message until its end would never get there (the
// hang guard fails the test).
func TestSubmissionStreamsLargeMessage(t *testing.T) {
	be := startFakeSMTP(t, fakeSMTPOpts{})
	be.users["alice"] = "secret"
	half := int64(10 << 20)
	var once sync.Once
	firstHalf := make(chan struct{})
	be.progress = func(n int64) {
		if n >= half/2 {
			once.Do(func() { close(firstHalf) })
		}
	}
	env := startSMTPProxy(t, Config{}, Submission, SMTPOptions{MaxMessageBytes: 64 << 20})
	env.dir.add("alice", "secret", be.addr)

	r := dialSMTPRaw(t, env.px.addr)
	r.c.SetDeadline(time.Now().Add(5 * time.Minute)) // a hang guard: 20 MB under -race is slow
	r.want("EHLO client.test", "250")
	r.want("AUTH PLAIN "+plainIR("alice", "secret"), "235")
	r.want("MAIL FROM:<alice@example.com> SIZE=20971520", "250")
	r.want("RCPT TO:<big@example.org>", "250")
	r.want("DATA", "354")
	line := []byte(strings.Repeat("0123456789abcdef", 6) + "\r\n") // 98 bytes
	h := sha256.New()
	var sent int64
	write := func(n int64) {
		chunk := bytes.Repeat(line, 1000)
		for n > 0 {
			b := chunk
			if int64(len(b)) > n {
				b = b[:n-n%int64(len(line))]
				if len(b) == 0 {
					return
				}
			}
			if _, err := r.c.Write(b); err != nil {
				t.Fatal(err)
			}
			h.Write(b)
			sent += int64(len(b))
			n -= int64(len(b))
		}
	}
	write(half)
	select {
	case <-firstHalf:
	case <-t.Context().Done():
	case <-timeAfterHang():
		t.Fatal("the backend got nothing of the message while the client was still sending it")
	}
	write(half)
	r.send(".")
	r.expect(250)
	m := be.wait(t)
	var want [32]byte
	copy(want[:], h.Sum(nil))
	if m.sum != want || m.size != sent {
		t.Errorf("backend got %d bytes (hash match %v)", m.size, m.sum == want)
	}
}

func TestSubmissionLoop(t *testing.T) {
	env := startSMTPProxy(t, Config{Self: []string{"127.0.0.1"}}, Submission, SMTPOptions{})
	env.dir.add("alice", "secret", "127.0.0.1:2525")
	r := dialSMTPRaw(t, env.px.addr)
	r.want("EHLO client.test", "250")
	r.want("AUTH PLAIN "+plainIR("alice", "secret"), "454 4.7.0")
}

// ---- incoming mail ----

func TestIncomingOneBackendPerTransaction(t *testing.T) {
	b1 := startFakeSMTP(t, fakeSMTPOpts{lmtp: true, keepBody: true})
	b2 := startFakeSMTP(t, fakeSMTPOpts{lmtp: true, keepBody: true})
	env := startSMTPProxy(t, Config{}, SMTP, SMTPOptions{})
	env.dir.add("alice@example.com", "", b1.addr)
	env.dir.add("bob@example.com", "", b2.addr)
	env.dir.add("carol@example.com", "", b1.addr)

	r := dialSMTPRaw(t, env.px.addr)
	ehlo := r.want("EHLO mta.test", "250")
	if strings.Contains(ehlo, "AUTH") {
		t.Errorf("incoming EHLO announces AUTH: %q", ehlo)
	}
	r.want("MAIL FROM:<sender@remote.test>", "250")
	r.want("RCPT TO:<alice@example.com>", "250")
	r.want("RCPT TO:<bob@example.com>", "452 4.5.3")
	r.want("RCPT TO:<carol@example.com>", "250")
	r.want("DATA", "354")
	r.send("Subject: one\r\n\r\nfirst\r\n.")
	r.expect(250)
	// The MTA sends bob's copy in a new transaction.
	r.want("MAIL FROM:<sender@remote.test>", "250")
	r.want("RCPT TO:<bob@example.com>", "250")
	r.want("DATA", "354")
	r.send("Subject: one\r\n\r\nfirst\r\n.")
	r.expect(250)
	r.want("QUIT", "221")

	m1, m2 := b1.wait(t), b2.wait(t)
	if strings.Join(m1.rcpts, ",") != "alice@example.com,carol@example.com" || m1.from != "sender@remote.test" {
		t.Errorf("backend 1 got %q from %q", m1.rcpts, m1.from)
	}
	if strings.Join(m2.rcpts, ",") != "bob@example.com" || string(m2.body) != "Subject: one\r\n\r\nfirst\r\n" {
		t.Errorf("backend 2 got %q: %q", m2.rcpts, m2.body)
	}
	if n1, n2 := len(b1.got()), len(b2.got()); n1 != 1 || n2 != 1 {
		t.Errorf("messages: backend 1 %d, backend 2 %d; want one each", n1, n2)
	}
}

func TestIncomingDirectoryAnswers(t *testing.T) {
	b := startFakeSMTP(t, fakeSMTPOpts{lmtp: true})
	env := startSMTPProxy(t, Config{Self: []string{"127.0.0.1:25"}}, SMTP, SMTPOptions{})
	env.dir.add("alice@example.com", "", b.addr)
	env.dir.add("looper@example.com", "", "127.0.0.1:25")

	r := dialSMTPRaw(t, env.px.addr)
	r.want("EHLO mta.test", "250")
	r.want("MAIL FROM:<s@remote.test>", "250")
	r.want("RCPT TO:<nobody@example.com>", "550 5.1.1")
	r.want("RCPT TO:<looper@example.com>", "451 4.3.0") // a loop
	env.dir.setDown(true)
	r.want("RCPT TO:<alice@example.com>", "451 4.3.0")
	env.dir.setDown(false)
	r.want("RCPT TO:<alice@example.com>", "250")
	r.want("QUIT", "221")
}

func TestIncomingBackendRefusesRecipient(t *testing.T) {
	b := startFakeSMTP(t, fakeSMTPOpts{lmtp: true})
	b.rcptReply["moved@example.com"] = &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 0}, Message: "lives elsewhere"}
	b.rcptReply["gone@example.com"] = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 6}, Message: "gone"}
	env := startSMTPProxy(t, Config{}, SMTP, SMTPOptions{})
	for _, u := range []string{"moved", "gone", "here"} {
		env.dir.add(u+"@example.com", "", b.addr)
	}
	r := dialSMTPRaw(t, env.px.addr)
	r.want("EHLO mta.test", "250")
	r.want("MAIL FROM:<s@remote.test>", "250")
	r.want("RCPT TO:<moved@example.com>", "450 4.2.0 lives elsewhere")
	r.want("RCPT TO:<gone@example.com>", "550 5.1.6 gone")
	r.want("RCPT TO:<here@example.com>", "250")
	r.want("DATA", "354")
	r.send("x\r\n.")
	r.expect(250)
	if m := b.wait(t); strings.Join(m.rcpts, ",") != "here@example.com" {
		t.Errorf("delivered to %q", m.rcpts)
	}
}

func TestIncomingLMTPResults(t *testing.T) {
	temp := &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "mailbox full"}
	perm := &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 2, 2}, Message: "mailbox full for good"}
	cases := []struct {
		name      string
		replies   map[string]*smtp.SMTPError
		want      string
		delivered string
	}{
		{"all delivered", nil, "250", "a,b,c"},
		{"mixed, a temporary failure", map[string]*smtp.SMTPError{"b": temp}, "452 4.2.2 <b@example.com> mailbox full", "a,c"},
		{"mixed, permanent failures only", map[string]*smtp.SMTPError{"c": perm}, "552 5.2.2", "a,b"},
		{"mixed, both", map[string]*smtp.SMTPError{"b": perm, "c": temp}, "452 4.2.2", "a"},
		{"none, one code", map[string]*smtp.SMTPError{"a": perm, "b": perm, "c": perm}, "552 5.2.2", ""},
		{"none, temporary and permanent", map[string]*smtp.SMTPError{"a": perm, "b": temp, "c": perm}, "452 4.2.2", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := startFakeSMTP(t, fakeSMTPOpts{lmtp: true})
			env := startSMTPProxy(t, Config{}, SMTP, SMTPOptions{})
			for _, u := range []string{"a", "b", "c"} {
				env.dir.add(u+"@example.com", "", b.addr)
				if e := tc.replies[u]; e != nil {
					b.dataReply[u+"@example.com"] = e
				}
			}
			r := dialSMTPRaw(t, env.px.addr)
			r.want("EHLO mta.test", "250")
			r.want("MAIL FROM:<s@remote.test>", "250")
			for _, u := range []string{"a", "b", "c"} {
				r.want("RCPT TO:<"+u+"@example.com>", "250")
			}
			r.want("DATA", "354")
			r.send("x\r\n.")
			code, text := r.reply()
			if got := strings.TrimSpace(strings.Join([]string{itoa(code), text}, " ")); !strings.HasPrefix(got, tc.want) {
				t.Errorf("DATA reply %q, want %q", got, tc.want)
			}
			r.want("QUIT", "221")
			got := ""
			if tc.delivered != "" {
				m := b.wait(t)
				got = strings.ReplaceAll(strings.Join(m.rcpts, ","), "@example.com", "")
			}
			if got != tc.delivered {
				t.Errorf("backend delivered to %q, want %q", got, tc.delivered)
			}
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func timeAfterHang() <-chan time.Time { return time.After(smtpHang) }

func TestSMTPLMTPVerdict(t *testing.T) {
	t1 := &smtp.SMTPError{Code: 450}
	t2 := &smtp.SMTPError{Code: 451}
	p1 := &smtp.SMTPError{Code: 550}
	p2 := &smtp.SMTPError{Code: 554}
	rc := []string{"a", "b", "c"}
	for _, tc := range []struct {
		failed map[string]*smtp.SMTPError
		want   *smtp.SMTPError
		mixed  bool
	}{
		{nil, nil, false},
		{map[string]*smtp.SMTPError{"b": t1}, t1, true},
		{map[string]*smtp.SMTPError{"b": p1}, p1, true},
		{map[string]*smtp.SMTPError{"a": p1, "c": t2}, t2, true},
		{map[string]*smtp.SMTPError{"a": p2, "b": p1, "c": p1}, p2, false},
		{map[string]*smtp.SMTPError{"a": p1, "b": t1, "c": t2}, t1, false},
	} {
		got, mixed := smtpLMTPVerdict(rc, tc.failed)
		if got != tc.want || mixed != tc.mixed {
			t.Errorf("%v: got %v mixed %v, want %v mixed %v", tc.failed, got, mixed, tc.want, tc.mixed)
		}
	}
}

// A backend that dies in the middle of a message, or after taking all of
// it but before its reply: the MTA gets a temporary failure, never 250.
func TestIncomingBackendDiesMidData(t *testing.T) {
	for _, tc := range []struct {
		name  string
		smtp  bool
		whole bool // read the whole message before dying
	}{
		{"LMTP, mid-message", false, false},
		{"LMTP, before the replies", false, true},
		{"SMTP, mid-message", true, false},
		{"SMTP, before the reply", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := startFakeSMTP(t, fakeSMTPOpts{lmtp: !tc.smtp})
			got := make(chan struct{})
			b.mu.Lock()
			b.onData = func(s *fakeSMTPSession, r io.Reader) error {
				if tc.whole {
					io.Copy(io.Discard, r)
				} else {
					io.CopyN(io.Discard, r, 1000)
				}
				s.c.Conn().Close()
				close(got)
				return io.ErrUnexpectedEOF
			}
			b.mu.Unlock()
			env := startSMTPProxy(t, Config{}, SMTP, SMTPOptions{BackendSMTP: tc.smtp})
			env.dir.add("a@example.com", "", b.addr)
			r := dialSMTPRaw(t, env.px.addr)
			r.want("EHLO mta.test", "250")
			r.want("MAIL FROM:<s@remote.test>", "250")
			r.want("RCPT TO:<a@example.com>", "250")
			r.want("DATA", "354")
			// More than the proxy's copy buffer (go-smtp fills a read whole).
			r.c.Write(bytes.Repeat([]byte("0123456789abcdef\r\n"), 10000))
			if tc.whole {
				r.send(".")
			}
			select {
			case <-got:
			case <-timeAfterHang():
				t.Fatal("backend got no data")
			}
			if !tc.whole {
				r.c.Write(bytes.Repeat([]byte("0123456789abcdef\r\n"), 1000))
				r.send(".")
			}
			code, text := r.reply()
			if code/100 != 4 {
				t.Errorf("DATA reply %d %s, want 4xx", code, text)
			}
			// The connection goes on: the next transaction opens a new
			// backend connection.
			b.mu.Lock()
			b.onData = nil
			b.mu.Unlock()
			r.want("MAIL FROM:<s@remote.test>", "250")
			r.want("RCPT TO:<a@example.com>", "250")
			r.want("DATA", "354")
			r.send("again\r\n.")
			r.expect(250)
			if m := b.wait(t); m.size != int64(len("again\r\n")) {
				t.Errorf("backend got %d bytes", m.size)
			}
		})
	}
}

// A client that goes away in the middle of DATA: the backend must not get
// the part of the message that came.
func TestIncomingClientDiesMidData(t *testing.T) {
	b := startFakeSMTP(t, fakeSMTPOpts{lmtp: true})
	env := startSMTPProxy(t, Config{}, SMTP, SMTPOptions{})
	env.dir.add("a@example.com", "", b.addr)
	r := dialSMTPRaw(t, env.px.addr)
	r.want("EHLO mta.test", "250")
	r.want("MAIL FROM:<s@remote.test>", "250")
	r.want("RCPT TO:<a@example.com>", "250")
	r.want("DATA", "354")
	r.send("Subject: cut\r\n\r\npart of it")
	r.c.Close()
	select {
	case <-b.connClosed:
	case m := <-b.delivered:
		t.Fatalf("backend delivered %d bytes of a message cut short", m.size)
	case <-timeAfterHang():
		t.Fatal("backend connection not closed")
	}
	if m := b.got(); len(m) != 0 {
		t.Errorf("backend delivered %d messages of a message cut short", len(m))
	}
}

func TestIncomingForwardsClientIP(t *testing.T) {
	b := startFakeSMTP(t, fakeSMTPOpts{lmtp: true, xclient: true})
	env := startSMTPProxy(t, Config{ForwardClientIP: true}, SMTP, SMTPOptions{})
	env.dir.add("a@example.com", "", b.addr)
	r := dialSMTPRaw(t, env.px.addr)
	r.want("EHLO mta.test", "250")
	r.want("MAIL FROM:<s@remote.test>", "250")
	r.want("RCPT TO:<a@example.com>", "250")
	r.want("DATA", "354")
	r.send("x\r\n.")
	r.expect(250)
	if m := b.wait(t); m.xclient != "ADDR=127.0.0.1" {
		t.Errorf("backend got XCLIENT %q", m.xclient)
	}
}

func TestIncomingOverSMTP(t *testing.T) {
	b := startFakeSMTP(t, fakeSMTPOpts{keepBody: true})
	env := startSMTPProxy(t, Config{}, SMTP, SMTPOptions{BackendSMTP: true})
	env.dir.add("a@example.com", "", b.addr)
	b.rcptReply["x@example.com"] = &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 0}, Message: "later"}
	env.dir.add("x@example.com", "", b.addr)
	c, err := smtp.Dial(env.px.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("s@remote.test", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("x@example.com", nil); err == nil || !strings.Contains(err.Error(), "450") {
		t.Errorf("RCPT x: %v, want the backend's 450", err)
	}
	if err := c.Rcpt("a@example.com", nil); err != nil {
		t.Fatal(err)
	}
	w := writeSMTPMsg(t, c)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if m := b.wait(t); string(m.body) != smtpMsg || strings.Join(m.rcpts, ",") != "a@example.com" {
		t.Errorf("backend got %q for %q", m.body, m.rcpts)
	}
	c.Quit()
}

// ---- curl ----

func TestSMTPWithCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatal("curl is needed by this test (apt-get install curl)")
	}
	file := filepath.Join(t.TempDir(), "msg.txt")
	body := "Subject: curl\r\n\r\nfrom curl\r\n.dotted\r\n"
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Run("incoming", func(t *testing.T) {
		b := startFakeSMTP(t, fakeSMTPOpts{lmtp: true, keepBody: true})
		env := startSMTPProxy(t, Config{}, SMTP, SMTPOptions{})
		env.dir.add("b@example.org", "", b.addr)
		out, err := exec.Command(curl, "-sS", "smtp://"+env.px.addr, "--mail-from", "a@x.test",
			"--mail-rcpt", "b@example.org", "-T", file).CombinedOutput()
		if err != nil {
			t.Fatalf("curl: %v: %s", err, out)
		}
		if m := b.wait(t); string(m.body) != body || m.from != "a@x.test" {
			t.Errorf("backend got %q from %q", m.body, m.from)
		}
		// An unknown recipient: curl fails.
		out, err = exec.Command(curl, "-sS", "smtp://"+env.px.addr, "--mail-from", "a@x.test",
			"--mail-rcpt", "nobody@example.org", "-T", file).CombinedOutput()
		if err == nil {
			t.Errorf("curl to an unknown recipient succeeded: %s", out)
		}
	})
	for _, mech := range []string{"PLAIN", "LOGIN"} {
		t.Run("submission "+mech, func(t *testing.T) {
			b := startFakeSMTP(t, fakeSMTPOpts{keepBody: true})
			b.users["alice@example.com"] = "s3cret"
			env := startSMTPProxy(t, Config{}, Submission, SMTPOptions{})
			env.dir.add("alice@example.com", "s3cret", b.addr)
			out, err := exec.Command(curl, "-sS", "smtp://"+env.px.addr, "--login-options", "AUTH="+mech,
				"-u", "alice@example.com:s3cret", "--mail-from", "alice@example.com",
				"--mail-rcpt", "b@y.test", "-T", file).CombinedOutput()
			if err != nil {
				t.Fatalf("curl: %v: %s", err, out)
			}
			if m := b.wait(t); string(m.body) != body || m.auth != "alice@example.com" {
				t.Errorf("backend got %q as %q", m.body, m.auth)
			}
			out, err = exec.Command(curl, "-sS", "smtp://"+env.px.addr, "--login-options", "AUTH="+mech,
				"-u", "alice@example.com:wrong", "--mail-from", "alice@example.com",
				"--mail-rcpt", "b@y.test", "-T", file).CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 67 { // CURLE_LOGIN_DENIED
				t.Errorf("curl with a wrong password: %v: %s", err, out)
			}
		})
	}
}

// The size limit: the proxy's own for incoming mail, the backend's
// smaller SIZE for its submission users; a message over it is refused
// (552) and the backend delivers nothing of it.
func TestSMTPSizeLimit(t *testing.T) {
	big := strings.Repeat("0123456789abcdef\r\n", 200) // 3600 bytes
	t.Run("incoming", func(t *testing.T) {
		b := startFakeSMTP(t, fakeSMTPOpts{lmtp: true})
		env := startSMTPProxy(t, Config{}, SMTP, SMTPOptions{MaxMessageBytes: 2000})
		env.dir.add("a@example.com", "", b.addr)
		r := dialSMTPRaw(t, env.px.addr)
		if ehlo := r.want("EHLO mta.test", "250"); !strings.Contains(ehlo, "SIZE 2000") {
			t.Errorf("EHLO %q does not announce SIZE 2000", ehlo)
		}
		r.want("MAIL FROM:<s@remote.test> SIZE=3000", "552")
		r.want("MAIL FROM:<s@remote.test>", "250")
		r.want("RCPT TO:<a@example.com>", "250")
		r.want("DATA", "354")
		r.send(big + ".")
		r.expect(552)
		select {
		case <-b.connClosed: // the backend connection is dropped, not the message ended
		case m := <-b.delivered:
			t.Fatalf("backend delivered %d bytes of a message over the limit", m.size)
		case <-timeAfterHang():
			t.Fatal("backend connection not closed")
		}
	})
	t.Run("submission, the backend's SIZE", func(t *testing.T) {
		b := startFakeSMTP(t, fakeSMTPOpts{})
		b.srv.MaxMessageBytes = 2000
		b.users["alice"] = "secret"
		env := startSMTPProxy(t, Config{}, Submission, SMTPOptions{})
		env.dir.add("alice", "secret", b.addr)
		r := dialSMTPRaw(t, env.px.addr)
		r.want("EHLO client.test", "250")
		r.want("AUTH PLAIN "+plainIR("alice", "secret"), "235")
		r.want("MAIL FROM:<alice@example.com> SIZE=3000", "552")
		r.want("MAIL FROM:<alice@example.com>", "250")
		r.want("RCPT TO:<b@example.org>", "250")
		r.want("DATA", "354")
		r.send(big + ".")
		r.expect(552)
		r.want("MAIL FROM:<alice@example.com>", "250") // a new backend connection
		r.want("RCPT TO:<b@example.org>", "250")
		r.want("DATA", "354")
		r.send("small\r\n.")
		r.expect(250)
		if m := b.wait(t); m.size != int64(len("small\r\n")) {
			t.Errorf("backend got %d bytes", m.size)
		}
	})
}

// Shutdown: a transaction under way when the proxy stops goes on to its
// end (the drain); an idle session is closed when the drain time is up.
func TestSMTPDrain(t *testing.T) {
	t.Run("transaction finishes", func(t *testing.T) {
		b := startFakeSMTP(t, fakeSMTPOpts{lmtp: true})
		env := startSMTPProxy(t, Config{DrainTimeout: time.Hour}, SMTP, SMTPOptions{})
		env.dir.add("a@example.com", "", b.addr)
		r := dialSMTPRaw(t, env.px.addr)
		r.want("EHLO mta.test", "250")
		r.want("MAIL FROM:<s@remote.test>", "250")
		r.want("RCPT TO:<a@example.com>", "250")
		stopped := make(chan struct{})
		go func() { env.px.stop(t); close(stopped) }()
		r.want("DATA", "354")
		r.send("during shutdown\r\n.")
		r.expect(250)
		b.wait(t)
		r.want("QUIT", "221")
		select {
		case <-stopped:
		case <-timeAfterHang():
			t.Fatal("proxy did not stop after the last session")
		}
	})
	t.Run("idle session closed", func(t *testing.T) {
		env := startSMTPProxy(t, Config{DrainTimeout: time.Millisecond}, Submission, SMTPOptions{})
		r := dialSMTPRaw(t, env.px.addr)
		r.want("EHLO client.test", "250")
		env.px.stop(t)
		if line, err := r.r.ReadLine(); err == nil && !strings.HasPrefix(line, "421") {
			t.Fatalf("idle session after the drain: read %q", line)
		}
		r.closed()
	})
}

// BDAT (CHUNKING, which go-smtp announces): the chunks are streamed to
// the backend as one message; a RSET between chunks drops the message,
// and the backend gets nothing of it.
func TestSMTPChunking(t *testing.T) {
	b := startFakeSMTP(t, fakeSMTPOpts{lmtp: true, keepBody: true})
	env := startSMTPProxy(t, Config{}, SMTP, SMTPOptions{})
	env.dir.add("a@example.com", "", b.addr)
	r := dialSMTPRaw(t, env.px.addr)
	if ehlo := r.want("EHLO mta.test", "250"); !strings.Contains(ehlo, "CHUNKING") {
		t.Skipf("CHUNKING not announced: %q", ehlo)
	}
	part1, part2 := "Subject: chunks\r\n\r\n.first", " part\r\nsecond part\r\n"
	r.want("MAIL FROM:<s@remote.test>", "250")
	r.want("RCPT TO:<a@example.com>", "250")
	bdat := func(arg, chunk string) int {
		t.Helper()
		io.WriteString(r.c, "BDAT "+arg+"\r\n"+chunk)
		code, _ := r.reply()
		return code
	}
	if code := bdat(itoa(len(part1)), part1); code != 250 {
		t.Fatalf("BDAT: %d", code)
	}
	if code := bdat(itoa(len(part2))+" LAST", part2); code != 250 {
		t.Fatalf("BDAT LAST: %d", code)
	}
	if m := b.wait(t); string(m.body) != part1+part2 {
		t.Errorf("backend got %q, want %q", m.body, part1+part2)
	}

	r.want("MAIL FROM:<s@remote.test>", "250")
	r.want("RCPT TO:<a@example.com>", "250")
	if code := bdat("5", "abc\r\n"); code != 250 {
		t.Fatalf("BDAT: %d", code)
	}
	r.want("RSET", "250")
	select {
	case <-b.connClosed:
	case m := <-b.delivered:
		t.Fatalf("backend delivered %q of a message reset in the middle", m.body)
	case <-timeAfterHang():
		t.Fatal("backend connection not dropped")
	}
	// Another BDAT transaction on this connection would race in go-smtp
	// v0.25.1 itself (handleBdat makes a new dataResult channel while the
	// reset transaction's goroutine may still send on the old one), so
	// the test goes on with a new connection.
	r.want("QUIT", "221")
	r = dialSMTPRaw(t, env.px.addr)
	r.want("EHLO mta.test", "250")
	r.want("MAIL FROM:<s@remote.test>", "250")
	r.want("RCPT TO:<a@example.com>", "250")
	if code := bdat("7 LAST", "again\r\n"); code != 250 {
		t.Fatalf("BDAT LAST: %d", code)
	}
	if m := b.wait(t); string(m.body) != "again\r\n" {
		t.Errorf("backend got %q", m.body)
	}
	r.want("QUIT", "221")
}

func TestSMTPXclientAddr(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":        "192.0.2.1",
		"::ffff:192.0.2.1": "192.0.2.1",
		"2001:db8::1":      "IPV6:2001:db8::1",
	} {
		if got := smtpXclientAddr(netip.MustParseAddr(in)); got != want {
			t.Errorf("%s: %q, want %q", in, got, want)
		}
	}
}

// AUTH PLAIN with an authorization identity other than the user: no
// acting as somebody else.
func TestSubmissionPlainAuthzid(t *testing.T) {
	be := startFakeSMTP(t, fakeSMTPOpts{})
	be.users["alice"] = "secret"
	env := startSMTPProxy(t, Config{}, Submission, SMTPOptions{})
	env.dir.add("alice", "secret", be.addr)
	r := dialSMTPRaw(t, env.px.addr)
	r.want("EHLO client.test", "250")
	r.want("AUTH PLAIN "+b64("bob\x00alice\x00secret"), "535 5.7.8")
	r.want("AUTH PLAIN "+b64("alice\x00alice\x00secret"), "235")
}

// Incoming mail to an LMTP backend over STARTTLS, with the client's
// address in a PROXY v2 header.
func TestIncomingBackendStartTLSAndProxyHeader(t *testing.T) {
	beTLS, beCli := smtpTestCert(t)
	b := startFakeSMTP(t, fakeSMTPOpts{lmtp: true, tls: beTLS, proxyHeader: true, keepBody: true})
	env := startSMTPProxy(t, Config{BackendTLS: BackendStartTLS, BackendTLSConfig: beCli,
		BackendProxyProtocol: true}, SMTP, SMTPOptions{})
	env.dir.add("a@example.com", "", b.addr)
	r := dialSMTPRaw(t, env.px.addr)
	r.want("EHLO mta.test", "250")
	r.want("MAIL FROM:<s@remote.test>", "250")
	r.want("RCPT TO:<a@example.com>", "250")
	r.want("DATA", "354")
	r.send("secure\r\n.")
	r.expect(250)
	m := b.wait(t)
	if !m.tls || m.remote != r.c.LocalAddr().String() || string(m.body) != "secure\r\n" {
		t.Errorf("backend got tls=%v remote=%q (want %q) body %q", m.tls, m.remote, r.c.LocalAddr(), m.body)
	}
}
