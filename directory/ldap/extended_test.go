package ldap

import (
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

	goldap "github.com/go-ldap/ldap/v3"
)

func TestWhoAmI(t *testing.T) {
	h := start(t, adminConfig())
	h.user("alice@example.com")
	for _, tc := range []struct {
		c    *goldap.Conn
		want string
	}{
		{h.dial(), ""},
		{h.bound(userDN("alice@example.com"), "pw-alice@example.com"), "dn:" + userDN("alice@example.com")},
		{h.bound("mail=Alice@example.com,ou=users,"+testBase, "pw-alice@example.com"), "dn:" + userDN("alice@example.com")},
		{h.admin(), "dn:" + testAdminDN},
	} {
		res, err := tc.c.WhoAmI(nil)
		if err != nil || res.AuthzID != tc.want {
			t.Errorf("whoami: %q, %v; want %q", res.AuthzID, err, tc.want)
		}
	}
}

func TestPasswordModify(t *testing.T) {
	h := start(t, adminConfig())
	h.user("alice@example.com")
	h.user("bob@example.com")
	alice, bob := userDN("alice@example.com"), userDN("bob@example.com")

	// A user changes their own password, with or without the old one.
	c := h.bound(alice, "pw-alice@example.com")
	_, err := c.PasswordModify(goldap.NewPasswordModifyRequest("", "pw-alice@example.com", "second"))
	wantCode(t, err, goldap.LDAPResultSuccess)
	_, err = c.PasswordModify(goldap.NewPasswordModifyRequest(alice, "", "third"))
	wantCode(t, err, goldap.LDAPResultSuccess)
	_, err = c.PasswordModify(goldap.NewPasswordModifyRequest("", "wrong", "fourth"))
	wantCode(t, err, goldap.LDAPResultInvalidCredentials)
	wantCode(t, h.dial().Bind(alice, "third"), goldap.LDAPResultSuccess)
	if p := h.lookup("alice@example.com").Password; !strings.HasPrefix(p, "{SSHA}") {
		t.Errorf("stored %q", p)
	}
	// A "{SCHEME}" new password is cleartext here, hashed like any other.
	_, err = c.PasswordModify(goldap.NewPasswordModifyRequest("", "", "{PLAIN}x"))
	wantCode(t, err, goldap.LDAPResultSuccess)
	wantCode(t, h.dial().Bind(alice, "{PLAIN}x"), goldap.LDAPResultSuccess)
	// Not someone else's.
	_, err = c.PasswordModify(goldap.NewPasswordModifyRequest(bob, "", "stolen"))
	wantCode(t, err, goldap.LDAPResultInsufficientAccessRights)
	// Not anonymously.
	_, err = h.dial().PasswordModify(goldap.NewPasswordModifyRequest(bob, "", "stolen"))
	wantCode(t, err, goldap.LDAPResultUnwillingToPerform)

	// The admin changes anyone's, named by DN, authzId or name, and may
	// let the server choose.
	a := h.admin()
	for _, id := range []string{bob, "dn:" + bob, "u:bob@example.com", "bob@example.com"} {
		_, err = a.PasswordModify(goldap.NewPasswordModifyRequest(id, "", "by-admin"))
		wantCode(t, err, goldap.LDAPResultSuccess)
	}
	wantCode(t, h.dial().Bind(bob, "by-admin"), goldap.LDAPResultSuccess)
	res, err := a.PasswordModify(goldap.NewPasswordModifyRequest(bob, "", ""))
	if err != nil || len(res.GeneratedPassword) < 12 {
		t.Fatalf("generated: %v %v", res, err)
	}
	wantCode(t, h.dial().Bind(bob, res.GeneratedPassword), goldap.LDAPResultSuccess)
	_, err = a.PasswordModify(goldap.NewPasswordModifyRequest(userDN("nobody@example.com"), "", "x"))
	wantCode(t, err, goldap.LDAPResultNoSuchObject)
	_, err = a.PasswordModify(goldap.NewPasswordModifyRequest("", "", "x"))
	wantCode(t, err, goldap.LDAPResultUnwillingToPerform)
	_, err = a.PasswordModify(goldap.NewPasswordModifyRequest("dn:cn=nobody,dc=other", "", "x"))
	wantCode(t, err, goldap.LDAPResultNoSuchObject)

	// A bare name may hold '=' and ',': it is not taken for a DN.
	odd := "a=b,c@example.com"
	h.user(odd)
	for _, id := range []string{odd, "u:" + odd} {
		_, err = a.PasswordModify(goldap.NewPasswordModifyRequest(id, "", "odd-"+id))
		wantCode(t, err, goldap.LDAPResultSuccess)
		wantCode(t, h.dial().Bind(userDN(goldap.EscapeDN(odd)), "odd-"+id), goldap.LDAPResultSuccess)
	}
}

func TestUnknownExtendedOperation(t *testing.T) {
	h := start(t, adminConfig())
	c := h.dial()
	_, err := c.Extended(goldap.NewExtendedRequest("1.2.3.4", nil))
	wantCode(t, err, goldap.LDAPResultProtocolError)
	_, err = c.WhoAmI(nil) // the connection goes on
	wantCode(t, err, goldap.LDAPResultSuccess)
}

// testTLS returns a server config with a fresh self-signed certificate for
// 127.0.0.1 and a client config trusting it.
func testTLS(t testing.TB) (server, client *tls.Config) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tohost test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		// Its own CA: GnuTLS (libldap) wants a trust anchor marked CA.
		IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}},
		&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
}

func TestStartTLS(t *testing.T) {
	srv, cli := testTLS(t)
	h := start(t, options{cfg: Config{AdminPassword: testAdminPW, TLS: srv}})
	h.user("alice@example.com")
	c := h.dial()
	if err := c.StartTLS(cli); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.TLSConnectionState(); !ok {
		t.Fatal("not TLS")
	}
	wantCode(t, c.Bind(userDN("alice@example.com"), "pw-alice@example.com"), goldap.LDAPResultSuccess)
	res, err := c.WhoAmI(nil)
	if err != nil || res.AuthzID != "dn:"+userDN("alice@example.com") {
		t.Errorf("whoami over TLS: %v %v", res, err)
	}
	es, _ := search(t, h.dial(), "", goldap.ScopeBaseObject, "(objectClass=*)", "supportedExtension")
	if !strings.Contains(strings.Join(es[0].GetAttributeValues("supportedExtension"), " "), "1.3.6.1.4.1.1466.20037") {
		t.Error("StartTLS not announced")
	}

	// Without a certificate StartTLS is refused (and the connection goes
	// on: TestRawStartTLSRefused; go-ldap's client stops reading after a
	// refused StartTLS).
	h2 := start(t, adminConfig())
	wantCode(t, h2.dial().StartTLS(cli), goldap.LDAPResultProtocolError)
}

func TestLDAPS(t *testing.T) {
	srv, cli := testTLS(t)
	h := start(t, options{cfg: Config{AdminPassword: testAdminPW, TLS: srv}, tls: true})
	h.user("alice@example.com")
	c, err := goldap.DialURL("ldaps://"+h.addr, goldap.DialWithTLSConfig(cli))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	wantCode(t, c.Bind(userDN("alice@example.com"), "pw-alice@example.com"), goldap.LDAPResultSuccess)
	// Already TLS: StartTLS is an operations error.
	_, err = c.Extended(goldap.NewExtendedRequest("1.3.6.1.4.1.1466.20037", nil))
	wantCode(t, err, goldap.LDAPResultOperationsError)
}
