package saslserver

import (
	"errors"

	"github.com/emersion/go-sasl"
)

// NewServer returns the go-sasl server of mech (PLAIN or LOGIN), as
// go-smtp's AUTH takes it, calling auth with the credentials. A PLAIN
// authorization identity other than the user's own fails with
// wrongAuthz: users log in as themselves only. It returns nil for any
// other mechanism.
func NewServer(mech string, auth func(user, pass string) error, wrongAuthz error) sasl.Server {
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, user, pass string) error {
			if identity != "" && identity != user {
				return wrongAuthz
			}
			return auth(user, pass)
		})
	case sasl.Login:
		return &loginServer{auth: auth}
	}
	return nil
}

// loginServer is the server side of AUTH LOGIN (obsolete, but Outlook and
// others still use it): the user name, then the password, each asked for
// with a challenge.
type loginServer struct {
	step int
	user string
	auth func(user, pass string) error
}

func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		if resp == nil { // no initial response
			l.step = 1
			return []byte("Username:"), false, nil
		}
		l.user, l.step = string(resp), 2
		return []byte("Password:"), false, nil
	case 1:
		l.user, l.step = string(resp), 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		return nil, true, l.auth(l.user, string(resp))
	}
	return nil, false, errors.New("unexpected response")
}
