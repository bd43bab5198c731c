package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/pires/go-proxyproto"
)

// dialBackend connects to r for a client connected as client: the PROXY
// v2 header first when configured, then implicit TLS when configured.
// STARTTLS is the protocol's own business, after its greeting (see
// startTLS). A backend that cannot be reached gives way to r's
// alternatives, in order, each with the whole dial time; *r becomes the
// one reached, the others its alternatives. The connection's deadline is
// the dial deadline; the caller clears it once the login is replayed.
func (p *Proxy) dialBackend(ctx context.Context, r *Route, client net.Conn) (net.Conn, error) {
	cands := r.candidates()
	var errs []error
	for i, cand := range cands {
		c, err := p.dialOne(ctx, cand, client)
		if err == nil {
			if i > 0 {
				p.cfg.Logger.Warn("backend unreachable: the next default backend takes the session", "backend", cands[0].Addr, "instead", cand.Addr)
				*r = cand
				r.Alt = append(append([]Route(nil), cands[:i]...), cands[i+1:]...)
			}
			return c, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil || !errors.Is(err, errUnreachable) {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// errUnreachable: the backend did not take the connection; another
// backend of the same mail may.
var errUnreachable = errors.New("unreachable")

// dialOne is dialBackend for one backend.
func (p *Proxy) dialOne(ctx context.Context, r Route, client net.Conn) (net.Conn, error) {
	deadline := time.Now().Add(p.cfg.DialTimeout)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", r.Addr)
	if err != nil {
		p.cfg.Metrics.backendFailed()
		return nil, fmt.Errorf("%w: backend %s: %w: %v", ErrTemporary, r.Addr, errUnreachable, err)
	}
	c.SetDeadline(deadline)
	if p.cfg.BackendProxyProtocol {
		h := proxyproto.HeaderProxyFromAddrs(2, clientAddr(client), client.LocalAddr())
		if _, err := h.WriteTo(c); err != nil {
			c.Close()
			p.cfg.Metrics.backendFailed()
			return nil, fmt.Errorf("%w: backend %s: %w: PROXY header: %v", ErrTemporary, r.Addr, errUnreachable, err)
		}
	}
	if p.cfg.BackendTLS == BackendTLSOnly {
		tc, err := p.startTLS(ctx, c, r)
		if err != nil {
			return nil, err
		}
		c = tc
	}
	return c, nil
}

// startTLS runs a TLS handshake as a client of backend r on c (after the
// protocol's STARTTLS, or at once for implicit TLS), verifying the
// backend's certificate for r.Host unless the configuration says not to.
func (p *Proxy) startTLS(ctx context.Context, c net.Conn, r Route) (net.Conn, error) {
	cfg := p.cfg.BackendTLSConfig.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName = r.Host
	}
	tc := tls.Client(c, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		p.cfg.Metrics.backendFailed()
		return nil, fmt.Errorf("%w: backend %s: TLS: %v", ErrTemporary, r.Addr, err)
	}
	return tc, nil
}
