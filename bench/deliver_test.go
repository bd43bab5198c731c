package bench

import (
	"context"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/emersion/go-smtp"
)

// fakeLMTP is an LMTP server that reads each message and answers every
// recipient with 250, except a recipient refuse says no to (450); it
// counts the bytes and messages it took.
type fakeLMTP struct {
	refuse   func(rcpt string) bool
	messages atomic.Int64
	bytes    atomic.Int64
}

type fakeLMTPSession struct {
	f     *fakeLMTP
	rcpts []string
}

func (s *fakeLMTPSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *fakeLMTPSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.rcpts = append(s.rcpts, to)
	return nil
}
func (s *fakeLMTPSession) Data(io.Reader) error { return nil }
func (s *fakeLMTPSession) LMTPData(r io.Reader, st smtp.StatusCollector) error {
	n, _ := io.Copy(io.Discard, r)
	s.f.bytes.Add(n)
	s.f.messages.Add(1)
	for _, rc := range s.rcpts {
		if s.f.refuse != nil && s.f.refuse(rc) {
			st.SetStatus(rc, &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 0}, Message: "elsewhere"})
		} else {
			st.SetStatus(rc, nil)
		}
	}
	return nil
}
func (s *fakeLMTPSession) Reset()        { s.rcpts = nil }
func (s *fakeLMTPSession) Logout() error { return nil }

func (f *fakeLMTP) start(t *testing.T) string {
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &fakeLMTPSession{f: f}, nil }))
	srv.LMTP = true
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func TestDeliveries(t *testing.T) {
	f := &fakeLMTP{}
	cfg := Config{Addr: f.start(t), Mode: ModeLMTPDeliver, Conns: 4, Count: 100, Users: 50, Rcpts: 2, MessageBytes: 2000, ToHost: "backend2.example", Seed: 1}
	res, err := RunDeliveries(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 100 || res.Errors != 0 || f.messages.Load() != 100 {
		t.Fatalf("result %v, server took %d messages", res, f.messages.Load())
	}
	if per := f.bytes.Load() / 100; per < 1900 || per > 2100 {
		t.Fatalf("messages of %d bytes, want about 2000", per)
	}
	for _, i := range cfg.deliveryUsers() {
		if ToHost(i) != "backend2.example" {
			t.Fatalf("user %d of %s drawn", i, ToHost(i))
		}
	}
}

// TestDeliveriesRefused: a recipient refused is an error of the run.
func TestDeliveriesRefused(t *testing.T) {
	f := &fakeLMTP{refuse: func(rc string) bool { return strings.HasPrefix(rc, "user0000003@") }}
	cfg := Config{Addr: f.start(t), Mode: ModeLMTPDeliver, Conns: 2, Count: 200, Users: 10, Seed: 1}
	res, err := RunDeliveries(context.Background(), cfg)
	if err == nil || res.Errors == 0 || res.Errors == res.Requests {
		t.Fatalf("a refused recipient went unnoticed: %v, %v", res, err)
	}
	if !strings.Contains(err.Error(), "450") {
		t.Fatalf("error %v does not name the reply", err)
	}
}
