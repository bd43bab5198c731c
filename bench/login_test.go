package bench

import (
	"bufio"
	"context"
	"net"
	"strings"
	"sync"
	"testing"
)

// serveLines accepts connections on a loopback listener until the end of
// the test and, on each, sends greeting and runs handle; the connection is
// closed when handle returns.
func serveLines(t *testing.T, greeting string, handle func(c net.Conn, r *bufio.Reader)) string {
	t.Helper()
	ln := listen(t)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				c.Write([]byte(greeting))
				handle(c, r)
			}()
		}
	}()
	return ln.Addr().String()
}

// fakeIMAP answers LOGIN with OK when the password is the population's,
// with NO otherwise; broken makes it accept every password.
func fakeIMAP(t *testing.T, broken bool) string {
	return serveLines(t, "* OK ready\r\n", func(c net.Conn, r *bufio.Reader) {
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return
			}
			f := strings.Fields(l)
			switch {
			case len(f) == 4 && f[1] == "LOGIN":
				user, pass := strings.Trim(f[2], `"`), strings.Trim(f[3], `"`)
				ok := broken
				for i := range 10 {
					ok = ok || user == Login(i) && pass == Password(i)
				}
				if ok {
					c.Write([]byte(f[0] + " OK logged in\r\n"))
				} else {
					c.Write([]byte(f[0] + " NO [AUTHENTICATIONFAILED] no\r\n"))
				}
			case len(f) == 2 && f[1] == "LOGOUT":
				c.Write([]byte("* BYE\r\n" + f[0] + " OK bye\r\n"))
				return
			}
		}
	})
}

func TestIMAPLogins(t *testing.T) {
	cfg := Config{Addr: fakeIMAP(t, false), Mode: ModeIMAPLogin, Conns: 4, Count: 200, Users: 10, Miss: 0.3, Seed: 1}
	res, err := RunLogins(context.Background(), cfg)
	if err != nil || res.Requests != 200 || res.Errors != 0 {
		t.Fatalf("against a correct server: %v, %+v", err, res)
	}
	cfg.Addr = fakeIMAP(t, true)
	res, err = RunLogins(context.Background(), cfg)
	if err == nil || res.Errors == 0 {
		t.Fatalf("a server that accepts wrong passwords was not caught: %+v", res)
	}
}

// fakePOP3 locks a user's maildrop from PASS until QUIT, as a POP3 server
// does, and answers a second session of that user meanwhile with -ERR
// [IN-USE]. It lets the lock go before its reply to QUIT, so only sessions
// that overlap compete.
func fakePOP3(t *testing.T) string {
	var mu sync.Mutex
	locked := map[string]bool{}
	return serveLines(t, "+OK ready\r\n", func(c net.Conn, r *bufio.Reader) {
		var user, holds string
		unlock := func() {
			mu.Lock()
			delete(locked, holds)
			mu.Unlock()
			holds = ""
		}
		defer unlock()
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return
			}
			cmd, arg, _ := strings.Cut(strings.TrimRight(l, "\r\n"), " ")
			switch cmd {
			case "USER":
				user = arg
				c.Write([]byte("+OK\r\n"))
			case "PASS":
				mu.Lock()
				busy := locked[user]
				locked[user] = true
				mu.Unlock()
				if busy {
					c.Write([]byte("-ERR [IN-USE] Mailbox in use by another session.\r\n"))
					return
				}
				holds = user
				c.Write([]byte("+OK logged in\r\n"))
			case "QUIT":
				unlock()
				c.Write([]byte("+OK bye\r\n"))
				return
			}
		}
	})
}

// TestPOP3LoginsOwnUsers: POP3 sessions of the bench never compete for a
// maildrop, even with two users per connection; fewer is refused.
func TestPOP3LoginsOwnUsers(t *testing.T) {
	cfg := Config{Addr: fakePOP3(t), Mode: ModePOP3Login, Conns: 4, Count: 2000, Users: 8, First: 5, Seed: 1}
	res, err := RunLogins(context.Background(), cfg)
	if err != nil || res.Requests != 2000 || res.Errors != 0 {
		t.Fatalf("%v, %+v", err, res)
	}
	cfg.Users = 7
	if _, err := RunLogins(context.Background(), cfg); err == nil {
		t.Fatal("7 users for 4 connections accepted")
	}
}
