package ldap

import (
	"bytes"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	goldap "github.com/go-ldap/ldap/v3"

	"github.com/tohost/tohost/directory"
)

// FuzzFilter compiles and evaluates arbitrary filters: no panic, and the
// plan for a filter never misses an entry the filter accepts.
func FuzzFilter(f *testing.F) {
	for _, s := range []string{"(uid=a)", "(&(uid=a*)(|(cn=x)(!(quota>=1))))", "(mail=*@x*)", "(objectClass=*)", "(uid:=b)", "(|(uid=a)(mail=b))"} {
		p, _ := goldap.CompileFilter(s)
		f.Add(p.Bytes())
	}
	tr, _ := newTree(testBase, testAdminDN, nil)
	_, base, _ := tr.staticEntries(false)
	u := &directory.User{Name: "ab@x", Display: "Ab@X", Fields: []directory.Field{{Label: "quota", Value: "10"}, {Label: "name", Value: "A B"}}}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ber.DecodePacketErr(b)
		if err != nil {
			return
		}
		flt, err := compileFilter(p)
		if err != nil {
			return
		}
		flt.eval(base)
		r := flt.eval(userEntry{t: &tr, u: u})
		pl := planFor(flt)
		if r == resTrue {
			found := pl.match.Matches(u.Name)
			if pl.exact {
				found = false
				for _, n := range pl.names {
					found = found || n == u.Name
				}
			}
			if !found {
				t.Fatalf("filter accepts %s but its plan %+v does not", u.Name, pl)
			}
		}
	})
}

// panicLog records whether the server logged a recovered panic.
type panicLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *panicLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *panicLog) panicked() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.buf.String(); strings.Contains(s, "panic") {
		return s
	}
	return ""
}

// FuzzServer sends arbitrary bytes to a running server as the admin would:
// no request may panic it or stop it from serving the next connection.
func FuzzServer(f *testing.F) {
	rc := &rawConn{}
	bind := rc.message(bindOp(3, testAdminDN, simple(testAdminPW)))
	for _, op := range []func() *ber.Packet{
		whoAmIOp,
		func() *ber.Packet {
			p, _ := encodeSearch(goldap.NewSearchRequest(testBase, 2, 0, 5, 0, false, "(|(uid=a*)(quota>=3))", []string{"*", "+"}, nil))
			return p
		},
		func() *ber.Packet {
			return ber.NewString(ber.ClassApplication, ber.TypePrimitive, goldap.ApplicationDelRequest, userDN("a@x"), "del")
		},
	} {
		f.Add(append(append([]byte(nil), bind...), rc.message(op())...))
	}
	f.Add([]byte("\x30\x05\x02\x01\x01\x42\x00"))
	log := &panicLog{}
	testLogOutput = log
	h := start(f, options{cfg: Config{AdminPassword: testAdminPW}})
	testLogOutput = io.Discard
	h.user("a@x", "quota", "5")
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		c.Write(b)
		c.(*net.TCPConn).CloseWrite() // the server answers, sees EOF and closes
		io.Copy(io.Discard, c)
		if s := log.panicked(); s != "" {
			t.Fatalf("server panicked:\n%s", s)
		}
	})
}
