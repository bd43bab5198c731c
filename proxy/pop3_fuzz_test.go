package proxy

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/tohost/tohost/protocol/authent"

	"github.com/tohost/tohost/protocol/saslserver"
)

// FuzzPOP3Decode checks the command splitter and the SASL decoders on any
// line: no panic, and what they accept can be replayed on a backend.
func FuzzPOP3Decode(f *testing.F) {
	for _, s := range []string{"USER alice", "pass two words", "AUTH PLAIN AGFsaWNlAHNlY3JldA==",
		"AGFsaWNlAHNlY3JldA", "=", "*", "", "!!!!", "YWxpY2U=", "YWxpY2UNCkRFTEUgMQBzZWNyZXQ="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		cmd, arg := pop3SplitCommand(line)
		if cmd != strings.ToUpper(cmd) {
			t.Fatalf("command %q not upper case", cmd)
		}
		if strings.Contains(line, " ") {
			if !strings.EqualFold(cmd+" "+arg, line) {
				t.Fatalf("split %q into %q and %q", line, cmd, arg)
			}
		} else if arg != "" || !strings.EqualFold(cmd, line) {
			t.Fatalf("split %q into %q and %q", line, cmd, arg)
		}
	})
}

// FuzzPOP3Session runs the login phase on any client input over an
// in-memory connection: no panic, no hang, and the directory only ever
// sees credentials that could be replayed on a backend. Every user's
// tohost is a routing loop, so no login leaves the process.
func FuzzPOP3Session(f *testing.F) {
	for _, s := range []string{
		"CAPA\r\nUSER alice\r\nPASS secret\r\nQUIT\r\n",
		"AUTH PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\n",
		"AUTH LOGIN YWxpY2U=\r\n*\r\nAUTH LOGIN\r\nYWxpY2U=\r\nc2VjcmV0\r\n",
		"PASS x\r\nUSER\r\nSTLS\r\nAUTH\r\nAUTH PLAIN =\r\nAUTH X\r\n\r\n",
		"USER a\rb\r\nPASS c\r\n",
	} {
		f.Add([]byte(s))
	}
	dir := &pop3RecordingDir{fakeDir: newFakeDir()}
	dir.add("alice", "secret", "self.example")
	p, err := New(Config{Directory: dir, Self: []string{"self.example"}, Logger: discard, MaxLoginFailures: 100})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, input []byte) {
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			io.Copy(io.Discard, client)
		}()
		// The input is read from memory, so that its end is an end of
		// stream for the handler while its replies still go out.
		s := p.newSession(server, POP3)
		s.r = bufio.NewReaderSize(bytes.NewReader(input), 4096)
		p.pop3(context.Background(), s)
		server.Close()
		<-done
		dir.mu.Lock()
		defer dir.mu.Unlock()
		for _, c := range dir.creds {
			if !saslserver.ValidCredential(c[0]) || !saslserver.ValidCredential(c[1]) {
				t.Fatalf("the directory was asked about %q", c)
			}
		}
		dir.creds = dir.creds[:0]
		dir.checks = dir.checks[:0]
	})
}

// pop3RecordingDir is a fakeDir that records the credentials it checks.
type pop3RecordingDir struct {
	*fakeDir
	creds [][2]string // user, password; under fakeDir.mu
}

func (d *pop3RecordingDir) Check(ctx context.Context, user, pass, ip string) (authent.User, error) {
	d.mu.Lock()
	d.creds = append(d.creds, [2]string{user, pass})
	d.mu.Unlock()
	return d.fakeDir.Check(ctx, user, pass, ip)
}
