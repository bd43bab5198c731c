package imap

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// curl runs curl against the server; a missing curl fails the test.
func curl(t *testing.T, args ...string) string {
	t.Helper()
	path, err := exec.LookPath("curl")
	if err != nil {
		t.Fatalf("curl is needed for this test: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, path, append([]string{"-sS", "--max-time", "15"}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("curl %v: %v\n%s", args, err, stderr.String())
	}
	return out.String()
}

func TestCurl(t *testing.T) {
	e := newEnv(t, nil)
	user := "alice@example.org:secret"
	base := "imap://" + e.addr

	msg := testMessage("from curl", "uploaded with -T")
	file := filepath.Join(t.TempDir(), "msg.eml")
	if err := os.WriteFile(file, []byte(msg), 0o600); err != nil {
		t.Fatal(err)
	}
	// APPEND
	curl(t, "-u", user, "-T", file, base+"/INBOX")
	if _, err := e.store.Deliver("alice@example.org", strings.NewReader(testMessage("delivered", "second"))); err != nil {
		t.Fatal(err)
	}

	// The folder: curl SELECTs and lists with FETCH/SEARCH-free commands.
	out := curl(t, "-u", user, base+"/")
	if !strings.Contains(out, "INBOX") {
		t.Errorf("curl %s/: %q lacks INBOX", base, out)
	}
	curl(t, "-u", user, base+"/INBOX") // lists INBOX's children: none
	out = curl(t, "-u", user, base+"/", "-X", "EXAMINE INBOX")
	if !strings.Contains(out, "* 2 EXISTS") {
		t.Errorf("curl EXAMINE INBOX: %q", out)
	}
	// FETCH by UID: byte-exact.
	if got := curl(t, "-u", user, base+"/INBOX;UID=1"); got != msg {
		t.Errorf("curl UID=1:\n%q\nwant\n%q", got, msg)
	}
	if got := curl(t, "-u", user, base+"/INBOX;UID=2"); !strings.Contains(got, "Subject: delivered") {
		t.Errorf("curl UID=2: %q", got)
	}
	// A custom command: SEARCH.
	out = curl(t, "-u", user, base+"/INBOX", "-X", "SEARCH SUBJECT curl")
	if !strings.Contains(out, "SEARCH 1") {
		t.Errorf("curl SEARCH: %q", out)
	}
	// Wrong password: curl fails.
	cmd := exec.Command("curl", "-sS", "--max-time", "15", "-u", "alice@example.org:bad", base+"/INBOX;UID=1")
	if err := cmd.Run(); err == nil {
		t.Errorf("curl with a wrong password succeeded")
	}

	c := e.login("alice@example.org", nil)
	st := must(c.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait())
	if *st.NumMessages != 2 {
		t.Errorf("INBOX has %d messages", *st.NumMessages)
	}
}
