package directory

import "strings"

// Match is a search pattern (docs/protocol.md, search): with '*' or '?' it is a
// wildcard over the whole name ('*' any run, '?' one character), otherwise
// a substring match. Matching is case-insensitive as names are: Pattern
// is folded (FoldName) and compared with normalized names.
type Match struct {
	Pattern  string
	Wildcard bool
	// After, when set, skips every name up to and including it: a paged
	// search resumes after the last name it returned.
	After string
}

// NewMatch builds the Match for a client's pattern.
func NewMatch(pattern string) Match {
	p := FoldName(pattern)
	return Match{Pattern: p, Wildcard: strings.ContainsAny(p, "*?")}
}

// Prefix returns the literal text every matching name starts with, so a
// store can seek instead of scanning. It is "" for substring matches.
func (m Match) Prefix() string {
	if !m.Wildcard {
		return ""
	}
	if i := strings.IndexAny(m.Pattern, "*?"); i >= 0 {
		return m.Pattern[:i]
	}
	return m.Pattern
}

// Matches reports whether the normalized name matches.
func (m Match) Matches(name string) bool {
	if !m.Wildcard {
		return strings.Contains(name, m.Pattern)
	}
	return glob(m.Pattern, name)
}

// glob matches '*' and '?' with backtracking only to the last star, so it
// runs in O(len(p)*len(s)) at worst and never recurses. '?' is one
// character: names that are not ASCII are compared as runes.
func glob(p, s string) bool {
	if isASCII(p) && isASCII(s) {
		return globOf([]byte(p), []byte(s))
	}
	return globOf([]rune(p), []rune(s))
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func globOf[T byte | rune](p, s []T) bool {
	pi, si := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		switch {
		case pi < len(p) && (p[pi] == '?' || p[pi] == s[si]):
			pi++
			si++
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}
