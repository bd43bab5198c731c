package pop3

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// curl runs curl against the test server; a missing curl fails the test.
func (ts *testServer) curl(args ...string) string {
	ts.t.Helper()
	path, err := exec.LookPath("curl")
	if err != nil {
		ts.t.Fatalf("curl is needed for this test: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, append([]string{"--silent", "--show-error"}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		ts.t.Fatalf("curl %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

func TestCurl(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.deliver("alice", msg1)
	ts.deliver("alice", msg2)
	url := "pop3://" + ts.addr + "/"

	// The listing.
	if got, want := ts.curl(url, "-u", "alice:secret"), fmt.Sprintf("1 %d\r\n2 %d\r\n", size1, size2); got != want {
		t.Errorf("listing: %q, want %q", got, want)
	}
	// Retrieval: curl undoes the byte-stuffing.
	if got, want := ts.curl(url+"1", "-u", "alice:secret"), unstuff(wire1); got != want {
		t.Errorf("message 1: %q, want %q", got, want)
	}
	// Deletion (curl sends QUIT at the end, which deletes).
	ts.curl(url+"1", "-u", "alice:secret", "-X", "DELE", "-I")
	ts.waitEnded(3)
	if got := ts.inbox("alice"); len(got) != 1 {
		t.Fatalf("after DELE: %d messages, want 1", len(got))
	}
	if got, want := ts.curl(url+"1", "-u", "alice:secret"), unstuff(wire2); got != want {
		t.Errorf("message 1 after the deletion: %q, want %q", got, want)
	}

	// A wrong password is an error (curl exits 67, login denied).
	cmd := exec.Command("curl", "--silent", url, "-u", "alice:wrong")
	if err := cmd.Run(); err == nil {
		t.Error("curl with a wrong password succeeded")
	}
}

func TestCurlSTLS(t *testing.T) {
	srvTLS, _ := testTLS(t)
	ts := newTestServer(t, func(c *Config) { c.TLS = srvTLS })
	ts.deliver("alice", msg2)
	// --ssl-reqd makes curl use STLS or fail.
	got := ts.curl("pop3://"+ts.addr+"/1", "-u", "alice:secret", "--ssl-reqd", "--insecure")
	if got != unstuff(wire2) {
		t.Errorf("message over STLS: %q", got)
	}
}
