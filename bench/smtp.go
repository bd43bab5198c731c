package bench

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"time"

	"github.com/emersion/go-smtp"
)

// ModeSMTPRelay is one SMTP transaction per request, on a persistent
// connection to cfg.Addr (a proxy's incoming SMTP port or a backend's):
// MAIL FROM:<bench@example.com>, RCPT TO:<login>, DATA with a
// cfg.MessageBytes message, then RSET; each step must get its 250.
const ModeSMTPRelay = "smtp-relay"

// RunSMTP runs cfg.Conns SMTP clients, each sending one message after
// another on its connection.
func RunSMTP(ctx context.Context, cfg Config) (Result, error) {
	if cfg.Mode != ModeSMTPRelay {
		return Result{}, fmt.Errorf("bench: unknown SMTP mode %q", cfg.Mode)
	}
	if cfg.Miss != 0 {
		return Result{}, fmt.Errorf("bench: --miss does not apply to %s", cfg.Mode)
	}
	size := cfg.MessageBytes
	if size == 0 {
		size = 10 << 10
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	body := smtpMessage(size)
	type conn struct {
		nc net.Conn
		c  *smtp.Client
	}
	dial := func(ctx context.Context) (*conn, error) {
		d := net.Dialer{Timeout: timeout}
		nc, err := d.DialContext(ctx, "tcp", cfg.Addr)
		if err != nil {
			return nil, err
		}
		nc.SetDeadline(time.Now().Add(timeout))
		c := smtp.NewClient(nc)
		if err := c.Hello("bench.example"); err != nil {
			c.Close()
			return nil, fmt.Errorf("EHLO: %w", err)
		}
		return &conn{nc, c}, nil
	}
	return runPersistent(ctx, cfg, dial, func(c *conn, i int, _ bool) error {
		c.nc.SetDeadline(time.Now().Add(timeout))
		return smtpTransaction(c.c, Login(i), body)
	}, func(c *conn) { c.c.Close() })
}

// smtpTransaction sends one message to rcpt; go-smtp's client returns an
// error for any reply but the 2xx each step expects, and for a code other
// than 250 it is checked here.
func smtpTransaction(c *smtp.Client, rcpt string, body []byte) error {
	if err := c.Mail("bench@example.com", nil); err != nil {
		return fmt.Errorf("MAIL: %w", err)
	}
	if err := c.Rcpt(rcpt, nil); err != nil {
		return fmt.Errorf("RCPT: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write(body); err != nil {
		w.Close()
		return fmt.Errorf("DATA: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("end of DATA: %w", err)
	}
	if err := c.Reset(); err != nil {
		return fmt.Errorf("RSET: %w", err)
	}
	return nil
}

// smtpMessage is a message of about size bytes: headers and lines of text.
func smtpMessage(size int) []byte {
	var b bytes.Buffer
	b.WriteString("From: bench@example.com\r\nTo: bench@example.com\r\nSubject: bench\r\n\r\n")
	line := "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789\r\n"
	for b.Len()+len(line) <= size {
		b.WriteString(line)
	}
	return b.Bytes()
}
