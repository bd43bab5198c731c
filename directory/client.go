package directory

import (
	"context"

	"github.com/tohost/tohost/directory/password"
)

// ErrBusy: a password check or hash waited longer than the hash pool's
// queue timeout and was not computed. Front ends answer it as a temporary
// failure (TCPAuth -DEAD, LDAP busy), never as a wrong password.
var ErrBusy = password.ErrBusy

type clientKey struct{}

// WithClient returns ctx naming the address of the client a check or a
// write is made for: the mail client's address a front end passes, else
// the connection's. Slow hashes are shared fairly between these addresses,
// so one address asking for thousands cannot hold up the others; a ctx
// without one shares the queue of every such ctx.
func WithClient(ctx context.Context, addr string) context.Context {
	return context.WithValue(ctx, clientKey{}, addr)
}

// ClientOf returns the address WithClient put in ctx, or "".
func ClientOf(ctx context.Context) string {
	addr, _ := ctx.Value(clientKey{}).(string)
	return addr
}
