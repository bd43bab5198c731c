package ldap

import (
	"encoding/binary"
	"hash/fnv"
	"slices"
	"strings"

	"github.com/jimlambrt/gldap"

	"github.com/tohost/tohost/directory"
)

// A paged search (RFC 2696) keeps no state on the server: the cookie says
// where the next page starts, which works across reconnections and across
// directory nodes. Users come in name order, so the position is the last
// name returned; the fixed entries (base, ou=users) come first and are
// counted by their index. The cookie also carries how many entries the
// earlier pages returned, so a size limit holds for the whole search, not
// for each page.
//
//	cookie = version (1) | search hash (4) | entries sent (4) | phase (1) | position
//
// The search hash binds the cookie to the search it came from: RFC 2696
// forbids reusing it with another one, and a cookie of a different search
// would skip the wrong entries. Version 1 cookies (no count) are still
// read, as from a node not yet upgraded.
const cookieVersion = 2

const (
	phaseStatic = 0 // position: one byte, the fixed entries already sent
	phaseUsers  = 1 // position: the last user name sent
)

type cursor struct {
	phase  byte
	static int    // phaseStatic: entries of the fixed list already sent
	after  string // phaseUsers: the last name sent
}

// cookie encodes the position after c, with sent entries returned so far.
func (c cursor) cookie(hash uint32, sent int) []byte {
	b := binary.BigEndian.AppendUint32([]byte{cookieVersion}, hash)
	b = binary.BigEndian.AppendUint32(b, uint32(sent))
	b = append(b, c.phase)
	if c.phase == phaseStatic {
		return append(b, byte(c.static))
	}
	return append(b, c.after...)
}

// parseCookie reads a cookie of the search hash: the position and the
// entries the earlier pages returned.
func parseCookie(b []byte, hash uint32) (cur cursor, sent int, ok bool) {
	if len(b) < 5 || binary.BigEndian.Uint32(b[1:]) != hash {
		return cursor{}, 0, false
	}
	switch b[0] {
	case 1:
		b = b[5:]
	case cookieVersion:
		if len(b) < 9 {
			return cursor{}, 0, false
		}
		sent, b = int(binary.BigEndian.Uint32(b[5:])), b[9:]
	default:
		return cursor{}, 0, false
	}
	if len(b) < 2 {
		return cursor{}, 0, false
	}
	switch b[0] {
	case phaseStatic:
		return cursor{phase: phaseStatic, static: int(b[1])}, sent, len(b) == 2
	case phaseUsers:
		return cursor{phase: phaseUsers, after: string(b[1:])}, sent, true
	}
	return cursor{}, 0, false
}

// searchHash identifies a search for its cookies.
func searchHash(m *gldap.SearchMessage) uint32 {
	h := fnv.New32a()
	h.Write([]byte(strings.ToLower(m.BaseDN)))
	h.Write([]byte{0, byte(m.Scope), 0})
	h.Write([]byte(m.Filter))
	for _, a := range m.Attributes {
		h.Write([]byte{0})
		h.Write([]byte(strings.ToLower(a)))
	}
	return h.Sum32()
}

// pagingControl returns the request's paged results control, if any.
func pagingControl(controls []gldap.Control) *gldap.ControlPaging {
	for _, c := range controls {
		if p, ok := c.(*gldap.ControlPaging); ok {
			return p
		}
	}
	return nil
}

// plan is how a search finds its candidate users: a few names looked up
// one by one through the index (Service.Lookup), or a stream of the users a
// directory.Match selects. Either may return more users than the filter
// accepts, never fewer: the filter is evaluated on every candidate.
type plan struct {
	exact bool
	names []string // exact: normalized names, sorted, unique
	match directory.Match
}

var scanAll = plan{match: directory.NewMatch("*")}

// planFor narrows a search from its filter: equality on uid or mail is a
// lookup, a substring filter on them a wildcard Match (which seeks to its
// literal prefix), AND takes its narrowest branch, OR of lookups their
// union. Anything else scans every user.
func planFor(f *filter) plan {
	switch f.op {
	case opEquality, opApprox:
		if isNameKey(f.key) {
			if directory.ValidateName(f.value) != nil {
				return plan{exact: true} // no user can have that name
			}
			return plan{exact: true, names: []string{f.value}}
		}
	case opSubstrings:
		if isNameKey(f.key) {
			p := f.value + "*" + strings.Join(f.any, "*")
			if len(f.any) > 0 {
				p += "*"
			}
			return plan{match: directory.NewMatch(p + f.final)}
		}
	case opAnd:
		best := scanAll
		for _, k := range f.kids {
			if p := planFor(k); p.narrower(best) {
				best = p
			}
		}
		return best
	case opOr:
		var names []string
		for _, k := range f.kids {
			p := planFor(k)
			if !p.exact {
				return scanAll
			}
			names = append(names, p.names...)
		}
		slices.Sort(names)
		return plan{exact: true, names: slices.Compact(names)}
	}
	return scanAll
}

// narrower prefers lookups (fewer is better), then the longest prefix.
func (p plan) narrower(q plan) bool {
	switch {
	case p.exact && q.exact:
		return len(p.names) < len(q.names)
	case p.exact != q.exact:
		return p.exact
	}
	return len(p.match.Prefix()) > len(q.match.Prefix())
}
