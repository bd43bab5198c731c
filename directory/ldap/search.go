package ldap

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jimlambrt/gldap"

	"github.com/tohost/tohost/directory"
)

// search answers a search request. Entries are written as they are found
// (the connection's buffer goes out whenever it fills), so a search over
// every user holds one user in memory at a time. What a request may cost
// is decided before any of it is spent: access first, then the bounds on
// its shape (limits.go), and its size and time limits bound the rest.
func (s *Server) search(w *gldap.ResponseWriter, r *gldap.Request, m *gldap.SearchMessage) {
	ss := sessionOf(r)
	done := func(code int, msg, matched string, controls ...gldap.Control) {
		resp := r.NewSearchDoneResponse(gldap.WithResponseCode(code))
		resp.SetDiagnosticMessage(msg)
		resp.SetMatchedDN(matched)
		if len(controls) > 0 {
			resp.SetControls(controls...)
		}
		s.reply(w, resp)
	}
	if unsupportedCritical(m.Controls, true) {
		done(gldap.ResultUnavailableCriticalExtension, "unsupported critical control", "")
		return
	}
	if m.Scope < gldap.BaseObject || m.Scope > gldap.WholeSubtree {
		done(gldap.ResultProtocolError, "unknown search scope", "")
		return
	}
	// The root DSE (the empty DN) is readable before any bind (RFC 4512
	// 5.1); nothing else is, without AnonymousRead.
	rootDSE := m.BaseDN == "" && m.Scope == gldap.BaseObject
	if !rootDSE && ss.anonymous() && !s.cfg.AnonymousRead {
		done(gldap.ResultInsufficientAccessRights, "anonymous search is not allowed: bind first", "")
		return
	}
	if msg := overLimit(m); msg != "" {
		done(gldap.ResultAdminLimitExceeded, msg, "")
		return
	}
	f, err := compileFilter(m.FilterPacket)
	if errors.Is(err, errFilterDepth) {
		done(gldap.ResultAdminLimitExceeded, err.Error(), "")
		return
	}
	if err != nil {
		done(gldap.ResultProtocolError, err.Error(), "")
		return
	}
	t, err := s.tree.resolve(m.BaseDN)
	if err != nil {
		done(gldap.ResultInvalidDNSyntax, "invalid base DN", "")
		return
	}
	pc := pagingControl(m.Controls)
	lim := s.limitsFor(ss, m, pc)
	q := &query{s: s, w: w, r: r, f: f, sel: newSelection(m.Attributes), typesOnly: m.TypesOnly,
		password: ss.admin, sizeLimit: lim.size}
	if rootDSE {
		q.offerStatic(s.root)
		done(gldap.ResultSuccess, "", "")
		return
	}
	if !q.scope(t, m.Scope, ss) {
		done(gldap.ResultNoSuchObject, "", t.matched)
		return
	}

	var hash uint32
	if pc != nil {
		hash = searchHash(m)
		if len(pc.Cookie) > 0 {
			cur, sent, ok := parseCookie(pc.Cookie, hash)
			if !ok {
				done(gldap.ResultUnwillingToPerform, "invalid paged results cookie", "")
				return
			}
			q.cur, q.before = cur, sent
		}
		if pc.PagingSize == 0 {
			// RFC 2696: a size of zero abandons the paged search.
			done(gldap.ResultSuccess, "", "", &gldap.ControlPaging{})
			return
		}
		q.pageSize = lim.page
	}

	p := q.plan()
	ctx, cancel := q.context(p, lim.time)
	defer cancel()
	err = q.run(ctx, p)
	var controls []gldap.Control
	if pc != nil {
		next := &gldap.ControlPaging{}
		if q.more {
			next.Cookie = q.cur.cookie(hash, q.before+q.sent)
		}
		controls = append(controls, next)
	}
	switch {
	case errors.Is(err, errStop) || err == nil:
	case errors.Is(err, errClientGone):
		return
	case ctx.Err() != nil:
		// Cut short: by its time limit, its client or the server.
		switch context.Cause(ctx) {
		case gldap.ErrClientGone:
		case errTimeLimit:
			done(gldap.ResultTimeLimitExceeded, fmt.Sprintf("time limit of %v exceeded", lim.time), "", controls...)
		default:
			done(gldap.ResultUnavailable, "server stopping", "")
		}
		return
	default:
		code, msg := s.failure("search", r, err)
		if code == gldap.ResultNoSuchObject {
			done(code, msg, s.tree.usersDN)
			return
		}
		done(code, msg, "")
		return
	}
	if q.sizeExceeded {
		done(gldap.ResultSizeLimitExceeded, fmt.Sprintf("size limit of %d entries exceeded", q.sizeLimit), "", controls...)
		return
	}
	done(gldap.ResultSuccess, "", "", controls...)
}

var (
	errStop       = errors.New("stop")
	errClientGone = errors.New("client gone")
)

// query is one search in progress.
type query struct {
	s         *Server
	w         *gldap.ResponseWriter
	r         *gldap.Request
	f         *filter
	sel       selection
	typesOnly bool
	password  bool // userPassword is visible

	// What is searched: fixed entries, then users (one, all, or none).
	statics  []*staticEntry
	users    bool
	baseUser string // the base DN's user: the one user in scope, which must exist
	probe    bool   // one level under baseUser: it must exist, but is not in scope
	only     string // the bound user, when they may read only their own entry

	sizeLimit, pageSize int
	before              int    // entries the earlier pages of a paged search returned
	sent                int    // entries this request returned
	cur                 cursor // where this page starts; then the last entry sent
	more                bool   // a further entry matched after the page was full
	sizeExceeded        bool
}

// scope decides which entries the search covers. It returns false when the
// base DN names no entry.
func (q *query) scope(t target, scope gldap.Scope, ss *session) bool {
	s := q.s
	switch t.kind {
	case kindRoot: // one or sub from the root: the naming context and below
		switch scope {
		case gldap.SingleLevel:
			q.statics = []*staticEntry{s.base}
		default:
			q.statics, q.users = []*staticEntry{s.base, s.users}, true
		}
	case kindBase:
		switch scope {
		case gldap.BaseObject:
			q.statics = []*staticEntry{s.base}
		case gldap.SingleLevel:
			q.statics = []*staticEntry{s.users}
		default:
			q.statics, q.users = []*staticEntry{s.base, s.users}, true
		}
	case kindUsers:
		switch scope {
		case gldap.BaseObject:
			q.statics = []*staticEntry{s.users}
		case gldap.SingleLevel:
			q.users = true
		default:
			q.statics, q.users = []*staticEntry{s.users}, true
		}
	case kindUser:
		// One level under a user is empty, but the base must still
		// exist (RFC 4511 4.5.1.1): it is looked up, not sent.
		q.users, q.baseUser, q.probe = true, t.name, scope == gldap.SingleLevel
	default:
		return false
	}
	if q.users && !s.readsAll(ss) {
		// A user reads their own entry only: the candidates shrink to
		// it instead of being filtered out one by one.
		switch {
		case ss.name == "":
			q.users = false // no user of its own: an empty q.only would mean everyone
		case q.baseUser == "":
			q.only = ss.name
		case normalized(q.baseUser) != ss.name:
			q.users = false
		}
	}
	return true
}

// plan is how the search finds its users.
func (q *query) plan() plan {
	switch {
	case !q.users:
		return plan{exact: true}
	case q.baseUser != "":
		name := normalized(q.baseUser)
		return plan{exact: true, names: []string{name}}
	case q.only != "":
		return plan{exact: true, names: []string{q.only}}
	}
	return planFor(q.f)
}

// context is what the search runs under. A search of one user by name (the
// lookup of a mail server, the hot path) is over in microseconds: it runs
// under the server's context, untimed and unwatched. Any other is
// cancelled when its client goes away, the server stops, or its time
// limit passes.
func (q *query) context(p plan, limit time.Duration) (context.Context, context.CancelFunc) {
	if p.exact && len(p.names) <= 1 {
		return q.s.ctx, func() {}
	}
	ctx := q.r.Context()
	if limit <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeoutCause(ctx, limit, errTimeLimit)
}

// run sends the entries in scope that match, from the cursor on.
func (q *query) run(ctx context.Context, p plan) error {
	if q.cur.phase == phaseStatic {
		for i := q.cur.static; i < len(q.statics); i++ {
			if q.f.eval(q.statics[i]) != resTrue {
				continue
			}
			if err := q.full(); err != nil {
				return err
			}
			if err := q.send(staticResponse(q.r, q.statics[i], q.sel, q.typesOnly)); err != nil {
				return err
			}
			q.cur = cursor{phase: phaseStatic, static: i + 1}
		}
	}
	if !q.users {
		return nil
	}
	var after string
	if q.cur.phase == phaseUsers {
		after = q.cur.after
	}
	if !p.exact {
		p.match.After = after
		return q.s.svc.SearchUsers(ctx, p.match, func(u *directory.User) error { return q.offer(ctx, u) })
	}
	for _, name := range p.names {
		if name == "" {
			return directory.ErrNotFound // the base names no possible user
		}
		if name <= after {
			continue
		}
		u, err := q.s.svc.Lookup(ctx, name)
		if errors.Is(err, directory.ErrNotFound) {
			if q.baseUser != "" {
				return err // the base entry does not exist
			}
			continue
		}
		if err != nil {
			return err
		}
		if q.probe {
			continue
		}
		if err := q.offer(ctx, u); err != nil {
			return err
		}
	}
	return nil
}

// offer sends u if it matches.
func (q *query) offer(ctx context.Context, u *directory.User) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	e := userEntry{t: &q.s.tree, u: u, password: q.password}
	if q.f.eval(e) != resTrue {
		return nil
	}
	if err := q.full(); err != nil {
		return err
	}
	if err := q.send(userResponse(q.r, e, q.sel, q.typesOnly)); err != nil {
		return err
	}
	q.cur = cursor{phase: phaseUsers, after: u.Name}
	return nil
}

// full is called with the next matching entry in hand: past the size limit
// or the page size it stops the search, noting why.
func (q *query) full() error {
	switch {
	case q.sizeLimit > 0 && q.before+q.sent >= q.sizeLimit:
		q.sizeExceeded = true
		return errStop
	case q.pageSize > 0 && q.sent >= q.pageSize:
		q.more = true
		return errStop
	}
	return nil
}

func (q *query) send(resp *gldap.SearchResponseEntry) error {
	if err := q.w.Write(resp); err != nil {
		return errClientGone
	}
	q.sent++
	return nil
}

// offerStatic sends one fixed entry if it matches (no limits apply).
func (q *query) offerStatic(e *staticEntry) {
	if q.f.eval(e) == resTrue {
		q.send(staticResponse(q.r, e, q.sel, q.typesOnly))
	}
}

// normalized is the key of a user name, or "" for a name no user can have.
func normalized(name string) string {
	n, err := directory.NormalizeName(name)
	if err != nil {
		return ""
	}
	return n
}
