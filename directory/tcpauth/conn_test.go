package tcpauth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tohost/tohost/directory"
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

// gateStore holds every read of a user back until want of them are in
// progress at once (or a while has passed, so a server that reads one at
// a time fails the test instead of hanging it), and records the most that
// ever were.
type gateStore struct {
	directory.Store
	mu     sync.Mutex
	on     bool
	want   int
	now    int
	peak   int
	open   chan struct{}
	closed bool
}

func newGateStore(s directory.Store, want int) *gateStore {
	return &gateStore{Store: s, want: want, open: make(chan struct{})}
}

func (g *gateStore) start() {
	g.mu.Lock()
	g.on = true
	g.mu.Unlock()
}

func (g *gateStore) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.closed {
		g.closed = true
		close(g.open)
	}
}

func (g *gateStore) Get(ctx context.Context, name string) (*directory.User, error) {
	g.mu.Lock()
	if !g.on {
		g.mu.Unlock()
		return g.Store.Get(ctx, name)
	}
	g.now++
	g.peak = max(g.peak, g.now)
	if g.now == g.want && !g.closed {
		g.closed = true
		close(g.open)
	}
	g.mu.Unlock()
	select {
	case <-g.open:
	case <-time.After(5 * time.Second):
		g.release()
	}
	defer func() {
		g.mu.Lock()
		g.now--
		g.mu.Unlock()
	}()
	return g.Store.Get(ctx, name)
}

func (g *gateStore) peakReads() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.peak
}

// TestPipelinedChecksRunConcurrently: checks pipelined on one connection
// are served at the same time (each waits in the store until all are
// there), up to MaxInflight, and their replies come in request order.
func TestPipelinedChecksRunConcurrently(t *testing.T) {
	for _, tc := range []struct {
		name           string
		inflight, want int
	}{
		{"uncapped", 0, 12},
		{"capped", 4, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var g *gateStore
			h := start(t, Config{MaxInflight: tc.inflight}, func(s directory.Store) directory.Store {
				g = newGateStore(s, tc.want)
				return g
			})
			c := h.dial(t)
			for i := 0; i < 4; i++ {
				c.expect(fmt.Sprintf("set u%d@x pw%d n=%d", i, i, i), fmt.Sprintf("+OK u%d@x added to database", i))
			}
			g.start()
			var req []string
			var want []string
			for i := 0; i < 12; i++ {
				u := i % 4
				switch i % 3 {
				case 0, 1:
					req = append(req, fmt.Sprintf("check u%d@x pw%d", u, u))
					want = append(want, fmt.Sprintf(`+OK u%d@x config 0 n="%d"`, u, u))
				default:
					req = append(req, fmt.Sprintf("check u%d@x wrong", u))
					want = append(want, fmt.Sprintf("-ERR u%d@x password wrong or not a valid user", u))
				}
			}
			c.send(req...)
			for i, w := range want {
				if got := c.line(); got != w {
					t.Fatalf("reply %d = %q, want %q", i, got, w)
				}
			}
			if p := g.peakReads(); p != tc.want {
				t.Fatalf("at most %d checks in progress at once, want %d", p, tc.want)
			}
		})
	}
}

// orderStore makes a reordering of the requests on one user show: the
// first read waits for a write to be done, and the write waits for a read
// after the first to be done. Each gives up after a while, which is what
// happens when the server keeps the order; the write sooner, so that a
// write run too early is seen by the first read.
type orderStore struct {
	directory.Store
	mu       sync.Mutex
	on       bool
	reads    int
	wrote    chan struct{} // closed after the first write
	laterRan chan struct{} // closed after the second read
}

func (o *orderStore) Get(ctx context.Context, name string) (*directory.User, error) {
	o.mu.Lock()
	on := o.on
	if on {
		o.reads++
	}
	n := o.reads
	o.mu.Unlock()
	if !on {
		return o.Store.Get(ctx, name)
	}
	if n == 1 {
		select {
		case <-o.wrote:
		case <-time.After(400 * time.Millisecond):
		}
	}
	u, err := o.Store.Get(ctx, name)
	if n == 2 {
		close(o.laterRan)
	}
	return u, err
}

func (o *orderStore) Update(ctx context.Context, name string, fn directory.UpdateFunc) (*directory.User, error) {
	o.mu.Lock()
	on := o.on
	o.mu.Unlock()
	if !on {
		return o.Store.Update(ctx, name, fn)
	}
	select {
	case <-o.laterRan:
	case <-time.After(200 * time.Millisecond):
	}
	u, err := o.Store.Update(ctx, name, fn)
	close(o.wrote)
	return u, err
}

// TestPipelinedReadsKeepOrder: a check sees every earlier write to its
// user and no later one, even while the checks run concurrently: whether
// checks start out in goroutines of their own (a fresh connection) or in
// the reader (a connection whose checks have been cheap).
func TestPipelinedReadsKeepOrder(t *testing.T) {
	for _, warm := range []bool{false, true} {
		t.Run(fmt.Sprintf("warm=%v", warm), func(t *testing.T) {
			var o *orderStore
			h := start(t, Config{}, func(s directory.Store) directory.Store {
				o = &orderStore{Store: s, wrote: make(chan struct{}), laterRan: make(chan struct{})}
				return o
			})
			c := h.dial(t)
			c.expect("set x@x old n=1", "+OK x@x added to database")
			c.expect("set y@x pw", "+OK y@x added to database")
			if warm {
				for i := 0; i < 50; i++ {
					c.expect("check y@x pw", "+OK y@x config 0")
				}
			}
			o.mu.Lock()
			o.on = true
			o.mu.Unlock()
			c.send("check x@x old", "set x@x new n=2", "check X@x new", "check x@X old", "lookup x@x")
			for i, w := range []string{
				`+OK x@x config 0 n="1"`,
				"+OK x@x added to database",
				`+OK X@x config 0 n="2"`,
				"-ERR x@X password wrong or not a valid user",
				`+OK x@x config 0 n="2"`,
			} {
				if got := c.line(); got != w {
					t.Fatalf("reply %d = %q, want %q", i, got, w)
				}
			}
		})
	}
}

// TestPipelinedMixedReplies: replies that need no user (ping, errors,
// version) queue behind checks still in progress, in request order.
func TestPipelinedMixedReplies(t *testing.T) {
	var g *gateStore
	h := start(t, Config{}, func(s directory.Store) directory.Store {
		g = newGateStore(s, 2)
		return g
	})
	c := h.dial(t)
	c.expect("set a@x pa", "+OK a@x added to database")
	c.expect("set b@x pb", "+OK b@x added to database")
	g.start()
	c.send("check a@x pa", "ping", "frob", "lookup", "check b@x pb", "version", "lookup a@x", "search x", "exit")
	for i, w := range []string{
		"+OK a@x config 0",
		"+OK pong",
		"-ERR unknown command",
		"-ERR missing user",
		"+OK b@x config 0",
		"+OK tohost test",
		"+OK a@x config 0",
		"+DATA a@x",
		"+DATA b@x",
		"+OK Search Complete 2 items found out of 2",
		"+OK",
	} {
		if got := c.line(); got != w {
			t.Fatalf("reply %d = %q, want %q", i, got, w)
		}
	}
	c.expectClosed()
	if p := g.peakReads(); p < 2 {
		t.Fatalf("at most %d checks in progress at once, want 2", p)
	}
}

// TestRenameToSameName: a rename that only changes the case of the name
// touches one user, and must not wait for itself.
func TestRenameToSameName(t *testing.T) {
	c := start(t, Config{}, nil).dial(t)
	c.expect("set a@x pw", "+OK a@x added to database")
	c.expect("rename a@x A@x", "+OK A@x renamed")
	c.expect("lookup a@x", "+OK a@x config 0")
}
