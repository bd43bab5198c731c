package bench

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/jimlambrt/gldap"
)

// fakeLDAP serves users 0..9 under ou=users,dc=tohost: binds with the
// population's password succeed, others get invalidCredentials; a search
// (uid=U) returns U's entry with its mailHost. broken makes it accept every
// password and answer every search with user 0's entry.
func fakeLDAP(t *testing.T, broken bool) string {
	mux, err := gldap.NewMux()
	if err != nil {
		t.Fatal(err)
	}
	const users = "ou=users,dc=tohost"
	mux.Bind(func(w *gldap.ResponseWriter, r *gldap.Request) {
		m, err := r.GetSimpleBindMessage()
		code := gldap.ResultInvalidCredentials
		for i := range 10 {
			if err == nil && (broken || m.UserName == "uid="+Login(i)+","+users && string(m.Password) == Password(i)) {
				code = gldap.ResultSuccess
			}
		}
		w.Write(r.NewBindResponse(gldap.WithResponseCode(code)))
	})
	mux.Search(func(w *gldap.ResponseWriter, r *gldap.Request) {
		m, err := r.GetSearchMessage()
		if err == nil && m.BaseDN == users {
			for i := range 10 {
				if broken && i == 0 || strings.EqualFold(m.Filter, "(uid="+Login(i)+")") {
					w.Write(r.NewSearchResponseEntry("uid="+Login(i)+","+users, gldap.WithAttributes(map[string][]string{
						"uid": {Login(i)}, "mailHost": {ToHost(i)}})))
					break
				}
			}
		}
		w.Write(r.NewSearchDoneResponse(gldap.WithResponseCode(gldap.ResultSuccess)))
	})
	srv, err := gldap.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	srv.Router(mux)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Stop() })
	return ln.Addr().String()
}

func TestLDAPModes(t *testing.T) {
	for _, mode := range []string{ModeLDAPSearch, ModeLDAPBind} {
		cfg := Config{Addr: fakeLDAP(t, false), Mode: mode, Conns: 4, Count: 200, Users: 10, Miss: 0.3, Seed: 1, VerifyHost: true}
		res, err := RunLDAP(context.Background(), cfg)
		if err != nil || res.Requests != 200 || res.Errors != 0 {
			t.Fatalf("%s against a correct server: %v, %+v", mode, err, res)
		}
		cfg.Addr = fakeLDAP(t, true)
		res, err = RunLDAP(context.Background(), cfg)
		if err == nil || res.Errors == 0 {
			t.Fatalf("%s: a wrong server was not caught: %+v", mode, res)
		}
	}
}
