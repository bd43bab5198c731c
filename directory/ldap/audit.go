package ldap

import (
	"net/netip"

	"github.com/jimlambrt/gldap"

	"github.com/tohost/tohost/internal/audit"
)

// audit logs a change made over r, by the DN the connection is bound as.
// The client is the address alone, as in the failed-bind lines, so one
// pattern finds a client in both.
func (s *Server) audit(r *gldap.Request, op, user, to string) {
	client := r.RemoteAddr().String()
	if ap, err := netip.ParseAddrPort(client); err == nil {
		client = ap.Addr().Unmap().String()
	}
	audit.Log(s.log, audit.Event{Proto: "ldap", Op: op, User: user, To: to, Client: client, By: sessionOf(r).dn})
}
