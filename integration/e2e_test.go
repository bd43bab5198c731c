package integration

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tohost/tohost/internal/testservices"
)

// e2eProc is one tohost process of the end-to-end cluster, started again
// with the same arguments (same addresses, same data) after a stop.
type e2eProc struct {
	name  string
	args  []string
	ready []string // addresses that accept connections once it is up
	cmd   *exec.Cmd
	log   *testservices.Buffer
}

func (p *e2eProc) start(t *testing.T) {
	t.Helper()
	if p.log == nil {
		p.log = new(testservices.Buffer)
		t.Cleanup(func() {
			if p.cmd != nil && p.cmd.ProcessState == nil {
				p.cmd.Process.Kill()
				p.cmd.Wait()
			}
			if t.Failed() {
				t.Logf("%s log:\n%s", p.name, p.log)
			}
		})
	}
	p.cmd = exec.Command(binary, p.args...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for _, addr := range p.ready {
		for deadline := time.Now().Add(hangGuard); ; time.Sleep(20 * time.Millisecond) {
			c, err := net.Dial("tcp", addr)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s did not start (%s): %v\n%s", p.name, addr, err, p.log)
			}
		}
	}
}

// stop ends the process with SIGTERM and waits for its exit.
func (p *e2eProc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(hangGuard):
		p.cmd.Process.Kill()
		<-done
		t.Fatalf("%s did not stop on SIGTERM", p.name)
	}
}

// e2eBackend is a backend with its host address and mail dir.
type e2eBackend struct {
	e2eProc
	host, mailDir string
}

// e2eProxy is a proxy's client-facing addresses.
type e2eProxy struct {
	e2eProc
	imap, pop3, smtp string
}

// e2eCluster is a directory on PostgreSQL and Redis, backends 127.0.0.2
// and 127.0.0.3 with the same ports, and two proxies on 127.0.0.1.
type e2eCluster struct {
	dir      e2eProc
	dirAddr  string
	imapPort int // the backends' IMAP port
	// the directory's store: PostgreSQL URL, Redis URL and key prefix
	postgres, redis, redisPrefix string
	backends                     []*e2eBackend
	proxies                      []*e2eProxy
}

// sharedPorts finds n ports free on every one of hosts just now.
func sharedPorts(t *testing.T, n int, hosts ...string) []int {
	t.Helper()
	var ports []int
	for try := 0; len(ports) < n && try < 500; try++ {
		p := 20000 + rand.IntN(40000)
		ok := true
		for _, h := range hosts {
			ln, err := net.Listen("tcp", net.JoinHostPort(h, strconv.Itoa(p)))
			if err != nil {
				ok = false
				break
			}
			ln.Close()
		}
		if ok {
			ports = append(ports, p)
		}
	}
	if len(ports) < n {
		t.Fatal("no free ports shared by the backends' addresses")
	}
	return ports
}

// startE2ECluster starts the cluster; backendArgs are added to each
// backend's arguments.
func startE2ECluster(t *testing.T, backendArgs ...string) *e2eCluster {
	t.Helper()
	pg := testservices.Postgres(t)
	redisAddr, prefix := testservices.Redis(t)
	c := &e2eCluster{dirAddr: freeAddr(t), postgres: pg, redis: "redis://" + redisAddr, redisPrefix: prefix}
	c.dir = e2eProc{name: "directory", ready: []string{c.dirAddr},
		args: directoryArgs(t.TempDir(), c.dirAddr, "--postgres", pg, "--redis", c.redis, "--redis-prefix", prefix)}
	c.dir.start(t)

	hosts := []string{"127.0.0.2", "127.0.0.3"}
	ports := sharedPorts(t, 4, hosts...) // LMTP, SMTP, IMAP, POP3
	c.imapPort = ports[2]
	root := t.TempDir()
	for _, h := range hosts {
		addr := func(i int) string { return net.JoinHostPort(h, strconv.Itoa(ports[i])) }
		b := &e2eBackend{host: h, mailDir: filepath.Join(root, h)}
		b.name = "backend " + h
		b.args = []string{"backend", "--name", h, "--directory", c.dirAddr, "--mail-dir", b.mailDir,
			"--lmtp-addr", addr(0), "--smtp-addr", addr(1), "--imap-addr", addr(2), "--pop3-addr", addr(3), "--http-addr", ""}
		b.args = append(b.args, backendArgs...)
		b.ready = []string{addr(0), addr(2), addr(3)}
		b.start(t)
		c.backends = append(c.backends, b)
	}
	for i := 0; i < 2; i++ {
		p := &e2eProxy{imap: freeAddr(t), pop3: freeAddr(t), smtp: freeAddr(t)}
		p.name = fmt.Sprintf("proxy %d", i+1)
		p.args = []string{"proxy", "--directory", c.dirAddr, "--hostname", "localhost", "--http-addr", "", "--timeout", "2s",
			"--imap-addr", p.imap, "--pop3-addr", p.pop3, "--smtp-addr", p.smtp,
			"--backend-smtp-port", strconv.Itoa(ports[0]), "--backend-imap-port", strconv.Itoa(ports[2]),
			"--backend-pop3-port", strconv.Itoa(ports[3])}
		p.ready = []string{p.imap, p.pop3, p.smtp}
		p.start(t)
		c.proxies = append(c.proxies, p)
	}
	return c
}

// setUser creates user with password pass on backend host.
func (c *e2eCluster) setUser(t *testing.T, user, pass, host string) {
	t.Helper()
	out, err := exec.Command(binary, "user", "--directory", c.dirAddr, "set", user, pass, "tohost="+host).CombinedOutput()
	if err != nil {
		t.Fatalf("tohost user set %s: %v\n%s", user, err, out)
	}
}

// smtpSession opens an SMTP session at addr and says EHLO.
func smtpSession(t *testing.T, addr string) *conn {
	t.Helper()
	s := dial(t, addr)
	if l := s.line(); !strings.HasPrefix(l, "220 ") {
		t.Fatalf("greeting %q", l)
	}
	s.write("EHLO mta.example.org\r\n")
	for l := s.line(); !strings.HasPrefix(l, "250 "); l = s.line() {
		if !strings.HasPrefix(l, "250-") {
			t.Fatalf("EHLO: %q", l)
		}
	}
	return s
}

// reply sends req and returns the reply line.
func (c *conn) reply(req string) string {
	c.t.Helper()
	c.write(req + "\r\n")
	return c.line()
}

// wantReply fails unless req's reply starts with prefix.
func (c *conn) wantReply(req, prefix string) {
	c.t.Helper()
	if got := c.reply(req); !strings.HasPrefix(got, prefix) {
		c.t.Fatalf("%s: got %q, want %s...", req, got, prefix)
	}
}

// sendData sends the DATA of a message with subject and returns the reply.
func (c *conn) sendData(subject string) string {
	c.t.Helper()
	if l := c.reply("DATA"); !strings.HasPrefix(l, "354") {
		c.t.Fatalf("DATA: %q", l)
	}
	c.write("From: sender@example.org\r\nSubject: " + subject + "\r\n\r\nbody of " + subject + "\r\n.\r\n")
	return c.line()
}

// curl runs curl as user:pass on url and returns its output.
func curl(t *testing.T, user, pass, url string, extra ...string) (string, error) {
	t.Helper()
	args := append([]string{"--silent", "--show-error", "--max-time", "30", "-u", user + ":" + pass, url}, extra...)
	out, err := exec.Command("curl", args...).CombinedOutput()
	return string(out), err
}

func mustCurl(t *testing.T, user, pass, url string, extra ...string) string {
	t.Helper()
	out, err := curl(t, user, pass, url, extra...)
	if err != nil {
		t.Fatalf("curl %s: %v\n%s", url, err, out)
	}
	return out
}

// mailOn counts user's messages holding subject in backend b's Maildir.
func (b *e2eBackend) mailOn(t *testing.T, user, subject string) int {
	t.Helper()
	n := 0
	for _, m := range messages(t, b.mailDir, user) {
		if strings.Contains(m, "Subject: "+subject+"\r\n") || strings.Contains(m, "Subject: "+subject+"\n") {
			n++
		}
	}
	return n
}

// TestE2EDeliverAndRead: one SMTP transaction for users of both backends
// takes the first backend's user and tells the other's to come back
// (452 4.5.3); a second transaction delivers it. Each message is once on
// its user's backend and nowhere else, and both proxies read it over IMAP
// and POP3.
func TestE2EDeliverAndRead(t *testing.T) {
	c := startE2ECluster(t)
	c.setUser(t, "ann@example.com", "pw-ann", "127.0.0.2")
	c.setUser(t, "ben@example.com", "pw-ben", "127.0.0.3")

	s := smtpSession(t, c.proxies[0].smtp)
	s.wantReply("MAIL FROM:<sender@example.org>", "250")
	s.wantReply("RCPT TO:<ann@example.com>", "250")
	s.wantReply("RCPT TO:<ben@example.com>", "452 4.5.3")
	if l := s.sendData("first"); !strings.HasPrefix(l, "250") {
		t.Fatalf("first transaction: %q", l)
	}
	s.wantReply("MAIL FROM:<sender@example.org>", "250")
	s.wantReply("RCPT TO:<ben@example.com>", "250")
	if l := s.sendData("second"); !strings.HasPrefix(l, "250") {
		t.Fatalf("second transaction: %q", l)
	}
	s.wantReply("QUIT", "221")

	ann, ben := c.backends[0], c.backends[1]
	for _, tc := range []struct {
		b    *e2eBackend
		user string
		subj string
		want int
	}{
		{ann, "ann@example.com", "first", 1}, {ben, "ann@example.com", "first", 0},
		{ben, "ben@example.com", "second", 1}, {ann, "ben@example.com", "second", 0},
		{ann, "ben@example.com", "first", 0}, {ben, "ben@example.com", "first", 0},
		{ann, "ann@example.com", "second", 0}, {ben, "ann@example.com", "second", 0},
	} {
		if n := tc.b.mailOn(t, tc.user, tc.subj); n != tc.want {
			t.Errorf("%s on %s: %d messages %q, want %d", tc.user, tc.b.host, n, tc.subj, tc.want)
		}
	}
	for _, p := range c.proxies {
		for _, u := range []struct{ user, pass, subj string }{
			{"ann@example.com", "pw-ann", "first"}, {"ben@example.com", "pw-ben", "second"},
		} {
			msg := mustCurl(t, u.user, u.pass, "imap://"+p.imap+"/INBOX;UID=1")
			if !strings.Contains(msg, "Subject: "+u.subj) {
				t.Errorf("%s: %s over IMAP:\n%s", p.name, u.user, msg)
			}
			if got := mustCurl(t, u.user, u.pass, "imap://"+p.imap+"/INBOX", "-X", "SEARCH ALL"); strings.TrimSpace(got) != "* SEARCH 1" {
				t.Errorf("%s: %s's INBOX: %q, want one message", p.name, u.user, got)
			}
			msg = mustCurl(t, u.user, u.pass, "pop3://"+p.pop3+"/1")
			if !strings.Contains(msg, "Subject: "+u.subj) {
				t.Errorf("%s: %s over POP3:\n%s", p.name, u.user, msg)
			}
		}
	}
}

// imapLogin logs in at a proxy's IMAP address on a new connection and
// returns the tagged reply.
func imapLogin(t *testing.T, addr, user, pass string) string {
	t.Helper()
	c := dial(t, addr)
	defer c.nc.Close()
	if l := c.line(); !strings.HasPrefix(l, "* OK") {
		t.Fatalf("greeting %q", l)
	}
	return c.reply("a LOGIN " + user + " " + pass)
}

// untilLogin repeats a login until it succeeds: a client retrying a
// temporary failure. Any reply but OK or NO [UNAVAILABLE] fails the test.
func untilLogin(t *testing.T, addr, user, pass string) {
	t.Helper()
	for deadline := time.Now().Add(hangGuard); ; time.Sleep(20 * time.Millisecond) {
		l := imapLogin(t, addr, user, pass)
		if strings.HasPrefix(l, "a OK") {
			return
		}
		if !strings.HasPrefix(l, "a NO [UNAVAILABLE]") || time.Now().After(deadline) {
			t.Fatalf("login %s at %s: %q", user, addr, l)
		}
	}
}

// deliver sends one message with subject to user through the SMTP address
// and returns the RCPT reply, or the DATA reply when RCPT was taken.
func deliver(t *testing.T, addr, user, subject string) string {
	t.Helper()
	s := smtpSession(t, addr)
	defer s.nc.Close()
	s.wantReply("MAIL FROM:<sender@example.org>", "250")
	if l := s.reply("RCPT TO:<" + user + ">"); !strings.HasPrefix(l, "250") {
		return l
	}
	return s.sendData(subject)
}

// TestE2EBackendRestart: with one backend stopped, its users get temporary
// errors through the proxies (IMAP NO [UNAVAILABLE], SMTP 4xx) and the
// other backend's users see nothing; started again on its mail dir, it
// serves its users with nothing else restarted.
func TestE2EBackendRestart(t *testing.T) {
	c := startE2ECluster(t)
	c.setUser(t, "ann@example.com", "pw-ann", "127.0.0.2")
	c.setUser(t, "ben@example.com", "pw-ben", "127.0.0.3")
	p := c.proxies[0]
	for _, u := range []string{"ann@example.com", "ben@example.com"} {
		if l := deliver(t, p.smtp, u, "before"); !strings.HasPrefix(l, "250") {
			t.Fatalf("delivery to %s: %q", u, l)
		}
	}

	c.backends[0].stop(t)
	for _, p := range c.proxies {
		if l := imapLogin(t, p.imap, "ann@example.com", "pw-ann"); !strings.HasPrefix(l, "a NO [UNAVAILABLE]") {
			t.Fatalf("%s: ann's login with her backend down: %q", p.name, l)
		}
		if l := deliver(t, p.smtp, "ann@example.com", "during"); !strings.HasPrefix(l, "4") {
			t.Fatalf("%s: mail to ann with her backend down: %q", p.name, l)
		}
		if l := deliver(t, p.smtp, "ben@example.com", "during "+p.name); !strings.HasPrefix(l, "250") {
			t.Fatalf("%s: mail to ben with ann's backend down: %q", p.name, l)
		}
		if msg := mustCurl(t, "ben@example.com", "pw-ben", "imap://"+p.imap+"/INBOX;UID=1"); !strings.Contains(msg, "Subject: before") {
			t.Fatalf("%s: ben's mail with ann's backend down:\n%s", p.name, msg)
		}
	}

	c.backends[0].start(t)
	for _, p := range c.proxies {
		untilLogin(t, p.imap, "ann@example.com", "pw-ann")
		if l := deliver(t, p.smtp, "ann@example.com", "after "+p.name); !strings.HasPrefix(l, "250") {
			t.Fatalf("%s: mail to ann after the restart: %q", p.name, l)
		}
	}
	if msg := mustCurl(t, "ann@example.com", "pw-ann", "imap://"+c.proxies[1].imap+"/INBOX;UID=1"); !strings.Contains(msg, "Subject: before") {
		t.Fatalf("ann's mail from before the stop:\n%s", msg)
	}
	if got := mustCurl(t, "ann@example.com", "pw-ann", "imap://"+c.proxies[1].imap+"/INBOX", "-X", "SEARCH ALL"); strings.TrimSpace(got) != "* SEARCH 1 2 3" {
		t.Fatalf("ann's INBOX after the restart: %q, want 3 messages", got)
	}
	for subj, want := range map[string]int{"before": 1, "during": 0, "after proxy 1": 1, "after proxy 2": 1} {
		if n := c.backends[0].mailOn(t, "ann@example.com", subj); n != want {
			t.Errorf("ann: %d messages %q, want %d", n, subj, want)
		}
	}
	if got := mustCurl(t, "ben@example.com", "pw-ben", "pop3://"+p.pop3+"/"); len(strings.Fields(got)) != 6 {
		t.Errorf("ben's POP3 list: %q, want 3 messages", got)
	}
}

// TestE2EDirectoryRestart: with the directory stopped, logins through the
// proxies are temporary failures, never a wrong password; started again on
// the same database, the cluster serves everyone by itself.
func TestE2EDirectoryRestart(t *testing.T) {
	c := startE2ECluster(t)
	c.setUser(t, "ann@example.com", "pw-ann", "127.0.0.2")
	c.setUser(t, "ben@example.com", "pw-ben", "127.0.0.3")

	c.dir.stop(t)
	for _, p := range c.proxies {
		for _, u := range [][2]string{{"ann@example.com", "pw-ann"}, {"ben@example.com", "pw-ben"}, {"ann@example.com", "wrong"}} {
			if l := imapLogin(t, p.imap, u[0], u[1]); !strings.HasPrefix(l, "a NO [UNAVAILABLE]") {
				t.Fatalf("%s: login %s with the directory down: %q", p.name, u[0], l)
			}
		}
		if l := deliver(t, p.smtp, "ann@example.com", "during"); !strings.HasPrefix(l, "4") {
			t.Fatalf("%s: mail with the directory down: %q", p.name, l)
		}
	}

	c.dir.start(t)
	for _, p := range c.proxies {
		untilLogin(t, p.imap, "ann@example.com", "pw-ann")
		untilLogin(t, p.imap, "ben@example.com", "pw-ben")
	}
	// After the right ones: a failure makes the directory refuse that
	// user's next check from the same client for a while.
	for _, p := range c.proxies {
		if l := imapLogin(t, p.imap, "ann@example.com", "wrong"); !strings.HasPrefix(l, "a NO [AUTHENTICATIONFAILED]") {
			t.Fatalf("%s: wrong password with the directory back: %q", p.name, l)
		}
		for _, u := range []string{"ann@example.com", "ben@example.com"} {
			if l := deliver(t, p.smtp, u, "after "+p.name); !strings.HasPrefix(l, "250") {
				t.Fatalf("%s: mail to %s with the directory back: %q", p.name, u, l)
			}
		}
	}
	for i, u := range [][2]string{{"ann@example.com", "pw-ann"}, {"ben@example.com", "pw-ben"}} {
		if msg := mustCurl(t, u[0], u[1], "pop3://"+c.proxies[i].pop3+"/2"); !strings.Contains(msg, "Subject: after proxy 2") {
			t.Errorf("%s's second message:\n%s", u[0], msg)
		}
	}
}

// TestE2EMoveUser: a user's tohost is changed from 127.0.0.2 to 127.0.0.3
// while mail for them keeps coming through the proxies. Each delivery
// refused with a 4xx (the old backend's 450 among them) is tried again, as
// an MTA would; every message ends up exactly once, on one backend, and
// mail after the move is on the new backend and read there.
func TestE2EMoveUser(t *testing.T) {
	c := startE2ECluster(t)
	c.setUser(t, "ann@example.com", "pw-ann", "127.0.0.2")
	old, next := c.backends[0], c.backends[1]

	sent, retried := 0, 0
	send := func() {
		t.Helper()
		subj := fmt.Sprintf("move %d", sent)
		p := c.proxies[sent%2]
		for deadline := time.Now().Add(hangGuard); ; time.Sleep(10 * time.Millisecond) {
			l := deliver(t, p.smtp, "ann@example.com", subj)
			if strings.HasPrefix(l, "250") {
				break
			}
			if !strings.HasPrefix(l, "4") || time.Now().After(deadline) {
				t.Fatalf("%s: %s: %q", p.name, subj, l)
			}
			retried++
		}
		sent++
	}
	for sent < 10 {
		send()
	}
	c.setUser(t, "ann@example.com", "pw-ann", "127.0.0.3")
	// Deliveries go on until one lands on the new backend, then a few more.
	for deadline := time.Now().Add(hangGuard); len(messages(t, next.mailDir, "ann@example.com")) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("no delivery reached the new backend")
		}
		send()
	}
	for end := sent + 10; sent < end; {
		send()
	}
	t.Logf("%d messages, %d deliveries tried again", sent, retried)

	onNew := 0
	for i := 0; i < sent; i++ {
		subj := fmt.Sprintf("move %d", i)
		o, n := old.mailOn(t, "ann@example.com", subj), next.mailOn(t, "ann@example.com", subj)
		if o+n != 1 {
			t.Errorf("%s: %d on the old backend, %d on the new one, want one in all", subj, o, n)
		}
		if i >= sent-10 && n != 1 {
			t.Errorf("%s, sent after the move took effect, is not on the new backend", subj)
		}
		onNew += n
	}
	for _, p := range c.proxies {
		got := mustCurl(t, "ann@example.com", "pw-ann", "imap://"+p.imap+"/INBOX", "-X", "SEARCH ALL")
		if n := len(strings.Fields(got)) - 2; n != onNew {
			t.Errorf("%s: ann's INBOX %q holds %d messages, the new backend's disk %d", p.name, got, n, onNew)
		}
		if msg := mustCurl(t, "ann@example.com", "pw-ann", "pop3://"+p.pop3+"/1"); !strings.Contains(msg, "Subject: move ") {
			t.Errorf("%s: ann's first message on the new backend:\n%s", p.name, msg)
		}
	}
}
