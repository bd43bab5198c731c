// Package ldap serves the directory over LDAPv3 (github.com/jimlambrt/gldap,
// forked under third_party/gldap) from the same directory.Service as
// TCPAuth, for mail software that only speaks LDAP. server.go accepts
// connections and dispatches requests; bind.go, search.go, compare.go,
// modify.go and extended.go serve the operations; dn.go, entry.go,
// filter.go and paging.go map the directory onto an LDAP tree:
//
//	<base>                        the naming context (default dc=tohost)
//	ou=users,<base>               parent of every user
//	uid=<name>,ou=users,<base>    one entry per user (mail=<name> works too)
package ldap

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/hashicorp/go-hclog"
	"github.com/jimlambrt/gldap"

	"github.com/tohost/tohost/directory"
	"github.com/tohost/tohost/internal/penalty"
)

// Directory is what the server asks of the user directory;
// *directory.Service provides it.
type Directory interface {
	Check(ctx context.Context, name, pass string) (*directory.User, error)
	// HashPassword hashes a new cleartext password as the directory's
	// configuration says (scheme and costs), in its bounded hash pool.
	HashPassword(ctx context.Context, plain string) (string, error)
	Lookup(ctx context.Context, name string) (*directory.User, error)
	Create(ctx context.Context, name, pass string, fields []directory.Field) error
	// Modify applies fn to the user as stored, in one transaction.
	Modify(ctx context.Context, name string, fn func(*directory.User) error) (*directory.User, error)
	Delete(ctx context.Context, name string) error
	Rename(ctx context.Context, oldName, newName string) error
	SearchUsers(ctx context.Context, m directory.Match, fn func(*directory.User) error) error
}

// Config configures a Server. The zero value of each field is a working
// default.
type Config struct {
	// Base is the naming context (default "dc=tohost").
	Base string
	// AdminDN is the DN the admin binds as (default "cn=admin,<Base>").
	AdminDN string
	// AdminPassword is the admin's password; empty means no admin, so
	// nobody can write over LDAP.
	AdminPassword string
	// Readers are read-only accounts, as mail servers bind with (Dovecot,
	// Postfix): they may search and read every user, userPassword
	// excepted, and write nothing. Each needs a DN of its own (not under
	// ou=users) and a password.
	Readers []Reader
	// AnonymousRead lets anonymous and bound users read every entry
	// (userPassword excepted). Without it an anonymous client may only
	// bind and read the root DSE, and a user only their own entry.
	AnonymousRead bool
	// TLS, when set, enables StartTLS. For LDAPS the caller wraps the
	// listener with tls.NewListener.
	TLS    *tls.Config
	Logger *slog.Logger
	// IdleTimeout closes a connection that sends no request, or does not
	// read its responses, for this long (default 10 minutes, as TCPAuth;
	// negative: never). Without it a client that stops reading would hold
	// its connection, and a graceful stop, forever.
	IdleTimeout time.Duration
	// Metrics, when set, counts requests and their latency.
	Metrics *Metrics
	// Penalty slows guessing: after a failed bind (by client address and
	// name), the next bind of that name from that client waits out a growing delay. The
	// directory shares one with TCPAuth. nil: none.
	Penalty *penalty.Penalty[string]
	// SizeLimit bounds the entries one search returns (default
	// DefaultSizeLimit, as slapd's sizelimit; negative: none). Past it
	// the search ends with sizeLimitExceeded, keeping the entries sent.
	// A paged search is bounded per page instead: a larger page size is
	// cut to SizeLimit. The admin is exempt.
	SizeLimit int
	// TimeLimit bounds how long one search runs (default
	// DefaultTimeLimit, as slapd's timelimit; negative: none); then it
	// ends with timeLimitExceeded, keeping the entries sent. The admin is
	// exempt. A client's own smaller limits in the request hold too.
	TimeLimit time.Duration
}

// Reader is a read-only account.
type Reader struct{ DN, Password string }

// Server is the LDAP front end of a directory.Service.
type Server struct {
	svc  Directory
	cfg  Config
	log  *slog.Logger
	tree tree
	err  error // a configuration error, returned by Serve

	root, base, users *staticEntry // the fixed entries
	creds             atomic.Pointer[credentials]
	// ctx is for directory calls that are not a search's: requests in
	// progress when Serve's context ends still finish. Searches run under
	// their request's context, which ends with their connection.
	ctx context.Context
}

// New returns a Server answering from svc.
func New(svc Directory, cfg Config) *Server {
	if cfg.Base == "" {
		cfg.Base = "dc=tohost"
	}
	if cfg.AdminDN == "" {
		cfg.AdminDN = "cn=admin," + cfg.Base
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 10 * time.Minute
	}
	if cfg.SizeLimit == 0 {
		cfg.SizeLimit = DefaultSizeLimit
	}
	if cfg.TimeLimit == 0 {
		cfg.TimeLimit = DefaultTimeLimit
	}
	s := &Server{svc: svc, cfg: cfg, log: cfg.Logger, ctx: context.Background()}
	readerDNs := make([]string, len(cfg.Readers))
	readerPasswords := make([]string, len(cfg.Readers))
	for i, r := range cfg.Readers {
		readerDNs[i], readerPasswords[i] = r.DN, r.Password
	}
	s.tree, s.err = newTree(cfg.Base, cfg.AdminDN, readerDNs)
	if s.err == nil {
		s.err = s.SetPasswords(cfg.AdminPassword, readerPasswords)
	}
	if s.err == nil {
		s.root, s.base, s.users = s.tree.staticEntries(cfg.TLS != nil)
	}
	return s
}

// Serve accepts connections on ln until ctx is done, then stops accepting,
// cuts searches in progress short (unavailable), lets other requests in
// progress finish, sends every client a Notice of Disconnection, and
// returns once all connections are closed.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.err != nil {
		ln.Close()
		return fmt.Errorf("ldap: %w", s.err)
	}
	gs, err := gldap.NewServer(
		gldap.WithLogger(hclogTo(s.log)),
		gldap.WithInlineRequests(),
		gldap.WithIdleTimeout(max(s.cfg.IdleTimeout, 0)),
	)
	if err != nil {
		return err
	}
	mux, err := gldap.NewMux()
	if err != nil {
		return err
	}
	if err := mux.DefaultRoute(s.handle); err != nil {
		return err
	}
	if err := gs.Router(mux); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { gs.Stop() })
	defer stop()
	err = gs.Serve(ln)
	if ctx.Err() != nil {
		return nil
	}
	gs.Stop()
	return err
}

// handle dispatches one request. Requests of a connection are served one
// at a time (gldap.WithInlineRequests), so the session needs no lock.
func (s *Server) handle(w *gldap.ResponseWriter, r *gldap.Request) {
	start := time.Now()
	op := opOther
	switch m := r.Message().(type) {
	case *gldap.SimpleBindMessage:
		op = opBind
		s.bind(w, r, m)
	case *gldap.SearchMessage:
		op = opSearch
		s.search(w, r, m)
	case *gldap.CompareMessage:
		op = opCompare
		s.compare(w, r, m)
	case *gldap.AddMessage:
		op = opAdd
		s.add(w, r, m)
	case *gldap.ModifyMessage:
		op = opModify
		s.modify(w, r, m)
	case *gldap.DeleteMessage:
		op = opDelete
		s.delete(w, r, m)
	case *gldap.ModifyDNMessage:
		op = opModifyDN
		s.modifyDN(w, r, m)
	case *gldap.ExtendedOperationMessage:
		op = opExtended
		s.extended(w, r, m)
	default:
		s.reply(w, r.NewResult(gldap.ApplicationExtendedResponse, gldap.ResultProtocolError, "unsupported operation"))
	}
	s.cfg.Metrics.observe(op, time.Since(start))
}

// session is what a connection has proved about itself.
type session struct {
	admin  bool
	reader bool   // a read-only account: reads everyone, writes nothing
	name   string // the bound user's normalized name; "" for anonymous
	dn     string // the bound DN as WhoAmI reports it
}

func sessionOf(r *gldap.Request) *session {
	if v, ok := r.ConnValue().(*session); ok {
		return v
	}
	v := &session{}
	r.SetConnValue(v)
	return v
}

func (ss *session) anonymous() bool { return !ss.admin && !ss.reader && ss.name == "" }

// readsAll reports whether the session may read every user's entry.
func (s *Server) readsAll(ss *session) bool { return ss.admin || ss.reader || s.cfg.AnonymousRead }

// reply writes a response; a write error means the client is gone, and the
// connection's read loop notices that by itself.
func (s *Server) reply(w *gldap.ResponseWriter, resp gldap.Response) {
	_ = w.Write(resp)
}

// failure maps a directory error to a result code and message. Storage
// failures are logged and become "unavailable", never noSuchObject: a mail
// server must not take an outage for "no such user". A timeout here is the
// store's own (a search's time limit is answered before this), so it is an
// outage too, not timeLimitExceeded.
func (s *Server) failure(op string, r *gldap.Request, err error) (int, string) {
	var in *directory.InputError
	switch {
	case errors.Is(err, directory.ErrNotFound):
		return gldap.ResultNoSuchObject, ""
	case errors.Is(err, directory.ErrExists):
		return gldap.ResultEntryAlreadyExists, ""
	case errors.As(err, &in):
		return gldap.ResultUnwillingToPerform, in.Msg
	case errors.Is(err, directory.ErrBusy):
		// Too many hashes queued: the client retries later. Not logged
		// one by one: a storm makes thousands.
		return gldap.ResultBusy, "directory busy, try again"
	}
	level := slog.LevelError
	if errors.Is(err, directory.ErrUnavailable) {
		// The store logs its outages once per state change; a line per
		// request would bury them under thousands of copies.
		level = slog.LevelDebug
	}
	s.log.Log(s.ctx, level, "ldap request failed", "op", op, "client", r.RemoteAddr().String(), "err", err)
	return gldap.ResultUnavailable, "directory unavailable"
}

// Supported controls: paged results, and ManageDsaIT, which is trivially
// honoured since the tree holds no referrals.
const (
	oidPaging      = gldap.ControlTypePaging
	oidManageDsaIT = gldap.ControlTypeManageDsaIT
)

// unsupportedCritical reports whether a request carries a critical control
// the server does not implement for it (RFC 4511 4.1.11:
// unavailableCriticalExtension). search says whether the request is a
// search: paged results is a control of search only (RFC 2696), so a
// critical one on any other operation is refused; one that is not
// critical is ignored there, as any control that is not.
func unsupportedCritical(controls []gldap.Control, search bool) bool {
	for _, c := range controls {
		switch c := c.(type) {
		case *gldap.ControlString:
			if c.Criticality {
				return true
			}
		case *gldap.ControlPaging:
			if c.Criticality && !search {
				return true
			}
		}
	}
	return false
}

// Refusal is what a connection over the daemon's connection cap is told
// before it is closed: a Notice of Disconnection (unavailable), so the
// client retries later.
var Refusal = noticeOfDisconnection(gldap.ResultUnavailable, "too many connections")

// noticeOfDisconnection encodes the unsolicited notification RFC 4511 4.4.1.
func noticeOfDisconnection(code int, msg string) []byte {
	env := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "LDAP Response")
	env.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, int64(0), "MessageID"))
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, gldap.ApplicationExtendedResponse, nil, "Extended Response")
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, int64(code), "resultCode"))
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", "matchedDN"))
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, msg, "diagnosticMessage"))
	op.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 10, gldap.NoticeOfDisconnectionOID, "responseName"))
	env.AppendChild(op)
	return env.Bytes()
}

// hclogTo sends gldap's own log lines (connection errors, panics) to log,
// one line each.
func hclogTo(log *slog.Logger) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:        "gldap",
		Level:       hclog.Warn,
		Output:      slogWriter{log},
		DisableTime: true,
	})
}

type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.log.Warn("ldap", "gldap", strings.TrimSpace(string(p)))
	return len(p), nil
}

var _ io.Writer = slogWriter{}
