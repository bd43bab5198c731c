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
