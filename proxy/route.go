package proxy

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/tohost/tohost/protocol/authent"
)

// Route is where a user's session goes.
type Route struct {
	Host string // the backend's host name or address, for TLS verification
	Addr string // host:port to dial
}

// ErrLoop: the user's tohost names this proxy.
var ErrLoop = errors.New("tohost names this proxy: routing loop refused")

// ErrNoBackend: the user has no tohost and there is no default backend.
var ErrNoBackend = errors.New("user has no tohost and no --default-backend is set")

// route returns the backend for u over proto: its tohost field, else the
// default backend; the protocol's port unless tohost carries one.
func (p *Proxy) route(u authent.User, proto Protocol) (Route, error) {
	target := strings.TrimSpace(u.Get("tohost"))
	if target == "" {
		target = p.cfg.DefaultBackend
	}
	if target == "" {
		return Route{}, ErrNoBackend
	}
	host, port, err := splitTarget(target, p.cfg.Ports[proto])
	if err != nil {
		return Route{}, fmt.Errorf("user %s: tohost %q: %w", u.Name, target, err)
	}
	if p.isSelf(host, port) {
		return Route{}, fmt.Errorf("user %s: %w (%s)", u.Name, ErrLoop, target)
	}
	return Route{Host: host, Addr: net.JoinHostPort(host, strconv.Itoa(port))}, nil
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
