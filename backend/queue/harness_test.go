package queue

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// received is one transaction the test relay took.
type received struct {
	from string
	to   []string
	data string
}

// rcptFunc scripts the relay's reply to RCPT: the recipient, the
// recipients already taken in the transaction, and how many times this
// recipient was asked before (across transactions). nil is 250.
type rcptFunc func(rcpt string, taken []string, asked int) error

// relay is a real SMTP server that answers RCPT as scripted and records
// every message it takes.
type relay struct {
	addr string
	rcpt rcptFunc
	got  chan received

	mu    sync.Mutex
	asked map[string]int
}

func startRelay(t *testing.T, rcpt rcptFunc) *relay {
	t.Helper()
	r := &relay{rcpt: rcpt, got: make(chan received, 1000), asked: map[string]int{}}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &relaySession{r: r}, nil }))
	srv.Domain = "relay.test"
	srv.AllowInsecureAuth = true
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return r
}

func (r *relay) timesAsked(rcpt string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.asked[rcpt]
}

type relaySession struct {
	r    *relay
	from string
	to   []string
}

func (s *relaySession) Mail(from string, _ *smtp.MailOptions) error {
	s.from, s.to = from, nil
	return nil
}

func (s *relaySession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.r.mu.Lock()
	n := s.r.asked[to]
	s.r.asked[to]++
	s.r.mu.Unlock()
	if err := s.r.rcpt(to, s.to, n); err != nil {
		return err
	}
	s.to = append(s.to, to)
	return nil
}

func (s *relaySession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.r.got <- received{from: s.from, to: s.to, data: string(b)}
	return nil
}

func (s *relaySession) Reset()        { s.from, s.to = "", nil }
func (s *relaySession) Logout() error { return nil }

// next waits for the relay's next message.
func (r *relay) next(t *testing.T) received {
	t.Helper()
	select {
	case m := <-r.got:
		return m
	case <-time.After(30 * time.Second): // hang guard
		t.Fatal("the relay got no message")
		return received{}
	}
}

var (
	errTemp  = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Try again later"}
	errPerm  = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user here"}
	errSplit = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 5, 3}, Message: "Recipient is on another server: send it in another transaction"}
)

// testConfig is a queue in a new directory delivering to relayAddr, with
// a back-off long enough that a deferred recipient is not tried again in
// a test unless the test asks for it.
func testConfig(t *testing.T, relayAddr string) Config {
	return Config{Dir: filepath.Join(t.TempDir(), ".queue"), Relay: relayAddr, Hostname: "mx.test",
		Retry: time.Hour, Timeout: 10 * time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

func openQueue(t *testing.T, cfg Config) *Queue {
	t.Helper()
	q, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// run runs q until the test ends.
func run(t *testing.T, q *Queue) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}

func enqueue(t *testing.T, q *Queue, from string, to []string, msg string) string {
	t.Helper()
	id := NewID()
	if err := q.Enqueue(id, from, to, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	return id
}

// waitFor polls cond until it holds (hang guard: 30 s).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited in vain for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// spoolFiles lists the spool directory.
func spoolFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

const testMessage = "From: alice@example.com\r\nTo: bob@example.com\r\nSubject: queued\r\n\r\nhello\r\n"
