// Package home decides whether a user's mailbox lives on this backend: the
// one rule that delivery, IMAP and POP3 apply, so that a user who is
// refused mail here cannot log in here either, and the other way round.
package home

import (
	"net"
	"net/netip"
	"strings"
)

// Rule is this backend's claim.
type Rule struct {
	// Name is this backend as the directory's tohost fields name it.
	Name string
	// AcceptDefault claims the users who have no tohost.
	AcceptDefault bool
	// Peers are the other backends sharing this backend's mail directory
	// (tohost backend --shared-mail-dir --peer): their users' mailboxes
	// are on the same drive, so they are claimed too.
	Peers []string
}

// Here reports whether a user with this tohost lives here: its host part
// is Name's or a peer's, case and any port and trailing dot aside; or it
// is empty and AcceptDefault is set.
func (r Rule) Here(tohost string) bool {
	tohost = strings.TrimSpace(tohost)
	if tohost == "" {
		return r.AcceptDefault
	}
	host := HostOf(tohost)
	if strings.EqualFold(host, HostOf(r.Name)) {
		return true
	}
	for _, p := range r.Peers {
		if strings.EqualFold(host, HostOf(strings.TrimSpace(p))) {
			return true
		}
	}
	return false
}

// HostOf returns the host part of a tohost value (host, host:port, [v6],
// [v6]:port or a bare IPv6 address), without a trailing dot; addresses in
// their canonical form.
func HostOf(s string) string {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.String()
	}
	if host, _, err := net.SplitHostPort(s); err == nil {
		s = host
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	if a, err := netip.ParseAddr(s); err == nil {
		return a.String()
	}
	return strings.TrimSuffix(s, ".")
}
