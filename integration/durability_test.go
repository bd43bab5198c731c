package integration

import (
	"fmt"
	"strings"
	"testing"
)

// TestDurableAfterKill9: every write acknowledged with +OK survives a
// SIGKILL of the directory right after the acknowledgement.
func TestDurableAfterKill9(t *testing.T) {
	const n = 3000
	dataDir := t.TempDir()
	d := startDirectory(t, dataDir)
	c := dial(t, d.addr)
	var req strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&req, "set user%05d@kill.example {SSHA}aGFzaGhhc2hoYXNoaGFzaGhhc2g= tohost=\"b%d\"\r\n", i, i%4)
	}
	c.write(req.String())
	for i := 0; i < n; i++ {
		if got, want := c.line(), fmt.Sprintf("+OK user%05d@kill.example added to database", i); got != want {
			t.Fatalf("reply %d = %q", i, got)
		}
	}
	d.kill() // the last +OK has just arrived

	d = startDirectory(t, dataDir)
	c = dial(t, d.addr)
	req.Reset()
	for i := 0; i < n; i++ {
		fmt.Fprintf(&req, "lookup user%05d@kill.example\r\n", i)
	}
	c.write(req.String())
	for i := 0; i < n; i++ {
		want := fmt.Sprintf(`+OK user%05d@kill.example config 0 tohost="b%d"`, i, i%4)
		if got := c.line(); got != want {
			t.Fatalf("after restart, reply %d = %q, want %q", i, got, want)
		}
	}
}
