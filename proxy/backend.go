package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/pires/go-proxyproto"
)

// dialBackend connects to r for a client connected as client: the PROXY
// v2 header first when configured, then implicit TLS when configured.
// STARTTLS is the protocol's own business, after its greeting (see
// startTLS). The connection's deadline is the dial deadline; the caller
// clears it once the login is replayed.
func (p *Proxy) dialBackend(ctx context.Context, r Route, client net.Conn) (net.Conn, error) {
	deadline := time.Now().Add(p.cfg.DialTimeout)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", r.Addr)
	if err != nil {
		p.cfg.Metrics.backendFailed()
		return nil, fmt.Errorf("%w: backend %s: %v", ErrTemporary, r.Addr, err)
	}
	c.SetDeadline(deadline)
	if p.cfg.BackendProxyProtocol {
		h := proxyproto.HeaderProxyFromAddrs(2, clientAddr(client), client.LocalAddr())
		if _, err := h.WriteTo(c); err != nil {
			c.Close()
			p.cfg.Metrics.backendFailed()
			return nil, fmt.Errorf("%w: backend %s: PROXY header: %v", ErrTemporary, r.Addr, err)
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
