package bench

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"
)

// fakeIMAP answers LOGIN with OK when the password is the population's,
// with NO otherwise; broken makes it accept every password.
func fakeIMAP(t *testing.T, broken bool) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
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
				c.Write([]byte("* OK ready\r\n"))
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
			}()
		}
	}()
	return ln.Addr().String()
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
