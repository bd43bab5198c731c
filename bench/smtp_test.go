package bench

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/emersion/go-smtp"
)

type fakeSMTPBackend struct{ fail bool }

func (b fakeSMTPBackend) NewSession(*smtp.Conn) (smtp.Session, error) {
	return &fakeSMTPSession{fail: b.fail}, nil
}

type fakeSMTPSession struct {
	fail bool
	rcpt bool
}

func (s *fakeSMTPSession) Mail(string, *smtp.MailOptions) error { return nil }

func (s *fakeSMTPSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	for i := range 10 {
		if to == Login(i) {
			s.rcpt = true
			return nil
		}
	}
	return &smtp.SMTPError{Code: 550, Message: "no such user"}
}

func (s *fakeSMTPSession) Data(r io.Reader) error {
	n, err := io.Copy(io.Discard, r)
	switch {
	case err != nil:
		return err
	case !s.rcpt || n < 1000:
		return errors.New("bad transaction")
	case s.fail:
		return &smtp.SMTPError{Code: 451, Message: "try again later"}
	}
	return nil
}

func (s *fakeSMTPSession) Reset()        { s.rcpt = false }
func (s *fakeSMTPSession) Logout() error { return nil }

// fakeSMTP serves SMTP for users 0..9; fail makes it answer every DATA
// with 451.
func fakeSMTP(t *testing.T, fail bool) string {
	srv := smtp.NewServer(fakeSMTPBackend{fail: fail})
	srv.Domain = "fake.example"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func TestSMTPRelay(t *testing.T) {
	cfg := Config{Addr: fakeSMTP(t, false), Mode: ModeSMTPRelay, Conns: 4, Count: 200, Users: 10, Seed: 1, MessageBytes: 4000}
	res, err := RunSMTP(context.Background(), cfg)
	if err != nil || res.Requests != 200 || res.Errors != 0 {
		t.Fatalf("against a correct server: %v, %+v", err, res)
	}
	cfg.Addr = fakeSMTP(t, true)
	res, err = RunSMTP(context.Background(), cfg)
	if err == nil || res.Errors != 200 {
		t.Fatalf("a server answering 451 was not caught: %v, %+v", err, res)
	}
	cfg.Addr = fakeSMTP(t, false)
	cfg.First = 5 // users 10..14 are unknown to the fake: RCPT gets 550
	res, err = RunSMTP(context.Background(), cfg)
	if err == nil || res.Errors == 0 {
		t.Fatalf("refused recipients were not caught: %+v", res)
	}
}
