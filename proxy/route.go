package proxy

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"sort"
	"strconv"
	"strings"

	"github.com/tohost/tohost/protocol/authent"
)

// Route is where a user's session goes.
type Route struct {
	Host string // the backend's host name or address, for TLS verification
	Addr string // host:port to dial
	// Alt are the backends to try, in order, when Addr cannot be
	// reached: the other default backends, for a user without tohost
	// when there are several (they share one mail directory).
	Alt []Route
}

// serves reports whether the backend at addr is r's or one of its
// alternatives: any of them serves the user.
func (r Route) serves(addr string) bool {
	if r.Addr == addr {
		return true
	}
	for _, a := range r.Alt {
		if a.Addr == addr {
			return true
		}
	}
	return false
}

// candidates returns r and its alternatives, in the order to try them.
func (r Route) candidates() []Route {
	first := r
	first.Alt = nil
	return append([]Route{first}, r.Alt...)
}

// ErrLoop: the user's tohost names this proxy.
var ErrLoop = errors.New("tohost names this proxy: routing loop refused")

// ErrNoBackend: the user has no tohost and there is no default backend.
var ErrNoBackend = errors.New("user has no tohost and no --default-backend is set")

// route returns the backend for u over proto: its tohost field, else the
// default backend (one of them, chosen by the user's name, the others as
// alternatives); the protocol's port unless the target carries one.
func (p *Proxy) route(u authent.User, proto Protocol) (Route, error) {
	if target := strings.TrimSpace(u.Get("tohost")); target != "" {
		return p.routeTo(u, target, proto)
	}
	defaults := defaultBackends(p.cfg.DefaultBackend)
	if len(defaults) == 0 {
		return Route{}, ErrNoBackend
	}
	rendezvous(strings.ToLower(u.Name), defaults)
	var r Route
	for i, target := range defaults {
		one, err := p.routeTo(u, target, proto)
		if err != nil {
			return Route{}, err
		}
		if i == 0 {
			r = one
		} else {
			r.Alt = append(r.Alt, one)
		}
	}
	return r, nil
}

// routeTo is the route to one target (a tohost value).
func (p *Proxy) routeTo(u authent.User, target string, proto Protocol) (Route, error) {
	host, port, err := splitTarget(target, p.cfg.Ports[proto])
	if err != nil {
		return Route{}, fmt.Errorf("user %s: tohost %q: %w", u.Name, target, err)
	}
	if p.isSelf(host, port) {
		return Route{}, fmt.Errorf("user %s: %w (%s)", u.Name, ErrLoop, target)
	}
	return Route{Host: host, Addr: net.JoinHostPort(host, strconv.Itoa(port))}, nil
}

// defaultBackends splits a --default-backend value: one backend, or
// several separated by commas.
func defaultBackends(s string) []string {
	var out []string
	for _, t := range strings.Split(s, ",") {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	return out
}

// rendezvous orders backends for user by highest random weight (a hash of
// the user and the backend): every proxy puts the same backend first for
// a user, so the user's sessions meet on one backend; and when a backend
// is added or removed, only the users it wins or held move.
func rendezvous(user string, backends []string) {
	weight := func(b string) uint64 {
		h := fnv.New64a()
		h.Write([]byte(user))
		h.Write([]byte{0})
		h.Write([]byte(strings.ToLower(b)))
		return mix64(h.Sum64())
	}
	sort.SliceStable(backends, func(i, j int) bool { return weight(backends[i]) > weight(backends[j]) })
}

// mix64 is SplitMix64's finalizer: FNV's low bits alone spread similar
// names poorly.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// splitTarget reads a tohost value: host, host:port, [v6], [v6]:port or a
// bare IPv6 address.
func splitTarget(s string, defPort int) (string, int, error) {
	if ip := net.ParseIP(s); ip != nil { // a bare address, v6 included
		return s, defPort, nil
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		return s[1 : len(s)-1], defPort, nil
	}
	if !strings.Contains(s, ":") {
		return s, defPort, nil
	}
	host, ps, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", ps)
	}
	if host == "" {
		return "", 0, errors.New("no host")
	}
	return host, port, nil
}

// isSelf reports whether host:port is this proxy: a name or address in
// Config.Self (with or without a port), or one of the proxy's own
// listening addresses.
func (p *Proxy) isSelf(host string, port int) bool {
	hp := net.JoinHostPort(host, strconv.Itoa(port))
	for _, s := range p.cfg.Self {
		if strings.EqualFold(s, host) || strings.EqualFold(s, hp) {
			return true
		}
	}
	return false
}
