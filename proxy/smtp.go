package proxy

// SMTP on the proxy: submission (clients that log in and send mail,
// relayed to their own backend as themselves) and incoming mail (MTAs
// delivering to our users, routed per recipient and delivered over LMTP
// or SMTP). Both sides speak go-smtp: the proxy serves each client
// connection with a go-smtp Server of its own (smtpServe) and talks to the
// backend with a go-smtp Client (smtpbackend.go).
//
// Nothing is queued on the proxy: every reply a client gets for MAIL,
// RCPT and DATA is the backend's reply (or a temporary failure when the
// backend cannot be reached), so a 250 always means the backend took the
// message.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/tohost/tohost/protocol/authent"
	"github.com/tohost/tohost/protocol/saslserver"
)

func init() {
	handlers[Submission] = (*Proxy).submission
	handlers[SMTP] = (*Proxy).smtp
}

// SMTPOptions are the settings of the SMTP protocols (Config.SMTP).
type SMTPOptions struct {
	// BackendSMTP delivers incoming mail to the backends over SMTP; the
	// default is LMTP (RFC 2033), on Config.Ports[SMTP] (24 by default).
	BackendSMTP bool
	// MaxMessageBytes is the message size the proxy announces (SIZE) and
	// enforces; a submission backend that announces a smaller SIZE lowers
	// it for its users. 0: 64 MiB.
	MaxMessageBytes int64
	// MaxRecipients per transaction; more get 452 4.5.3. 0: 100.
	MaxRecipients int
	// IdleTimeout is how long the proxy waits for a client once it is
	// logged in (submission) or at any time (incoming mail), and for a
	// backend to take the next piece of a message. 0: 5 minutes (RFC 5321).
	IdleTimeout time.Duration
}

// withDefaults fills in the zero fields.
func (o SMTPOptions) withDefaults() SMTPOptions {
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = 64 << 20
	}
	if o.MaxRecipients <= 0 {
		o.MaxRecipients = 100
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 5 * time.Minute
	}
	return o
}

func (p *Proxy) smtpOptions() SMTPOptions { return p.cfg.SMTP }

// Replies of the proxy's own (the backend's replies pass through as they are).
var (
	smtpErrAuthFirst   = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	smtpErrTLSFirst    = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Must issue a STARTTLS command first"}
	smtpErrBadAuth     = &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication credentials invalid"}
	smtpErrAuthTemp    = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Temporary authentication failure, try again later"}
	smtpErrNoUser      = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user here"}
	smtpErrDirectory   = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Cannot look up the recipient now, try again later"}
	smtpErrNoRoute     = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Cannot route the recipient now, try again later"}
	smtpErrOtherHost   = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 5, 3}, Message: "Recipient is on another server: send it in another transaction"}
	smtpErrBackendDown = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 1}, Message: "Mail server unavailable, try again later"}
	smtpErrBackendLost = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "Connection to the mail server lost, try again later"}
	smtpErrClientLost  = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "Message not received completely"}
)

// smtpConn is what one client connection's sessions share. go-smtp makes
// a new Session at the first EHLO and again after STARTTLS; the login
// failures are counted on s, the connection.
type smtpConn struct {
	p    *Proxy
	s    *session
	ctx  context.Context
	opt  SMTPOptions
	srv  *smtp.Server
	conn *smtp.Conn // set by the first NewSession, the same for all
}

func (c *smtpConn) isTLS() bool {
	_, ok := c.conn.TLSConnectionState()
	return ok
}

// closeWith writes a last reply and closes the connection (a 421: RFC 5321
// lets a server say 421 to any command and close). go-smtp has no such
// answer of its own, so the reply is written here, before go-smtp writes
// the error it is handed into a closed connection and ends the session.
func (c *smtpConn) closeWith(code int, ec smtp.EnhancedCode, msg string) error {
	nc := c.conn.Conn()
	nc.SetWriteDeadline(time.Now().Add(c.p.cfg.LoginTimeout))
	fmt.Fprintf(nc, "%d %d.%d.%d %s\r\n", code, ec[0], ec[1], ec[2], msg)
	c.conn.Close()
	return &smtp.SMTPError{Code: code, EnhancedCode: ec, Message: msg}
}

// smtpServe serves the client connection s with a go-smtp server whose
// sessions newSession makes, and returns when the connection is closed.
//
// go-smtp serves listeners only: smtpOneListener hands it this one
// connection. Once the server asks the listener for a second connection
// (so it is counting the first), Shutdown closes the listener and waits
// for the connection to end. The core's session tracking and drain apply
// as to every protocol: at the end of the drain the core closes s.c, and
// go-smtp's session ends with it.
func (p *Proxy) smtpServe(ctx context.Context, s *session, newSession func(*smtpConn) smtp.Session) {
	opt := p.smtpOptions()
	c := &smtpConn{p: p, s: s, ctx: ctx, opt: opt}
	srv := smtp.NewServer(smtp.BackendFunc(func(sc *smtp.Conn) (smtp.Session, error) {
		c.conn = sc
		return newSession(c), nil
	}))
	c.srv = srv
	srv.Domain = p.cfg.Hostname
	srv.TLSConfig = p.cfg.TLS    // STARTTLS, announced unless the port is implicit TLS
	srv.AllowInsecureAuth = true // the sessions refuse it themselves under RequireTLS, with 530
	srv.MaxMessageBytes = opt.MaxMessageBytes
	srv.MaxRecipients = opt.MaxRecipients
	srv.ReadTimeout = p.cfg.LoginTimeout // submission: until the login (then IdleTimeout)
	if s.proto == SMTP {
		srv.ReadTimeout = opt.IdleTimeout
	}
	srv.WriteTimeout = opt.IdleTimeout
	srv.ErrorLog = smtpLogger{s.log}

	ln := &smtpOneListener{c: s.c, waiting: make(chan struct{}), closed: make(chan struct{})}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case <-ln.waiting:
	case err := <-served:
		s.log.Error("smtp: serve", "err", err)
		return
	}
	srv.Shutdown(context.WithoutCancel(ctx)) // returns once the connection has ended
	<-served
}

// smtpOneListener is a listener of one connection, for go-smtp's Serve.
type smtpOneListener struct {
	mu        sync.Mutex
	c         net.Conn
	waitOnce  sync.Once
	waiting   chan struct{} // closed when Accept is asked for a second connection
	closeOnce sync.Once
	closed    chan struct{}
}

func (l *smtpOneListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	c := l.c
	l.c = nil
	l.mu.Unlock()
	if c != nil {
		return c, nil
	}
	l.waitOnce.Do(func() { close(l.waiting) })
	<-l.closed
	return nil, net.ErrClosed
}

func (l *smtpOneListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

func (l *smtpOneListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4zero} }

// smtpLogger takes go-smtp's log lines (connection errors) at debug level.
type smtpLogger struct{ log *slog.Logger }

func (l smtpLogger) Printf(format string, v ...any) {
	l.log.Debug("smtp: " + fmt.Sprintf(format, v...))
}
func (l smtpLogger) Println(v ...any) { l.log.Debug("smtp: " + fmt.Sprint(v...)) }

// smtpReply is the reply to a client for err from the backend: the
// backend's own reply when it gave one; when the connection failed, the
// backend b is closed and the reply is a temporary failure. *dropped
// is set then.
func smtpReply(err error, b **smtpBackend) error {
	if err == nil {
		return nil
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se
	}
	if *b != nil {
		(*b).log.Warn("smtp: backend connection failed", "backend", (*b).route.Addr, "err", err)
		(*b).Close()
		*b = nil
	}
	return smtpErrBackendLost
}

// ---- submission ----

func (p *Proxy) submission(ctx context.Context, s *session) {
	p.smtpServe(ctx, s, func(c *smtpConn) smtp.Session { return &smtpSubmission{c: c} })
}

// smtpSubmission is a submission session: AUTH through the directory,
// then every transaction relayed to the user's backend, logged in there
// as the user.
type smtpSubmission struct {
	c *smtpConn
	// mu: go-smtp runs Data in a goroutine of its own for BDAT, while the
	// connection's goroutine may reset or log out the session between
	// chunks (it ends the chunk stream first, so Data returns).
	mu         sync.Mutex
	user, pass string
	route      Route
	authed     bool
	be         *smtpBackend // nil before AUTH and after a lost connection
	inTx       bool         // a MAIL is open on be
}

var _ smtp.AuthSession = (*smtpSubmission)(nil)

func (m *smtpSubmission) AuthMechanisms() []string {
	if m.c.p.cfg.RequireTLS && !m.c.isTLS() {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

func (m *smtpSubmission) Auth(mech string) (sasl.Server, error) {
	if m.c.p.cfg.RequireTLS && !m.c.isTLS() {
		m.c.p.cfg.Metrics.login(Submission, outcomeRefused)
		return nil, smtpErrTLSFirst
	}
	if srv := saslserver.NewServer(mech, m.authenticate, smtpErrBadAuth); srv != nil {
		return srv, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// authenticate checks the password with the directory (penalty, metrics
// and failure count in session.login), then logs in on the backend with
// the same credentials, so that AUTH succeeds only when the mail can go.
func (m *smtpSubmission) authenticate(user, pass string) error {
	c := m.c
	s := c.s
	r, err := s.login(c.ctx, user, pass)
	if errors.Is(err, ErrBadCredentials) {
		if s.tooManyFailures() {
			s.log.Info("smtp: too many authentication failures; closing")
			return c.closeWith(421, smtp.EnhancedCode{4, 7, 0}, "Too many authentication failures, closing connection")
		}
		return smtpErrBadAuth
	}
	if err != nil {
		return smtpErrAuthTemp
	}
	start := time.Now()
	be, err := c.dialBackend(r, false, user, pass)
	if err != nil {
		c.p.cfg.Metrics.login(Submission, outcomeUnavailable)
		s.log.Warn("smtp: backend login failed", "user", user, "backend", r.Addr, "err", err)
		return smtpErrAuthTemp
	}
	c.p.cfg.Metrics.backendTook(time.Since(start))
	c.p.cfg.Metrics.login(Submission, outcomeOK)
	s.log.Info("smtp: logged in", "user", user, "backend", r.Addr)
	m.mu.Lock()
	if m.be != nil {
		m.be.Close()
	}
	m.user, m.pass, m.route, m.authed, m.be = user, pass, r, true, be
	m.mu.Unlock()
	// The backend's size limit is the user's (go-smtp refuses MAIL SIZE=
	// and DATA over it).
	if n, ok := be.MaxMessageSize(); ok && n > 0 && int64(n) < c.srv.MaxMessageBytes {
		c.srv.MaxMessageBytes = int64(n)
	}
	c.srv.ReadTimeout = c.opt.IdleTimeout
	return nil
}

func (m *smtpSubmission) Mail(from string, opts *smtp.MailOptions) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.authed {
		return smtpErrAuthFirst
	}
	if m.be == nil { // the connection was lost: a new one for this transaction
		be, err := m.c.dialBackend(m.route, false, m.user, m.pass)
		if err != nil {
			m.c.s.log.Warn("smtp: backend unavailable", "user", m.user, "backend", m.route.Addr, "err", err)
			return smtpErrBackendDown
		}
		m.be = be
	}
	if err := smtpReply(m.be.Mail(from, opts), &m.be); err != nil {
		return err
	}
	m.inTx = true
	return nil
}

func (m *smtpSubmission) Rcpt(to string, opts *smtp.RcptOptions) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.authed {
		return smtpErrAuthFirst
	}
	if m.be == nil {
		return smtpErrBackendLost
	}
	return smtpReply(m.be.Rcpt(to, opts), &m.be)
}

func (m *smtpSubmission) Data(r io.Reader) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.be == nil {
		return smtpErrBackendLost
	}
	m.inTx = false
	w, err := m.c.sendData(&m.be, r)
	if err != nil {
		return err
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return smtpReply(err, &m.be)
	}
	return smtpOK(resp.StatusText)
}

// smtpOK passes the backend's 250 to DATA on (its text names the queue
// id, which users quote when asking where their mail went). go-smtp
// writes a Data error as it is, so a 250 is returned as one.
func smtpOK(text string) error {
	code, msg, ok := strings.Cut(text, " ")
	var ec smtp.EnhancedCode
	if _, err := fmt.Sscanf(code, "%d.%d.%d", &ec[0], &ec[1], &ec[2]); !ok || err != nil || ec[0] != 2 {
		return nil // go-smtp's own 250
	}
	return &smtp.SMTPError{Code: 250, EnhancedCode: ec, Message: msg}
}

func (m *smtpSubmission) Reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.inTx && m.be != nil {
		smtpReply(m.be.Reset(), &m.be)
	}
	m.inTx = false
}

func (m *smtpSubmission) Logout() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.be != nil {
		m.be.Close()
		m.be = nil
	}
	return nil
}

// ---- incoming mail ----

func (p *Proxy) smtp(ctx context.Context, s *session) {
	p.smtpServe(ctx, s, func(c *smtpConn) smtp.Session { return &smtpIncoming{c: c} })
}

// smtpIncoming is an MTA's session: each RCPT is looked up in the
// directory and routed; the first recipient the backend takes fixes the
// transaction's backend, and a recipient of another backend is told to
// come back in another transaction (452 4.5.3, RFC 5321 4.5.3.1.10), which
// every MTA does. MAIL and each RCPT go to the backend as they come, so
// the backend's verdict on each recipient is the client's reply.
type smtpIncoming struct {
	c        *smtpConn
	mu       sync.Mutex // as smtpSubmission's
	from     string
	mailOpts *smtp.MailOptions
	be       *smtpBackend // kept from one transaction to the next while the route is the same
	mailed   bool         // MAIL sent to be in this transaction
	rcpts    []string     // recipients be took in this transaction
	broken   bool         // be was lost after taking recipients: the transaction cannot go on
}

func (in *smtpIncoming) Mail(from string, opts *smtp.MailOptions) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.reset()
	in.from = from
	o := *opts
	in.mailOpts = &o
	return nil
}

func (in *smtpIncoming) Rcpt(to string, opts *smtp.RcptOptions) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	c := in.c
	p, s := c.p, c.s
	if in.broken {
		return smtpErrBackendLost
	}
	start := time.Now()
	u, err := p.cfg.Directory.Lookup(c.ctx, to)
	p.cfg.Metrics.directoryTook(time.Since(start))
	switch {
	case errors.Is(err, authent.ErrNotFound):
		s.log.Info("smtp: unknown recipient", "rcpt", to)
		return smtpErrNoUser
	case err != nil:
		// Anything else may pass: the MTA keeps the message and retries.
		s.log.Warn("smtp: directory unavailable", "rcpt", to, "err", err)
		return smtpErrDirectory
	}
	r, err := p.route(u, SMTP)
	if err != nil {
		s.log.Error("smtp: no route", "rcpt", to, "err", err)
		return smtpErrNoRoute
	}
	// Default backends sharing the mail serve one another's users: a
	// transaction stays on the one it is on.
	if len(in.rcpts) > 0 && !r.serves(in.be.route.Addr) {
		return smtpErrOtherHost
	}
	if in.be != nil && !r.serves(in.be.route.Addr) { // nobody taken on it yet: move
		in.be.Close()
		in.be, in.mailed = nil, false
	}
	if in.be == nil {
		be, err := c.dialBackend(r, !c.opt.BackendSMTP, "", "")
		if err != nil {
			s.log.Warn("smtp: backend unavailable", "rcpt", to, "backend", r.Addr, "err", err)
			return smtpErrBackendDown
		}
		in.be = be
	}
	if !in.mailed {
		if err := smtpReply(in.be.Mail(in.from, in.mailOpts), &in.be); err != nil {
			return err // nobody was taken yet: nothing is lost
		}
		in.mailed = true
	}
	if err := smtpReply(in.be.Rcpt(to, opts), &in.be); err != nil {
		if in.be == nil && len(in.rcpts) > 0 {
			in.broken = true
		}
		if in.be == nil {
			in.mailed = false
		}
		return err
	}
	in.rcpts = append(in.rcpts, to)
	return nil
}

func (in *smtpIncoming) Data(r io.Reader) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	c := in.c
	if in.broken || in.be == nil || len(in.rcpts) == 0 {
		return smtpErrBackendLost
	}
	rcpts := in.rcpts
	in.mailed, in.rcpts = false, nil // whatever happens now ends the transaction
	w, err := c.sendData(&in.be, r)
	if err != nil {
		return err
	}
	if c.opt.BackendSMTP {
		_, err := w.CloseWithResponse()
		return smtpReply(err, &in.be)
	}
	_, err = w.CloseWithLMTPResponse()
	if err == nil {
		return nil
	}
	failed, ok := err.(smtp.LMTPDataError)
	if !ok { // the connection failed while the replies came: who got it is unknown
		return smtpReply(err, &in.be)
	}
	reply, mixed := smtpLMTPVerdict(rcpts, failed)
	if mixed {
		c.s.log.Warn("smtp: backend delivered to some recipients only", "reply", reply.Error(), "failed", err.Error())
	}
	return reply
}

// smtpLMTPVerdict turns the backend's LMTP replies, one per recipient
// (failed holds the failures, by recipient), into the one reply SMTP has
// for DATA. It never answers 250 unless every recipient was delivered:
// the MTA would take that as delivered to all, and a recipient the
// backend failed would lose the message without anyone knowing.
//
//   - delivered to every recipient: 250.
//   - delivered to none: the first temporary failure, if there is one
//     (the MTA retries everybody; nobody has the message, so there is no
//     duplicate, and a recipient who failed for good fails again and is
//     bounced then); else the first permanent failure (the sender gets a
//     bounce). With one code for all, that is the reply.
//   - delivered to some (mixed is true): if a failure is temporary, that
//     temporary reply: the MTA retries every recipient, and those who
//     already have the message get it again. A duplicate is the lesser
//     evil: the alternative, 250, loses the message for the others. If
//     every failure is permanent, the first permanent reply: the sender
//     gets a bounce naming every recipient, those who got the message keep
//     it, and nothing is retried (a temporary reply here would redeliver
//     to them at every retry until the queue lifetime ends, and then
//     bounce anyway).
func smtpLMTPVerdict(rcpts []string, failed map[string]*smtp.SMTPError) (reply *smtp.SMTPError, mixed bool) {
	var temp, perm *smtp.SMTPError
	delivered := 0
	for _, r := range rcpts {
		e := failed[r]
		switch {
		case e == nil:
			delivered++
		case e.Code/100 == 4 && temp == nil:
			temp = e
		case e.Code/100 != 4 && perm == nil:
			perm = e
		}
	}
	mixed = delivered > 0 && (temp != nil || perm != nil)
	switch {
	case temp == nil && perm == nil:
		return nil, false
	case temp != nil:
		return temp, mixed
	}
	return perm, mixed
}

func (in *smtpIncoming) Reset() {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.reset()
}

func (in *smtpIncoming) reset() {
	if in.mailed && in.be != nil {
		smtpReply(in.be.Reset(), &in.be)
	}
	in.from, in.mailOpts, in.mailed, in.rcpts, in.broken = "", nil, false, nil, false
}

func (in *smtpIncoming) Logout() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.be != nil {
		in.be.Close()
		in.be = nil
	}
	return nil
}
