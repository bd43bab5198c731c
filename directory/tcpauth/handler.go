package tcpauth

import (
	"errors"
	"log/slog"
	"net/netip"
	"strconv"
	"time"

	"github.com/tohost/tohost/directory"
	"github.com/tohost/tohost/protocol/authent"
)

// handle renders the reply to one parsed, permitted request into rep and
// returns when it finished. Checks, lookups and writes may run in
// goroutines of their own, several at once, so they touch nothing of c
// that the reader changes; search and auth run only in the reader.
func (c *conn) handle(req *authent.Request, rep *authent.Reply) time.Time {
	start := time.Now()
	outcome := outcomeOK
	switch req.Cmd {
	case authent.Lookup:
		outcome = c.lookup(req, rep)
	case authent.Check:
		outcome = c.check(req, rep)
	case authent.Set:
		outcome = c.set(req, rep)
	case authent.Del:
		outcome = c.del(req, rep)
	case authent.Rename:
		outcome = c.rename(req, rep)
	case authent.Search:
		outcome = c.search(req, rep)
	case authent.Auth:
		outcome = c.auth(req, rep)
	case authent.Version:
		rep.OK("tohost " + c.srv.cfg.Version)
	case authent.Help:
		for _, h := range helpLines {
			rep.Data(h)
		}
		rep.OK("")
	case authent.Ping:
		rep.OK("pong")
	case authent.Exit, authent.Quit:
		rep.OK("")
	}
	end := time.Now()
	c.srv.cfg.Metrics.observe(req.Cmd, outcome, end.Sub(start))
	c.noteCost(req.Cmd, end.Sub(start))
	return end
}

var helpLines = []string{
	"check <user> <password> [<client-ip>]",
	"lookup <user>",
	"set <user> <password>|(NULL) [label=\"value\" ...]",
	"del <user>",
	"rename <old> <new>",
	"search <pattern> [-from <n>] [-max <m>]",
	"auth <secret>",
	"ping",
	"version",
	"help",
	"exit",
	"quit",
}

func (c *conn) lookup(req *authent.Request, rep *authent.Reply) outcome {
	u, err := c.srv.svc.Lookup(c.ctx, req.User)
	if err != nil {
		if errors.Is(err, directory.ErrNotFound) {
			rep.ErrUser(req.User, "does not exist")
			return outcomeErr
		}
		return c.failed(req, rep, err)
	}
	writeUser(rep, req.User, u)
	return outcomeOK
}

func (c *conn) check(req *authent.Request, rep *authent.Reply) outcome {
	addr, ok := c.clientAddr(req.IP)
	if !ok {
		rep.Err("bad client ip")
		return outcomeErr
	}
	pen := c.srv.cfg.Penalty
	key := penaltyKey(addr, req.User)
	if pen.Cooling(key) {
		// Too soon after a failure: refused unchecked, so a guesser
		// learns nothing from it, and without a wait that would hold up
		// the replies pipelined behind this one.
		rep.ErrUser(req.User, "password wrong or not a valid user")
		return outcomeErr
	}
	// The address also picks the queue the check's hash waits in, so one
	// address's storm of checks delays the others by a hash at most.
	u, err := c.srv.svc.Check(directory.WithClient(c.ctx, addr), req.User, req.Password)
	if err != nil {
		var in *directory.InputError
		if errors.Is(err, directory.ErrBadCredentials) || errors.As(err, &in) {
			if err != directory.ErrBadCredentials && in == nil {
				// A stored hash that cannot be read: the admin must know.
				c.srv.log.Error("check refused", "user", req.User, "err", err)
			}
			if in == nil {
				c.srv.failedLogin("check", key, addr, req.User)
			}
			rep.ErrUser(req.User, "password wrong or not a valid user")
			return outcomeErr
		}
		return c.failed(req, rep, err)
	}
	pen.Succeeded(key)
	writeUser(rep, req.User, u)
	return outcomeOK
}

// clientAddr is the address a check is for: the one a front end passes
// with it (an address, or an address and port), else the connection's.
// ok is false when the passed one is neither.
func (c *conn) clientAddr(ip string) (addr string, ok bool) {
	if ip == "" {
		return c.peer, true
	}
	if a, err := netip.ParseAddr(ip); err == nil {
		return a.Unmap().String(), true
	}
	if ap, err := netip.ParseAddrPort(ip); err == nil {
		return ap.Addr().Unmap().String(), true
	}
	return "", false
}

// penaltyKey is what failed checks are counted by: the client's address
// and the user. The user is part of it because a mail server asking for
// all its users is one address: one user's typos must not refuse the
// others. Guessing many users from one address is the front end's to slow
// down (tohost's proxy delays every login of a failing address).
func penaltyKey(addr, user string) string {
	return addr + " " + directory.FoldName(user)
}

// failedLogin counts a failed check or auth of key and logs it, once per
// burst rather than once per try: at the 1st, 2nd, 4th, 8th... failure in
// a row, so a storm of guesses writes a few lines, each with the count.
func (s *Server) failedLogin(what, key, client, user string) {
	n := s.cfg.Penalty.Failed(key)
	if n&(n-1) != 0 {
		return
	}
	attrs := []any{"client", client, "failures", n}
	if user != "" {
		attrs = append(attrs, "user", user)
	}
	s.log.Warn("tcpauth "+what+" failed", attrs...)
}

func writeUser(rep *authent.Reply, name string, u *directory.User) {
	rep.BeginUser(name)
	for _, f := range u.Fields {
		rep.AddField(f.Label, f.Value)
	}
	rep.EndLine()
}

func (c *conn) set(req *authent.Request, rep *authent.Reply) outcome {
	fields := make([]directory.Field, len(req.Fields))
	for i, f := range req.Fields {
		fields[i] = directory.Field{Label: f.Label, Value: f.Value}
	}
	if _, err := c.srv.svc.Set(c.ctx, req.User, req.Password, fields); err != nil {
		return c.failed(req, rep, err)
	}
	c.audit("set", req.User, "")
	rep.OK(req.User + " added to database")
	return outcomeOK
}

func (c *conn) del(req *authent.Request, rep *authent.Reply) outcome {
	if err := c.srv.svc.Delete(c.ctx, req.User); err != nil {
		if errors.Is(err, directory.ErrNotFound) {
			rep.ErrUser(req.User, "does not exist")
			return outcomeErr
		}
		return c.failed(req, rep, err)
	}
	c.audit("del", req.User, "")
	rep.OK(req.User + " deleted")
	return outcomeOK
}

func (c *conn) rename(req *authent.Request, rep *authent.Reply) outcome {
	err := c.srv.svc.Rename(c.ctx, req.User, req.NewUser)
	switch {
	case err == nil:
		c.audit("rename", req.User, req.NewUser)
		rep.OK(req.NewUser + " renamed")
		return outcomeOK
	case errors.Is(err, directory.ErrNotFound):
		rep.ErrUser(req.User, "does not exist")
		return outcomeErr
	case errors.Is(err, directory.ErrExists):
		rep.ErrUser(req.NewUser, "already exists")
		return outcomeErr
	}
	return c.failed(req, rep, err)
}

// search streams one +DATA line per match. It runs only in the reader
// goroutine with mu held, so it may move rep's lines into the output
// buffer as it goes instead of building the whole answer in memory.
func (c *conn) search(req *authent.Request, rep *authent.Reply) outcome {
	n, err := c.srv.svc.Search(c.ctx, req.Pattern, req.From, req.Max, func(name string) error {
		rep.Data(name)
		if len(rep.Buf) >= 8<<10 {
			c.write(rep.Buf)
			rep.Buf = c.w.AvailableBuffer()
		}
		return c.werr // a client that went away stops the search
	})
	if err != nil {
		return c.failed(req, rep, err)
	}
	total, err := c.srv.svc.Count(c.ctx)
	if err != nil {
		return c.failed(req, rep, err)
	}
	rep.OK("Search Complete " + strconv.Itoa(n) + " items found out of " + strconv.FormatInt(total, 10))
	return outcomeOK
}

func (c *conn) auth(req *authent.Request, rep *authent.Reply) outcome {
	addr := c.peer
	key := addr + " auth"
	// A wrong secret is waited out before the next is compared. auth
	// runs in the reader, after every earlier reply, so the wait holds up
	// this connection only; a client with the right secret from the same
	// address is slowed, not refused (a secret being rotated must not
	// lock the other clients of a host out).
	if c.srv.cfg.Penalty.Wait(c.ctx, key) != nil {
		rep.Err("authentication failed")
		return outcomeErr
	}
	if !c.srv.secretOK(req.Secret) {
		c.authFails++
		c.srv.failedLogin("auth", key, addr, "")
		rep.Err("authentication failed")
		return outcomeErr
	}
	c.srv.cfg.Penalty.Succeeded(key)
	c.authed, c.admin = true, true
	rep.OK("")
	return outcomeOK
}

// failed answers an error that is not the request's own expected "no":
// bad input gets -ERR with the reason, anything else -DEAD, because a mail
// server takes -ERR for "no such user" and would bounce mail.
func (c *conn) failed(req *authent.Request, rep *authent.Reply, err error) outcome {
	var in *directory.InputError
	if errors.As(err, &in) {
		rep.Err(in.Msg)
		return outcomeErr
	}
	if errors.Is(err, directory.ErrBusy) {
		// Too many hashes queued: the client retries later. Not logged
		// one by one, since a storm makes thousands (the metrics count
		// them as dead).
		rep.Dead("directory busy")
		return outcomeDead
	}
	level := slog.LevelError
	if errors.Is(err, directory.ErrUnavailable) {
		// The store logs its outages once per state change; a line per
		// request would bury them under thousands of copies.
		level = slog.LevelDebug
	}
	c.srv.log.Log(c.ctx, level, "tcpauth request failed", "command", req.Cmd.String(), "user", req.User, "err", err)
	rep.Dead("directory unavailable")
	return outcomeDead
}
