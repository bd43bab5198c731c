package importer_test

import (
	"testing"

	"github.com/tohost/tohost/directory/importer"
	"github.com/tohost/tohost/protocol/authent"
)

// TestFieldLabelRule: a CSV column, an LDIF attribute and an NWAuth field
// become a field exactly when their name passes authent.ValidLabel, the
// one label rule of the protocol, the store and every import format.
func TestFieldLabelRule(t *testing.T) {
	files := map[string]func(label string) string{
		"u.csv":      func(l string) string { return "user,password," + l + "\nu@x,{SSHA}a,v\n" },
		"u.ldif":     func(l string) string { return "dn: uid=u@x\nuid: u@x\nuserPassword: {SSHA}a\n" + l + ": v\n\n" },
		"nwauth.txt": func(l string) string { return "u@x:{SSHA}a:" + l + "=\"v\"\n" },
	}
	for _, label := range []string{"q", "Q.9-_x", "x!y", "x+y", "x@y", "x/y", "xé", "x\x7f"} {
		for name, file := range files {
			s := openBolt(t)
			r := load(t, s, name, file(label), importer.Options{})
			stored := r.err == nil && r.stats.Created == 1 && get(t, s, "u@x").Get(label) == "v"
			if want := authent.ValidLabel(label); stored != want {
				t.Errorf("%s, label %q: stored %v, want %v (stats %+v, err %v, reports %q)",
					name, label, stored, want, r.stats, r.err, r.reports)
			}
		}
	}
}
