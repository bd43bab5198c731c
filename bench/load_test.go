package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// listen starts a loopback listener closed at the end of the test.
func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// startEcho runs ServeEcho until the end of the test and checks that it
// then returns nil.
func startEcho(t *testing.T) string {
	t.Helper()
	ln := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- ServeEcho(ctx, ln, "+OK x config 0") }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("ServeEcho: %v", err)
		}
	})
	return ln.Addr().String()
}

// startFake runs a tiny line server that answers each line with
// handle(line). With swap, two requests that arrive together get their
// replies in reverse order (a broken pipelining server). With silent it
// reads and never answers.
func startFake(t *testing.T, handle func(string) string, swap bool) string {
	t.Helper()
	ln := listen(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				r := bufio.NewReader(c)
				w := bufio.NewWriter(c)
				read := func() (string, bool) {
					l, err := r.ReadString('\n')
					return strings.TrimRight(l, "\r\n"), err == nil
				}
				for {
					l, ok := read()
					if !ok {
						return
					}
					a := handle(l)
					if swap && r.Buffered() > 0 {
						l2, ok := read()
						if !ok {
							return
						}
						a = handle(l2) + a
					}
					if a == "" {
						continue // silent server
					}
					w.WriteString(a)
					if r.Buffered() == 0 {
						if w.Flush() != nil {
							return
						}
					}
				}
			})
		}
	})
	return ln.Addr().String()
}

// index returns i if login is Login(i).
func index(login string) (int, bool) {
	at := strings.IndexByte(login, '@')
	if !strings.HasPrefix(login, "user") || at < 0 {
		return 0, false
	}
	i, err := strconv.Atoi(login[4:at])
	return i, err == nil && Login(i) == login
}

// fields returns the info fields of user i as a directory stores them.
func fields(i int, host string) string {
	return fmt.Sprintf(`tohost="%s" quota="%d" name="%s"`, host, Quota(i), Name(i))
}

// authent is a fake directory holding every user of the population, except
// that user wrongHost has a wrong tohost. set requests are passed to onSet,
// which says whether they were right.
func authent(wrongHost int, onSet func(i int, hash, fields string) bool) func(string) string {
	return func(line string) string {
		w := strings.SplitN(line, " ", 3)
		switch {
		case len(w) == 2 && w[0] == "lookup":
			i, ok := index(w[1])
			if !ok {
				return "-ERR " + w[1] + " does not exist\r\n"
			}
			host := ToHost(i)
			if i == wrongHost {
				host = "backend9.example"
			}
			return "+OK " + w[1] + " config 0 " + fields(i, host) + "\r\n"
		case len(w) == 3 && w[0] == "check":
			i, ok := index(w[1])
			if !ok || w[2] != Password(i) {
				return "-ERR " + w[1] + " password wrong or not a valid user\r\n"
			}
			return "+OK " + w[1] + " config 0 " + fields(i, ToHost(i)) + "\r\n"
		case len(w) == 3 && w[0] == "set":
			i, ok := index(w[1])
			hash, rest, _ := strings.Cut(w[2], " ")
			if !ok || !onSet(i, hash, rest) {
				return "-ERR bad set\r\n"
			}
			return "+OK " + w[1] + " added to database\r\n"
		}
		return "-ERR unknown command\r\n"
	}
}

func TestEchoLookupCount(t *testing.T) {
	addr := startEcho(t)
	for _, depth := range []int{1, 16} {
		res, err := Run(context.Background(), Config{Addr: addr, Mode: ModeLookup, Conns: 4, Depth: depth,
			Count: 2000, Users: 100000, Seed: 1, Timeout: 2 * time.Second, AcceptAny: true})
		if err != nil || res.Requests != 2000 || res.Errors != 0 {
			t.Fatalf("depth %d: %v, %v", depth, res, err)
		}
		if res.P50 <= 0 || res.P50 > res.P99 || res.P99 > res.P999 || res.P999 > res.Max {
			t.Errorf("depth %d: odd percentiles %v", depth, res)
		}
		if !strings.HasPrefix(res.String(), fmt.Sprintf("mode=lookup c=4 depth=%d requests=2000 errors=0 elapsed_s=", depth)) {
			t.Errorf("String() = %q", res.String())
		}
	}
}

// Without AcceptAny the echo reply (no user name) is wrong for every request.
func TestEchoStrictIsWrong(t *testing.T) {
	addr := startEcho(t)
	res, err := Run(context.Background(), Config{Addr: addr, Mode: ModeLookup, Conns: 2, Depth: 4,
		Count: 50, Users: 10, Timeout: 2 * time.Second})
	if err == nil || res.Requests != 50 || res.Errors != 50 || len(res.FirstErrors) != maxShown {
		t.Fatalf("%v, %v", res, err)
	}
}

func TestEchoDuration(t *testing.T) {
	addr := startEcho(t)
	res, err := Run(context.Background(), Config{Addr: addr, Mode: ModeLookup, Conns: 2, Depth: 2,
		Duration: 200 * time.Millisecond, Users: 10, AcceptAny: true})
	if err != nil || res.Requests == 0 || res.Elapsed < 200*time.Millisecond || res.Elapsed > 2*time.Second {
		t.Fatalf("%v, %v", res, err)
	}
}

// Every answer of a correct directory verifies, at any depth: replies are
// matched to their requests in order (each request is for a random user, so
// a reply matched to the wrong request would name the wrong user).
func TestAuthentCorrect(t *testing.T) {
	addr := startFake(t, authent(-1, nil), false)
	for _, mode := range []string{ModeLookup, ModeCheck} {
		for _, depth := range []int{1, 16} {
			res, err := Run(context.Background(), Config{Addr: addr, Mode: mode, Conns: 3, Depth: depth,
				Count: 1500, Users: 1000, First: 5, Miss: 0.3, Seed: 7, Timeout: 2 * time.Second, VerifyHost: true})
			if err != nil || res.Requests != 1500 || res.Errors != 0 {
				t.Fatalf("%s depth %d: %v, %v", mode, depth, res, err)
			}
		}
	}
}

func TestWrongHostDetected(t *testing.T) {
	addr := startFake(t, authent(7, nil), false)
	for _, verify := range []bool{false, true} {
		res, err := Run(context.Background(), Config{Addr: addr, Mode: ModeLookup, Conns: 2, Depth: 4,
			Count: 300, Users: 10, Timeout: 2 * time.Second, VerifyHost: verify})
		if !verify {
			if err != nil || res.Errors != 0 {
				t.Fatalf("without VerifyHost: %v, %v", res, err)
			}
			continue
		}
		// User 7 is about a tenth of the requests.
		if err == nil || res.Errors < 5 || res.Errors > 100 || res.Requests != 300 {
			t.Fatalf("with VerifyHost: %v, %v", res, err)
		}
		if !strings.Contains(res.FirstErrors[0], "user0000007@domain07.example") ||
			!strings.Contains(res.FirstErrors[0], "lacks tohost") {
			t.Errorf("first error %q", res.FirstErrors[0])
		}
	}
}

// A server that answers two pipelined requests in the wrong order is caught.
func TestPipelineOrderChecked(t *testing.T) {
	addr := startFake(t, authent(-1, nil), true)
	res, err := Run(context.Background(), Config{Addr: addr, Mode: ModeLookup, Conns: 1, Depth: 16,
		Count: 1000, Users: 1000, Timeout: 2 * time.Second})
	if err == nil || res.Errors == 0 || res.Requests != 1000 {
		t.Fatalf("%v, %v", res, err)
	}
}

func TestSetEachUserOnce(t *testing.T) {
	var mu sync.Mutex
	seen := map[int]int{}
	onSet := func(i int, hash, f string) bool {
		mu.Lock()
		seen[i]++
		mu.Unlock()
		return CheckSSHA(hash, Password(i)) && hash == PasswordHash(i) && f == fields(i, ToHost(i))
	}
	addr := startFake(t, authent(-1, onSet), false)
	res, err := Run(context.Background(), Config{Addr: addr, Mode: ModeSet, Conns: 3, Depth: 4,
		Users: 500, First: 100, Timeout: 2 * time.Second})
	if err != nil || res.Requests != 500 || res.Errors != 0 {
		t.Fatalf("%v, %v", res, err)
	}
	if len(seen) != 500 {
		t.Fatalf("%d users set, want 500", len(seen))
	}
	for i := 100; i < 600; i++ {
		if seen[i] != 1 {
			t.Errorf("user %d set %d times", i, seen[i])
		}
	}
}

// Once asks for every user of the range exactly once, then stops.
func TestCheckOnce(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	check := authent(-1, nil)
	addr := startFake(t, func(line string) string {
		mu.Lock()
		seen[strings.Fields(line)[1]]++
		mu.Unlock()
		return check(line)
	}, false)
	res, err := Run(context.Background(), Config{Addr: addr, Mode: ModeCheck, Conns: 3, Depth: 4,
		Users: 300, First: 50, Once: true, Timeout: 2 * time.Second})
	if err != nil || res.Requests != 300 || res.Errors != 0 {
		t.Fatalf("%v, %v", res, err)
	}
	for i := 50; i < 350; i++ {
		if n := seen[Login(i)]; n != 1 {
			t.Errorf("user %d checked %d times", i, n)
		}
	}
	if len(seen) != 300 {
		t.Errorf("%d users checked, want 300", len(seen))
	}
}

func TestDeadIsError(t *testing.T) {
	addr := startFake(t, func(string) string { return "-DEAD database down\r\n" }, false)
	res, err := Run(context.Background(), Config{Addr: addr, Mode: ModeCheck, Conns: 2, Depth: 2,
		Count: 20, Users: 10, Timeout: 2 * time.Second, AcceptAny: true})
	if err == nil || res.Errors != 20 || res.Requests != 20 {
		t.Fatalf("%v, %v", res, err)
	}
}

// A +DATA line before the final line is wrong for lookup, but the
// connection stays in step.
func TestDataLineIsError(t *testing.T) {
	h := authent(-1, nil)
	addr := startFake(t, func(l string) string {
		if strings.Contains(l, "user0000003@") {
			return "+DATA extra\r\n" + h(l)
		}
		return h(l)
	}, false)
	res, err := Run(context.Background(), Config{Addr: addr, Mode: ModeLookup, Conns: 1, Depth: 8,
		Count: 200, Users: 10, Timeout: 2 * time.Second})
	if err == nil || res.Errors == 0 || res.Errors > 60 || res.Requests != 200 ||
		!strings.Contains(res.FirstErrors[0], "+DATA") {
		t.Fatalf("%v, %v", res, err)
	}
}

// A server that never answers: the watchdog fails each request after the
// timeout, and the run still ends.
func TestTimeout(t *testing.T) {
	addr := startFake(t, func(string) string { return "" }, false)
	t0 := time.Now()
	res, err := Run(context.Background(), Config{Addr: addr, Mode: ModeLookup, Conns: 1, Depth: 1,
		Count: 2, Users: 10, Timeout: 100 * time.Millisecond})
	if err == nil || res.Errors != 2 || res.Requests != 2 || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("%v, %v", res, err)
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("took %v", d)
	}
}

// Connection refused: Run fails before measuring.
func TestDialError(t *testing.T) {
	ln := listen(t)
	addr := ln.Addr().String()
	ln.Close()
	if _, err := Run(context.Background(), Config{Addr: addr, Mode: ModeLookup, Count: 1, Users: 1}); err == nil {
		t.Fatal("no error")
	}
}

func TestCancel(t *testing.T) {
	addr := startEcho(t)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	res, err := Run(ctx, Config{Addr: addr, Mode: ModeLookup, Conns: 2, Duration: time.Hour, Users: 10, AcceptAny: true})
	if !errors.Is(err, context.DeadlineExceeded) || res.Requests == 0 || res.Errors != 0 {
		t.Fatalf("%v, %v", res, err)
	}
}

func TestConfigRefused(t *testing.T) {
	ok := Config{Addr: "127.0.0.1:1", Mode: ModeLookup, Count: 1, Users: 1}
	for name, mod := range map[string]func(*Config){
		"mode":     func(c *Config) { c.Mode = "echo-server" },
		"addr":     func(c *Config) { c.Addr = "" },
		"users":    func(c *Config) { c.Users = 0 },
		"miss":     func(c *Config) { c.Miss = 1.5 },
		"set miss": func(c *Config) { c.Mode, c.Miss = ModeSet, 0.1 },
		"set once": func(c *Config) { c.Mode, c.Once = ModeSet, true },
		"no limit": func(c *Config) { c.Count = 0 },
		"depth":    func(c *Config) { c.Depth = -1 },
	} {
		c := ok
		mod(&c)
		if _, err := Run(context.Background(), c); err == nil || !strings.HasPrefix(err.Error(), "bench: ") {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

func TestCheckLoopback(t *testing.T) {
	ctx := context.Background()
	for _, a := range []string{"127.0.0.1:4020", "[::1]:4020", "localhost:4020"} {
		if err := CheckLoopback(ctx, a); err != nil {
			t.Errorf("%s: %v", a, err)
		}
	}
	for _, a := range []string{"10.1.2.3:4020", "0.0.0.0:4020", ":4020", "nonsense"} {
		if err := CheckLoopback(ctx, a); err == nil {
			t.Errorf("%s accepted", a)
		}
	}
}

// ServeEcho returns once its context ends, even with clients connected.
func TestServeEchoStops(t *testing.T) {
	ln := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- ServeEcho(ctx, ln, "+OK x config 0") }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Two pipelined lines, two replies.
	if _, err := c.Write([]byte("lookup a\r\nlookup b\n")); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	for range 2 {
		if l, err := r.ReadString('\n'); err != nil || l != "+OK x config 0\r\n" {
			t.Fatalf("%q, %v", l, err)
		}
	}
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("ServeEcho did not stop")
	}
}
