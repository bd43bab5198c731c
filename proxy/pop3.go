package proxy

// POP3 (RFC 1939) before login, with CAPA (RFC 2449), STLS (RFC 2595) and
// AUTH PLAIN / LOGIN (RFC 5034, 4616). After a login the proxy replays it
// on the user's backend and relays the session.
//
// Answers a client can see before login:
//
//	+OK <hostname> POP3 ready                       greeting
//	-ERR [AUTH] Authentication failed.              wrong password or unknown user
//	-ERR [AUTH] TLS required: use STLS first.       USER, PASS or AUTH without TLS under RequireTLS
//	-ERR [SYS/TEMP] Temporary failure, ...          directory outage, loop, no backend for the user
//	-ERR [SYS/TEMP] Backend unavailable, ...        backend refused, timed out or broke the dialogue
//	-ERR [SYS/TEMP] Backend login failed, ...       the backend said -ERR to a login the directory accepted
//	-ERR line too long                              a line over MaxLine; the connection is closed
//
// A connection is closed after Config.MaxLoginFailures failed logins and
// after pop3MaxBadCommands commands refused as unknown, out of place or
// malformed. Under RequireTLS without TLS, CAPA lists neither USER nor
// SASL: the client's only way in is STLS.

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/tohost/tohost/protocol/saslserver"
)

func init() { handlers[POP3] = (*Proxy).pop3 }

// pop3MaxBadCommands is how many refused commands a client may send
// before login; the next one closes the connection (Dovecot's pop3-login
// has such a limit too).
const pop3MaxBadCommands = 10

// pop3MaxCapaLines bounds a backend's CAPA answer.
const pop3MaxCapaLines = 100

// Replies of the login phase.
const (
	pop3ReplyAuthFailed  = "-ERR [AUTH] Authentication failed.\r\n"
	pop3ReplyTLSRequired = "-ERR [AUTH] TLS required: use STLS first.\r\n"
	pop3ReplyTemp        = "-ERR [SYS/TEMP] Temporary failure, try again later.\r\n"
	pop3ReplyBackendDown = "-ERR [SYS/TEMP] Backend unavailable, try again later.\r\n"
	pop3ReplyBackendFail = "-ERR [SYS/TEMP] Backend login failed, try again later.\r\n"
	pop3ReplyTooLong     = "-ERR line too long\r\n"
	pop3ReplyCancelled   = "-ERR Authentication cancelled.\r\n"
	pop3ReplyBadBase64   = "-ERR Invalid base64 data.\r\n"
	pop3ReplyBadSASL     = "-ERR Invalid authentication data.\r\n"
	pop3ReplyTooManyBad  = "-ERR Too many invalid commands.\r\n"
)

// pop3 serves one POP3 client: the login phase, then the relay.
func (p *Proxy) pop3(ctx context.Context, s *session) {
	if s.write("+OK "+p.cfg.Hostname+" POP3 ready\r\n") != nil {
		return
	}
	var (
		user    string // from USER, until PASS
		hasUser bool
		bad     int
	)
	for {
		line, err := s.readLine()
		if err != nil {
			if errors.Is(err, errLineTooLong) {
				s.write(pop3ReplyTooLong)
			}
			return
		}
		cmd, arg := pop3SplitCommand(line)
		reply := "" // a refusal counted as a bad command
		switch cmd {
		case "CAPA":
			if s.write(p.pop3Capa(s)) != nil {
				return
			}
		case "STLS":
			switch {
			case s.isTLS():
				reply = "-ERR Already using TLS.\r\n"
			case p.cfg.TLS == nil:
				reply = "-ERR STLS not available.\r\n"
			default:
				if s.write("+OK Begin TLS negotiation.\r\n") != nil {
					return
				}
				if err := s.startTLS(); err != nil {
					s.log.Info("STLS failed", "err", err)
					return
				}
				user, hasUser = "", false // RFC 2595: forget what came before
			}
		case "USER":
			switch {
			case p.pop3NeedsTLS(s):
				reply = pop3ReplyTLSRequired
			case !saslserver.ValidCredential(arg):
				reply = "-ERR Invalid user name.\r\n"
			default:
				user, hasUser = arg, true
				if s.write("+OK\r\n") != nil {
					return
				}
			}
		case "PASS":
			switch {
			case p.pop3NeedsTLS(s):
				reply = pop3ReplyTLSRequired
			case !hasUser:
				reply = "-ERR No user name given: USER first.\r\n"
			default:
				u := user
				user, hasUser = "", false
				if !saslserver.ValidCredential(arg) {
					reply = "-ERR Invalid password.\r\n"
					break
				}
				if p.pop3Login(ctx, s, u, arg) {
					return
				}
			}
		case "AUTH":
			user, hasUser = "", false
			if arg == "" { // list the mechanisms, as servers before RFC 5034 did
				if s.write("+OK\r\nPLAIN\r\nLOGIN\r\n.\r\n") != nil {
					return
				}
				break
			}
			if p.pop3NeedsTLS(s) {
				reply = pop3ReplyTLSRequired
				break
			}
			u, pass, r, err := s.pop3SASL(arg)
			if err != nil {
				if errors.Is(err, errLineTooLong) {
					s.write(pop3ReplyTooLong)
				}
				return
			}
			if r != "" {
				reply = r
				break
			}
			if p.pop3Login(ctx, s, u, pass) {
				return
			}
		case "QUIT":
			s.write("+OK Bye.\r\n")
			return
		case "":
			reply = "-ERR Empty command.\r\n"
		default:
			reply = "-ERR Unknown command or not logged in.\r\n"
		}
		if reply == "" {
			continue
		}
		if reply == pop3ReplyTLSRequired {
			p.cfg.Metrics.login(POP3, outcomeRefused)
		}
		if bad++; bad >= pop3MaxBadCommands {
			s.write(pop3ReplyTooManyBad)
			return
		}
		if s.write(reply) != nil {
			return
		}
	}
}

// pop3NeedsTLS reports whether a login must wait for STLS.
func (p *Proxy) pop3NeedsTLS(s *session) bool { return p.cfg.RequireTLS && !s.isTLS() }

// pop3Capa is the proxy's CAPA answer before login.
func (p *Proxy) pop3Capa(s *session) string {
	var b strings.Builder
	b.WriteString("+OK Capability list follows\r\n")
	if !p.pop3NeedsTLS(s) {
		b.WriteString("USER\r\nSASL PLAIN LOGIN\r\n")
	}
	if p.cfg.TLS != nil && !s.isTLS() {
		b.WriteString("STLS\r\n")
	}
	b.WriteString("RESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n.\r\n")
	return b.String()
}

// pop3SplitCommand splits a command line into its keyword, upper-cased,
// and the rest of the line (arguments are separated by one space; the
// rest is kept whole, so a password may hold spaces).
func pop3SplitCommand(line string) (cmd, arg string) {
	cmd, arg, _ = strings.Cut(line, " ")
	return strings.ToUpper(cmd), arg
}

// pop3SASL runs the client side of AUTH <arg>: the mechanism and an
// optional initial response. It returns the user and password, or a
// refusal to send the client (a non-empty reply), or an error when the
// connection is over.
func (s *session) pop3SASL(arg string) (user, pass, reply string, err error) {
	mech, ir, hasIR := strings.Cut(arg, " ")
	user, pass, err = saslserver.Run(mech, ir, hasIR, func(challenge string) (string, error) {
		if err := s.write("+ " + challenge + "\r\n"); err != nil {
			return "", err
		}
		return s.readLine()
	})
	if r := pop3SASLRefusal(err); r != "" {
		return "", "", r, nil
	}
	return user, pass, "", err
}

// pop3SASLRefusal is the reply to an exchange that went wrong on the
// client's side, or "".
func pop3SASLRefusal(err error) string {
	switch {
	case errors.Is(err, saslserver.ErrCancelled):
		return pop3ReplyCancelled
	case errors.Is(err, saslserver.ErrBadBase64):
		return pop3ReplyBadBase64
	case errors.Is(err, saslserver.ErrBadResponse), errors.Is(err, saslserver.ErrAuthzid):
		return pop3ReplyBadSASL
	case errors.Is(err, saslserver.ErrNoSuchMechanism):
		return "-ERR Unsupported authentication mechanism.\r\n"
	}
	return ""
}

// pop3Login checks a login with the directory and, when it is right,
// replays it on the backend and relays the session. It reports whether
// the connection is over (relayed, or closed after a failure too many);
// otherwise the client may try again.
func (p *Proxy) pop3Login(ctx context.Context, s *session, user, pass string) (done bool) {
	route, err := s.login(ctx, user, pass)
	switch {
	case errors.Is(err, ErrBadCredentials):
		if s.write(pop3ReplyAuthFailed) != nil {
			return true
		}
		return s.tooManyFailures()
	case err != nil:
		return s.write(pop3ReplyTemp) != nil
	}
	start := time.Now()
	bc, br, ok, err := p.pop3Backend(ctx, s, &route, user, pass)
	if err != nil {
		p.cfg.Metrics.login(POP3, outcomeUnavailable)
		s.log.Warn("login: backend", "user", user, "backend", route.Addr, "err", err)
		reply := pop3ReplyBackendDown
		if errors.Is(err, errPOP3BackendRefused) {
			reply = pop3ReplyBackendFail
		}
		return s.write(reply) != nil
	}
	p.cfg.Metrics.backendTook(time.Since(start))
	p.cfg.Metrics.login(POP3, outcomeOK)
	s.log.Info("login", "user", user, "backend", route.Addr)
	if s.write(ok+"\r\n") != nil {
		bc.Close()
		return true
	}
	s.relay(bc, br)
	return true
}

// errPOP3BackendRefused: the backend answered -ERR to the replayed login.
var errPOP3BackendRefused = errors.New("backend refused the login")

// pop3Backend connects to the user's backend and logs in there: the
// greeting, STLS when configured, XCLIENT with the client's address when
// configured (Dovecot's pop3-login reads ADDR and PORT), CAPA, then AUTH
// PLAIN with an initial response if the backend offers SASL PLAIN, else
// USER and PASS. It returns the connection, its reader (holding what the
// backend sent past the login) and the backend's +OK line for the login.
// Errors wrap ErrTemporary; a -ERR to the login wraps
// errPOP3BackendRefused as well.
func (p *Proxy) pop3Backend(ctx context.Context, s *session, rp *Route, user, pass string) (net.Conn, *bufio.Reader, string, error) {
	c, err := p.dialBackend(ctx, rp, s.c)
	if err != nil {
		return nil, nil, "", err
	}
	r := *rp
	fail := func(err error) (net.Conn, *bufio.Reader, string, error) {
		c.Close()
		p.cfg.Metrics.backendFailed()
		return nil, nil, "", fmt.Errorf("%w: backend %s: %w", ErrTemporary, r.Addr, err)
	}
	br := bufio.NewReader(c)
	// cmd sends a command (if any) and reads its one-line answer,
	// which must be +OK.
	cmd := func(what, line string) (string, error) {
		if line != "" {
			if _, err := c.Write([]byte(line)); err != nil {
				return "", fmt.Errorf("%s: %w", what, err)
			}
		}
		reply, err := pop3ReadReply(br)
		if err != nil {
			return "", fmt.Errorf("%s: %w", what, err)
		}
		if !pop3IsOK(reply) {
			return reply, fmt.Errorf("%s: %q", what, reply)
		}
		return reply, nil
	}
	if _, err := cmd("greeting", ""); err != nil {
		return fail(err)
	}
	if p.cfg.BackendTLS == BackendStartTLS {
		if _, err := cmd("STLS", "STLS\r\n"); err != nil {
			return fail(err)
		}
		if br.Buffered() > 0 {
			return fail(errors.New("data after STLS before the handshake"))
		}
		tc, err := p.startTLS(ctx, c, r) // counts and closes on failure
		if err != nil {
			return nil, nil, "", err
		}
		c = tc
		br.Reset(c)
	}
	if p.cfg.ForwardClientIP {
		line := fmt.Sprintf("XCLIENT ADDR=%s PORT=%d\r\n", s.ip, clientAddr(s.c).Port)
		if _, err := cmd("XCLIENT", line); err != nil {
			return fail(err)
		}
	}
	plain, err := pop3BackendHasPlain(c, br)
	if err != nil {
		return fail(err)
	}
	var ok string
	if plain {
		ir := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
		ok, err = cmd("AUTH PLAIN", "AUTH PLAIN "+ir+"\r\n")
	} else {
		if ok, err = cmd("USER", "USER "+user+"\r\n"); err == nil {
			ok, err = cmd("PASS", "PASS "+pass+"\r\n")
		}
	}
	if err != nil {
		if strings.HasPrefix(ok, "-ERR") {
			err = fmt.Errorf("%w: %w", errPOP3BackendRefused, err)
		}
		return fail(err)
	}
	return c, br, ok, nil
}

// pop3BackendHasPlain asks the backend's CAPA whether it offers SASL
// PLAIN. A backend without CAPA (-ERR) offers only USER and PASS.
func pop3BackendHasPlain(c net.Conn, br *bufio.Reader) (bool, error) {
	if _, err := c.Write([]byte("CAPA\r\n")); err != nil {
		return false, fmt.Errorf("CAPA: %w", err)
	}
	reply, err := pop3ReadReply(br)
	if err != nil {
		return false, fmt.Errorf("CAPA: %w", err)
	}
	if !pop3IsOK(reply) {
		return false, nil
	}
	plain := false
	for range pop3MaxCapaLines {
		line, err := pop3ReadReply(br)
		if err != nil {
			return false, fmt.Errorf("CAPA: %w", err)
		}
		if line == "." {
			return plain, nil
		}
		f := strings.Fields(strings.ToUpper(line))
		if len(f) > 1 && f[0] == "SASL" {
			for _, m := range f[1:] {
				plain = plain || m == "PLAIN"
			}
		}
	}
	return false, errors.New("CAPA: answer too long")
}

// pop3ReadReply reads one line from a backend, without its CR LF.
func pop3ReadReply(br *bufio.Reader) (string, error) {
	line, err := br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return "", errLineTooLong
	}
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(line), "\r\n"), nil
}

// pop3IsOK reports whether a reply line is positive.
func pop3IsOK(line string) bool {
	return line == "+OK" || strings.HasPrefix(line, "+OK ")
}
