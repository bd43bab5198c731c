package proxy

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// curlTLS runs curl with STARTTLS required (--ssl-reqd), trusting the
// test certificate's CA only by skipping verification (-k): the proxy's
// certificate is made in the test.
func curlTLS(t *testing.T, url, user string) string {
	t.Helper()
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatalf("curl is needed for this test: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a hang guard
	defer cancel()
	out, err := exec.CommandContext(ctx, curl, "-s", "-S", "--ssl-reqd", "-k", url, "-u", user).CombinedOutput()
	if err != nil {
		t.Fatalf("curl %s: %v\n%s", url, err, out)
	}
	return string(out)
}

// TestCurlOverSTARTTLS: with --require-tls, curl logs in over STARTTLS
// (IMAP) and STLS (POP3) through the proxy and reads the backend's answer.
func TestCurlOverSTARTTLS(t *testing.T) {
	t.Run("imap", func(t *testing.T) {
		e := newIMAPEnv(t, Config{TLS: serverTLS(), RequireTLS: true}, fakeIMAPConfig{})
		out := curlTLS(t, "imap://"+e.px.addr+"/", "bob:secret")
		if !strings.Contains(out, `Archive-of-bob`) {
			t.Fatalf("curl printed %q", out)
		}
	})
	t.Run("pop3", func(t *testing.T) {
		e := newPOP3Env(t, Config{TLS: serverTLS(), RequireTLS: true}, pop3BackendOptions{sasl: true})
		out := curlTLS(t, "pop3://"+e.px.addr+"/1", "bob:two words")
		if out != pop3TestMessages[0] {
			t.Fatalf("curl retrieved %q", out)
		}
	})
}

// TestCurlSubmissionOverSTARTTLS: with --require-tls, curl submits over
// STARTTLS and the message reaches the backend as the user.
func TestCurlSubmissionOverSTARTTLS(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatalf("curl is needed for this test: %v", err)
	}
	file := filepath.Join(t.TempDir(), "msg.txt")
	body := "Subject: tls\r\n\r\nover STARTTLS\r\n"
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	b := startFakeSMTP(t, fakeSMTPOpts{keepBody: true})
	b.users["alice@example.com"] = "s3cret"
	env := startSMTPProxy(t, Config{TLS: serverTLS(), RequireTLS: true}, Submission, SMTPOptions{})
	env.dir.add("alice@example.com", "s3cret", b.addr)
	out, err := exec.Command(curl, "-sS", "--ssl-reqd", "-k", "smtp://"+env.px.addr,
		"-u", "alice@example.com:s3cret", "--mail-from", "alice@example.com",
		"--mail-rcpt", "b@y.test", "-T", file).CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v: %s", err, out)
	}
	if m := b.wait(t); string(m.body) != body || m.auth != "alice@example.com" {
		t.Errorf("backend got %q as %q", m.body, m.auth)
	}
}
