// Package saslserver is the server side of the line-based SASL exchange
// that POP3 AUTH (RFC 5034) and IMAP AUTHENTICATE (RFC 9051) share, for the
// PLAIN (RFC 4616) and LOGIN mechanisms: base64 responses, "=" for an empty
// initial response, "*" to cancel. The protocol writes its own challenge
// lines and replies; this package decides what the responses mean.
package saslserver

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
)

// Errors of an exchange; a protocol answers each in its own words.
var (
	ErrCancelled   = errors.New("authentication cancelled")
	ErrBadBase64   = errors.New("invalid base64 data")
	ErrBadResponse = errors.New("invalid authentication data")
	// ErrAuthzid: PLAIN asked to act as another user than the one
	// authenticated; users log in as themselves only.
	ErrAuthzid         = errors.New("authorization identity must be empty or the user's own")
	ErrNoSuchMechanism = errors.New("unsupported authentication mechanism")
)

// Mechanisms are the mechanisms Run knows.
var Mechanisms = []string{"PLAIN", "LOGIN"}

// ValidCredential reports whether a user name or password can be checked
// and passed on: not empty, and no NUL, CR or LF (which would let a client
// inject commands into a dialogue the credential is replayed in).
func ValidCredential(s string) bool {
	return s != "" && !strings.ContainsAny(s, "\x00\r\n")
}

// DecodeResponse decodes one client response: "=" is an empty one;
// padding may be left out.
func DecodeResponse(s string) ([]byte, error) {
	if s == "=" {
		return nil, nil
	}
	var b []byte
	var err error
	if len(s)%4 != 0 {
		b, err = base64.RawStdEncoding.Strict().DecodeString(s)
	} else {
		b, err = base64.StdEncoding.Strict().DecodeString(s)
	}
	if err != nil {
		return nil, ErrBadBase64
	}
	return b, nil
}

// DecodePlain reads a PLAIN response: authzid NUL authcid NUL passwd.
func DecodePlain(b []byte) (user, pass string, err error) {
	parts := bytes.Split(b, []byte{0})
	if len(parts) != 3 {
		return "", "", ErrBadResponse
	}
	authz, user, pass := string(parts[0]), string(parts[1]), string(parts[2])
	if !ValidCredential(user) || !ValidCredential(pass) {
		return "", "", ErrBadResponse
	}
	if authz != "" && authz != user {
		return "", "", ErrAuthzid
	}
	return user, pass, nil
}

// Run runs mech's exchange. ir is the initial response when hasIR; ask
// sends a challenge (already base64) and returns the client's next line,
// or the error that ended the connection, which Run returns as it is.
func Run(mech, ir string, hasIR bool, ask func(challenge string) (string, error)) (user, pass string, err error) {
	// next returns the client's next response, decoded.
	next := func(challenge string) ([]byte, error) {
		line := ir
		if hasIR {
			hasIR = false
		} else {
			if line, err = ask(challenge); err != nil {
				return nil, err
			}
			if line == "*" {
				return nil, ErrCancelled
			}
		}
		return DecodeResponse(line)
	}
	switch strings.ToUpper(mech) {
	case "PLAIN":
		b, err := next("")
		if err != nil {
			return "", "", err
		}
		return DecodePlain(b)
	case "LOGIN":
		u, err := next("VXNlcm5hbWU6") // "Username:"
		if err != nil {
			return "", "", err
		}
		if !ValidCredential(string(u)) {
			return "", "", ErrBadResponse
		}
		pw, err := next("UGFzc3dvcmQ6") // "Password:"
		if err != nil {
			return "", "", err
		}
		if !ValidCredential(string(pw)) {
			return "", "", ErrBadResponse
		}
		return string(u), string(pw), nil
	}
	return "", "", ErrNoSuchMechanism
}
