package proxy

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"strings"
	"time"

	"github.com/tohost/tohost/internal/listen"
)

// The IMAP login phase (RFC 9051, RFC 3501): the proxy greets, answers
// CAPABILITY, NOOP, ID, STARTTLS and LOGOUT itself, takes LOGIN or
// AUTHENTICATE PLAIN, checks the password with the directory, replays the
// login on the user's backend (imapbackend.go) and relays the session.

func init() { handlers[IMAP] = (*Proxy).imap }

// closeWait is how long a connection being closed after a BYE is drained
// so that the BYE reaches the client.
const closeWait = 2 * time.Second

// imapCaps returns the proxy's capabilities for s's state.
func (p *Proxy) imapCaps(s *session) string {
	caps := "IMAP4rev1 SASL-IR LITERAL+ ID"
	if p.cfg.TLS != nil && !s.isTLS() {
		caps += " STARTTLS"
	}
	if p.cfg.RequireTLS && !s.isTLS() {
		caps += " LOGINDISABLED"
	} else {
		caps += " AUTH=PLAIN"
	}
	return caps
}

// imapClient is the client connection as the parser's source: literals
// get a continuation request when they are synchronising.
type imapClient struct{ s *session }

func (c imapClient) readLine() (string, error) { return c.s.readLine() }

func (c imapClient) readLiteral(n int, sync bool) ([]byte, error) {
	if sync {
		if err := c.s.write("+ Ready for literal data\r\n"); err != nil {
			return nil, err
		}
	}
	c.s.c.SetReadDeadline(time.Now().Add(c.s.p.cfg.LoginTimeout))
	b := make([]byte, n)
	_, err := io.ReadFull(c.s.r, b)
	return b, err
}

// imap serves one IMAP connection.
func (p *Proxy) imap(ctx context.Context, s *session) {
	if s.write("* OK [CAPABILITY "+p.imapCaps(s)+"] "+p.cfg.Hostname+" ready\r\n") != nil {
		return
	}
	deadline := time.Now().Add(p.cfg.LoginTimeout)
	refused := false // a synchronising literal was just refused
	for {
		if time.Now().After(deadline) {
			p.imapBye(s, "Login time is up")
			return
		}
		cmd, err := readIMAPCommand(imapClient{s})
		var syntax *imapSyntaxError
		var big *imapLiteralTooBig
		switch {
		case errors.As(err, &big):
			if s.write(big.tag+" BAD Literal too big\r\n") != nil {
				return
			}
			if !big.sync { // its data is on its way: no telling where it ends
				p.imapBye(s, "Literal too big")
				return
			}
			refused = true
			continue
		case errors.As(err, &syntax):
			if refused { // most likely the data of the literal just refused
				p.imapBye(s, "Invalid input")
				return
			}
			if s.write(syntax.tag+" BAD "+syntax.text+"\r\n") != nil {
				return
			}
			continue
		case errors.Is(err, errLineTooLong):
			p.imapBye(s, "Line too long")
			return
		case err != nil:
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				p.imapBye(s, "Autologout; idle for too long")
			}
			return
		}
		refused = false
		if !p.imapCommand(ctx, s, cmd) {
			return
		}
	}
}

// imapBye says goodbye and closes the connection so that the BYE gets
// through even if the client is still sending.
func (p *Proxy) imapBye(s *session, text string) {
	s.write("* BYE " + text + "\r\n")
	listen.CloseGracefully(s.c, closeWait)
}

// imapCommand runs one command of the login phase. It returns false when
// the connection is over: logged out, closed, or relayed to the end.
func (p *Proxy) imapCommand(ctx context.Context, s *session, cmd *imapCommand) bool {
	tag := cmd.tag
	reply := func(text string) bool { return s.write(tag+" "+text+"\r\n") == nil }
	switch cmd.name {
	case "CAPABILITY":
		if len(cmd.args) != 0 {
			return reply("BAD CAPABILITY takes no arguments")
		}
		return s.write("* CAPABILITY "+p.imapCaps(s)+"\r\n") == nil && reply("OK CAPABILITY completed")
	case "NOOP":
		if len(cmd.args) != 0 {
			return reply("BAD NOOP takes no arguments")
		}
		return reply("OK NOOP completed")
	case "LOGOUT":
		if len(cmd.args) != 0 {
			return reply("BAD LOGOUT takes no arguments")
		}
		if s.write("* BYE Logging out\r\n") == nil && reply("OK LOGOUT completed") {
			listen.CloseGracefully(s.c, closeWait)
		}
		return false
	case "ID":
		if len(cmd.args) != 1 || !(cmd.args[0].kind == argList || isNIL(cmd.args[0])) {
			return reply("BAD Invalid ID arguments")
		}
		if kv := cmd.args[0].list; len(kv) > 0 {
			s.log.Debug("client ID", "id", idString(kv))
		}
		return s.write(`* ID ("name" "tohost")`+"\r\n") == nil && reply("OK ID completed")
	case "STARTTLS":
		switch {
		case len(cmd.args) != 0:
			return reply("BAD STARTTLS takes no arguments")
		case s.isTLS():
			return reply("BAD TLS is already active")
		case p.cfg.TLS == nil:
			return reply("BAD STARTTLS is not available")
		}
		if !reply("OK Begin TLS negotiation now") {
			return false
		}
		if err := s.startTLS(); err != nil {
			s.log.Info("STARTTLS failed", "err", err)
			return false
		}
		return true
	case "LOGIN":
		if len(cmd.args) != 2 {
			return reply("BAD LOGIN takes a user name and a password")
		}
		user, ok1 := cmd.args[0].astring()
		pass, ok2 := cmd.args[1].astring()
		if !ok1 || !ok2 {
			return reply("BAD Invalid LOGIN arguments")
		}
		if p.cfg.RequireTLS && !s.isTLS() {
			p.cfg.Metrics.login(IMAP, outcomeRefused)
			return reply("NO [PRIVACYREQUIRED] Use STARTTLS before logging in")
		}
		return p.imapLogin(ctx, s, tag, user, pass)
	case "AUTHENTICATE":
		return p.imapAuthenticate(ctx, s, cmd)
	}
	return reply("BAD Please log in first")
}

// imapAuthenticate runs AUTHENTICATE PLAIN (RFC 4616), with the initial
// response on the command line (SASL-IR, RFC 4959) or after a
// continuation request.
func (p *Proxy) imapAuthenticate(ctx context.Context, s *session, cmd *imapCommand) bool {
	tag := cmd.tag
	reply := func(text string) bool { return s.write(tag+" "+text+"\r\n") == nil }
	if len(cmd.args) < 1 || len(cmd.args) > 2 || cmd.args[0].kind != argAtom ||
		len(cmd.args) == 2 && cmd.args[1].kind != argAtom {
		return reply("BAD Invalid AUTHENTICATE arguments")
	}
	if !strings.EqualFold(cmd.args[0].s, "PLAIN") {
		return reply("NO [CANNOT] Unsupported authentication mechanism")
	}
	if p.cfg.RequireTLS && !s.isTLS() {
		p.cfg.Metrics.login(IMAP, outcomeRefused)
		return reply("NO [PRIVACYREQUIRED] Use STARTTLS before logging in")
	}
	var resp string
	if len(cmd.args) == 2 {
		resp = cmd.args[1].s
	} else {
		if s.write("+ \r\n") != nil {
			return false
		}
		line, err := s.readLine()
		if errors.Is(err, errLineTooLong) {
			p.imapBye(s, "Line too long")
			return false
		}
		if err != nil {
			return false
		}
		resp = line
	}
	if resp == "*" {
		return reply("BAD AUTHENTICATE cancelled")
	}
	user, pass, err := decodePlain(resp)
	if errors.Is(err, errAuthzid) {
		return reply("NO [AUTHORIZATIONFAILED] " + err.Error())
	}
	if err != nil {
		return reply("BAD " + err.Error())
	}
	return p.imapLogin(ctx, s, tag, user, pass)
}

// errAuthzid: a PLAIN response asking to act as another user.
var errAuthzid = errors.New("Authorization identity must be empty or the user's own")

// decodePlain decodes a SASL PLAIN response ("=" is an empty one): the
// authorization identity must be empty or the user's own.
func decodePlain(resp string) (user, pass string, err error) {
	var b []byte
	if resp != "=" {
		b, err = base64.StdEncoding.DecodeString(resp)
		if err != nil {
			return "", "", errors.New("Invalid base64 data")
		}
	}
	parts := strings.Split(string(b), "\x00")
	if len(parts) != 3 || parts[1] == "" {
		return "", "", errors.New("Invalid PLAIN response")
	}
	if parts[0] != "" && parts[0] != parts[1] {
		return "", "", errAuthzid
	}
	return parts[1], parts[2], nil
}

// imapLogin checks the password with the directory and, when it is right,
// hands the session over to the user's backend. It returns false when the
// connection is over.
func (p *Proxy) imapLogin(ctx context.Context, s *session, tag, user, pass string) bool {
	reply := func(text string) bool { return s.write(tag+" "+text+"\r\n") == nil }
	route, err := s.login(ctx, user, pass)
	switch {
	case errors.Is(err, ErrBadCredentials):
		if !reply("NO [AUTHENTICATIONFAILED] Authentication failed.") {
			return false
		}
		if s.tooManyFailures() {
			p.imapBye(s, "Too many failures")
			return false
		}
		return true
	case err != nil:
		return reply("NO [UNAVAILABLE] Temporary authentication failure, try again later")
	}
	start := time.Now()
	b, err := p.imapBackendLogin(ctx, s, &route, user, pass)
	if err != nil {
		p.cfg.Metrics.login(IMAP, outcomeUnavailable)
		s.log.Warn("backend login failed", "user", user, "backend", route.Addr, "err", err)
		return reply("NO [UNAVAILABLE] Backend unavailable, try again later")
	}
	p.cfg.Metrics.backendTook(time.Since(start))
	p.cfg.Metrics.login(IMAP, outcomeOK)
	s.log.Info("login", "user", user, "backend", route.Addr)
	// The backend's answer, with the client's tag.
	out := strings.Join(b.untagged, "") + tag + b.ok
	if s.write(out) != nil {
		b.conn.Close()
		return false
	}
	s.relay(b.conn, b.r)
	return false
}

func isNIL(a imapArg) bool { return a.kind == argAtom && strings.EqualFold(a.s, "NIL") }

// idString renders ID parameters for the log.
func idString(kv []imapArg) string {
	var b strings.Builder
	for i, a := range kv {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(a.s)
	}
	return b.String()
}
