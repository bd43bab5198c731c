package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// Login modes of RunLogins: each "request" is a whole session — connect,
// read the greeting, log in as a user of the population, log out — and
// every answer is checked.
const (
	ModeIMAPLogin = "imap-login"
	ModePOP3Login = "pop3-login"
)

// RunLogins runs cfg.Conns concurrent clients, each opening sessions one
// after another until cfg.Duration or cfg.Count is reached, against an IMAP
// or POP3 server (a proxy, or a backend directly) at cfg.Addr. Users are
// drawn from [First, First+Users); for POP3, which locks the maildrop for a
// session, each connection draws from users of its own (exclusiveUsers).
// Miss is the fraction of logins with a wrong password, which must be
// refused.
func RunLogins(ctx context.Context, cfg Config) (Result, error) {
	if cfg.Mode != ModeIMAPLogin && cfg.Mode != ModePOP3Login {
		return Result{}, fmt.Errorf("bench: unknown login mode %q", cfg.Mode)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second // session's own deadline needs it now
	}
	// The closed loop of the persistent modes, with nothing kept between
	// requests: each request is a whole session of its own.
	none := func(context.Context) (struct{}, error) { return struct{}{}, nil }
	return runPersistent(ctx, cfg, none, func(_ struct{}, i int, miss bool) error {
		return session(ctx, cfg, i, miss)
	}, func(struct{}) {})
}

// session runs one login session for user i and checks every answer.
func session(ctx context.Context, cfg Config, i int, miss bool) error {
	d := net.Dialer{Timeout: cfg.Timeout}
	c, err := d.DialContext(ctx, "tcp", cfg.Addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(cfg.Timeout))
	s := &lineConn{c: c, r: bufio.NewReaderSize(c, 4096)}
	pass := Password(i)
	if miss {
		pass = "wrong-" + pass
	}
	if cfg.Mode == ModeIMAPLogin {
		return imapSession(s, Login(i), pass, miss)
	}
	return pop3Session(s, Login(i), pass, miss)
}

type lineConn struct {
	c net.Conn
	r *bufio.Reader
}

func (s *lineConn) send(line string) error {
	_, err := s.c.Write([]byte(line + "\r\n"))
	return err
}

func (s *lineConn) line() (string, error) {
	l, err := s.r.ReadString('\n')
	return strings.TrimRight(l, "\r\n"), err
}

// untilTagged reads lines until the one that starts with tag and returns it.
func (s *lineConn) untilTagged(tag string) (string, error) {
	for {
		l, err := s.line()
		if err != nil {
			return l, err
		}
		if strings.HasPrefix(l, tag+" ") {
			return l, nil
		}
	}
}

func imapSession(s *lineConn, user, pass string, miss bool) error {
	if l, err := s.line(); err != nil || !strings.HasPrefix(l, "* OK") {
		return fmt.Errorf("greeting %q: %v", l, err)
	}
	if err := s.send(`a LOGIN "` + user + `" "` + pass + `"`); err != nil {
		return err
	}
	l, err := s.untilTagged("a")
	if err != nil {
		return fmt.Errorf("login: %v", err)
	}
	switch {
	case miss && !strings.HasPrefix(l, "a NO"):
		return fmt.Errorf("wrong password answered %q", l)
	case miss:
		return nil
	case !strings.HasPrefix(l, "a OK"):
		return fmt.Errorf("login answered %q", l)
	}
	if err := s.send("b LOGOUT"); err != nil {
		return err
	}
	if l, err := s.untilTagged("b"); err != nil || !strings.HasPrefix(l, "b OK") {
		return fmt.Errorf("logout answered %q: %v", l, err)
	}
	return nil
}

func pop3Session(s *lineConn, user, pass string, miss bool) error {
	if l, err := s.line(); err != nil || !strings.HasPrefix(l, "+OK") {
		return fmt.Errorf("greeting %q: %v", l, err)
	}
	for _, step := range []string{"USER " + user, "PASS " + pass} {
		if err := s.send(step); err != nil {
			return err
		}
		l, err := s.line()
		if err != nil {
			return fmt.Errorf("%s: %v", strings.Fields(step)[0], err)
		}
		switch {
		case miss && step[0] == 'P' && strings.HasPrefix(l, "-ERR"):
			return nil
		case !strings.HasPrefix(l, "+OK"):
			return fmt.Errorf("%s answered %q", strings.Fields(step)[0], l)
		}
	}
	if miss {
		return errors.New("wrong password accepted")
	}
	if err := s.send("QUIT"); err != nil {
		return err
	}
	if l, err := s.line(); err != nil || !strings.HasPrefix(l, "+OK") {
		return fmt.Errorf("QUIT answered %q: %v", l, err)
	}
	return nil
}
