package ldap

import (
	"fmt"
	"strings"

	goldap "github.com/go-ldap/ldap/v3"
)

// kind is what a DN names in the tree.
type kind int

const (
	kindOutside kind = iota // not under the base: no such object
	kindMissing             // under the base, but not an entry of the tree
	kindRoot                // "": the root DSE
	kindBase                // the base entry
	kindUsers               // ou=users,<base>
	kindUser                // uid=<name> or mail=<name> under ou=users
	kindAdmin               // the admin DN (a bind identity, not an entry)
	kindReader              // a read-only account's DN (a bind identity, not an entry)
)

// target is a resolved DN.
type target struct {
	kind    kind
	name    string // kindUser: the user name, as written in the RDN; kindReader: the reader's DN as configured
	matched string // for noSuchObject: the deepest entry that exists
}

// tree holds the fixed DNs of the directory.
type tree struct {
	base    *goldap.DN
	baseDN  string // as configured
	usersDN string // "ou=users," + baseDN
	suffix  string // ",ou=users," + baseDN: the tail of every user DN
	admin   *goldap.DN
	adminDN string
	// adminParent is the matched DN of a search at the admin DN, which
	// names no entry: the base when the admin DN is under it.
	adminParent string
	baseRDN     *goldap.AttributeTypeAndValue // the base's first RDN, for its entry
	users       *goldap.DN                    // ou=users,<base>: the parent of every user
	readers     []*goldap.DN                  // the read-only accounts, as Config.Readers
	readerOf    []target                      // what each of readers resolves to
}

func newTree(base, admin string, readers []string) (tree, error) {
	b, err := goldap.ParseDN(base)
	if err != nil || len(b.RDNs) == 0 {
		return tree{}, fmt.Errorf("base %q is not a DN", base)
	}
	a, err := goldap.ParseDN(admin)
	if err != nil || len(a.RDNs) == 0 {
		return tree{}, fmt.Errorf("admin DN %q is not a DN", admin)
	}
	base = b.String()
	t := tree{
		base:    b,
		baseDN:  base,
		usersDN: "ou=users," + base,
		suffix:  ",ou=users," + base,
		admin:   a,
		adminDN: a.String(),
		baseRDN: b.RDNs[0].Attributes[0],
		users:   &goldap.DN{RDNs: append([]*goldap.RelativeDN{{Attributes: []*goldap.AttributeTypeAndValue{{Type: "ou", Value: "users"}}}}, b.RDNs...)},
	}
	if b.AncestorOfFold(a) {
		t.adminParent = base
	}
	for _, r := range readers {
		d, err := goldap.ParseDN(r)
		if err != nil || len(d.RDNs) == 0 {
			return tree{}, fmt.Errorf("reader DN %q is not a DN", r)
		}
		if d.EqualFold(a) {
			return tree{}, fmt.Errorf("reader DN %q is the admin's", r)
		}
		rt := target{kind: kindReader, name: d.String()}
		if b.AncestorOfFold(d) {
			rt.matched = base // as for the admin: the entry a search there finds
		}
		t.readers, t.readerOf = append(t.readers, d), append(t.readerOf, rt)
	}
	return t, nil
}

// reader returns the read-only account d names.
func (t *tree) reader(d *goldap.DN) (target, bool) {
	for i, r := range t.readers {
		if d.EqualFold(r) {
			return t.readerOf[i], true
		}
	}
	return target{}, false
}

// userDN is the DN of the user entry for a name (its display form).
func (t *tree) userDN(name string) string {
	return "uid=" + goldap.EscapeDN(name) + t.suffix
}

// resolve says what dn names. The common DNs (the base, a plain user DN)
// are recognised without a full parse; anything else goes through
// goldap.ParseDN. It fails only when dn is not a valid DN.
func (t *tree) resolve(dn string) (target, error) {
	switch {
	case dn == "":
		return target{kind: kindRoot}, nil
	case strings.EqualFold(dn, t.baseDN):
		return target{kind: kindBase}, nil
	case strings.EqualFold(dn, t.usersDN):
		return target{kind: kindUsers}, nil
	case strings.EqualFold(dn, t.adminDN):
		return target{kind: kindAdmin, matched: t.adminParent}, nil
	}
	for _, r := range t.readerOf {
		if strings.EqualFold(dn, r.name) {
			return r, nil
		}
	}
	if n := len(dn) - len(t.suffix); n > 0 && strings.EqualFold(dn[n:], t.suffix) {
		if name, ok := simpleUserRDN(dn[:n]); ok {
			return target{kind: kindUser, name: name}, nil
		}
	}
	d, err := goldap.ParseDN(dn)
	if err != nil {
		return target{}, err
	}
	return t.resolveParsed(d), nil
}

// simpleUserRDN reads "uid=<name>" or "mail=<name>" when the value needs
// no unescaping.
func simpleUserRDN(rdn string) (string, bool) {
	typ, value, ok := strings.Cut(rdn, "=")
	if !ok || !userAttr(typ) || value == "" || strings.ContainsAny(value, "\\,+\"<>;=") ||
		value[0] == ' ' || value[0] == '#' || value[len(value)-1] == ' ' {
		return "", false
	}
	return value, true
}

// userAttr reports whether an RDN attribute type names a user: uid or
// mail, by name or OID.
func userAttr(typ string) bool {
	switch strings.ToLower(typ) {
	case "uid", "userid", "0.9.2342.19200300.100.1.1", "mail", "rfc822mailbox", "0.9.2342.19200300.100.1.3":
		return true
	}
	return false
}

func (t *tree) resolveParsed(d *goldap.DN) target {
	if len(d.RDNs) == 0 {
		return target{kind: kindRoot}
	}
	if d.EqualFold(t.admin) {
		return target{kind: kindAdmin, matched: t.adminParent}
	}
	if r, ok := t.reader(d); ok {
		return r
	}
	nb := len(t.base.RDNs)
	if len(d.RDNs) < nb || !(&goldap.DN{RDNs: d.RDNs[len(d.RDNs)-nb:]}).EqualFold(t.base) {
		return target{kind: kindOutside}
	}
	rest := d.RDNs[:len(d.RDNs)-nb]
	if len(rest) == 0 {
		return target{kind: kindBase}
	}
	if !isUsersRDN(rest[len(rest)-1]) {
		return target{kind: kindMissing, matched: t.baseDN}
	}
	switch len(rest) {
	case 1:
		return target{kind: kindUsers}
	case 2:
		if a := rest[0].Attributes; len(a) == 1 && userAttr(a[0].Type) && a[0].Value != "" {
			return target{kind: kindUser, name: a[0].Value}
		}
	}
	return target{kind: kindMissing, matched: t.usersDN}
}

func isUsersRDN(r *goldap.RelativeDN) bool {
	return len(r.Attributes) == 1 && strings.EqualFold(r.Attributes[0].Type, "ou") &&
		strings.EqualFold(r.Attributes[0].Value, "users")
}

// parseRDN reads the new RDN of a ModifyDN: uid=<name> or mail=<name>.
func parseUserRDN(rdn string) (string, bool) {
	d, err := goldap.ParseDN(rdn)
	if err != nil || len(d.RDNs) != 1 || len(d.RDNs[0].Attributes) != 1 {
		return "", false
	}
	a := d.RDNs[0].Attributes[0]
	return a.Value, userAttr(a.Type) && a.Value != ""
}
