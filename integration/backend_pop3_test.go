package integration

import (
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBackendPOP3: mail delivered over SMTP to a real backend is listed,
// retrieved and deleted with curl over the backend's POP3, as the
// directory's user; another backend's user cannot log in there.
func TestBackendPOP3(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatal("curl is not installed")
	}
	d := startDirectory(t, t.TempDir())
	setUsers(t, d.addr)
	mailDir := filepath.Join(t.TempDir(), "mail")
	pop3Addr := freeAddr(t)
	b := startBackend(t, d.addr, mailDir, "", "", "--pop3-addr", pop3Addr)

	run := func(stdin string, args ...string) (string, error) {
		cmd := exec.Command(curl, append([]string{"--silent", "--show-error", "--max-time", "60"}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	msg := "From: sender@example.org\r\nSubject: pop3\r\n\r\nHello over POP3\r\n.dot\r\n"
	if out, err := run(msg, "smtp://"+b.smtp, "--mail-from", "sender@example.org",
		"--mail-rcpt", "alice@example.com", "--upload-file", "-"); err != nil {
		t.Fatalf("curl smtp: %v\n%s\n%s", err, out, b.log)
	}
	url := "pop3://" + pop3Addr + "/"
	out, err := run("", url, "-u", "alice@example.com:pw-a")
	if err != nil || !strings.HasPrefix(out, "1 ") {
		t.Fatalf("POP3 listing: %v %q\n%s", err, out, b.log)
	}
	out, err = run("", url+"1", "-u", "alice@example.com:pw-a")
	if err != nil || !strings.HasSuffix(out, "\r\n\r\nHello over POP3\r\n.dot\r\n") {
		t.Fatalf("POP3 RETR: %v %q\n%s", err, out, b.log)
	}
	if out, err := run("", url+"1", "-u", "alice@example.com:pw-a", "-X", "DELE", "-I"); err != nil {
		t.Fatalf("POP3 DELE: %v %q", err, out)
	}
	if got := messages(t, mailDir, "alice@example.com"); len(got) != 0 {
		t.Fatalf("alice's Maildir after DELE and QUIT: %q", got)
	}
	if out, err := run("", url, "-u", "bob@example.com:pw-b"); err == nil {
		t.Fatalf("another backend's user logged in: %q", out)
	}

	resp, err := http.Get("http://" + b.http + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`tohost_backend_pop3_logins_total{outcome="ok"} 3`,
		`tohost_backend_pop3_logins_total{outcome="refused"} 1`,
		`tohost_backend_pop3_deleted_total 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestProxyToBackendPOP3: a POP3 client logs in at tohost proxy, which
// passes the client's address with XCLIENT (--backend-forward-ip) and
// replays the login on the backend's POP3; the session then reads and
// deletes the user's mail there. Without the proxy among the backend's
// --login-trusted-networks, its XCLIENT is refused and so is the login.
func TestProxyToBackendPOP3(t *testing.T) {
	for _, trusted := range []bool{true, false} {
		t.Run(map[bool]string{true: "trusted", false: "untrusted"}[trusted], func(t *testing.T) {
			d := startDirectory(t, t.TempDir())
			pop3Addr := freeAddr(t)
			dial(t, d.addr).expect("set dan@example.com pw-d tohost="+pop3Addr, "+OK dan@example.com added to database")
			mailDir := filepath.Join(t.TempDir(), "mail")
			extra := []string{"--name", "127.0.0.1", "--pop3-addr", pop3Addr}
			if trusted {
				extra = append(extra, "--login-trusted-networks", "127.0.0.0/8")
			}
			b := startBackend(t, d.addr, mailDir, "", "", extra...)
			lmtp := dial(t, b.lmtp)
			for _, step := range [][2]string{{"", "220"}, {"LHLO proxy.example\r\n", "250"}, {"MAIL FROM:<s@example.org>\r\n", "250"},
				{"RCPT TO:<dan@example.com>\r\n", "250"}, {"DATA\r\n", "354"}, {"Subject: via proxy\r\n\r\nHi\r\n.\r\n", "250"}} {
				if step[0] != "" {
					lmtp.write(step[0])
				}
				for {
					l := lmtp.line()
					if !strings.HasPrefix(l, step[1]) {
						t.Fatalf("LMTP %q: %q\n%s", step[0], l, b.log)
					}
					if len(l) < 4 || l[3] != '-' {
						break
					}
				}
			}

			proxyPOP3 := freeAddr(t)
			_, plog := startProxy(t, d.addr, "--pop3-addr", proxyPOP3, "--backend-forward-ip")
			c := dial(t, proxyPOP3)
			c.line() // greeting
			c.write("USER dan@example.com\r\n")
			c.line()
			c.write("PASS pw-d\r\n")
			if l := c.line(); !trusted {
				if !strings.HasPrefix(l, "-ERR [SYS/TEMP]") {
					t.Fatalf("login through the proxy without trust: %q\n%s\n%s", l, plog, b.log)
				}
				return
			} else if !strings.HasPrefix(l, "+OK Logged in, 1 messages.") {
				t.Fatalf("login through the proxy: %q\n%s\n%s", l, plog, b.log)
			}
			c.write("RETR 1\r\n")
			var got []string
			for l := c.line(); l != "."; l = c.line() {
				got = append(got, l)
			}
			if len(got) < 3 || got[len(got)-1] != "Hi" {
				t.Fatalf("RETR through the proxy: %q", got)
			}
			c.write("DELE 1\r\nQUIT\r\n")
			c.line()
			if l := c.line(); !strings.HasPrefix(l, "+OK Bye, 1 messages deleted.") {
				t.Fatalf("QUIT: %q", l)
			}
			if left := messages(t, mailDir, "dan@example.com"); len(left) != 0 {
				t.Fatalf("dan's Maildir after QUIT: %q", left)
			}
		})
	}
}
