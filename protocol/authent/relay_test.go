package authent_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/tohost/tohost/protocol/authent"
)

func relay(t *testing.T, c *authent.Client, in string) string {
	t.Helper()
	var out strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := authent.Relay(ctx, strings.NewReader(in), &out, c); err != nil {
		t.Fatalf("Relay: %v", err)
	}
	return out.String()
}

func TestRelayTranscript(t *testing.T) {
	f := startFake(t, "A", "127.0.0.1:0")
	c := newClient(t, authent.ClientConfig{Addrs: []string{f.addr}, Conns: 1})
	in := "lookup bob@test.com\r\n" +
		"search *\n" +
		"\n" +
		"lookup missing@test.com  \r\n" +
		"lookup dead\n" +
		"check bob@test.com xxx 10.0.0.1\n" +
		"EXIT\n" +
		"lookup never\n"
	want := `+OK bob@test.com config 0 n="bob@test.com" srv="A" name="A B"` + "\n" +
		"+DATA alice\n+DATA bob\n+OK Search Complete 2 items found out of 7\n" +
		"-ERR missing@test.com does not exist\n" +
		"-DEAD database down\n" +
		"-ERR bob@test.com password wrong or not a valid user\n" +
		"+OK\n"
	if got := relay(t, c, in); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	for _, l := range f.Lines() {
		if strings.Contains(l, "never") || strings.EqualFold(l, "exit") {
			t.Errorf("forwarded %q", l)
		}
	}
}

func TestRelayEOFAndQuit(t *testing.T) {
	f := startFake(t, "A", "127.0.0.1:0")
	c := newClient(t, authent.ClientConfig{Addrs: []string{f.addr}})
	// The last line may lack its LF.
	if got := relay(t, c, "ping\nping"); got != "+OK pong\n+OK pong\n" {
		t.Errorf("EOF: %q", got)
	}
	if got := relay(t, c, "quit\nping\n"); got != "+OK\n" {
		t.Errorf("quit: %q", got)
	}
	if got := relay(t, c, ""); got != "" {
		t.Errorf("empty input: %q", got)
	}
}

func TestRelayLongLine(t *testing.T) {
	f := startFake(t, "A", "127.0.0.1:0")
	c := newClient(t, authent.ClientConfig{Addrs: []string{f.addr}})
	in := "lookup " + strings.Repeat("x", 9000) + "\n" +
		"ping\n" +
		"lookup a\x00b\n" +
		"lookup " + strings.Repeat("y", 20000)
	want := "-ERR line too long\n+OK pong\n-ERR bad characters\n-ERR line too long\n"
	if got := relay(t, c, in); got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
	// A line of exactly MaxLine bytes is forwarded.
	line := "lookup " + strings.Repeat("z", authent.MaxLine-len("lookup "))
	if got := relay(t, c, line+"\r\n"); !strings.HasPrefix(got, "+OK zzz") {
		t.Errorf("MaxLine line: %.40q", got)
	}
}

func TestRelayNoDirectory(t *testing.T) {
	c := newClient(t, authent.ClientConfig{Addrs: []string{deadAddr(t), deadAddr(t)}})
	got := relay(t, c, "lookup bob\ncheck bob pw\nexit\n")
	want := "-DEAD directory unavailable\n-DEAD directory unavailable\n+OK\n"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	for _, l := range strings.Split(got, "\n") {
		if len(l) >= 100 {
			t.Errorf("line of %d bytes", len(l))
		}
	}
}

// The module keeps serving while the directory is down and answers again
// once it is back.
func TestRelayDirectoryComesBack(t *testing.T) {
	addr := deadAddr(t)
	c := newClient(t, authent.ClientConfig{Addrs: []string{addr}})
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- authent.Relay(context.Background(), inR, outW, c) }()
	replies := bufio.NewReader(outR)
	ask := func(req string) string {
		t.Helper()
		if _, err := io.WriteString(inW, req+"\n"); err != nil {
			t.Fatal(err)
		}
		line, err := replies.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		return line
	}
	if got := ask("lookup bob"); got != "-DEAD directory unavailable\n" {
		t.Fatalf("directory down: %q", got)
	}
	startFake(t, "A", addr)
	if got := ask("lookup bob"); !strings.HasPrefix(got, "+OK bob config 0 ") {
		t.Fatalf("directory back: %q", got)
	}
	inW.Close()
	if err := <-done; err != nil {
		t.Errorf("Relay: %v", err)
	}
}

// TestRelayContext: cancelling ctx stops the relay in the middle of its
// work, whether it waits for input or for the directory.
func TestRelayContext(t *testing.T) {
	f := startFake(t, "A", "127.0.0.1:0")
	c := newClient(t, authent.ClientConfig{Addrs: []string{f.addr}})
	for _, stuck := range []string{"input", "directory"} {
		t.Run(stuck, func(t *testing.T) {
			inR, inW := io.Pipe()
			defer inW.Close()
			outR, outW := io.Pipe()
			defer outR.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- authent.Relay(ctx, inR, outW, c) }()
			replies := bufio.NewReader(outR)
			io.WriteString(inW, "ping\n")
			if line, err := replies.ReadString('\n'); err != nil || line != "+OK pong\n" {
				t.Fatalf("ping: %q %v", line, err)
			}
			// The relay is running; now it waits for the next line, or
			// for the reply to one the directory never answers.
			if stuck == "directory" {
				io.WriteString(inW, "lookup stall-"+stuck+"\n")
				f.WaitLine("lookup stall-" + stuck)
			}
			go io.Copy(io.Discard, replies) // whatever it writes on the way out
			cancel()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Errorf("got %v", err)
				}
			case <-time.After(hangGuard):
				t.Fatal("Relay did not stop on cancel")
			}
		})
	}
}
