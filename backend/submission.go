package backend

// Submission: users log in (AUTH PLAIN or LOGIN, checked with the
// directory) and hand over mail for any recipient, which is queued
// (backend/queue) and relayed. The tohost proxy's submission port relays
// its users' sessions here, logged in as the user.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tohost/tohost/backend/home"
	"github.com/tohost/tohost/backend/queue"
	"github.com/tohost/tohost/internal/listen"
	"github.com/tohost/tohost/protocol/authent"
	"github.com/tohost/tohost/protocol/saslserver"
)

// LoginDirectory checks logins; *authent.Client provides it. Errors wrap
// authent.ErrBadCredentials (or authent.ErrNotFound) for a wrong password
// or unknown user, and for a name or password that cannot be checked at
// all (authent.CheckLine); anything else is an outage.
type LoginDirectory interface {
	Check(ctx context.Context, user, pass, ip string) (authent.User, error)
}

// Queue takes submitted messages; *queue.Queue provides it. Enqueue
// returns once the message is durable.
type Queue interface {
	Enqueue(id, from string, to []string, r io.Reader) error
}

// SubmissionConfig configures a Submitter. The zero value of each field
// is a working default unless it says otherwise.
type SubmissionConfig struct {
	// Name is this backend's name as users' tohost fields give it
	// (required); only its users may log in (home.Rule).
	Name          string
	AcceptDefault bool
	Peers         []string       // backends sharing the mail directory, whose users are claimed too
	Directory     LoginDirectory // required
	Queue         Queue          // required
	// MaxMessageBytes is the largest message taken (SIZE); 0: 64 MiB.
	MaxMessageBytes int64
	// MaxRecipients per transaction; more get 452 4.5.3. 0: 1000.
	MaxRecipients int
	// IdleTimeout is how long a client may be silent; 0: 5 minutes.
	IdleTimeout time.Duration
	// DrainTimeout is how long transactions under way may go on once the
	// server stops. 0: 30 s.
	DrainTimeout time.Duration
	// CheckTimeout bounds one directory check; 0: 10 s.
	CheckTimeout time.Duration
	// TLS, when set, is offered with STARTTLS. As on the backend's IMAP
	// and POP3, logins are taken without TLS too: the backend sits behind
	// the proxy, which enforces TLS towards clients (--require-tls).
	TLS *tls.Config
	// Hostname is the name the server greets with and writes in the
	// Received: header (default Name).
	Hostname string
	Logger   *slog.Logger
	Metrics  *SubmissionMetrics
}

// Submitter serves submission.
type Submitter struct {
	cfg  SubmissionConfig
	log  *slog.Logger
	busy busyCount // message transfers under way
	now  func() time.Time
}

// NewSubmitter returns a Submitter for cfg.
func NewSubmitter(cfg SubmissionConfig) (*Submitter, error) {
	if err := checkShared(&cfg.Name, cfg.Directory != nil, &cfg.MaxMessageBytes, &cfg.MaxRecipients, &cfg.IdleTimeout, &cfg.DrainTimeout); err != nil {
		return nil, err
	}
	if cfg.Queue == nil {
		return nil, errors.New("backend: no queue")
	}
	if cfg.CheckTimeout <= 0 {
		cfg.CheckTimeout = 10 * time.Second
	}
	if cfg.Hostname == "" {
		cfg.Hostname = cfg.Name
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Submitter{cfg: cfg, log: cfg.Logger.With("protocol", "submission"), now: time.Now}, nil
}

// Replies of submission.
var (
	errAuthFirst   = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	errBadAuth     = &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication credentials invalid"}
	errNotServed   = &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "This account is not served by this server"}
	errAuthTemp    = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Temporary authentication failure, try again later"}
	errQueue       = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Local error in queuing the message, try again later"}
	errQueueNoRoom = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1}, Message: "Insufficient system storage, try again later"}
)

// Serve serves submission on ln until ctx is done, then drains
// (DrainTimeout) and returns once no message is being queued. It closes ln.
func (s *Submitter) Serve(ctx context.Context, ln net.Listener) error {
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return s.newSession(c), nil
	}))
	srv.Network = "tcp"
	srv.Domain = s.cfg.Hostname
	srv.TLSConfig = s.cfg.TLS
	srv.AllowInsecureAuth = true // see SubmissionConfig.TLS
	srv.MaxMessageBytes = s.cfg.MaxMessageBytes
	srv.MaxRecipients = s.cfg.MaxRecipients
	srv.ReadTimeout = s.cfg.IdleTimeout
	srv.WriteTimeout = s.cfg.IdleTimeout
	srv.EnableSMTPUTF8 = true
	srv.ErrorLog = smtpLogger{s.log}
	return serveDraining(ctx, ln, srv, s.cfg.DrainTimeout, s.log, s.busy.wait)
}

// submission is one client's session (go-smtp makes a new one after
// STARTTLS, which forgets the login, as RFC 3207 wants).
type submission struct {
	s    *Submitter
	conn *smtp.Conn
	tc   *trackedConn
	ip   string
	log  *slog.Logger
	// mu: go-smtp runs Data for BDAT in a goroutine of its own.
	mu    sync.Mutex
	login string // the name given at AUTH; "" before
	user  string // the directory's name for the user
	from  string
	rcpts []string
}

var _ smtp.AuthSession = (*submission)(nil)

func (s *Submitter) newSession(c *smtp.Conn) *submission {
	ip := listen.PeerIP(c.Conn())
	ipStr := ""
	if ip.IsValid() {
		ipStr = ip.String()
	}
	return &submission{s: s, conn: c, tc: tracked(c.Conn()), ip: ipStr, log: s.log.With("client", ipStr)}
}

func (m *submission) AuthMechanisms() []string { return []string{sasl.Plain, sasl.Login} }

func (m *submission) Auth(mech string) (sasl.Server, error) {
	if srv := saslserver.NewServer(mech, m.authenticate, errBadAuth); srv != nil {
		return srv, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// authenticate checks the password with the directory and lets in only
// the users who live on this backend (the rule of delivery, IMAP, POP3).
func (m *submission) authenticate(login, pass string) error {
	cfg := &m.s.cfg
	log := m.log.With("user", login)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.CheckTimeout)
	u, err := cfg.Directory.Check(ctx, login, pass, m.ip)
	cancel()
	switch {
	case errors.Is(err, authent.ErrBadCredentials) || errors.Is(err, authent.ErrNotFound):
		cfg.Metrics.login(outcomeLoginFailed)
		log.Info("submission login failed")
		return errBadAuth
	case err != nil:
		cfg.Metrics.login(outcomeUnavailable)
		log.Warn("submission login: directory unavailable", "err", err)
		return errAuthTemp
	}
	if th := u.Get("tohost"); !(home.Rule{Name: cfg.Name, AcceptDefault: cfg.AcceptDefault, Peers: cfg.Peers}).Here(th) {
		cfg.Metrics.login(outcomeLoginRefused)
		log.Warn("submission login refused: user lives elsewhere", "tohost", th)
		return errNotServed
	}
	m.mu.Lock()
	m.login, m.user = login, u.Name
	if m.user == "" {
		m.user = login
	}
	m.mu.Unlock()
	cfg.Metrics.login(outcomeLoginOK)
	_, tls := m.conn.TLSConnectionState()
	log.Info("submission login", "tls", tls)
	return nil
}

// Mail takes only the user's own address as the sender (the login, or the
// directory's name for it; case aside): a user may not send as another
// or as <>, which is for bounces.
func (m *submission) Mail(from string, _ *smtp.MailOptions) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.login == "" {
		return errAuthFirst
	}
	if !strings.EqualFold(from, m.login) && !strings.EqualFold(from, m.user) {
		m.log.Info("submission: sender not the user's", "user", m.login, "from", from)
		return &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
			Message: fmt.Sprintf("Sender address <%s> is not owned by user %s", from, m.login)}
	}
	if m.tc != nil && !m.tc.beginTx() {
		return errShutdown
	}
	m.from, m.rcpts = from, nil
	return nil
}

// Rcpt takes any address go-smtp parsed as local@domain (remote ones
// too): the relay host decides where it goes.
func (m *submission) Rcpt(to string, _ *smtp.RcptOptions) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.login == "" {
		return errAuthFirst
	}
	m.rcpts = append(m.rcpts, to)
	return nil
}

// Data queues the message with a Received: header in front, and answers
// 250 only once the queue has it on disk.
func (m *submission) Data(r io.Reader) error {
	m.s.busy.enter()
	defer m.s.busy.leave()
	m.mu.Lock()
	from, rcpts, login := m.from, m.rcpts, m.login
	m.rcpts = nil
	m.mu.Unlock()
	if login == "" || len(rcpts) == 0 {
		return errAuthFirst
	}
	id := queue.NewID()
	rr := &recordingReader{r: r}
	err := m.s.cfg.Queue.Enqueue(id, from, rcpts, io.MultiReader(strings.NewReader(m.received(id)), rr))
	switch {
	case rr.err != nil: // the message did not arrive whole: nothing is queued
		m.log.Info("submission: message not received", "user", login, "err", rr.err, "bytes", rr.n)
		if errors.Is(rr.err, smtp.ErrDataTooLarge) {
			return smtp.ErrDataTooLarge
		}
		return errIncomplete
	case err != nil:
		m.log.Error("submission: queuing failed", "user", login, "err", err)
		if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
			return errQueueNoRoom
		}
		return errQueue
	}
	m.s.cfg.Metrics.submitted(rr.n)
	m.log.Info("submission: queued", "user", login, "id", id, "from", from, "rcpts", len(rcpts), "bytes", rr.n)
	// go-smtp writes the reply of a Data error as it is: this is the 250.
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "queued as " + id}
}

// received is the message's Received: header (RFC 5321 4.4): the client's
// greeting and address, this server, the protocol (ESMTPA, or ESMTPSA
// with TLS: RFC 3848), the queue id and the date.
func (m *submission) received(id string) string {
	proto := "ESMTPA"
	if _, ok := m.conn.TLSConnectionState(); ok {
		proto = "ESMTPSA"
	}
	helo := strings.Map(func(r rune) rune {
		if r <= ' ' || r == 0x7f || r == '(' || r == ')' {
			return -1
		}
		return r
	}, m.conn.Hostname())
	return fmt.Sprintf("Received: from %s ([%s])\r\n\tby %s (tohost) with %s id %s;\r\n\t%s\r\n",
		helo, m.ip, m.s.cfg.Hostname, proto, id, m.s.now().Format(time.RFC1123Z))
}

func (m *submission) Reset() {
	m.mu.Lock()
	m.from, m.rcpts = "", nil
	m.mu.Unlock()
	if m.tc != nil {
		m.tc.endTx()
	}
}

func (m *submission) Logout() error { return nil }

// ---- metrics ----

// Login outcomes, as counted.
const (
	outcomeLoginOK      = "ok"
	outcomeLoginFailed  = "failed"  // wrong password or unknown user
	outcomeLoginRefused = "refused" // another backend's user
	// outcomeUnavailable (directory_unavailable) is delivery's.
)

// SubmissionMetrics are submission's Prometheus metrics. A nil
// *SubmissionMetrics records nothing.
type SubmissionMetrics struct {
	logins   *prometheus.CounterVec
	messages prometheus.Counter
	bytes    prometheus.Counter
}

// NewSubmissionMetrics creates the metrics and registers them with reg.
func NewSubmissionMetrics(reg prometheus.Registerer) *SubmissionMetrics {
	m := &SubmissionMetrics{
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tohost_backend_submission_logins_total",
			Help: "Submission logins by outcome (ok, failed, refused, directory_unavailable)."}, []string{"outcome"}),
		messages: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tohost_backend_submission_messages_total", Help: "Messages submitted and queued."}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tohost_backend_submission_bytes_total", Help: "Bytes of the messages submitted and queued."}),
	}
	reg.MustRegister(m.logins, m.messages, m.bytes)
	return m
}

func (m *SubmissionMetrics) login(outcome string) {
	if m != nil {
		m.logins.WithLabelValues(outcome).Inc()
	}
}

func (m *SubmissionMetrics) submitted(n int64) {
	if m != nil {
		m.messages.Inc()
		m.bytes.Add(float64(n))
	}
}
