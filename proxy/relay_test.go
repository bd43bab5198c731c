package proxy

import (
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// openPipes counts the pipes this process holds open.
func openPipes(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "pipe:") {
			n++
		}
	}
	return n
}

// TestIdleRelayHoldsNoPipes: an idle relayed session costs its two
// sockets only. Splicing while waiting for input would hold a pipe pair
// per direction (four descriptors a session), and descriptors, not
// memory, would cap the sessions a proxy can carry.
func TestIdleRelayHoldsNoPipes(t *testing.T) {
	e := newIMAPEnv(t, Config{}, fakeIMAPConfig{})
	const n = 20
	before := openPipes(t)
	for range n {
		c := e.dial(t)
		loginOK(t, c.cmd("a", "LOGIN bob secret"), "a")
		// A round trip through the relay, so both directions have spliced.
		if got := last(c.cmd("b", "NOOP")); !strings.HasPrefix(got, "b OK") {
			t.Fatalf("NOOP through the relay: %q", got)
		}
	}
	// Go keeps spliced pipes pooled for reuse until the garbage collector
	// drops the pool; what must not be is a pair held per direction per
	// session. The deadline is a hang guard.
	held := 0
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		runtime.GC()
		if held = openPipes(t) - before; held < n {
			return
		}
	}
	t.Fatalf("%d idle sessions hold %d pipe descriptors", n, held)
}
