package proxy

import (
	"fmt"
	"strings"
	"testing"

	"github.com/tohost/tohost/protocol/authent"
)

// TestDefaultBackendsSpread: users without tohost are spread over the
// default backends by their name, the same whatever the order of the
// list and from one proxy to the next, with the other backends as
// alternatives; removing a backend moves only its users.
func TestDefaultBackendsSpread(t *testing.T) {
	mk := func(list string) *Proxy {
		p, err := New(Config{Directory: newFakeDir(), DefaultBackend: list})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	p1, p2, p3 := mk("b1,b2,b3"), mk(" b3 , b1,b2"), mk("b1,b2")
	const users = 3000
	count := map[string]int{}
	for i := range users {
		u := authent.User{Name: fmt.Sprintf("user%d@example.com", i)}
		r1, err := p1.route(u, IMAP)
		if err != nil {
			t.Fatal(err)
		}
		r2, _ := p2.route(u, IMAP)
		if r1.Addr != r2.Addr || len(r1.Alt) != 2 || r1.Alt[0].Addr != r2.Alt[0].Addr || r1.Alt[1].Addr != r2.Alt[1].Addr {
			t.Fatalf("%s: %+v with one order, %+v with another", u.Name, r1, r2)
		}
		seen := map[string]bool{r1.Addr: true}
		for _, a := range r1.Alt {
			seen[a.Addr] = true
		}
		if len(seen) != 3 {
			t.Fatalf("%s: %+v does not hold each backend once", u.Name, r1)
		}
		upper, _ := p1.route(authent.User{Name: strings.ToUpper(u.Name)}, IMAP)
		if upper.Addr != r1.Addr {
			t.Fatalf("%s: the case of the name moved the user", u.Name)
		}
		count[r1.Addr]++
		if r3, _ := p3.route(u, IMAP); r1.Addr != "b3:143" && r3.Addr != r1.Addr {
			t.Fatalf("%s on %s moved to %s when b3 went", u.Name, r1.Addr, r3.Addr)
		}
	}
	for _, b := range []string{"b1:143", "b2:143", "b3:143"} {
		if count[b] < users/5 {
			t.Errorf("%s got %d of %d users: %v", b, count[b], users, count)
		}
	}
	if r, _ := p1.route(authent.User{Name: "x", Fields: []authent.Field{{Label: "tohost", Value: "b9"}}}, IMAP); r.Addr != "b9:143" || len(r.Alt) != 0 {
		t.Errorf("a tohost user: %+v", r)
	}
}

// TestIMAPDefaultBackendsFallOver: a user without tohost logs in on its
// first default backend; with that one down, on the next one.
func TestIMAPDefaultBackendsFallOver(t *testing.T) {
	dir := newFakeDir()
	var bes []*fakeIMAP
	var addrs []string
	for range 3 {
		be := startFakeIMAP(t, fakeIMAPConfig{okCaps: true})
		bes = append(bes, be)
		addrs = append(addrs, be.addr)
	}
	byAddr := map[string]*fakeIMAP{}
	for _, be := range bes {
		byAddr[be.addr] = be
	}
	px := startProxy(t, Config{Directory: dir, DefaultBackend: strings.Join(addrs, ",")}, IMAP)
	for i := range 6 {
		user := fmt.Sprintf("user%d", i)
		dir.add(user, "secret", "")
		for _, be := range bes {
			be.setUser(user, "secret")
		}
		r, err := px.p.route(authent.User{Name: user}, IMAP)
		if err != nil {
			t.Fatal(err)
		}
		c := dialIMAP(t, px.addr)
		loginOK(t, c.cmd("a", "LOGIN "+user+" secret"), "a")
		if l := byAddr[r.Addr].lastLogin(t); l.user != user {
			t.Fatalf("%s: its first backend got %+v", user, l)
		}
		byAddr[r.Addr].down()
		c = dialIMAP(t, px.addr)
		loginOK(t, c.cmd("a", "LOGIN "+user+" secret"), "a")
		if l := byAddr[r.Alt[0].Addr].lastLogin(t); l.user != user {
			t.Fatalf("%s: with its first backend down, the next got %+v", user, l)
		}
		byAddr[r.Addr].up()
	}
}
