package tcpauth

import (
	"errors"
	"io"
	"strings"
	"testing"
)

// TestFatalReplyArrives: a request that ends the connection (a line over
// the limit, a NUL) gets its -ERR and then a clean end of stream, even
// though the client sent more than the server read. Closing a socket with
// unread input makes the kernel send a reset, which throws away a reply
// the client has not read yet.
func TestFatalReplyArrives(t *testing.T) {
	h := start(t, Config{}, nil)
	for _, tc := range []struct{ name, first, want string }{
		{"line too long", "lookup " + strings.Repeat("a", 100<<10) + "\r\n", "-ERR line too long"},
		{"bad characters", "ping\x00\r\n", "-ERR bad characters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := h.dial(t)
			// The bad line and 16 KiB of requests after it, in one write,
			// so input is still unread when the server gives up.
			more := strings.Repeat("lookup "+strings.Repeat("b", 1000)+"\r\n", 16)
			sent := make(chan error, 1)
			go func() {
				_, err := io.WriteString(c.nc, tc.first+more)
				sent <- err
			}()
			l, err := c.r.ReadString('\n')
			if err != nil {
				t.Fatalf("read reply: %v (got %q)", err, l)
			}
			if got := strings.TrimSuffix(l, "\r\n"); got != tc.want {
				t.Fatalf("reply %q, want %q", got, tc.want)
			}
			if l, err := c.r.ReadString('\n'); !errors.Is(err, io.EOF) {
				t.Fatalf("after the reply: %q, %v; want end of stream", l, err)
			}
			if err := <-sent; err != nil {
				t.Fatalf("write: %v", err)
			}
		})
	}
}
