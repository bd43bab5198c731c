package integration

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// sharedCluster is three backends with --shared-mail-dir on one mail
// directory, on 127.0.0.2-4 with the same ports, against one directory.
type sharedCluster struct {
	dirAddr  string
	mailDir  string
	hosts    []string
	ports    []int // LMTP, IMAP, POP3
	backends []*e2eProc
}

func (c *sharedCluster) addr(i, port int) string {
	return net.JoinHostPort(c.hosts[i], strconv.Itoa(c.ports[port]))
}

func (c *sharedCluster) lmtp(i int) string { return c.addr(i, 0) }
func (c *sharedCluster) imap(i int) string { return c.addr(i, 1) }
func (c *sharedCluster) pop3(i int) string { return c.addr(i, 2) }

func startSharedCluster(t *testing.T) *sharedCluster {
	t.Helper()
	d := startDirectory(t, t.TempDir())
	c := &sharedCluster{dirAddr: d.addr, mailDir: t.TempDir(), hosts: []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}}
	c.ports = sharedPorts(t, 3, c.hosts...)
	for i, h := range c.hosts {
		var peers []string
		for _, o := range c.hosts {
			if o != h {
				peers = append(peers, "--peer", o)
			}
		}
		b := &e2eProc{name: "backend " + h, ready: []string{c.lmtp(i), c.imap(i), c.pop3(i)}}
		b.args = append([]string{"backend", "--name", h, "--directory", d.addr, "--mail-dir", c.mailDir,
			"--shared-mail-dir", "--accept-default", "--shared-lock-stale", "3s",
			"--lmtp-addr", c.lmtp(i), "--imap-addr", c.imap(i), "--pop3-addr", c.pop3(i), "--http-addr", ""}, peers...)
		b.start(t)
		c.backends = append(c.backends, b)
	}
	return c
}

// lmtpSender is one LMTP connection delivering message after message.
type lmtpSender struct {
	nc net.Conn
	r  *bufio.Reader
}

func newLMTPSender(addr string) (*lmtpSender, error) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	nc.SetDeadline(time.Now().Add(2 * time.Minute)) // hang guard
	s := &lmtpSender{nc: nc, r: bufio.NewReader(nc)}
	if _, err := s.reply("", "220"); err != nil {
		nc.Close()
		return nil, err
	}
	if _, err := s.reply("LHLO test.example", "250"); err != nil {
		nc.Close()
		return nil, err
	}
	return s, nil
}

// reply sends cmd (unless empty) and reads a reply, which must start with
// want.
func (s *lmtpSender) reply(cmd, want string) (string, error) {
	if cmd != "" {
		if _, err := io.WriteString(s.nc, cmd+"\r\n"); err != nil {
			return "", err
		}
	}
	for {
		l, err := s.r.ReadString('\n')
		if err != nil {
			return l, err
		}
		if len(l) >= 4 && l[3] == '-' {
			continue
		}
		if !strings.HasPrefix(l, want) {
			return l, fmt.Errorf("%s: %q", cmd, l)
		}
		return l, nil
	}
}

// send delivers one message with subject to rcpt.
func (s *lmtpSender) send(rcpt, subject string) error {
	for _, step := range [][2]string{{"MAIL FROM:<sender@example.org>", "250"}, {"RCPT TO:<" + rcpt + ">", "250"}, {"DATA", "354"}} {
		if _, err := s.reply(step[0], step[1]); err != nil {
			return err
		}
	}
	_, err := s.reply("Subject: "+subject+"\r\n\r\nbody of "+subject+"\r\n.", "250")
	return err
}

func lmtpDeliver(t *testing.T, addr, rcpt, subject string) {
	t.Helper()
	s, err := newLMTPSender(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer s.nc.Close()
	if err := s.send(rcpt, subject); err != nil {
		t.Fatal(err)
	}
}

// imapSession is a raw IMAP session logged in at a backend.
type imapSession struct {
	*conn
	n int // tag counter
}

func imapOpen(t *testing.T, addr, user, pass string) *imapSession {
	t.Helper()
	s := &imapSession{conn: dial(t, addr)}
	if l := s.line(); !strings.HasPrefix(l, "* OK") {
		t.Fatalf("greeting %q", l)
	}
	s.cmd("LOGIN " + user + " " + pass)
	s.cmd("SELECT INBOX")
	return s
}

// cmd runs a command and returns its untagged lines; it fails unless
// the command ends OK.
func (s *imapSession) cmd(cmd string) []string {
	s.t.Helper()
	out, err := s.try(cmd)
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

// try is cmd for goroutines other than the test's: it returns errors.
func (s *imapSession) try(cmd string) ([]string, error) {
	s.n++
	tag := fmt.Sprintf("t%d", s.n)
	if _, err := io.WriteString(s.nc, tag+" "+cmd+"\r\n"); err != nil {
		return nil, err
	}
	var out []string
	for {
		l, err := s.r.ReadString('\n')
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cmd, err)
		}
		l = strings.TrimRight(l, "\r\n")
		if strings.HasPrefix(l, tag+" ") {
			if !strings.HasPrefix(l, tag+" OK") {
				return nil, fmt.Errorf("%s: %q", cmd, l)
			}
			return out, nil
		}
		out = append(out, l)
	}
}

var fetchLine = regexp.MustCompile(`^\* \d+ FETCH \(.*UID (\d+).*ENVELOPE \((?:NIL|"[^"]*") "([^"]*)"`)

// subjects returns the folder's subjects by UID.
func (s *imapSession) subjects() map[int]string {
	s.t.Helper()
	out, err := s.trySubjects()
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

func (s *imapSession) trySubjects() (map[int]string, error) {
	// The session hears of other processes' changes at its next command.
	if _, err := s.try("NOOP"); err != nil {
		return nil, err
	}
	lines, err := s.try("UID FETCH 1:* (UID ENVELOPE)")
	if err != nil {
		return nil, err
	}
	out := map[int]string{}
	for _, l := range lines {
		if m := fetchLine.FindStringSubmatch(l); m != nil {
			uid, _ := strconv.Atoi(m[1])
			if _, dup := out[uid]; dup {
				return nil, fmt.Errorf("UID %d twice", uid)
			}
			out[uid] = m[2]
		}
	}
	return out, nil
}

// uidBook checks that, in every view any backend gives, a UID names one
// message and a message has one UID.
type uidBook struct {
	mu     sync.Mutex
	byUID  map[int]string
	bySubj map[string]int
	errs   []string
}

func (b *uidBook) see(who string, view map[int]string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for uid, subj := range view {
		if s, ok := b.byUID[uid]; ok && s != subj {
			b.errs = append(b.errs, fmt.Sprintf("%s: UID %d is %s, was %s", who, uid, subj, s))
		}
		if u, ok := b.bySubj[subj]; ok && u != uid {
			b.errs = append(b.errs, fmt.Sprintf("%s: %s has UID %d, had %d", who, subj, uid, u))
		}
		b.byUID[uid], b.bySubj[subj] = subj, uid
	}
}

// idleUntil reads untagged lines in IDLE until one matches re.
func (s *imapSession) idleUntil(re *regexp.Regexp) string {
	s.t.Helper()
	s.nc.SetReadDeadline(time.Now().Add(hangGuard))
	defer s.nc.SetReadDeadline(time.Time{})
	for {
		l := s.line()
		if re.MatchString(l) {
			return l
		}
	}
}

// TestSharedMailDir: three backend processes on one mail directory.
// Deliveries through all of them land once each and get one UID each,
// which every backend gives the same; an IMAP session in IDLE on one
// backend hears of the others' new mail, flag changes and expunges; the
// POP3 lock holds across backends, is free once QUIT is answered, and
// comes free when its holder is killed with SIGKILL.
func TestSharedMailDir(t *testing.T) {
	c := startSharedCluster(t)
	users := dial(t, c.dirAddr)
	users.expect("set dana@example.com pw-d", "+OK dana@example.com added to database")
	users.expect("set ann@example.com pw-a tohost=127.0.0.2", "+OK ann@example.com added to database")

	t.Run("deliveries", func(t *testing.T) { sharedDeliveries(t, c) })
	t.Run("imap", func(t *testing.T) { sharedIMAP(t, c) })
	t.Run("proxy", func(t *testing.T) { sharedProxy(t, c) })
	t.Run("pop3", func(t *testing.T) { sharedPOP3(t, c) })
}

var proxyLoginLine = regexp.MustCompile(`msg=login .*user=(\S+) backend=(\S+)`)

// proxyLogins returns the backend of every IMAP login in a proxy's log,
// by user, in order, once the log shows want logins of each of users (the
// log comes through a pipe, after the client's reply).
func proxyLogins(t *testing.T, px *e2eProc, users []string, want int) map[string][]string {
	t.Helper()
	for deadline := time.Now().Add(hangGuard); ; time.Sleep(20 * time.Millisecond) {
		out := map[string][]string{}
		for _, l := range strings.Split(px.log.String(), "\n") {
			if m := proxyLoginLine.FindStringSubmatch(l); m != nil {
				out[m[1]] = append(out[m[1]], m[2])
			}
		}
		all := true
		for _, u := range users {
			all = all && len(out[u]) >= want
		}
		if all || time.Now().After(deadline) {
			return out
		}
	}
}

// sharedProxy: a proxy with the three backends as --default-backend
// sends each user without tohost to one of them, the same every time,
// and spreads the users; with that backend down, to another.
func sharedProxy(t *testing.T, c *sharedCluster) {
	px := &e2eProc{name: "proxy"}
	imapAddr := freeAddr(t)
	px.args = []string{"proxy", "--directory", c.dirAddr, "--hostname", "localhost", "--http-addr", "", "--timeout", "2s",
		"--imap-addr", imapAddr, "--default-backend", strings.Join(c.hosts, ","),
		"--backend-smtp-port", strconv.Itoa(c.ports[0]), "--backend-imap-port", strconv.Itoa(c.ports[1]),
		"--backend-pop3-port", strconv.Itoa(c.ports[2])}
	px.ready = []string{imapAddr}
	px.start(t)
	defer px.stop(t)

	const n = 12
	users := dial(t, c.dirAddr)
	var names []string
	for i := range n {
		name := fmt.Sprintf("p%02d@example.com", i)
		users.expect("set "+name+" pw", "+OK "+name+" added to database")
		names = append(names, name)
	}
	for range 2 {
		for _, name := range names {
			if l := imapLogin(t, imapAddr, name, "pw"); !strings.HasPrefix(l, "a OK") {
				t.Fatalf("login %s: %q", name, l)
			}
		}
	}
	logins := proxyLogins(t, px, names, 2)
	load := map[string][]string{}
	for _, name := range names {
		got := logins[name]
		if len(got) != 2 || got[0] != got[1] {
			t.Fatalf("%s went to %v: want one backend twice", name, got)
		}
		load[got[0]] = append(load[got[0]], name)
	}
	if len(load) < 2 {
		t.Fatalf("every user on one backend: %v", load)
	}

	// The busiest backend stops: its users go to the others.
	var busiest string
	for b, us := range load {
		if len(us) > len(load[busiest]) {
			busiest = b
		}
	}
	var down *e2eProc
	for k := range c.hosts {
		if c.imap(k) == busiest {
			down = c.backends[k]
		}
	}
	if down == nil {
		t.Fatalf("%s is none of the backends", busiest)
	}
	down.stop(t)
	defer down.start(t)
	for _, name := range load[busiest] {
		if l := imapLogin(t, imapAddr, name, "pw"); !strings.HasPrefix(l, "a OK") {
			t.Fatalf("login %s with its backend down: %q", name, l)
		}
	}
	logins = proxyLogins(t, px, load[busiest], 3)
	for _, name := range load[busiest] {
		if got := logins[name]; len(got) != 3 || got[2] == busiest {
			t.Errorf("%s with %s down went to %v", name, busiest, got)
		}
	}
}

// sharedDeliveries: 250 messages to a user without tohost through the
// three backends at once (two LMTP connections each) while an IMAP
// session on each backend syncs and lists the folder over and over;
// every message is there once, and has one UID in every view of every
// backend, during the deliveries and after.
func sharedDeliveries(t *testing.T, c *sharedCluster) {
	const total, conns = 250, 6
	var wg sync.WaitGroup
	for k := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := newLMTPSender(c.lmtp(k % 3))
			if err != nil {
				t.Error(err)
				return
			}
			defer s.nc.Close()
			for i := k; i < total; i += conns {
				if err := s.send("dana@example.com", fmt.Sprintf("m%03d", i)); err != nil {
					t.Errorf("message %d through %s: %v", i, c.hosts[k%3], err)
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	// The sessions sync (taking the UID list's lock, giving UIDs) while
	// mail comes in.
	book := &uidBook{byUID: map[int]string{}, bySubj: map[string]int{}}
	var swg sync.WaitGroup
	for i := range c.hosts {
		s := imapOpen(t, c.imap(i), "dana@example.com", "pw-d")
		swg.Add(1)
		go func() {
			defer swg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				view, err := s.trySubjects()
				if err != nil {
					t.Errorf("%s: %v", c.hosts[i], err)
					return
				}
				book.see(c.hosts[i], view)
			}
		}()
	}
	swg.Wait()
	for _, e := range book.errs {
		t.Error(e)
	}
	if t.Failed() {
		t.FailNow()
	}

	count := map[string]int{}
	for _, m := range messages(t, c.mailDir, "dana@example.com") {
		_, rest, _ := strings.Cut(m, "Subject: ")
		subj, _, _ := strings.Cut(rest, "\r\n")
		count[subj]++
	}
	for i := range total {
		if n := count[fmt.Sprintf("m%03d", i)]; n != 1 {
			t.Errorf("m%03d is in the Maildir %d times", i, n)
		}
	}
	if len(count) != total {
		t.Errorf("%d different messages in the Maildir, want %d", len(count), total)
	}
	var views []map[int]string
	for i := range c.hosts {
		s := imapOpen(t, c.imap(i), "dana@example.com", "pw-d")
		views = append(views, s.subjects())
		book.see(c.hosts[i], views[i])
	}
	for _, e := range book.errs {
		t.Error(e)
	}
	if len(views[0]) != total {
		t.Fatalf("%d messages over IMAP, want %d", len(views[0]), total)
	}
	for i, v := range views[1:] {
		if !mapsEqual(v, views[0]) {
			t.Errorf("%s gives other UIDs than %s", c.hosts[i+1], c.hosts[0])
		}
	}
}

func mapsEqual(a, b map[int]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// sharedIMAP: a session in IDLE on the first backend hears of mail
// delivered through the third, and of a flag change and an expunge made
// on the second; the UIDs stay those every backend gave.
func sharedIMAP(t *testing.T, c *sharedCluster) {
	a := imapOpen(t, c.imap(0), "ann@example.com", "pw-a")
	b := imapOpen(t, c.imap(1), "ann@example.com", "pw-a")
	for i := range 3 {
		lmtpDeliver(t, c.lmtp(i), "ann@example.com", fmt.Sprintf("first%d", i))
	}
	b.cmd("NOOP")
	before := a.subjects()
	if len(before) != 3 || !mapsEqual(before, b.subjects()) {
		t.Fatalf("the two backends disagree: %v and %v", before, b.subjects())
	}
	a.write("i1 IDLE\r\n")
	if l := a.line(); !strings.HasPrefix(l, "+ ") {
		t.Fatalf("IDLE: %q", l)
	}

	lmtpDeliver(t, c.lmtp(2), "ann@example.com", "late")
	a.idleUntil(regexp.MustCompile(`^\* 4 EXISTS$`))

	uids := mapKeys(before)
	b.cmd("NOOP")
	b.cmd(fmt.Sprintf("UID STORE %d +FLAGS (\\Flagged)", uids[1]))
	a.idleUntil(regexp.MustCompile(`^\* 2 FETCH \(.*FLAGS \(\\Flagged\)`))

	b.cmd(fmt.Sprintf("UID STORE %d +FLAGS (\\Deleted)", uids[0]))
	b.cmd(fmt.Sprintf("UID EXPUNGE %d", uids[0]))
	a.idleUntil(regexp.MustCompile(`^\* 1 EXPUNGE$`))
	a.write("DONE\r\n")
	if l := a.line(); !strings.HasPrefix(l, "i1 OK") {
		t.Fatalf("IDLE end: %q", l)
	}

	after := a.subjects()
	if len(after) != 3 || after[uids[1]] != before[uids[1]] || after[uids[2]] != before[uids[2]] {
		t.Fatalf("UIDs moved: before %v, after %v", before, after)
	}
	if !mapsEqual(after, b.subjects()) {
		t.Fatalf("the two backends disagree: %v and %v", after, b.subjects())
	}
	for uid, subj := range after {
		if subj == "late" && uid <= uids[2] {
			t.Errorf("the late message got UID %d, not above %v", uid, uids)
		}
	}
}

// mapKeys returns the keys, sorted.
func mapKeys(m map[int]string) []int {
	var out []int
	for k := range m {
		out = append(out, k)
	}
	sort.Ints(out)
	return out
}

// pop3Login opens a POP3 session at addr and logs in; it returns the
// session and the reply to PASS.
func pop3Login(t *testing.T, addr, user, pass string) (*conn, string) {
	t.Helper()
	s := dial(t, addr)
	if l := s.line(); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("greeting %q", l)
	}
	s.wantReply("USER "+user, "+OK")
	return s, s.reply("PASS " + pass)
}

// sharedPOP3: the POP3 lock across backends, released before QUIT's
// reply, and broken once its holder is killed.
func sharedPOP3(t *testing.T, c *sharedCluster) {
	const user, pass = "ann@example.com", "pw-a"
	first, l := pop3Login(t, c.pop3(0), user, pass)
	if !strings.HasPrefix(l, "+OK") {
		t.Fatalf("first POP3 login: %q", l)
	}
	for i := 1; i < 3; i++ {
		if _, l := pop3Login(t, c.pop3(i), user, pass); !strings.HasPrefix(l, "-ERR [IN-USE]") {
			t.Fatalf("second POP3 login on %s: %q, want -ERR [IN-USE]", c.hosts[i], l)
		}
	}
	first.wantReply("QUIT", "+OK")
	// Free as soon as QUIT is answered, on another backend too.
	second, l := pop3Login(t, c.pop3(1), user, pass)
	if !strings.HasPrefix(l, "+OK") {
		t.Fatalf("POP3 login right after the other session's QUIT: %q", l)
	}
	if _, l := pop3Login(t, c.pop3(2), user, pass); !strings.HasPrefix(l, "-ERR [IN-USE]") {
		t.Fatalf("POP3 login while the second session holds the lock: %q", l)
	}

	// The holder dies without a word: the lock comes free.
	holder := c.backends[1]
	holder.cmd.Process.Kill()
	holder.cmd.Wait()
	second.nc.Close()
	for deadline := time.Now().Add(hangGuard); ; time.Sleep(100 * time.Millisecond) {
		s, l := pop3Login(t, c.pop3(2), user, pass)
		if strings.HasPrefix(l, "+OK") {
			s.wantReply("STAT", "+OK 3 ")
			s.wantReply("QUIT", "+OK")
			break
		}
		if !strings.HasPrefix(l, "-ERR [IN-USE]") || time.Now().After(deadline) {
			t.Fatalf("POP3 login after the holder was killed: %q", l)
		}
		s.nc.Close()
	}
	holder.start(t)
}
