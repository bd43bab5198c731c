package ldap

import (
	"slices"
	"strings"
	"time"

	goldap "github.com/go-ldap/ldap/v3"
	"github.com/jimlambrt/gldap"

	"github.com/tohost/tohost/directory"
)

// A user entry's attributes. Each directory field becomes an attribute of
// the same name, except those mapped here: `name` is cn and sn, `tohost` is
// both tohost and mailHost (the attribute of inetLocalMailRecipient that
// mail software already knows). uid and mail are the user name.
var userClasses = []string{"top", "person", "organizationalPerson", "inetOrgPerson", "tohostUser"}

const labelName = "name"

// attrKey turns an attribute description into the key attributes are
// compared by: lower case, options (";binary") dropped, aliases and OIDs of
// the attributes the tree uses mapped to their short name.
func attrKey(desc string) string {
	if i := strings.IndexByte(desc, ';'); i >= 0 {
		desc = desc[:i]
	}
	k := strings.ToLower(desc)
	if a, ok := aliases[k]; ok {
		return a
	}
	return k
}

var aliases = map[string]string{
	"2.5.4.0":                    "objectclass",
	"userid":                     "uid",
	"0.9.2342.19200300.100.1.1":  "uid",
	"rfc822mailbox":              "mail",
	"0.9.2342.19200300.100.1.3":  "mail",
	"commonname":                 "cn",
	"2.5.4.3":                    "cn",
	"surname":                    "sn",
	"2.5.4.4":                    "sn",
	"2.16.840.1.113730.3.1.18":   "mailhost",
	"2.5.4.35":                   "userpassword",
	"organizationname":           "o",
	"organizationalunitname":     "ou",
	"domaincomponent":            "dc",
	"0.9.2342.19200300.100.1.25": "dc",
}

// derived lists the keys a user entry computes; a field whose label has one
// of these keys is not shown under its own name (it would clash).
var derived = map[string]bool{
	"objectclass": true, "uid": true, "mail": true, "cn": true, "sn": true, "mailhost": true,
	"tohost": true, "userpassword": true, labelName: true,
	"createtimestamp": true, "modifytimestamp": true, "entrydn": true,
	"structuralobjectclass": true, "hassubordinates": true, "subschemasubentry": true,
}

// operational attributes: returned only when asked for by name or "+".
var operational = map[string]bool{
	"createtimestamp": true, "modifytimestamp": true, "entrydn": true,
	"structuralobjectclass": true, "hassubordinates": true, "subschemasubentry": true,
	"namingcontexts": true, "supportedldapversion": true, "supportedcontrol": true,
	"supportedextension": true, "supportedfeatures": true, "vendorname": true,
}

// attr is one attribute of an entry.
type attr struct {
	name string // as returned
	key  string // attrKey(name)
	vals []string
}

func newAttr(name string, vals ...string) attr {
	return attr{name: name, key: attrKey(name), vals: vals}
}

// entry is what filters and Compare read values from.
type entry interface {
	values(key string) []string
	// dnValues are the values of key in the entry's DN, which a filter
	// with dnAttributes (attr:dn:=value) matches too.
	dnValues(key string) []string
}

// dnValues returns the values of the attribute key in the RDNs of dn.
func dnValues(dn *goldap.DN, key string) []string {
	var vs []string
	for _, r := range dn.RDNs {
		for _, a := range r.Attributes {
			if attrKey(a.Type) == key {
				vs = append(vs, a.Value)
			}
		}
	}
	return vs
}

// staticEntry is one of the fixed entries (root DSE, base, ou=users).
type staticEntry struct {
	dn    string
	attrs []attr
}

func (e *staticEntry) dnValues(key string) []string {
	dn, err := goldap.ParseDN(e.dn) // a fixed entry: its DN was valid when configured
	if err != nil {
		return nil
	}
	return dnValues(dn, key)
}

func (e *staticEntry) values(key string) []string {
	for _, a := range e.attrs {
		if a.key == key {
			return a.vals
		}
	}
	return nil
}

// userEntry is a user seen as an LDAP entry.
type userEntry struct {
	t        *tree
	u        *directory.User
	password bool // userPassword is visible (admin)
}

func (e userEntry) dn() string { return e.t.userDN(e.u.Display) }

func (e userEntry) dnValues(key string) []string {
	if key == "uid" {
		return []string{e.u.Display}
	}
	return dnValues(e.t.users, key)
}

func (e userEntry) values(key string) []string {
	u := e.u
	switch key {
	case "objectclass":
		return userClasses
	case "uid", "mail":
		return []string{u.Display}
	case "cn", "sn":
		if n := u.Get(labelName); n != "" {
			return []string{n}
		}
		return []string{u.Display}
	case "mailhost", directory.LabelTohost:
		if h := u.Tohost(); h != "" {
			return []string{h}
		}
		return nil
	case "userpassword":
		if e.password && u.Password != "" {
			return []string{u.Password}
		}
		return nil
	case "createtimestamp":
		return timeValue(u.Created)
	case "modifytimestamp":
		return timeValue(u.Updated)
	case "entrydn":
		return []string{e.dn()}
	case "structuralobjectclass":
		return []string{"inetOrgPerson"}
	case "hassubordinates":
		return []string{"FALSE"}
	}
	if derived[key] {
		return nil
	}
	for _, f := range u.Fields {
		if strings.EqualFold(f.Label, key) && f.Value != "" {
			return []string{f.Value}
		}
	}
	return nil
}

// attrs lists every attribute of the user, user attributes first.
func (e userEntry) attrs(ops bool) []attr {
	out := make([]attr, 0, 8+len(e.u.Fields))
	for _, name := range []string{"objectClass", "uid", "mail", "cn", "sn", "mailHost", "tohost", "userPassword"} {
		if v := e.values(strings.ToLower(name)); v != nil {
			out = append(out, attr{name: name, key: strings.ToLower(name), vals: v})
		}
	}
	for _, f := range e.u.Fields {
		k := strings.ToLower(f.Label)
		if !derived[k] && !operational[k] && f.Value != "" {
			out = append(out, attr{name: f.Label, key: k, vals: []string{f.Value}})
		}
	}
	if ops {
		for _, name := range []string{"createTimestamp", "modifyTimestamp", "entryDN", "structuralObjectClass", "hasSubordinates"} {
			if v := e.values(strings.ToLower(name)); v != nil {
				out = append(out, attr{name: name, key: strings.ToLower(name), vals: v})
			}
		}
	}
	return out
}

// canonicalName is how an attribute asked for by key is named in answers:
// the schema's spelling for the attributes the tree defines.
var canonicalName = map[string]string{
	"objectclass": "objectClass", "mailhost": "mailHost", "userpassword": "userPassword",
	"createtimestamp": "createTimestamp", "modifytimestamp": "modifyTimestamp", "entrydn": "entryDN",
	"structuralobjectclass": "structuralObjectClass", "hassubordinates": "hasSubordinates",
}

func (e userEntry) name(key string) string {
	if n, ok := canonicalName[key]; ok {
		return n
	}
	if !derived[key] {
		for _, f := range e.u.Fields {
			if strings.EqualFold(f.Label, key) {
				return f.Label
			}
		}
	}
	return key
}

func timeValue(t time.Time) []string {
	if t.IsZero() {
		return nil
	}
	return []string{t.UTC().Format("20060102150405Z")}
}

// selection is the attribute list of a search request.
type selection struct {
	all  bool     // "*", or no list: every user attribute
	ops  bool     // "+": every operational attribute
	keys []string // attributes asked for by name, without duplicates
	// set holds keys once there are more than a few, so that building and
	// consulting a long list costs linear time, not quadratic.
	set map[string]struct{}
}

// smallSelection is the longest list searched without a map: mail
// software asks for a handful of attributes, and a scan of a few is
// cheaper than a map.
const smallSelection = 8

func newSelection(list []string) selection {
	var s selection
	if len(list) == 0 {
		s.all = true
		return s
	}
	for _, a := range list {
		switch a {
		case "*":
			s.all = true
		case "+":
			s.ops = true
		case "1.1":
			// no attributes, unless others are listed too
		default:
			s.add(attrKey(a))
		}
	}
	return s
}

// add appends key unless it is listed already (keys are attrKeys, so the
// comparison ignores case).
func (s *selection) add(key string) {
	if s.has(key) {
		return
	}
	s.keys = append(s.keys, key)
	switch {
	case s.set != nil:
		s.set[key] = struct{}{}
	case len(s.keys) > smallSelection:
		s.set = make(map[string]struct{}, 2*len(s.keys))
		for _, k := range s.keys {
			s.set[k] = struct{}{}
		}
	}
}

func (s selection) has(key string) bool {
	if s.set != nil {
		_, ok := s.set[key]
		return ok
	}
	return slices.Contains(s.keys, key)
}

func (s selection) wants(key string) bool {
	if operational[key] {
		return s.ops || s.has(key)
	}
	return s.all || s.has(key)
}

// userResponse builds the search result entry of a user.
func userResponse(r *gldap.Request, e userEntry, sel selection, typesOnly bool) *gldap.SearchResponseEntry {
	resp := r.NewSearchResponseEntry(e.dn())
	if !sel.all && !sel.ops {
		// The common case, e.g. (uid=U) asking for mail and mailHost:
		// compute just the attributes asked for.
		for _, k := range sel.keys {
			if v := e.values(k); v != nil {
				resp.AddAttributeValues(e.name(k), valuesOrNone(v, typesOnly))
			}
		}
		return resp
	}
	for _, a := range e.attrs(true) {
		if sel.wants(a.key) {
			resp.AddAttributeValues(a.name, valuesOrNone(a.vals, typesOnly))
		}
	}
	return resp
}

func staticResponse(r *gldap.Request, e *staticEntry, sel selection, typesOnly bool) *gldap.SearchResponseEntry {
	resp := r.NewSearchResponseEntry(e.dn)
	for _, a := range e.attrs {
		if sel.wants(a.key) {
			resp.AddAttributeValues(a.name, valuesOrNone(a.vals, typesOnly))
		}
	}
	return resp
}

func valuesOrNone(v []string, typesOnly bool) []string {
	if typesOnly {
		return []string{}
	}
	return v
}

// Supported extended operations.
const (
	oidStartTLS       = string(gldap.ExtendedOperationStartTLS)
	oidWhoAmI         = string(gldap.ExtendedOperationWhoAmI)
	oidPasswordModify = string(gldap.ExtendedOperationPasswordModify)
	// oidAllOpAttrs: "+" returns all operational attributes (RFC 3673).
	oidAllOpAttrs = "1.3.6.1.4.1.4203.1.5.1"
)

// staticEntries builds the root DSE, the base entry and ou=users.
func (t *tree) staticEntries(startTLS bool) (root, base, users *staticEntry) {
	ext := []string{oidPasswordModify, oidWhoAmI}
	if startTLS {
		ext = append(ext, oidStartTLS)
	}
	root = &staticEntry{dn: "", attrs: []attr{
		newAttr("objectClass", "top"),
		newAttr("namingContexts", t.baseDN),
		newAttr("supportedLDAPVersion", "3"),
		newAttr("supportedControl", oidPaging, oidManageDsaIT),
		newAttr("supportedExtension", ext...),
		newAttr("supportedFeatures", oidAllOpAttrs),
		newAttr("vendorName", "tohost"),
	}}
	// The base entry's classes follow its RDN: dc=x is a domain
	// (dcObject + organization), o=x an organization, anything else an
	// extensibleObject carrying its RDN value.
	rdn := t.baseRDN
	var classes []attr
	switch attrKey(rdn.Type) {
	case "dc":
		classes = []attr{newAttr("objectClass", "top", "dcObject", "organization"), newAttr("dc", rdn.Value), newAttr("o", rdn.Value)}
	case "o":
		classes = []attr{newAttr("objectClass", "top", "organization"), newAttr("o", rdn.Value)}
	case "ou":
		classes = []attr{newAttr("objectClass", "top", "organizationalUnit"), newAttr("ou", rdn.Value)}
	default:
		classes = []attr{newAttr("objectClass", "top", "extensibleObject"), newAttr(rdn.Type, rdn.Value)}
	}
	base = &staticEntry{dn: t.baseDN, attrs: append(classes,
		newAttr("entryDN", t.baseDN), newAttr("hasSubordinates", "TRUE"))}
	users = &staticEntry{dn: t.usersDN, attrs: []attr{
		newAttr("objectClass", "top", "organizationalUnit"),
		newAttr("ou", "users"),
		newAttr("entryDN", t.usersDN),
		newAttr("hasSubordinates", "TRUE"),
	}}
	return root, base, users
}
