package listen

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// serveEcho accepts on ln and answers each line with "<peer> <line>", so a
// test sees what address the server was given.
func serveEcho(t *testing.T, ln net.Listener) {
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					l, err := r.ReadString('\n')
					if err != nil {
						return
					}
					io.WriteString(c, PeerIP(c).String()+" "+l)
				}
			}()
		}
	}()
}

func open(t *testing.T, g *Gate, opt Options) string {
	t.Helper()
	ln, err := g.Listen("127.0.0.1:0", opt)
	if err != nil {
		t.Fatal(err)
	}
	serveEcho(t, ln)
	return ln.Addr().String()
}

type client struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(20 * time.Second)) // a hang guard only
	return &client{t, nc, bufio.NewReader(nc)}
}

func (c *client) roundTrip(line string) (string, error) {
	if _, err := io.WriteString(c.nc, line+"\n"); err != nil {
		return "", err
	}
	l, err := c.r.ReadString('\n')
	return strings.TrimSuffix(l, "\n"), err
}

func TestAllowList(t *testing.T) {
	g := NewGate(Config{Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Logger: discard})
	c := dial(t, open(t, g, Options{Refusal: []byte("go away\n")}))
	if l, err := c.roundTrip("hello"); err == nil {
		t.Fatalf("a client outside the allow-list was served: %q", l)
	}
	if g.Refused() != 1 {
		t.Errorf("refused = %d, want 1", g.Refused())
	}
}

// TestCapAcrossListeners: the cap counts the connections of every listener
// of the gate; one over it gets the listener's own refusal; a slot comes
// back when a connection closes.
func TestCapAcrossListeners(t *testing.T) {
	g := NewGate(Config{MaxConns: 2, Logger: discard})
	a := open(t, g, Options{Refusal: []byte("-DEAD too many connections\r\n")})
	b := open(t, g, Options{Refusal: []byte("* BYE too many connections\r\n")})
	first, second := dial(t, a), dial(t, b)
	for _, c := range []*client{first, second} {
		if l, err := c.roundTrip("x"); err != nil || l != "127.0.0.1 x" {
			t.Fatalf("under the cap: %q %v", l, err)
		}
	}
	for addr, want := range map[string]string{a: "-DEAD too many connections\r\n", b: "* BYE too many connections\r\n"} {
		over := dial(t, addr)
		got, _ := io.ReadAll(over.r) // the refusal, then end of stream
		if string(got) != want {
			t.Errorf("over the cap on %s: %q, want %q", addr, got, want)
		}
	}
	if g.Open() != 2 {
		t.Errorf("open = %d, want 2", g.Open())
	}
	first.nc.Close()
	// The server closes its side when it reads our end of stream; poll
	// until the slot is back (the deadline is a hang guard).
	for deadline := time.Now().Add(20 * time.Second); g.Open() != 1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("slot not given back")
		}
	}
	if l, err := dial(t, a).roundTrip("y"); err != nil || l != "127.0.0.1 y" {
		t.Fatalf("after a slot came back: %q %v", l, err)
	}
}

// TestProxyHeader: a trusted proxy's PROXY v2 header gives the client's
// address; from anyone else the bytes of a header are just data.
func TestProxyHeader(t *testing.T) {
	header := func() []byte {
		h := proxyproto.HeaderProxyFromAddrs(2,
			&net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 4711},
			&net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 143})
		b, err := h.Format()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	trusted := NewGate(Config{TrustedProxies: Loopback, Logger: discard})
	c := dial(t, open(t, trusted, Options{}))
	c.nc.Write(header())
	if l, err := c.roundTrip("x"); err != nil || l != "192.0.2.7 x" {
		t.Fatalf("through a trusted proxy: %q %v, want the header's address", l, err)
	}
	// A trusted peer that sends no header is not served.
	c = dial(t, open(t, trusted, Options{}))
	if l, err := c.roundTrip("x"); err == nil {
		t.Fatalf("trusted peer without a header was served: %q", l)
	}

	untrusted := NewGate(Config{Logger: discard})
	c = dial(t, open(t, untrusted, Options{}))
	c.nc.Write(header())
	l, err := c.roundTrip("x")
	if err != nil || !strings.HasPrefix(l, "127.0.0.1 ") {
		t.Fatalf("untrusted peer: %q %v, want its own address", l, err)
	}
}

func TestFitDescriptors(t *testing.T) {
	for _, tc := range []struct {
		max    int
		nofile uint64
		want   int
	}{
		{10_000, 0, 10_000},
		{10_000, 1_048_576, 10_000},
		{10_000, 1024, 1024 - Reserve},
		{10, 100, 1},
	} {
		if got := fitDescriptors(tc.max, tc.nofile); got != tc.want {
			t.Errorf("fitDescriptors(%d, %d) = %d, want %d", tc.max, tc.nofile, got, tc.want)
		}
	}
}

// TestCloseGracefully: a reply written just before closing a connection
// whose client is still sending arrives, followed by an end of stream,
// instead of being lost to a reset.
func TestCloseGracefully(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	read := make(chan struct{})
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		buf := make([]byte, 100)
		io.ReadFull(c, buf) // read a little, leave the rest unread
		close(read)
		c.Write([]byte("-ERR line too long\r\n"))
		CloseGracefully(c, 2*time.Second)
	}()
	c := dial(t, ln.Addr().String())
	// Far more than the server reads, so input is pending when it closes.
	go c.nc.Write([]byte(strings.Repeat("a", 512<<10)))
	<-read
	got, err := io.ReadAll(c.r)
	if string(got) != "-ERR line too long\r\n" || err != nil {
		t.Fatalf("got %q, %v; want the reply and a clean end of stream", got, err)
	}
}

func TestRetryable(t *testing.T) {
	if !retryable(&net.OpError{Op: "accept", Err: syscall.EMFILE}) {
		t.Error("EMFILE is not retried")
	}
	if retryable(net.ErrClosed) || retryable(errors.New("other")) {
		t.Error("a closed listener is retried")
	}
}

// TestPerAddressCap: one address gets at most MaxConnsPerIP connections;
// a slot comes back when one closes.
func TestPerAddressCap(t *testing.T) {
	g := NewGate(Config{MaxConnsPerIP: 1, Logger: discard})
	addr := open(t, g, Options{Refusal: []byte("busy\n")})
	first := dial(t, addr)
	if l, err := first.roundTrip("x"); err != nil || l != "127.0.0.1 x" {
		t.Fatalf("first: %q %v", l, err)
	}
	over := dial(t, addr)
	if got, _ := io.ReadAll(over.r); string(got) != "busy\n" {
		t.Fatalf("second from the same address: %q", got)
	}
	first.nc.Close()
	for deadline := time.Now().Add(20 * time.Second); g.Open() != 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("slot not given back")
		}
	}
	if l, err := dial(t, addr).roundTrip("y"); err != nil || l != "127.0.0.1 y" {
		t.Fatalf("after the first closed: %q %v", l, err)
	}
}
