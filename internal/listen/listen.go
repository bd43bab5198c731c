// Package listen opens the network listeners of a daemon and decides who
// gets in: one allow-list, one connection cap counted across every listener
// of the daemon, a polite refusal in the protocol's own words for
// connections over the cap, implicit TLS, PROXY protocol v2 from trusted
// networks, and a back-off when the process runs out of file descriptors.
// The servers behind it (TCPAuth, LDAP, and go-smtp or go-imap servers,
// which take a net.Listener) only see connections they are meant to serve.
package listen

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pires/go-proxyproto"
)

// Loopback is the default allow-list.
var Loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// DefaultMaxConns is the cap when Config.MaxConns is 0 or less.
const DefaultMaxConns = 10_000

// Reserve is how many file descriptors the cap leaves to everything else
// of the process: stores, the admin listener, outgoing connections.
const Reserve = 256

// Config is what the listeners of one daemon share.
type Config struct {
	// Allow lists the networks whose connections are accepted (nil:
	// loopback). It is matched against the TCP peer.
	Allow []netip.Prefix
	// MaxConns caps the connections open at once on all of the Gate's
	// listeners together (0 or less: DefaultMaxConns). It is lowered to
	// fit the process's file descriptor limit, less Reserve.
	MaxConns int
	// MaxConnsPerIP caps the connections open at once from one client
	// address (0: no cap). Connections from trusted proxies are not
	// counted: they carry many clients.
	MaxConnsPerIP int
	// TrustedProxies lists the networks whose connections must start with
	// a PROXY protocol header (v1 or v2); the address it carries becomes
	// the connection's RemoteAddr. Connections from elsewhere never have
	// their header read.
	TrustedProxies []netip.Prefix
	// ProxyHeaderTimeout bounds the wait for that header (default 5 s).
	ProxyHeaderTimeout time.Duration
	Logger             *slog.Logger
}

// Options are a listener's own.
type Options struct {
	// TLS, when set, makes the listener implicit TLS (LDAPS, IMAPS...).
	TLS *tls.Config
	// Refusal is written to a connection over the cap before it is
	// closed: the protocol's "try again later" (-DEAD, 421, * BYE...).
	Refusal []byte
}

// Gate admits connections to a daemon's listeners.
type Gate struct {
	cfg     Config
	log     *slog.Logger
	slots   chan struct{}
	open    atomic.Int64
	refused atomic.Int64

	perIPMu sync.Mutex
	perIP   map[netip.Addr]int
}

// NewGate returns a Gate for cfg.
func NewGate(cfg Config) *Gate {
	if cfg.Allow == nil {
		cfg.Allow = Loopback
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.ProxyHeaderTimeout <= 0 {
		cfg.ProxyHeaderTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if n := fitDescriptors(cfg.MaxConns, descriptorLimit()); n < cfg.MaxConns {
		cfg.Logger.Warn("connection cap lowered to fit the file descriptor limit",
			"max_conns", cfg.MaxConns, "lowered_to", n, "nofile", descriptorLimit(), "reserve", Reserve)
		cfg.MaxConns = n
	}
	return &Gate{cfg: cfg, log: cfg.Logger, slots: make(chan struct{}, cfg.MaxConns), perIP: make(map[netip.Addr]int)}
}

// MaxConns returns the cap in force.
func (g *Gate) MaxConns() int { return g.cfg.MaxConns }

// Open returns the connections open now on all of the Gate's listeners.
func (g *Gate) Open() int64 { return g.open.Load() }

// Refused returns how many connections were turned away (not allowed, or
// over the cap) since the Gate was made.
func (g *Gate) Refused() int64 { return g.refused.Load() }

// fitDescriptors lowers max so that max connections leave Reserve
// descriptors free under the limit nofile (0: unknown).
func fitDescriptors(max int, nofile uint64) int {
	if nofile == 0 {
		return max
	}
	room := int64(nofile) - Reserve
	if room < 1 {
		room = 1
	}
	if int64(max) > room {
		return int(room)
	}
	return max
}

func descriptorLimit() uint64 {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0
	}
	return r.Cur
}

// Listen opens a TCP listener on addr behind the Gate.
func (g *Gate) Listen(addr string, opt Options) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return g.Wrap(ln, opt), nil
}

// Wrap puts an open listener behind the Gate.
func (g *Gate) Wrap(ln net.Listener, opt Options) net.Listener {
	return &listener{Listener: ln, g: g, opt: opt}
}

type listener struct {
	net.Listener
	g   *Gate
	opt Options
}

// Accept returns the next connection the Gate admits. Connections from
// outside the allow-list are closed at once; connections over the cap get
// the refusal. When the process is out of descriptors it waits, longer
// each time, rather than spinning.
func (l *listener) Accept() (net.Conn, error) {
	var delay time.Duration
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			if !retryable(err) {
				return nil, err
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			l.g.log.Warn("accept failed; retrying", "addr", l.Addr().String(), "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		if c := l.admit(nc); c != nil {
			return c, nil
		}
	}
}

// admit returns the connection as the server should see it, or nil when
// it was turned away.
func (l *listener) admit(nc net.Conn) net.Conn {
	g := l.g
	ip := PeerIP(nc)
	if !Contains(g.cfg.Allow, ip) {
		g.refused.Add(1)
		g.log.Warn("connection refused: address not allowed", "client", ip.String(), "addr", l.Addr().String())
		nc.Close()
		return nil
	}
	select {
	case g.slots <- struct{}{}:
	default:
		g.refused.Add(1)
		g.log.Warn("connection refused: connection limit reached", "client", ip.String(), "addr", l.Addr().String(), "max", g.cfg.MaxConns)
		go refuse(nc, l.opt.Refusal)
		return nil
	}
	proxied := Contains(g.cfg.TrustedProxies, ip)
	if !proxied && !g.takeIP(ip) {
		<-g.slots
		g.refused.Add(1)
		g.log.Warn("connection refused: per-address limit reached", "client", ip.String(), "addr", l.Addr().String(), "max", g.cfg.MaxConnsPerIP)
		go refuse(nc, l.opt.Refusal)
		return nil
	}
	g.open.Add(1)
	cc := &counted{Conn: nc, g: g}
	if !proxied && g.cfg.MaxConnsPerIP > 0 {
		cc.ip = ip
	}
	var c net.Conn = cc
	if proxied {
		c = proxyproto.NewConn(c, proxyproto.WithPolicy(proxyproto.REQUIRE),
			proxyproto.SetReadHeaderTimeout(g.cfg.ProxyHeaderTimeout))
	}
	if l.opt.TLS != nil {
		c = tls.Server(c, l.opt.TLS)
	}
	return c
}

// refuse tells a connection over the cap to come back later.
func refuse(nc net.Conn, msg []byte) {
	nc.SetDeadline(time.Now().Add(time.Second))
	if len(msg) > 0 {
		nc.Write(msg)
	}
	CloseGracefully(nc, time.Second)
}

// takeIP counts one more connection from ip, unless ip is at its cap.
func (g *Gate) takeIP(ip netip.Addr) bool {
	if g.cfg.MaxConnsPerIP <= 0 {
		return true
	}
	g.perIPMu.Lock()
	defer g.perIPMu.Unlock()
	if g.perIP[ip] >= g.cfg.MaxConnsPerIP {
		return false
	}
	g.perIP[ip]++
	return true
}

func (g *Gate) releaseIP(ip netip.Addr) {
	g.perIPMu.Lock()
	defer g.perIPMu.Unlock()
	if g.perIP[ip] <= 1 {
		delete(g.perIP, ip)
	} else {
		g.perIP[ip]--
	}
}

// counted gives its slot back when closed.
type counted struct {
	net.Conn
	g    *Gate
	ip   netip.Addr // counted per address when valid
	once sync.Once
}

func (c *counted) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		if c.ip.IsValid() {
			c.g.releaseIP(c.ip)
		}
		c.g.open.Add(-1)
		<-c.g.slots
	})
	return err
}

// CloseWrite half-closes the connection, where the network allows it.
func (c *counted) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// retryable reports whether an Accept error passes: out of descriptors or
// memory for sockets, or a connection that died before it was accepted.
func retryable(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) ||
		errors.Is(err, syscall.ECONNABORTED)
}

// PeerIP returns the address at the other end of nc: the client's, or with
// a PROXY header from a trusted proxy, the address the header names.
func PeerIP(nc net.Conn) netip.Addr {
	switch a := nc.RemoteAddr().(type) {
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	case nil:
		return netip.Addr{}
	default:
		ap, err := netip.ParseAddrPort(a.String())
		if err != nil {
			return netip.Addr{}
		}
		return ap.Addr().Unmap()
	}
}

// Contains reports whether ip is in one of nets.
func Contains(nets []netip.Prefix, ip netip.Addr) bool {
	for _, n := range nets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// ParsePrefixes parses networks written as CIDRs or bare addresses (one
// host); flag names the setting in the error.
func ParsePrefixes(flag string, list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not a network (CIDR) or address", flag, s)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// Raw returns the connection under the Gate's bookkeeping wrapper, so that
// a relay can copy between plain TCP sockets in the kernel (splice). Close
// the connection Accept returned, never the raw one: that gives the slot
// back. Other wrappers (TLS, PROXY) are returned as they are.
func Raw(c net.Conn) net.Conn {
	if cc, ok := c.(*counted); ok {
		return cc.Conn
	}
	return c
}
