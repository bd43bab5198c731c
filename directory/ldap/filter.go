package ldap

import (
	"errors"
	"strconv"
	"strings"

	ber "github.com/go-asn1-ber/asn1-ber"
	goldap "github.com/go-ldap/ldap/v3"
)

// filter is a compiled search filter (RFC 4511 4.5.1.7).
type filter struct {
	op    uint8 // goldap.Filter* choice
	key   string
	value string   // equality, ordering, approx; substrings: initial
	any   []string // substrings
	final string   // substrings
	kids  []*filter
	// dnAttrs: an extensible match with dnAttributes, which the values
	// of the attribute in the entry's DN satisfy too.
	dnAttrs bool
}

// result of a filter: RFC 4511 has three, and NOT Undefined is Undefined.
type result uint8

const (
	resFalse result = iota
	resTrue
	resUndefined
)

// Filter choices (RFC 4511 4.5.1.7), as go-ldap numbers them.
const (
	opAnd        = goldap.FilterAnd
	opOr         = goldap.FilterOr
	opNot        = goldap.FilterNot
	opEquality   = goldap.FilterEqualityMatch
	opSubstrings = goldap.FilterSubstrings
	opGreater    = goldap.FilterGreaterOrEqual
	opLess       = goldap.FilterLessOrEqual
	opPresent    = goldap.FilterPresent
	opApprox     = goldap.FilterApproxMatch
	opExtensible = goldap.FilterExtensibleMatch
)

var errBadFilter = errors.New("malformed filter")

// compileFilter reads the filter as the client sent it. Values are kept
// lower-cased: every attribute the tree serves matches case-insensitively,
// except userPassword, which is compared exactly.
func compileFilter(p *ber.Packet) (*filter, error) { return compile(p, 0) }

func compile(p *ber.Packet, depth int) (*filter, error) {
	if depth > maxFilterDepth {
		return nil, errFilterDepth
	}
	if p == nil || p.ClassType != ber.ClassContext {
		return nil, errBadFilter
	}
	f := &filter{op: uint8(p.Tag)}
	switch p.Tag {
	case opAnd, opOr:
		for _, c := range p.Children {
			k, err := compile(c, depth+1)
			if err != nil {
				return nil, err
			}
			f.kids = append(f.kids, k)
		}
	case opNot:
		if len(p.Children) != 1 {
			return nil, errBadFilter
		}
		k, err := compile(p.Children[0], depth+1)
		if err != nil {
			return nil, err
		}
		f.kids = []*filter{k}
	case opEquality, opGreater, opLess, opApprox:
		if len(p.Children) != 2 {
			return nil, errBadFilter
		}
		f.key = attrKey(p.Children[0].Data.String())
		f.value = f.fold(p.Children[1].Data.String())
	case opSubstrings:
		if len(p.Children) != 2 {
			return nil, errBadFilter
		}
		f.key = attrKey(p.Children[0].Data.String())
		parts := p.Children[1].Children
		if len(parts) == 0 {
			return nil, errBadFilter
		}
		for i, s := range parts {
			v := f.fold(s.Data.String())
			// RFC 4511 4.5.1.7.2: initial only first, final only
			// last; a second one would overwrite the first and
			// match something the client did not ask for.
			switch {
			case s.Tag == goldap.FilterSubstringsInitial && i == 0:
				f.value = v
			case s.Tag == goldap.FilterSubstringsAny:
				f.any = append(f.any, v)
			case s.Tag == goldap.FilterSubstringsFinal && i == len(parts)-1:
				f.final = v
			default:
				return nil, errBadFilter
			}
		}
	case opPresent:
		f.key = attrKey(p.Data.String())
	case opExtensible:
		// Only the forms without a matching rule, (attr:=value) and
		// (attr:dn:=value), which are equality; any other evaluates to
		// Undefined.
		var rule, typ, value string
		dnAttrs := false
		for _, c := range p.Children {
			switch c.Tag {
			case 1:
				rule = c.Data.String()
			case 2:
				typ = c.Data.String()
			case 3:
				value = c.Data.String()
			case 4:
				b := c.Data.Bytes()
				if len(b) != 1 {
					return nil, errBadFilter
				}
				dnAttrs = b[0] != 0
			}
		}
		if rule == "" && typ != "" {
			f.op = opEquality
			f.key = attrKey(typ)
			f.value = f.fold(value)
			f.dnAttrs = dnAttrs
		}
	default:
		return nil, errBadFilter
	}
	return f, nil
}

func (f *filter) fold(v string) string {
	if f.key == "userpassword" {
		return v
	}
	return strings.ToLower(v)
}

// eval evaluates the filter against an entry.
func (f *filter) eval(e entry) result {
	switch f.op {
	case opAnd:
		r := resTrue
		for _, k := range f.kids {
			switch k.eval(e) {
			case resFalse:
				return resFalse
			case resUndefined:
				r = resUndefined
			}
		}
		return r
	case opOr:
		r := resFalse
		for _, k := range f.kids {
			switch k.eval(e) {
			case resTrue:
				return resTrue
			case resUndefined:
				r = resUndefined
			}
		}
		return r
	case opNot:
		switch f.kids[0].eval(e) {
		case resTrue:
			return resFalse
		case resFalse:
			return resTrue
		}
		return resUndefined
	case opPresent:
		return boolResult(len(e.values(f.key)) > 0)
	case opEquality, opApprox:
		r := f.any1(e, func(v string) bool { return v == f.value })
		if r == resFalse && f.dnAttrs {
			for _, v := range e.dnValues(f.key) {
				if f.fold(v) == f.value {
					return resTrue
				}
			}
		}
		return r
	case opSubstrings:
		return f.any1(e, f.substrings)
	case opGreater:
		return f.any1(e, func(v string) bool { return order(v, f.value) >= 0 })
	case opLess:
		return f.any1(e, func(v string) bool { return order(v, f.value) <= 0 })
	}
	return resUndefined
}

// any1 is true when one of the attribute's values passes ok.
func (f *filter) any1(e entry, ok func(string) bool) result {
	for _, v := range e.values(f.key) {
		if ok(f.fold(v)) {
			return resTrue
		}
	}
	return resFalse
}

func (f *filter) substrings(v string) bool {
	if !strings.HasPrefix(v, f.value) {
		return false
	}
	v = v[len(f.value):]
	for _, a := range f.any {
		i := strings.Index(v, a)
		if i < 0 {
			return false
		}
		v = v[i+len(a):]
	}
	return strings.HasSuffix(v, f.final)
}

// order compares numerically when both sides are integers (quota>=...),
// else as (already folded) strings.
func order(a, b string) int {
	x, errA := strconv.ParseInt(a, 10, 64)
	y, errB := strconv.ParseInt(b, 10, 64)
	if errA == nil && errB == nil {
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		}
		return 0
	}
	return strings.Compare(a, b)
}

func boolResult(b bool) result {
	if b {
		return resTrue
	}
	return resFalse
}

// isNameKey reports whether an attribute holds the user name, so that a
// filter on it can be answered from the name index.
func isNameKey(key string) bool { return key == "uid" || key == "mail" }
