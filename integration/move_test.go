package integration

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// mta delivers numbered messages (header X-Move-Number) to one user
// through the proxies' SMTP ports, as a sending MTA does: a 4xx is tried
// again until a 250, which counts the message as delivered.
type mta struct {
	addrs []string
	user  string

	mu       sync.Mutex
	accepted []int
	retried  int
	changed  chan struct{} // closed and replaced at each 250
}

func newMTA(user string, addrs ...string) *mta {
	return &mta{addrs: addrs, user: user, changed: make(chan struct{})}
}

// deliver delivers message n; an error is anything but a 250 after
// retries of 4xx, or a 4xx for longer than the hang guard.
func (m *mta) deliver(n int) error {
	for deadline := time.Now().Add(hangGuard); ; time.Sleep(10 * time.Millisecond) {
		reply, err := m.transaction(m.addrs[n%len(m.addrs)], n)
		if err != nil {
			return fmt.Errorf("message %d: %w", n, err)
		}
		if strings.HasPrefix(reply, "250") {
			break
		}
		if !strings.HasPrefix(reply, "4") || time.Now().After(deadline) {
			return fmt.Errorf("message %d: %q", n, reply)
		}
		m.mu.Lock()
		m.retried++
		m.mu.Unlock()
	}
	m.mu.Lock()
	m.accepted = append(m.accepted, n)
	close(m.changed)
	m.changed = make(chan struct{})
	m.mu.Unlock()
	return nil
}

// transaction sends message n in one SMTP session and returns the reply
// that decides: RCPT's when it is not 250, else DATA's.
func (m *mta) transaction(addr string, n int) (string, error) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return "", err
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(hangGuard))
	r := bufio.NewReader(nc)
	reply := func(req string) (string, error) {
		if req != "" {
			if _, err := io.WriteString(nc, req+"\r\n"); err != nil {
				return "", err
			}
		}
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return "", err
			}
			if len(l) < 4 || l[3] != '-' {
				return strings.TrimRight(l, "\r\n"), nil
			}
		}
	}
	msg := fmt.Sprintf("From: sender@example.org\r\nTo: %s\r\nSubject: live %d\r\nX-Move-Number: %d\r\n\r\nmessage %d\r\n.", m.user, n, n, n)
	for _, step := range []struct{ req, want string }{
		{"", "220"}, {"EHLO mta.example.org", "250"}, {"MAIL FROM:<sender@example.org>", "250"},
		{"RCPT TO:<" + m.user + ">", "250"}, {"DATA", "354"}, {msg, "250"},
	} {
		l, err := reply(step.req)
		if err != nil {
			return "", err
		}
		if !strings.HasPrefix(l, step.want) {
			if step.want == "250" && strings.HasPrefix(l, "4") || step.want == "250" && step.req == msg {
				return l, nil
			}
			return "", fmt.Errorf("%q: %q", step.req, l)
		}
		if step.req == msg {
			reply("QUIT")
			return l, nil
		}
	}
	panic("unreachable")
}

// run delivers messages from n on until stop is closed; done gets the
// first error, or nil.
func (m *mta) run(n int, stop <-chan struct{}, done chan<- error) {
	for ; ; n++ {
		select {
		case <-stop:
			done <- nil
			return
		default:
		}
		if err := m.deliver(n); err != nil {
			done <- err
			return
		}
	}
}

// waitAccepted waits until at least n messages got a 250, or done says
// the MTA stopped.
func (m *mta) waitAccepted(t *testing.T, n int, done <-chan error) {
	t.Helper()
	for {
		m.mu.Lock()
		got, changed := len(m.accepted), m.changed
		m.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-changed:
		case err := <-done:
			t.Fatalf("the MTA stopped with %d messages delivered, waiting for %d: %v", got, n, err)
		case <-time.After(hangGuard):
			t.Fatalf("%d messages delivered, waiting for %d", got, n)
		}
	}
}

func (m *mta) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.accepted)
}

// imapAt logs in to addr as user.
func imapAt(t *testing.T, addr, user, pass string) (*imapclient.Client, error) {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, c.Login(user, pass).Wait()
}

// numbered returns the X-Move-Number of each message of mbox with its
// flags (sorted, space-separated), and fails on a message seen twice.
func numbered(t *testing.T, c *imapclient.Client, mbox string) map[int]string {
	t.Helper()
	sel, err := c.Select(mbox, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatalf("EXAMINE %s: %v", mbox, err)
	}
	out := map[int]string{}
	if sel.NumMessages == 0 {
		return out
	}
	section := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"X-Move-Number"}, Peek: true}
	bufs, err := c.Fetch(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}, &imap.FetchOptions{
		Flags: true, BodySection: []*imap.FetchItemBodySection{section}}).Collect()
	if err != nil {
		t.Fatalf("FETCH %s: %v", mbox, err)
	}
	for _, b := range bufs {
		h := strings.TrimSpace(string(b.FindBodySection(section)))
		n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(h, "X-Move-Number:")))
		if err != nil {
			t.Fatalf("%s: message %d has no number: %q", mbox, b.SeqNum, h)
		}
		if _, dup := out[n]; dup {
			t.Errorf("%s: message number %d twice", mbox, n)
		}
		var fl []string
		for _, f := range b.Flags {
			fl = append(fl, string(f))
		}
		slices.Sort(fl)
		out[n] = strings.Join(fl, " ")
	}
	return out
}

// TestUserMoveWhileMailArrives: a user with mail on backend 127.0.0.2
// (some of it flagged, a second folder) is moved to 127.0.0.3 with
// `tohost user move` while an MTA keeps delivering numbered messages
// through the proxies. Read through the proxy afterwards, the user (now
// on 127.0.0.3) has every message the MTA got a 250 for, exactly once,
// with the flags set before the move; new mail and logins go to the new
// backend.
func TestUserMoveWhileMailArrives(t *testing.T) {
	masterFile := filepath.Join(t.TempDir(), "master-password")
	if err := os.WriteFile(masterFile, []byte("master-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := startE2ECluster(t, "--master-user", "mover", "--master-password-file", masterFile)
	const user, pass = "ann@example.com", "pw-ann"
	c.setUser(t, user, pass, "127.0.0.2")
	old, next := c.backends[0], c.backends[1]
	m := newMTA(user, c.proxies[0].smtp, c.proxies[1].smtp)

	// Mail before the move, flags and a folder set through the proxy.
	for n := 0; n < 5; n++ {
		if err := m.deliver(n); err != nil {
			t.Fatal(err)
		}
	}
	ic, err := imapAt(t, c.proxies[0].imap, user, pass)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ic.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	for seq, flags := range map[uint32][]imap.Flag{1: {imap.FlagSeen}, 2: {imap.FlagFlagged, imap.FlagSeen}} {
		if err := ic.Store(imap.SeqSetNum(seq), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: flags}, nil).Close(); err != nil {
			t.Fatal(err)
		}
	}
	want := numbered(t, ic, "INBOX") // the flags as the user set them
	if err := ic.Create("Keep", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	keep := "From: me@example.org\r\nX-Move-Number: 1000\r\n\r\nkept\r\n"
	app := ic.Append("Keep", int64(len(keep)), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagAnswered}})
	io.WriteString(app, keep)
	if err := app.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := app.Wait(); err != nil {
		t.Fatal(err)
	}
	ic.Logout().Wait()

	// The MTA goes on during the move, and a little after it.
	stop, done := make(chan struct{}), make(chan error, 1)
	go m.run(5, stop, done)
	m.waitAccepted(t, 10, done)
	out, err := exec.Command(binary, "user", "--directory", c.dirAddr, "move", user, "127.0.0.3",
		"--backend-imap-port", strconv.Itoa(c.imapPort), "--master-user", "mover", "--master-password-file", masterFile,
		"--settle", "500ms").CombinedOutput()
	if err != nil {
		close(stop)
		t.Fatalf("tohost user move: %v\n%s", err, out)
	}
	t.Logf("tohost user move:\n%s", out)
	if !strings.Contains(string(out), "moved "+user+" from 127.0.0.2 to 127.0.0.3") {
		t.Errorf("no summary in the output:\n%s", out)
	}
	m.waitAccepted(t, m.count()+5, done)
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d messages delivered, %d deliveries tried again", m.count(), m.retried)

	// Through the proxy: every message once, the old flags.
	for _, p := range c.proxies {
		ic, err := imapAt(t, p.imap, user, pass)
		if err != nil {
			t.Fatalf("%s: login after the move: %v", p.name, err)
		}
		got := numbered(t, ic, "INBOX")
		for _, n := range m.accepted {
			if _, ok := got[n]; !ok {
				t.Errorf("%s: message %d, delivered (250), is not in the INBOX", p.name, n)
			}
		}
		if len(got) != len(m.accepted) {
			t.Errorf("%s: %d messages in the INBOX, %d delivered", p.name, len(got), len(m.accepted))
		}
		for n, flags := range want {
			if got[n] != flags {
				t.Errorf("%s: message %d: flags %q, were %q before the move", p.name, n, got[n], flags)
			}
		}
		if k := numbered(t, ic, "Keep"); len(k) != 1 || k[1000] != `\Answered` {
			t.Errorf("%s: folder Keep after the move: %v", p.name, k)
		}
	}
	// What the proxy showed is the new backend's.
	if n := len(messages(t, next.mailDir, user)); n != len(m.accepted) {
		t.Errorf("the new backend's INBOX holds %d messages, %d delivered", n, len(m.accepted))
	}

	// New mail and logins go to the new backend only.
	if err := m.deliver(100000); err != nil {
		t.Fatal(err)
	}
	onDisk := func(b *e2eBackend) int {
		n := 0
		for _, msg := range messages(t, b.mailDir, user) {
			if strings.Contains(msg, "X-Move-Number: 100000\r\n") {
				n++
			}
		}
		return n
	}
	if o, n := onDisk(old), onDisk(next); o != 0 || n != 1 {
		t.Errorf("mail after the move: %d on the old backend, %d on the new, want 0 and 1", o, n)
	}
	hostPort := func(h string) string { return net.JoinHostPort(h, strconv.Itoa(c.imapPort)) }
	if _, err := imapAt(t, hostPort(old.host), user, pass); err == nil {
		t.Error("the user still logs in on the old backend")
	}
	if _, err := imapAt(t, hostPort(next.host), user, pass); err != nil {
		t.Errorf("login on the new backend: %v", err)
	}
}

// TestClusterUserMove: the `tohost user move` line that `tohost cluster`
// prints works as printed: the demo user's mailbox goes to the other
// backend with the master login the cluster made.
func TestClusterUserMove(t *testing.T) {
	dir := t.TempDir()
	offset := clusterPortOffset(t)
	c := startCluster(t, dir, offset)
	var line string
	for _, l := range strings.Split(c.out.String(), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "tohost user move ") {
			line = strings.TrimSpace(l)
		}
	}
	if line == "" {
		t.Fatalf("no tohost user move line in the usage:\n%s", c.out)
	}
	info, err := os.Stat(filepath.Join(dir, "master-password"))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("master-password: %v %v", info, err)
	}
	args := strings.Fields(line)[1:]
	name, target := args[2], args[3]
	out, err := exec.Command(binary, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", line, err, out)
	}
	u, ok := c.users[name]
	if !ok || u[1] == target {
		t.Fatalf("the move line names %s to %s; demo users %v", name, target, c.users)
	}
	local, _, _ := strings.Cut(name, "@")
	sub := map[string]string{"127.0.0.2": "backend1", "127.0.0.3": "backend2"}[target]
	if got := countMail(t, filepath.Join(dir, sub, "example.com", local)); got != 1 {
		t.Errorf("%s's messages in %s's Maildir: %d, want the welcome message", name, target, got)
	}
	ic, err := imapAt(t, fmt.Sprintf("127.0.0.1:%d", 1143+offset), name, u[0])
	if err != nil {
		t.Fatalf("login through the proxy after the move: %v", err)
	}
	sel, err := ic.Select("INBOX", nil).Wait()
	if err != nil || sel.NumMessages != 1 {
		t.Fatalf("INBOX after the move: %v, %v; want the welcome message", sel, err)
	}
	c.stop(t)
}
