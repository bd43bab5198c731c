package tcpauth

import (
	"context"
	"net"
	"sync"
	"testing"

	"github.com/tohost/tohost/directory"
)

// clientDir answers checks and records the client address each was made
// for; busy makes it answer as a directory whose hash queue is full.
type clientDir struct {
	Directory
	busy bool

	mu      sync.Mutex
	clients []string
}

func (d *clientDir) Check(ctx context.Context, name, _ string) (*directory.User, error) {
	d.mu.Lock()
	d.clients = append(d.clients, directory.ClientOf(ctx))
	d.mu.Unlock()
	if d.busy {
		return nil, directory.ErrBusy
	}
	return &directory.User{Name: name}, nil
}

func serveDir(t *testing.T, d Directory) *harness {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{addr: ln.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { h.done <- New(d, Config{Logger: discard}).Serve(ctx, ln) }()
	t.Cleanup(func() { h.stop(t) })
	return h
}

// TestCheckNamesItsClient: the directory learns the client address a
// check is for (the hash queue it waits in): the one the front end
// passes, else the connection's.
func TestCheckNamesItsClient(t *testing.T) {
	d := &clientDir{}
	c := serveDir(t, d).dial(t)
	c.expect("check u@x pw 192.0.2.9", "+OK u@x config 0")
	c.expect("check u@x pw [2001:db8::1]:25", "+OK u@x config 0")
	c.expect("check u@x pw ::ffff:198.51.100.1", "+OK u@x config 0")
	c.expect("check u@x pw", "+OK u@x config 0")
	want := []string{"192.0.2.9", "2001:db8::1", "198.51.100.1", "127.0.0.1"}
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range want {
		if i >= len(d.clients) || d.clients[i] != want[i] {
			t.Fatalf("clients %q, want %q", d.clients, want)
		}
	}
}

// TestBusyCheckIsDead: a check the directory's hash queue could not take
// in time is -DEAD, which a mail server retries, never -ERR, which would
// tell it the password is wrong.
func TestBusyCheckIsDead(t *testing.T) {
	c := serveDir(t, &clientDir{busy: true}).dial(t)
	c.expect("check u@x pw 192.0.2.9", "-DEAD directory busy")
}
