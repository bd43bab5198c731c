// Package backend is tohost's mail server: it keeps the users' mailboxes
// (package backend/maildir) and serves them. This file is delivery: LMTP
// (from the proxies, or any MTA) and SMTP servers that take mail for this
// backend's users and store it in their Maildir.
package backend

import (
	"context"
	"crypto/tls"
	"errors"
	"hash/fnv"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tohost/tohost/backend/home"
	"github.com/tohost/tohost/backend/maildir"
	"github.com/tohost/tohost/internal/listen"
	"github.com/tohost/tohost/protocol/authent"
)

// Directory is what delivery asks of the user directory; *authent.Client
// provides it. Errors wrap authent.ErrNotFound for an unknown user;
// anything else is an outage.
type Directory interface {
	Lookup(ctx context.Context, user string) (authent.User, error)
}

// MailStore is where delivered mail goes; *maildir.Store provides it.
// DeliverManyChecked stores one message, read once from r, for every user
// and returns one error per user; a user's nil error means the message is
// durable in that user's mailbox. When r fails, no user gets the message.
// Once r is read whole, and before the message is in any mailbox, check
// returns one error per user: a user with an error does not get it.
type MailStore interface {
	DeliverManyChecked(users []string, r io.Reader, check func() []error) []error
	Usage(user string) (int64, error)
}

// DeliveryConfig configures a Deliverer. The zero value of each field is
// a working default unless it says otherwise.
type DeliveryConfig struct {
	// Name is this backend's name as users' tohost fields give it
	// (required). A tohost matches when its host part equals Name, case
	// aside, whatever its port ("backend1.example:24" is backend1.example).
	Name string
	// AcceptDefault takes mail for users who have no tohost.
	AcceptDefault bool
	// Peers are the other backends sharing the mail directory; mail for
	// their users is taken too (home.Rule).
	Peers []string
	// Directory looks the recipients up (required).
	Directory Directory
	// Store keeps the mail (required).
	Store MailStore
	// MaxMessageBytes is the largest message taken (SIZE); 0: 64 MiB.
	MaxMessageBytes int64
	// MaxRecipients per transaction; more get 452 4.5.3. 0: 1000.
	MaxRecipients int
	// IdleTimeout is how long a client may be silent; 0: 5 minutes.
	IdleTimeout time.Duration
	// DrainTimeout is how long transactions under way may go on once the
	// servers stop; then their connections are closed. 0: 30 s.
	DrainTimeout time.Duration
	// TLS, when set, is offered with STARTTLS.
	TLS *tls.Config
	// SpoolDir holds a message while its size is learnt, when a recipient
	// is so close to the quota that the size decides (an unlinked file;
	// default os.TempDir()).
	SpoolDir string
	// Hostname is the name the servers greet with (default Name).
	Hostname string
	Logger   *slog.Logger
	Metrics  *DeliveryMetrics
}

// Deliverer serves LMTP and SMTP delivery to this backend's users.
type Deliverer struct {
	cfg DeliveryConfig
	log *slog.Logger
	// busy counts the message transfers (Data) under way, so that a
	// server stops only once none of them can touch the store any more.
	busy busyCount
	// quotaMu serialises, per user (striped), the quota check and the
	// store of a message whose size decides whether it fits.
	quotaMu [64]sync.Mutex
}

// NewDeliverer returns a Deliverer for cfg.
func NewDeliverer(cfg DeliveryConfig) (*Deliverer, error) {
	if err := checkShared(&cfg.Name, cfg.Directory != nil, &cfg.MaxMessageBytes, &cfg.MaxRecipients, &cfg.IdleTimeout, &cfg.DrainTimeout); err != nil {
		return nil, err
	}
	if cfg.Store == nil {
		return nil, errors.New("backend: no store")
	}
	if cfg.SpoolDir == "" {
		cfg.SpoolDir = os.TempDir()
	}
	if cfg.Hostname == "" {
		cfg.Hostname = cfg.Name
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Deliverer{cfg: cfg, log: cfg.Logger}, nil
}

// Replies of delivery.
var (
	errOtherBackend = &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 0}, Message: "Mailbox is on another server, try again later"}
	errMoved        = &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 0}, Message: "Mailbox moved to another server during the delivery, try again later"}
	errOtherMoved   = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 2, 0}, Message: "Another recipient's mailbox moved during the delivery, try again later"}
	errNoUser       = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user here"}
	errDirectory    = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Cannot look up the recipient now, try again later"}
	errOverQuota    = &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 2, 2}, Message: "Mailbox full"}
	errStore        = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Local error in storing the message, try again later"}
	errBadMailbox   = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "Mailbox name not allowed here"}
	errNoSpace      = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1}, Message: "Insufficient system storage, try again later"}
	errIncomplete   = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "Message not received completely"}
	errShutdown     = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "Server shutting down, try again later"}
)

// Outcomes of a recipient, as counted.
const (
	outcomeDelivered   = "delivered"
	outcomeOtherServer = "other_backend"
	outcomeUnknown     = "unknown_user"
	outcomeUnavailable = "directory_unavailable"
	outcomeOverQuota   = "over_quota"
	outcomeTooLarge    = "too_large"
	outcomeFailed      = "failed" // the store failed, or the message did not arrive whole
)

// ServeLMTP serves LMTP (RFC 2033) on ln until ctx is done, then drains
// (DrainTimeout) and returns once no delivery is under way. It closes ln.
func (d *Deliverer) ServeLMTP(ctx context.Context, ln net.Listener) error {
	return d.serve(ctx, ln, true)
}

// ServeSMTP serves SMTP on ln, like ServeLMTP.
func (d *Deliverer) ServeSMTP(ctx context.Context, ln net.Listener) error {
	return d.serve(ctx, ln, false)
}

func (d *Deliverer) serve(ctx context.Context, ln net.Listener, lmtp bool) error {
	proto := "smtp"
	if lmtp {
		proto = "lmtp"
	}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return d.newSession(c, proto), nil
	}))
	srv.LMTP = lmtp
	srv.Network = "tcp"
	srv.Domain = d.cfg.Hostname
	srv.TLSConfig = d.cfg.TLS
	srv.MaxMessageBytes = d.cfg.MaxMessageBytes
	srv.MaxRecipients = d.cfg.MaxRecipients
	srv.ReadTimeout = d.cfg.IdleTimeout
	srv.WriteTimeout = d.cfg.IdleTimeout
	srv.EnableSMTPUTF8 = true
	srv.ErrorLog = smtpLogger{d.log.With("protocol", proto)}
	return serveDraining(ctx, ln, srv, d.cfg.DrainTimeout, d.log.With("protocol", proto), d.waitIdle)
}

// lockQuotas takes the quota locks of the recipients that have a quota
// (striped by user, taken in stripe order so two deliveries cannot wait
// on each other) and returns the function that releases them.
func (d *Deliverer) lockQuotas(rcpts []recipient) func() {
	var stripes []int
	for _, rc := range rcpts {
		if rc.quota > 0 {
			h := fnv.New32a()
			h.Write([]byte(strings.ToLower(rc.user)))
			stripes = append(stripes, int(h.Sum32()%uint32(len(d.quotaMu))))
		}
	}
	slices.Sort(stripes)
	stripes = slices.Compact(stripes)
	for _, i := range stripes {
		d.quotaMu[i].Lock()
	}
	return func() {
		for _, i := range stripes {
			d.quotaMu[i].Unlock()
		}
	}
}

// enter and leave count a message transfer under way; waitIdle returns
// when there is none.
func (d *Deliverer) enter()    { d.busy.enter() }
func (d *Deliverer) leave()    { d.busy.leave() }
func (d *Deliverer) waitIdle() { d.busy.wait() }

// ---- sessions ----

// recipient is a recipient accepted at RCPT.
type recipient struct {
	addr  string // as the client gave it (the LMTP status is keyed by it)
	user  string // the mailbox: the directory's name for the user
	quota int64  // bytes; 0: none
	usage int64  // the mailbox's size at RCPT, when quota is set
}

// session is one client's, from EHLO/LHLO on (go-smtp makes a new one
// after STARTTLS).
type session struct {
	d     *Deliverer
	proto string
	conn  *smtp.Conn
	tc    *trackedConn
	log   *slog.Logger
	ctx   context.Context
	// mu: go-smtp runs Data for BDAT in a goroutine of its own, while the
	// connection's goroutine may reset the session between chunks.
	mu    sync.Mutex
	size  int64 // MAIL SIZE=, 0 when not given
	rcpts []recipient
}

func (d *Deliverer) newSession(c *smtp.Conn, proto string) *session {
	ip := listen.PeerIP(c.Conn())
	return &session{d: d, proto: proto, conn: c, tc: tracked(c.Conn()), ctx: context.Background(),
		log: d.log.With("protocol", proto, "client", ip.String())}
}

var _ smtp.LMTPSession = (*session)(nil)

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tc != nil && !s.tc.beginTx() {
		return errShutdown
	}
	s.rcpts = nil
	s.size = 0
	if opts != nil {
		s.size = opts.Size
	}
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.d
	start := time.Now()
	u, err := d.cfg.Directory.Lookup(s.ctx, to)
	d.cfg.Metrics.lookupTook(time.Since(start))
	switch {
	case errors.Is(err, authent.ErrNotFound):
		s.log.Info("unknown recipient", "rcpt", to)
		d.cfg.Metrics.outcome(s.proto, outcomeUnknown, 1)
		return errNoUser
	case err != nil:
		s.log.Warn("directory unavailable", "rcpt", to, "err", err)
		d.cfg.Metrics.outcome(s.proto, outcomeUnavailable, 1)
		return errDirectory
	}
	if !(home.Rule{Name: d.cfg.Name, AcceptDefault: d.cfg.AcceptDefault, Peers: d.cfg.Peers}).Here(u.Get("tohost")) {
		s.log.Info("recipient of another backend", "rcpt", to, "tohost", u.Get("tohost"))
		d.cfg.Metrics.outcome(s.proto, outcomeOtherServer, 1)
		return errOtherBackend
	}
	r := recipient{addr: to, user: u.Name}
	if r.user == "" {
		r.user = to
	}
	if q := strings.TrimSpace(u.Get("quota")); q != "" {
		n, err := strconv.ParseInt(q, 10, 64)
		if err != nil || n < 0 {
			s.log.Warn("quota is not a number of bytes; not enforced", "rcpt", to, "quota", q)
		} else {
			r.quota = n
		}
	}
	if r.quota > 0 {
		usage, err := d.cfg.Store.Usage(r.user)
		if err != nil {
			s.log.Error("mailbox usage", "rcpt", to, "err", err)
			d.cfg.Metrics.outcome(s.proto, outcomeFailed, 1)
			return storeError(err)
		}
		r.usage = usage
		// With SIZE=, the message must fit; without, the mailbox must not
		// be full already (the size is checked again at DATA).
		if usage+s.size > r.quota || usage >= r.quota {
			s.log.Info("recipient over quota", "rcpt", to, "usage", usage, "size", s.size, "quota", r.quota)
			d.cfg.Metrics.outcome(s.proto, outcomeOverQuota, 1)
			return errOverQuota
		}
	}
	s.rcpts = append(s.rcpts, r)
	return nil
}

// Data is SMTP's: one reply for every recipient.
func (s *session) Data(r io.Reader) error {
	st := &verdict{}
	s.transfer(r, st)
	return st.reply()
}

// LMTPData gives each recipient its own reply.
func (s *session) LMTPData(r io.Reader, status smtp.StatusCollector) error {
	s.transfer(r, status)
	return nil
}

func (s *session) Reset() {
	s.mu.Lock()
	s.rcpts, s.size = nil, 0
	s.mu.Unlock()
	if s.tc != nil {
		s.tc.endTx()
	}
}

func (s *session) Logout() error { return nil }

// transfer reads the message from r, stores it for the session's
// recipients and sets each one's status. No status is set before the
// store said the message is durable.
func (s *session) transfer(r io.Reader, status smtp.StatusCollector) {
	d := s.d
	d.enter()
	defer d.leave()
	s.mu.Lock()
	rcpts := s.rcpts
	s.rcpts = nil
	s.mu.Unlock()
	if len(rcpts) == 0 {
		return
	}

	// One delivery per mailbox, however many RCPTs name it.
	var users []string
	index := map[string]int{} // lower-cased mailbox -> users index
	userOf := make([]int, len(rcpts))
	for i, rc := range rcpts {
		k := strings.ToLower(rc.user)
		j, ok := index[k]
		if !ok {
			j = len(users)
			index[k] = j
			users = append(users, rc.user)
		}
		userOf[i] = j
	}
	errs := make([]error, len(users))
	addrs := make([]string, len(users)) // the address each user was named by first
	for i := len(rcpts) - 1; i >= 0; i-- {
		addrs[userOf[i]] = rcpts[i].addr
	}
	rr := &recordingReader{r: r}
	var size int64

	// The message streams into the store, unless a recipient is so close
	// to the quota that the message's size decides: then it is spooled
	// first, to learn its size, and stored for those it fits.
	spool := false
	for _, rc := range rcpts {
		if rc.quota > 0 && rc.quota-rc.usage < d.cfg.MaxMessageBytes {
			spool = true
		}
	}
	start := time.Now()
	if !spool {
		errs = d.cfg.Store.DeliverManyChecked(users, rr, s.recheck(users, addrs))
		size = rr.n
	} else {
		f, err := s.spool(rr)
		if f != nil {
			defer f.Close()
		}
		size = rr.n
		if err == nil {
			// Checking the room left and storing are one step per user:
			// two messages for the same user must not both see the room
			// that only one of them fits in.
			unlock := d.lockQuotas(rcpts)
			defer unlock()
			fits := make([]bool, len(users))
			for i := range fits {
				fits[i] = true
			}
			for i, rc := range rcpts {
				if rc.quota > 0 {
					usage, uerr := d.cfg.Store.Usage(rc.user)
					if uerr != nil {
						usage = rc.usage
					}
					if usage+size > rc.quota {
						fits[userOf[i]] = false
						errs[userOf[i]] = errOverQuota
					}
				}
			}
			var some, someAddrs []string
			var where []int
			for i, u := range users {
				if fits[i] {
					some = append(some, u)
					someAddrs = append(someAddrs, addrs[i])
					where = append(where, i)
				}
			}
			if len(some) > 0 {
				for k, e := range d.cfg.Store.DeliverManyChecked(some, f, s.recheck(some, someAddrs)) {
					errs[where[k]] = e
				}
			}
		} else if rr.err == nil { // the spool failed, not the client
			s.log.Error("spool", "err", err)
			for i := range errs {
				errs[i] = storeError(err)
			}
		}
	}
	took := time.Since(start)

	if rr.err != nil { // the message did not arrive whole: nobody has it
		reply := errIncomplete
		outcome := outcomeFailed
		if errors.Is(rr.err, smtp.ErrDataTooLarge) {
			reply, outcome = smtp.ErrDataTooLarge, outcomeTooLarge
		}
		s.log.Info("message not received", "err", rr.err, "bytes", rr.n)
		for _, rc := range rcpts {
			status.SetStatus(rc.addr, reply)
		}
		d.cfg.Metrics.outcome(s.proto, outcome, len(rcpts))
		return
	}
	delivered := false
	for i, rc := range rcpts {
		err := errs[userOf[i]]
		switch {
		case err == nil:
			delivered = true
			d.cfg.Metrics.outcome(s.proto, outcomeDelivered, 1)
			s.log.Debug("delivered", "rcpt", rc.addr, "user", rc.user, "bytes", size)
		case err == errOverQuota:
			d.cfg.Metrics.outcome(s.proto, outcomeOverQuota, 1)
			s.log.Info("recipient over quota", "rcpt", rc.addr, "size", size, "quota", rc.quota)
		case err == errMoved || err == errOtherMoved:
			d.cfg.Metrics.outcome(s.proto, outcomeOtherServer, 1)
		case err == errNoUser:
			d.cfg.Metrics.outcome(s.proto, outcomeUnknown, 1)
		case err == errDirectory:
			d.cfg.Metrics.outcome(s.proto, outcomeUnavailable, 1)
		default:
			d.cfg.Metrics.outcome(s.proto, outcomeFailed, 1)
			s.log.Error("delivery failed", "rcpt", rc.addr, "user", rc.user, "err", err)
			err = storeError(err)
		}
		status.SetStatus(rc.addr, err)
	}
	if delivered {
		d.cfg.Metrics.delivered(s.proto, size, took)
	}
}

// recheck returns the store's last check of users (named addrs at RCPT):
// each is looked up again right before the message is linked into the
// mailboxes, as RCPT may have been long before and the user may have
// moved to another backend since (tohost user move switches tohost, then
// copies what arrived on the old backend). A user who no longer lives
// here gets 450 and nothing is stored for it: the sender retries and the
// proxy routes the retry to the new backend, so the message is neither
// lost on the old backend nor stored twice. SMTP has one reply for every
// recipient, and a 4xx makes the sender retry them all: there, when one
// user is refused, nobody gets the message (the others get 451), so that
// the retry duplicates nothing.
func (s *session) recheck(users, addrs []string) func() []error {
	return func() []error {
		errs := make([]error, len(users))
		refused := false
		for i := range users {
			errs[i] = s.stillHere(addrs[i])
			refused = refused || errs[i] != nil
		}
		if refused && s.proto != "lmtp" {
			for i := range errs {
				if errs[i] == nil {
					errs[i] = errOtherMoved
				}
			}
		}
		return errs
	}
}

// stillHere looks addr up again and returns nil when it still lives here,
// else the reply it gets instead of the message.
func (s *session) stillHere(addr string) error {
	d := s.d
	start := time.Now()
	u, err := d.cfg.Directory.Lookup(s.ctx, addr)
	d.cfg.Metrics.lookupTook(time.Since(start))
	switch {
	case errors.Is(err, authent.ErrNotFound):
		s.log.Info("recipient gone before the message was stored", "rcpt", addr)
		return errNoUser
	case err != nil:
		s.log.Warn("directory unavailable before the message was stored", "rcpt", addr, "err", err)
		return errDirectory
	}
	if !(home.Rule{Name: d.cfg.Name, AcceptDefault: d.cfg.AcceptDefault, Peers: d.cfg.Peers}).Here(u.Get("tohost")) {
		s.log.Info("recipient moved to another backend before the message was stored", "rcpt", addr, "tohost", u.Get("tohost"))
		return errMoved
	}
	return nil
}

// spool copies the message from r into an unlinked file and returns it,
// positioned at its start.
func (s *session) spool(r io.Reader) (*os.File, error) {
	f, err := os.CreateTemp(s.d.cfg.SpoolDir, "tohost-spool-*")
	if err != nil {
		return nil, err
	}
	os.Remove(f.Name())
	if _, err := io.Copy(f, r); err != nil {
		return f, err
	}
	_, err = f.Seek(0, io.SeekStart)
	return f, err
}

// storeError is the reply for a store failure.
func storeError(err error) error {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se
	}
	if errors.Is(err, maildir.ErrBadName) {
		return errBadMailbox
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return errNoSpace
	}
	return errStore
}

// recordingReader counts the bytes of the message and keeps the first
// error of the client's stream, so that a message that did not arrive
// whole is told apart from a store failure.
type recordingReader struct {
	r   io.Reader
	n   int64
	err error
}

func (r *recordingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.n += int64(n)
	if err != nil && err != io.EOF && r.err == nil {
		r.err = err
	}
	return n, err
}

// verdict collects the recipients' statuses into SMTP's one reply to DATA:
// 250 only when every recipient has the message (an MTA takes 250 as
// delivered to all); else the first temporary failure, so the MTA retries
// (those who have it may get it twice: better than losing it for the
// others); else the first permanent failure (a bounce).
type verdict struct {
	temp, perm error
}

func (v *verdict) SetStatus(_ string, err error) {
	var se *smtp.SMTPError
	switch {
	case err == nil:
	case errors.As(err, &se) && se.Code/100 == 4:
		if v.temp == nil {
			v.temp = err
		}
	default:
		if v.perm == nil {
			v.perm = err
		}
	}
}

func (v *verdict) reply() error {
	if v.temp != nil {
		return v.temp
	}
	return v.perm
}

// ---- routing ----

// ---- metrics ----

// DeliveryMetrics are delivery's Prometheus metrics. A nil
// *DeliveryMetrics records nothing.
type DeliveryMetrics struct {
	recipients *prometheus.CounterVec
	bytes      *prometheus.CounterVec
	store      prometheus.Observer
	lookup     prometheus.Observer
}

// NewDeliveryMetrics creates the metrics and registers them with reg.
func NewDeliveryMetrics(reg prometheus.Registerer) *DeliveryMetrics {
	buckets := []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	m := &DeliveryMetrics{
		recipients: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tohost_backend_deliveries_total",
			Help: "Recipients by protocol (lmtp, smtp) and outcome (delivered, other_backend, unknown_user, directory_unavailable, over_quota, too_large, failed)."},
			[]string{"protocol", "outcome"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tohost_backend_delivered_bytes_total",
			Help: "Bytes of the messages stored, each message counted once however many recipients it has, by protocol."},
			[]string{"protocol"}),
	}
	store := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "tohost_backend_delivery_seconds", Help: "Time to receive and store one message (to disk, synced).", Buckets: buckets})
	lookup := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "tohost_backend_directory_seconds", Help: "Time of one recipient lookup in the directory.", Buckets: buckets})
	m.store, m.lookup = store, lookup
	reg.MustRegister(m.recipients, m.bytes, store, lookup)
	return m
}

func (m *DeliveryMetrics) outcome(proto, outcome string, n int) {
	if m != nil && n > 0 {
		m.recipients.WithLabelValues(proto, outcome).Add(float64(n))
	}
}

func (m *DeliveryMetrics) delivered(proto string, size int64, took time.Duration) {
	if m != nil {
		m.bytes.WithLabelValues(proto).Add(float64(size))
		m.store.Observe(took.Seconds())
	}
}

func (m *DeliveryMetrics) lookupTook(d time.Duration) {
	if m != nil {
		m.lookup.Observe(d.Seconds())
	}
}
