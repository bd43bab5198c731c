// Package audit writes the one line every change to the directory leaves
// in the log: who changed which user, from where, over what. The line has
// a fixed message and fixed keys (see docs/logs.md), so operators can
// grep for it and ship it elsewhere without parsing free text.
package audit

import (
	"context"
	"log/slog"
)

// Msg is the message of every audit line.
const Msg = "audit"

// Identities of a TCPAuth admin: it gave the shared secret, or it
// connected from an --admin-allow network without one.
const (
	BySecret       = "secret"
	ByAdminNetwork = "admin-network"
)

// Event is one change.
type Event struct {
	Proto  string // tcpauth, ldap or cli
	Op     string // set, del, rename, add, modify, delete, passwd, import
	User   string // the user changed; for import, the input file
	To     string // a rename's new name
	Client string // the client's address; empty for the command line
	By     string // the admin identity: secret, admin-network, a bound DN, a local account
}

// Log writes e at INFO, with extra key-value pairs after the fixed keys.
// Keys with nothing to say are left out, so every line of one kind has
// the same keys.
func Log(log *slog.Logger, e Event, extra ...any) {
	if log == nil || !log.Enabled(context.Background(), slog.LevelInfo) {
		return
	}
	attrs := make([]slog.Attr, 0, 6+len(extra)/2)
	attrs = append(attrs, slog.String("proto", e.Proto), slog.String("op", e.Op), slog.String("user", e.User))
	if e.To != "" {
		attrs = append(attrs, slog.String("to", e.To))
	}
	if e.Client != "" {
		attrs = append(attrs, slog.String("client", e.Client))
	}
	attrs = append(attrs, slog.String("by", e.By))
	for i := 0; i+1 < len(extra); i += 2 {
		if k, ok := extra[i].(string); ok {
			attrs = append(attrs, slog.Any(k, extra[i+1]))
		}
	}
	log.LogAttrs(context.Background(), slog.LevelInfo, Msg, attrs...)
}
