package tcpauth

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tohost/tohost/internal/testservices"

	"github.com/tohost/tohost/internal/penalty"
)

// TestCheckPenalty: after a wrong password, checks of that user from that
// client are refused unchecked (even the right password) until the window
// ends; another user, or the same user from another client address, is
// not held back.
func TestCheckPenalty(t *testing.T) {
	pen := penalty.New[string](penalty.Config{Base: time.Hour, Max: time.Hour})
	c := start(t, Config{Penalty: pen}, nil).dial(t)
	c.expect("set a@x pw", "+OK a@x added to database")
	c.expect("set b@x pw", "+OK b@x added to database")
	c.expect("check a@x wrong", "-ERR a@x password wrong or not a valid user")
	c.expect("check a@x pw", "-ERR a@x password wrong or not a valid user")
	c.expect("check A@X pw", "-ERR A@X password wrong or not a valid user")
	c.expect("check b@x pw", "+OK b@x config 0")
	c.expect("check a@x pw 192.0.2.7", "+OK a@x config 0")
	c.expect("check a@x wrong 192.0.2.7", "-ERR a@x password wrong or not a valid user")
	c.expect("check a@x pw 192.0.2.7:143", "-ERR a@x password wrong or not a valid user")
	c.expect("check a@x pw ::ffff:192.0.2.8", "+OK a@x config 0")
}

// TestCheckPenaltyLogsBursts: a storm of wrong passwords writes a line at
// the 1st, 2nd, 4th... failure, each with the count and the client, not a
// line per try.
func TestCheckPenaltyLogsBursts(t *testing.T) {
	var logs testservices.Buffer
	pen := penalty.New[string](penalty.Config{Base: time.Nanosecond, Max: time.Nanosecond})
	c := start(t, Config{Penalty: pen, Logger: slog.New(slog.NewTextHandler(&logs, nil))}, nil).dial(t)
	c.expect("set a@x pw", "+OK a@x added to database")
	for i := 0; i < 200; i++ {
		time.Sleep(time.Microsecond) // past the 1 ns window, so every check is verified
		c.expect("check a@x wrong 192.0.2.9", "-ERR a@x password wrong or not a valid user")
	}
	var lines []string // the set's audit line aside
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if strings.Contains(l, "check failed") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 8 {
		t.Fatalf("200 failures wrote %d lines, want 8 (1, 2, 4 ... 128):\n%s", len(lines), logs.String())
	}
	for i, l := range lines {
		if want := fmt.Sprintf("failures=%d", 1<<i); !strings.Contains(l, want) ||
			!strings.Contains(l, "client=192.0.2.9") || !strings.Contains(l, "user=a@x") || strings.Contains(l, "wrong") {
			t.Fatalf("line %d: %q, want %s, the client and user, never the password", i, l, want)
		}
	}
}

// TestAuthPenalty: after a wrong secret the next one is compared only
// once the delay has passed (the right one then succeeds), and the third
// wrong one closes the connection.
func TestAuthPenalty(t *testing.T) {
	const base = 100 * time.Millisecond
	pen := penalty.New[string](penalty.Config{Base: base, Max: time.Second})
	h := start(t, Config{AdminAllow: []netip.Prefix{}, Secret: "s3cret", Penalty: pen}, nil)
	c := h.dial(t)
	c.expect("auth wrong", "-ERR authentication failed")
	c.expect("auth wrong", "-ERR authentication failed")
	c.expect("auth wrong", "-ERR authentication failed")
	c.expectClosed()
	c = h.dial(t)
	start := time.Now()
	c.expect("auth s3cret", "+OK")
	if waited := time.Since(start); waited < 4*base { // three failures: 100, 200, 400 ms
		t.Fatalf("the right secret after three wrong ones was compared after %v, not after the %v penalty", waited, 4*base)
	}
	c.expect("ping", "+OK pong")
}
