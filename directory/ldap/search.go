package ldap

import (
	"context"
	"errors"
	"time"

	"github.com/jimlambrt/gldap"

	"github.com/tohost/tohost/directory"
)

// search answers a search request. Entries are written as they are found
// (the connection's buffer goes out whenever it fills), so a search over
// every user holds one user in memory at a time.
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
	f, err := compileFilter(m.FilterPacket)
	if err != nil {
		done(gldap.ResultProtocolError, err.Error(), "")
		return
	}
	t, err := s.tree.resolve(m.BaseDN)
	if err != nil {
		done(gldap.ResultInvalidDNSyntax, "invalid base DN", "")
		return
	}
	q := &query{s: s, w: w, r: r, f: f, sel: newSelection(m.Attributes), typesOnly: m.TypesOnly,
		password: ss.admin, sizeLimit: int(max(m.SizeLimit, 0))}

	// The root DSE is readable before any bind (RFC 4512 5.1).
	if t.kind == kindRoot && m.Scope == gldap.BaseObject {
		q.offerStatic(s.root)
		done(gldap.ResultSuccess, "", "")
		return
	}
	if ss.anonymous() && !s.cfg.AnonymousRead {
		done(gldap.ResultInsufficientAccessRights, "anonymous search is not allowed: bind first", "")
		return
	}
	if !q.scope(t, m.Scope, ss) {
		done(gldap.ResultNoSuchObject, "", t.matched)
		return
	}

	pc := pagingControl(m.Controls)
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
		q.pageSize = int(pc.PagingSize)
	}

	ctx := s.ctx
	if m.TimeLimit > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(m.TimeLimit)*time.Second)
		defer cancel()
	}
	err = q.run(ctx)
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
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil:
		done(gldap.ResultTimeLimitExceeded, "", "")
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
		done(gldap.ResultSizeLimitExceeded, "", "", controls...)
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
		case q.baseUser == "":
			q.only = ss.name
		case normalized(q.baseUser) != ss.name:
			q.users = false
		}
	}
	return true
}

// run sends the entries in scope that match, from the cursor on.
func (q *query) run(ctx context.Context) error {
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
	p := planFor(q.f)
	switch {
	case q.baseUser != "":
		name := normalized(q.baseUser)
		if name == "" {
			return directory.ErrNotFound
		}
		p = plan{exact: true, names: []string{name}}
	case q.only != "":
		p = plan{exact: true, names: []string{q.only}}
	}
	if !p.exact {
		p.match.After = after
		return q.s.svc.SearchUsers(ctx, p.match, func(u *directory.User) error { return q.offer(ctx, u) })
	}
	for _, name := range p.names {
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
