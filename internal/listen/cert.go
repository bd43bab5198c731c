package listen

import (
	"crypto/tls"
	"fmt"
	"sync/atomic"
)

// Certificate is a certificate and key loaded from files that Reload
// loads again, so a renewed certificate (certbot, an operator's
// `systemctl reload`) reaches new TLS connections without a restart.
// Connections already open keep the certificate they started with.
type Certificate struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
}

// LoadCertificate loads certFile and keyFile (PEM).
func LoadCertificate(certFile, keyFile string) (*Certificate, error) {
	c := &Certificate{certFile: certFile, keyFile: keyFile}
	if err := c.Reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// Reload loads the files again. When they do not hold a valid pair (a
// half-written renewal, a key that does not match) it keeps the
// certificate it had and says why.
func (c *Certificate) Reload() error {
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("%s, %s: %w", c.certFile, c.keyFile, err)
	}
	c.cur.Store(&cert)
	return nil
}

// Config returns a TLS configuration (TLS 1.2 or later) that presents the
// current certificate, as a server and as a client.
func (c *Certificate) Config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return c.cur.Load(), nil
		},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return c.cur.Load(), nil
		},
	}
}
