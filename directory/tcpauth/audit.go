package tcpauth

import "github.com/tohost/tohost/internal/audit"

// audit logs a change made on c. The admin is named by how it became one:
// a client on an --admin-allow network needs no secret, so that is the
// identity it is given even when it sent the secret too.
func (c *conn) audit(op, user, to string) {
	by := audit.BySecret
	if c.adminNet {
		by = audit.ByAdminNetwork
	}
	audit.Log(c.srv.log, audit.Event{Proto: "tcpauth", Op: op, User: user, To: to, Client: c.peer, By: by})
}
