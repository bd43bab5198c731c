package pop3

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"
)

// testTLS returns a server configuration with a self-signed certificate
// for 127.0.0.1, and a client configuration that trusts it.
func testTLS(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "mx1"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}},
		&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
}

func TestSTLS(t *testing.T) {
	srvTLS, cliTLS := testTLS(t)
	ts := newTestServer(t, func(c *Config) { c.TLS = srvTLS })
	ts.deliver("alice", msg2)
	cl := ts.dial()
	if _, body := cl.multi("CAPA"); !strings.Contains(body, "STLS\r\n") {
		t.Fatalf("CAPA without TLS: %q", body)
	}
	// A USER before STLS is forgotten after it.
	cl.cmdPrefix("USER alice", "+OK")
	cl.expectReply("STLS", "+OK Begin TLS negotiation.")
	tc := tls.Client(cl.c, cliTLS)
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	cl.c, cl.r = tc, bufio.NewReader(tc)
	if _, body := cl.multi("CAPA"); strings.Contains(body, "STLS") {
		t.Errorf("CAPA over TLS offers STLS: %q", body)
	}
	cl.expectReply("STLS", "-ERR Already using TLS.")
	cl.expectReply("PASS secret", "-ERR No user name given: USER first.")
	cl.login("alice", "secret")
	if _, body := cl.multi("RETR 1"); body != wire2 {
		t.Errorf("RETR over TLS: %q", body)
	}
	cl.expectReply("QUIT", "+OK Bye, 0 messages deleted.")

	// A command sent along with STLS, before the handshake, would be
	// injected into the TLS session: the connection is closed instead.
	cl = ts.dial()
	cl.send("STLS\r\nUSER alice\r\n")
	cl.expect("+OK Begin TLS negotiation.")
	cl.expectClosed()
}

func TestImplicitTLS(t *testing.T) {
	// On a POP3S port the listener does the TLS: STLS is neither offered
	// nor accepted, and logins work as usual.
	srvTLS, cliTLS := testTLS(t)
	ts := newTestServer(t, func(c *Config) { c.TLS = srvTLS })
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srvTLS)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ts.srv.Serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), cliTLS)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(hangGuard))
	cl := &client{t: t, c: c, r: bufio.NewReader(c), ts: ts}
	cl.expect("+OK mx1 POP3 ready.")
	if _, body := cl.multi("CAPA"); strings.Contains(body, "STLS") {
		t.Errorf("CAPA over implicit TLS offers STLS: %q", body)
	}
	cl.expectReply("STLS", "-ERR Already using TLS.")
	cl.login("alice", "secret")
	cl.expectReply("QUIT", "+OK Bye, 0 messages deleted.")
	cl.expectClosed()
}
