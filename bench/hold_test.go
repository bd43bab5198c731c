package bench

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// stub starts the IMAP stub on a loopback port; stopping the returned
// context's cancel shuts it down (every connection closed).
func stub(t *testing.T) (string, context.CancelFunc) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeIMAPStub(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("ServeIMAPStub: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("ServeIMAPStub did not return")
		}
	})
	return ln.Addr().String(), cancel
}

func TestHoldAgainstStub(t *testing.T) {
	addr, _ := stub(t)
	var ready []HoldResult
	cfg := Config{Addr: addr, Conns: 8, Count: 200, Users: 10, Duration: 100 * time.Millisecond, Timeout: 2 * time.Second}
	res, err := RunHold(context.Background(), cfg, func(r HoldResult) { ready = append(ready, r) })
	if err != nil || res.Opened != 200 || res.Alive != 200 || res.Errors != 0 {
		t.Fatalf("RunHold: %v, %+v", err, res)
	}
	if len(ready) != 1 || ready[0].Opened != 200 {
		t.Fatalf("ready calls: %+v", ready)
	}
	if res.Held < 100*time.Millisecond {
		t.Fatalf("held %v, want the duration", res.Held)
	}
	if !strings.HasPrefix(res.String(), "mode=imap-hold sessions=200 opened=200 alive=200 errors=0 ") {
		t.Fatalf("summary %q", res)
	}
}

func TestHoldUntilCancelled(t *testing.T) {
	addr, _ := stub(t)
	ctx, cancel := context.WithCancel(context.Background())
	cfg := Config{Addr: addr, Conns: 4, Count: 20, Users: 5, Timeout: 2 * time.Second}
	res, err := RunHold(ctx, cfg, func(HoldResult) { time.AfterFunc(50*time.Millisecond, cancel) })
	if err != nil || res.Alive != 20 {
		t.Fatalf("RunHold: %v, %+v", err, res)
	}
}

// Sessions the server drops while they are held are caught by the NOOP
// check at the end.
func TestHoldCatchesDroppedSessions(t *testing.T) {
	addr, stop := stub(t)
	cfg := Config{Addr: addr, Conns: 4, Count: 20, Users: 5, Duration: 200 * time.Millisecond, Timeout: time.Second}
	res, err := RunHold(context.Background(), cfg, func(HoldResult) { stop() })
	if err == nil || res.Opened != 20 || res.Alive != 0 || res.Errors != 20 {
		t.Fatalf("dropped sessions not caught: %v, %+v", err, res)
	}
}

func TestHoldCountsFailedLogins(t *testing.T) {
	addr := fakeIMAP(t, false) // knows users 0..9 only, and no NOOP
	cfg := Config{Addr: addr, Conns: 10, Count: 20, Users: 20, Duration: time.Millisecond, Timeout: 300 * time.Millisecond}
	res, err := RunHold(context.Background(), cfg, nil)
	if err == nil || res.Opened != 10 || res.Alive != 0 || res.Errors != 20 {
		t.Fatalf("refused logins not counted: %v, %+v", err, res)
	}
}

func TestIMAPStubDialogue(t *testing.T) {
	addr, _ := stub(t)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	expect := func(want string) {
		t.Helper()
		l, err := r.ReadString('\n')
		if err != nil || !strings.HasPrefix(l, want) {
			t.Fatalf("read %q, %v; want %q...", l, err, want)
		}
	}
	send := func(s string) {
		t.Helper()
		if _, err := c.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	expect("* OK [CAPABILITY IMAP4rev1 LITERAL+")
	send("a CAPABILITY\r\n")
	expect("* CAPABILITY IMAP4rev1")
	expect("a OK")
	send("b LOGIN {4}\r\n")
	expect("+ ")
	send("user {3+}\r\npwd\r\n")
	expect("b OK [CAPABILITY ")
	send("c NOOP\r\nd SELECT INBOX\r\n")
	expect("c OK")
	expect("d BAD")
	send("e LOGOUT\r\n")
	expect("* BYE")
	expect("e OK")
	if _, err := r.ReadString('\n'); err == nil {
		t.Fatal("connection still open after LOGOUT")
	}
}
