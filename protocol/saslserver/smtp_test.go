package saslserver

import (
	"errors"
	"testing"
)

// TestNewServer: LOGIN asks for the user then the password (or takes the
// user as the initial response); PLAIN refuses another authorization
// identity; unknown mechanisms get no server.
func TestNewServer(t *testing.T) {
	var got [2]string
	auth := func(user, pass string) error { got = [2]string{user, pass}; return nil }
	wrong := errors.New("authz")

	s := NewServer("LOGIN", auth, wrong)
	if c, done, err := s.Next(nil); string(c) != "Username:" || done || err != nil {
		t.Fatalf("LOGIN first challenge %q %v %v", c, done, err)
	}
	if c, done, err := s.Next([]byte("bob")); string(c) != "Password:" || done || err != nil {
		t.Fatalf("LOGIN second challenge %q %v %v", c, done, err)
	}
	if _, done, err := s.Next([]byte("pw")); !done || err != nil || got != [2]string{"bob", "pw"} {
		t.Fatalf("LOGIN end: %v %v %q", done, err, got)
	}
	s = NewServer("LOGIN", auth, wrong)
	if c, _, _ := s.Next([]byte("ann")); string(c) != "Password:" {
		t.Fatalf("LOGIN with the user as initial response: %q", c)
	}
	if _, done, err := s.Next([]byte("pw2")); !done || err != nil || got != [2]string{"ann", "pw2"} {
		t.Fatalf("LOGIN end: %v %v %q", done, err, got)
	}
	if _, _, err := s.Next([]byte("more")); err == nil {
		t.Fatal("LOGIN took a response after it ended")
	}

	if _, _, err := NewServer("PLAIN", auth, wrong).Next([]byte("eve\x00bob\x00pw")); !errors.Is(err, wrong) {
		t.Fatalf("PLAIN acting as another user: %v", err)
	}
	if _, _, err := NewServer("PLAIN", auth, wrong).Next([]byte("bob\x00bob\x00pw3")); err != nil || got != [2]string{"bob", "pw3"} {
		t.Fatalf("PLAIN as oneself: %v %q", err, got)
	}
	if NewServer("CRAM-MD5", auth, wrong) != nil {
		t.Fatal("a server for an unknown mechanism")
	}
}
