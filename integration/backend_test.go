package integration

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tohost/tohost/internal/testservices"
)

// backendProc is a running `tohost backend`.
type backendProc struct {
	cmd              *exec.Cmd
	lmtp, smtp, http string
	mailDir          string
	log              *testservices.Buffer
}

// startBackend runs `tohost backend --name backend1.example` on mailDir
// against the directory at dirAddr and waits until LMTP accepts
// connections. Empty addresses get free ports.
func startBackend(t *testing.T, dirAddr, mailDir string, lmtp, smtp string, extra ...string) *backendProc {
	t.Helper()
	if lmtp == "" {
		lmtp = freeAddr(t)
	}
	if smtp == "" {
		smtp = freeAddr(t)
	}
	b := &backendProc{lmtp: lmtp, smtp: smtp, http: freeAddr(t), mailDir: mailDir, log: new(testservices.Buffer)}
	args := append([]string{"backend", "--name", "backend1.example", "--directory", dirAddr, "--mail-dir", mailDir,
		"--lmtp-addr", b.lmtp, "--smtp-addr", b.smtp, "--http-addr", b.http}, extra...)
	b.cmd = exec.Command(binary, args...)
	b.cmd.Stdout, b.cmd.Stderr = syncWriter(b.log), syncWriter(b.log)
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.kill)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := net.Dial("tcp", b.lmtp)
		if err == nil {
			c.Close()
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("backend did not start: %v\n%s", err, b.log)
		}
	}
}

// kill ends the backend with SIGKILL.
func (b *backendProc) kill() {
	if b.cmd.ProcessState != nil {
		return
	}
	b.cmd.Process.Kill()
	b.cmd.Wait()
}

var logMu sync.Mutex

type lockedWriter struct{ w io.Writer }

func (l lockedWriter) Write(p []byte) (int, error) {
	logMu.Lock()
	defer logMu.Unlock()
	return l.w.Write(p)
}

func syncWriter(w io.Writer) io.Writer { return lockedWriter{w} }

// messages returns the contents of every message in user's Maildir (new/
// and cur/).
func messages(t *testing.T, mailDir, user string) []string {
	t.Helper()
	local, domain, _ := strings.Cut(user, "@")
	var out []string
	for _, sub := range []string{"new", "cur"} {
		dir := filepath.Join(mailDir, domain, local, sub)
		ents, err := os.ReadDir(dir)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, string(b))
		}
	}
	return out
}

func setUsers(t *testing.T, dirAddr string) {
	c := dial(t, dirAddr)
	c.expect("set alice@example.com pw-a tohost=backend1.example", "+OK alice@example.com added to database")
	c.expect("set carol@example.com pw-c tohost=backend1.example:24", "+OK carol@example.com added to database")
	c.expect("set bob@example.com pw-b tohost=backend2.example", "+OK bob@example.com added to database")
}

// TestBackendDelivers: swaks delivers over LMTP and SMTP to a real
// backend looking recipients up in a real directory; the message is in
// the user's Maildir, another backend's user is refused with 450, and the
// metrics count it.
func TestBackendDelivers(t *testing.T) {
	swaks, err := exec.LookPath("swaks")
	if err != nil {
		t.Fatal("swaks is not installed (apt-get install -y swaks; make test installs it)")
	}
	d := startDirectory(t, t.TempDir())
	setUsers(t, d.addr)
	mailDir := filepath.Join(t.TempDir(), "mail")
	b := startBackend(t, d.addr, mailDir, "", "")

	for _, tc := range []struct{ proto, addr string }{{"LMTP", b.lmtp}, {"ESMTP", b.smtp}} {
		out, err := exec.Command(swaks, "--protocol", tc.proto, "--server", tc.addr, "--helo", "mta.example.org",
			"--from", "sender@example.org", "--to", "alice@example.com,bob@example.com,nobody@example.com",
			"--header", "Subject: integration "+tc.proto, "--body", "Hello over "+tc.proto, "--timeout", "30").CombinedOutput()
		if err != nil && !strings.Contains(string(out), "450 4.2.0") {
			t.Fatalf("swaks %s: %v\n%s\n%s", tc.proto, err, out, b.log)
		}
		for _, want := range []string{"<** 450 4.2.0", "<** 550 5.1.1", "<-  250 2.0.0"} {
			if !strings.Contains(string(out), want) {
				t.Fatalf("swaks %s: no %q in\n%s", tc.proto, want, out)
			}
		}
	}
	got := messages(t, mailDir, "alice@example.com")
	if len(got) != 2 || !strings.Contains(strings.Join(got, ""), "Hello over LMTP") || !strings.Contains(strings.Join(got, ""), "Hello over ESMTP") {
		t.Fatalf("alice's Maildir: %q\n%s", got, b.log)
	}
	if got := messages(t, mailDir, "bob@example.com"); len(got) != 0 {
		t.Fatalf("bob (another backend's) got mail: %q", got)
	}
	resp, err := http.Get("http://" + b.http + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`tohost_backend_deliveries_total{outcome="delivered",protocol="lmtp"} 1`,
		`tohost_backend_deliveries_total{outcome="delivered",protocol="smtp"} 1`,
		`tohost_backend_deliveries_total{outcome="other_backend",protocol="lmtp"} 1`,
		`tohost_backend_deliveries_total{outcome="unknown_user",protocol="smtp"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if resp, err := http.Get("http://" + b.http + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Errorf("/healthz: %v %v", resp, err)
	}
}

// TestBackendKill9: senders on several connections deliver in a loop;
// the backend is killed with SIGKILL in the middle and started again on
// the same Maildirs. Every message acknowledged with 250 is there exactly
// once for each recipient, and no message is there twice.
func TestBackendKill9(t *testing.T) {
	d := startDirectory(t, t.TempDir())
	setUsers(t, d.addr)
	mailDir := filepath.Join(t.TempDir(), "mail")
	b := startBackend(t, d.addr, mailDir, "", "")

	const senders = 6
	const killAfter = 60 // acknowledged messages
	var acked sync.Map   // message id -> struct{}
	var nAcked atomic.Int64
	killNow := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	for k := range senders {
		wg.Go(func() {
			nc, err := net.Dial("tcp", b.lmtp)
			if err != nil {
				t.Errorf("sender %d: %v", k, err)
				return
			}
			defer nc.Close()
			nc.SetDeadline(time.Now().Add(60 * time.Second)) // hang guard
			r := bufio.NewReader(nc)
			reply := func() (string, error) {
				for {
					l, err := r.ReadString('\n')
					if err != nil {
						return l, err
					}
					if len(l) < 4 || l[3] != '-' {
						return l, nil
					}
				}
			}
			send := func(cmd, want string) error {
				if _, err := io.WriteString(nc, cmd+"\r\n"); err != nil {
					return err
				}
				l, err := reply()
				if err != nil {
					return err
				}
				if !strings.HasPrefix(l, want) {
					return fmt.Errorf("%s: %q", cmd, l)
				}
				return nil
			}
			if _, err := reply(); err != nil {
				return
			}
			if send("LHLO sender.example", "250") != nil {
				return
			}
			for n := 0; ; n++ {
				id := fmt.Sprintf("<%d.%d@kill.test>", k, n)
				if send("MAIL FROM:<sender@example.org>", "250") != nil ||
					send("RCPT TO:<alice@example.com>", "250") != nil ||
					send("RCPT TO:<carol@example.com>", "250") != nil ||
					send("DATA", "354") != nil {
					return
				}
				msg := "Message-ID: " + id + "\r\nSubject: kill\r\n\r\n" + strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n", 40) + ".\r\n"
				if _, err := io.WriteString(nc, msg); err != nil {
					return
				}
				l1, err1 := reply()
				l2, err2 := reply()
				if err1 != nil || err2 != nil {
					return // the backend died before the replies: unknown, may or may not be there
				}
				if !strings.HasPrefix(l1, "250 ") || !strings.HasPrefix(l2, "250 ") {
					t.Errorf("sender %d: DATA replies %q %q", k, l1, l2)
					return
				}
				acked.Store(id, struct{}{})
				if nAcked.Add(1) == killAfter {
					once.Do(func() { close(killNow) })
				}
			}
		})
	}
	select {
	case <-killNow:
	case <-time.After(60 * time.Second): // hang guard
		t.Fatalf("only %d deliveries acknowledged\n%s", nAcked.Load(), b.log)
	}
	b.kill()
	wg.Wait()

	// Started again on the same Maildirs, it delivers.
	b = startBackend(t, d.addr, mailDir, b.lmtp, b.smtp)
	swaks, err := exec.LookPath("swaks")
	if err != nil {
		t.Fatal("swaks is not installed (apt-get install -y swaks; make test installs it)")
	}
	if out, err := exec.Command(swaks, "--protocol", "LMTP", "--server", b.lmtp, "--to", "alice@example.com",
		"--from", "sender@example.org", "--header", "Message-ID: <after@kill.test>", "--timeout", "30").CombinedOutput(); err != nil {
		t.Fatalf("after the restart: %v\n%s", err, out)
	}

	idRe := regexp.MustCompile(`(?m)^Message-ID: (<[^>]*@kill\.test>)\r$`)
	total := 0
	acked.Range(func(any, any) bool { total++; return true })
	t.Logf("%d messages acknowledged before the kill", total)
	for _, user := range []string{"alice@example.com", "carol@example.com"} {
		count := map[string]int{}
		for _, m := range messages(t, mailDir, user) {
			sub := idRe.FindStringSubmatch(m)
			if sub == nil {
				t.Fatalf("%s: a message without its Message-ID: %q", user, m)
			}
			count[sub[1]]++
		}
		acked.Range(func(id, _ any) bool {
			if count[id.(string)] != 1 {
				t.Errorf("%s: acknowledged message %s is there %d times", user, id, count[id.(string)])
			}
			return true
		})
		for id, n := range count {
			if n > 1 {
				t.Errorf("%s: message %s is there %d times", user, id, n)
			}
		}
		if user == "alice@example.com" && count["<after@kill.test>"] != 1 {
			t.Errorf("the message delivered after the restart is not there")
		}
	}
}

// TestBackendBadFlags: flags of servers not wired yet and bad values stop
// the start with a message naming them.
func TestBackendBadFlags(t *testing.T) {
	for _, tc := range []struct{ args, want string }{
		{"--max-message-size 0", "--max-message-size"},
		{"--lmtp-addr 127.0.0.1:notaport", "--lmtp-addr"},
		{"--submission-addr 127.0.0.1:0", "--relay-host"},
		{"--relay-host nohostport", "--relay-host"},
		{"--relay-host 127.0.0.1:25 --queue-retry 0s", "--queue-retry"},
	} {
		args := append([]string{"backend", "--mail-dir", t.TempDir(), "--http-addr", ""}, strings.Fields(tc.args)...)
		out, err := exec.Command(binary, args...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("tohost %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
