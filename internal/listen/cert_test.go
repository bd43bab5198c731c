package listen

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/tohost/tohost/internal/testservices"
)

// TestCertificateReload: after Reload a new connection gets the new
// certificate while one already open keeps working; files that do not
// hold a valid pair leave the certificate as it was.
func TestCertificateReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	testservices.WriteCert(t, certFile, keyFile, "old.example")
	c, err := LoadCertificate(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", c.Config())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // an echo server
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				buf := make([]byte, 64)
				for {
					n, err := nc.Read(buf)
					if err != nil {
						nc.Close()
						return
					}
					nc.Write(buf[:n])
				}
			}()
		}
	}()
	dial := func() (*tls.Conn, string) {
		t.Helper()
		conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		return conn, conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	echo := func(conn net.Conn) {
		t.Helper()
		buf := make([]byte, 4)
		if _, err := conn.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Read(buf); err != nil || string(buf) != "ping" {
			t.Fatalf("echo: %q %v", buf, err)
		}
	}
	old, cn := dial()
	defer old.Close()
	if cn != "old.example" {
		t.Fatalf("first certificate %q", cn)
	}
	testservices.WriteCert(t, certFile, keyFile, "new.example")
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	conn, cn := dial()
	conn.Close()
	if cn != "new.example" {
		t.Fatalf("after Reload a new connection got %q", cn)
	}
	echo(old)

	os.WriteFile(keyFile, []byte("half written"), 0o600)
	if err := c.Reload(); err == nil {
		t.Fatal("Reload of a broken key succeeded")
	}
	conn, cn = dial()
	conn.Close()
	if cn != "new.example" {
		t.Fatalf("after a failed Reload: %q", cn)
	}
}
