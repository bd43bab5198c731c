package saslserver

import (
	"bytes"
	"encoding/base64"
	"errors"
	"testing"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestRun(t *testing.T) {
	for _, tc := range []struct {
		name, mech, ir string
		hasIR          bool
		answers        []string // the client's lines after each challenge
		user, pass     string
		err            error
	}{
		{"plain with initial response", "PLAIN", b64("\x00bob\x00pw"), true, nil, "bob", "pw", nil},
		{"plain after a challenge", "plain", "", false, []string{b64("bob\x00bob\x00two words")}, "bob", "two words", nil},
		{"plain unpadded", "PLAIN", "AGJvYgBwdw", true, nil, "bob", "pw", nil},
		{"plain other authzid", "PLAIN", b64("alice\x00bob\x00pw"), true, nil, "", "", ErrAuthzid},
		{"plain empty password", "PLAIN", b64("\x00bob\x00"), true, nil, "", "", ErrBadResponse},
		{"plain CR in user", "PLAIN", b64("\x00b\rob\x00pw"), true, nil, "", "", ErrBadResponse},
		{"plain empty initial response", "PLAIN", "=", true, nil, "", "", ErrBadResponse},
		{"bad base64", "PLAIN", "!!!", true, nil, "", "", ErrBadBase64},
		{"cancel", "PLAIN", "", false, []string{"*"}, "", "", ErrCancelled},
		{"login", "LOGIN", "", false, []string{b64("bob"), b64("pw")}, "bob", "pw", nil},
		{"login with initial user", "LOGIN", b64("bob"), true, []string{b64("pw")}, "bob", "pw", nil},
		{"login cancelled at the password", "LOGIN", "", false, []string{b64("bob"), "*"}, "", "", ErrCancelled},
		{"login NUL in password", "LOGIN", "", false, []string{b64("bob"), b64("p\x00w")}, "", "", ErrBadResponse},
		{"unknown mechanism", "CRAM-MD5", "", false, nil, "", "", ErrNoSuchMechanism},
	} {
		t.Run(tc.name, func(t *testing.T) {
			asked := 0
			user, pass, err := Run(tc.mech, tc.ir, tc.hasIR, func(challenge string) (string, error) {
				if asked >= len(tc.answers) {
					t.Fatalf("asked %d times", asked+1)
				}
				asked++
				return tc.answers[asked-1], nil
			})
			if user != tc.user || pass != tc.pass || !errors.Is(err, tc.err) {
				t.Fatalf("Run = %q, %q, %v; want %q, %q, %v", user, pass, err, tc.user, tc.pass, tc.err)
			}
		})
	}
}

// TestConnectionErrorPassesThrough: an error of ask ends the exchange as
// it is, so the protocol knows the connection is over.
func TestConnectionErrorPassesThrough(t *testing.T) {
	gone := errors.New("connection reset")
	_, _, err := Run("LOGIN", "", false, func(string) (string, error) { return "", gone })
	if err != gone {
		t.Fatalf("Run = %v, want the connection's error", err)
	}
}

// FuzzDecode: a response that decodes survives a round trip, and PLAIN
// only ever gives credentials that can be passed on.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{"=", "AGJvYgBwdw==", "AGJvYgBwdw", "*", b64("a\x00b\x00c")} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		b, err := DecodeResponse(line)
		if err != nil {
			return
		}
		if c, err := DecodeResponse(base64.StdEncoding.EncodeToString(b)); len(b) > 0 && (err != nil || !bytes.Equal(b, c)) {
			t.Fatalf("base64 round trip of %q: %q, %v", b, c, err)
		}
		user, pass, err := DecodePlain(b)
		if err != nil {
			return
		}
		if !ValidCredential(user) || !ValidCredential(pass) {
			t.Fatalf("PLAIN %q gave user %q password %q", b, user, pass)
		}
		u2, p2, err := DecodePlain([]byte("\x00" + user + "\x00" + pass))
		if err != nil || u2 != user || p2 != pass {
			t.Fatalf("PLAIN round trip of %q, %q: %q, %q, %v", user, pass, u2, p2, err)
		}
	})
}
