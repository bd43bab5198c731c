package bench

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// fakeFetchIMAP serves an INBOX of n messages to the population's users:
// LOGIN, SELECT INBOX, FETCH 1:m (FLAGS ENVELOPE) and FETCH 1:m BODY.PEEK[]
// (bodies as literals holding lines that look like FETCH responses).
// short makes each FETCH leave out its last message.
func fakeFetchIMAP(t *testing.T, n int, short bool) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	body := "Subject: x\r\n\r\n* 1 FETCH (FLAGS ())\r\nf0 OK fake\r\n"
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				w := bufio.NewWriter(c)
				w.WriteString("* OK ready\r\n")
				w.Flush()
				for {
					l, err := r.ReadString('\n')
					if err != nil {
						return
					}
					f := strings.Fields(l)
					if len(f) < 2 {
						return
					}
					switch cmd := strings.ToUpper(f[1]); {
					case cmd == "LOGIN" && len(f) == 4:
						user, pass := strings.Trim(f[2], `"`), strings.Trim(f[3], `"`)
						ok := false
						for i := range 10 {
							ok = ok || user == Login(i) && pass == Password(i)
						}
						if !ok {
							fmt.Fprintf(w, "%s NO [AUTHENTICATIONFAILED] no\r\n", f[0])
						} else {
							fmt.Fprintf(w, "%s OK logged in\r\n", f[0])
						}
					case cmd == "SELECT":
						fmt.Fprintf(w, "* %d EXISTS\r\n* 0 RECENT\r\n%s OK [READ-WRITE] done\r\n", n, f[0])
					case cmd == "FETCH" && len(f) >= 4:
						var m int
						fmt.Sscanf(f[2], "1:%d", &m)
						if short {
							m--
						}
						for i := 1; i <= m; i++ {
							if strings.Contains(l, "ENVELOPE") {
								fmt.Fprintf(w, "* %d FETCH (FLAGS (\\Seen) ENVELOPE (NIL {1}\r\nx NIL NIL NIL NIL NIL NIL NIL NIL))\r\n", i)
							} else {
								fmt.Fprintf(w, "* %d FETCH (BODY[] {%d}\r\n%s)\r\n", i, len(body), body)
							}
						}
						fmt.Fprintf(w, "%s OK FETCH done\r\n", f[0])
					default:
						fmt.Fprintf(w, "%s BAD what\r\n", f[0])
					}
					w.Flush()
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func TestIMAPFetches(t *testing.T) {
	cfg := Config{Addr: fakeFetchIMAP(t, 50, false), Conns: 3, Count: 60, Users: 10, Messages: 50, Timeout: 5 * time.Second}
	res, err := RunFetches(context.Background(), cfg)
	if err != nil || len(res) != 2 {
		t.Fatalf("against a correct server: %v, %v", err, res)
	}
	if res[0].Fetches+res[1].Fetches != 60 {
		t.Errorf("%d + %d fetches, want 60", res[0].Fetches, res[1].Fetches)
	}
	for i, want := range []string{FetchEnvelope, FetchBody} {
		r := res[i]
		if r.Fetch != want || r.Fetches < 20 || r.Errors != 0 || r.RPS <= 0 || r.MsgsPS != r.RPS*50 || r.Bytes == 0 {
			t.Errorf("result %d: %+v", i, r)
		}
	}
	cfg.Fetch = FetchBody
	res, err = RunFetches(context.Background(), cfg)
	if err != nil || len(res) != 1 || res[0].Fetch != FetchBody || res[0].Fetches != 60 {
		t.Fatalf("body only: %v, %v", err, res)
	}

	// Fewer messages than asked for: SELECT is refused.
	cfg.Messages = 51
	if _, err := RunFetches(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "INBOX holds 50") {
		t.Errorf("a folder too small was not caught: %v", err)
	}
	// A FETCH answered with a message missing.
	cfg = Config{Addr: fakeFetchIMAP(t, 50, true), Conns: 2, Count: 10, Users: 10, Messages: 50}
	res, err = RunFetches(context.Background(), cfg)
	if err == nil || res[0].Errors == 0 || !strings.Contains(err.Error(), "49 FETCH responses, want 50") {
		t.Errorf("a short FETCH was not caught: %v, %v", err, res)
	}
	// A wrong password (user 10 is not served).
	cfg = Config{Addr: fakeFetchIMAP(t, 50, false), Count: 1, Users: 1, First: 10, Messages: 50}
	if _, err := RunFetches(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "login answered") {
		t.Errorf("a refused login was not caught: %v", err)
	}
}

func TestLiteral(t *testing.T) {
	for _, c := range []struct {
		in string
		n  int
		ok bool
	}{{"* 1 FETCH (BODY[] {123}", 123, true}, {"x {0}", 0, true}, {"x {5+}", 5, true}, {"x {a}", 0, false}, {"x }", 0, false}, {"x", 0, false}} {
		if n, ok := literal(c.in); n != c.n || ok != c.ok {
			t.Errorf("literal(%q) = %d, %v", c.in, n, ok)
		}
	}
}
