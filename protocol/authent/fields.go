// Package authent implements the NetWin authent line protocol as tohost
// speaks it (see docs/protocol.md): request parsing, reply writing, the
// label="value" field syntax, and a pooled, pipelining client. It knows
// nothing about how users are stored.
package authent

import (
	"errors"
	"fmt"
)

// Field is one label="value" pair of a user's info.
type Field struct {
	Label string
	Value string
}

// ValidLabel reports whether s is a legal field label: [A-Za-z0-9_.-]+.
func ValidLabel(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// ValidValue reports whether s can be written as a quoted field value: there
// is no escape mechanism, so '"', CR, LF and NUL can never appear.
func ValidValue(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"', '\r', '\n', 0:
			return false
		}
	}
	return true
}

// ErrFieldSyntax is wrapped by every error ParseFields returns.
var ErrFieldSyntax = errors.New("bad field")

// ParseFields parses `label="value" label2=value2 ...`. Quoted values may
// contain spaces; unquoted values end at the next space. A value that holds a
// quote, CR, LF or NUL is refused, so nothing parsed here can break a reply line.
func ParseFields(s string) ([]Field, error) {
	var fields []Field
	for i := 0; i < len(s); {
		if s[i] == ' ' {
			i++
			continue
		}
		eq := i
		for eq < len(s) && s[eq] != '=' && s[eq] != ' ' {
			eq++
		}
		label := s[i:eq]
		if eq >= len(s) || s[eq] != '=' {
			return nil, fmt.Errorf("%w: %q has no =value", ErrFieldSyntax, label)
		}
		if !ValidLabel(label) {
			return nil, fmt.Errorf("%w: bad label %q", ErrFieldSyntax, label)
		}
		j := eq + 1
		var value string
		if j < len(s) && s[j] == '"' {
			end := j + 1
			for end < len(s) && s[end] != '"' {
				end++
			}
			if end >= len(s) {
				return nil, fmt.Errorf("%w: unterminated quote in value for %s", ErrFieldSyntax, label)
			}
			value = s[j+1 : end]
			j = end + 1
			if j < len(s) && s[j] != ' ' {
				return nil, fmt.Errorf("%w: bad value for %s", ErrFieldSyntax, label)
			}
		} else {
			end := j
			for end < len(s) && s[end] != ' ' {
				end++
			}
			value = s[j:end]
			j = end
		}
		if !ValidValue(value) {
			return nil, fmt.Errorf("%w: bad value for %s", ErrFieldSyntax, label)
		}
		fields = append(fields, Field{Label: label, Value: value})
		i = j
	}
	return fields, nil
}

// AppendField appends ` label="value"` (with the leading space) to b.
// Callers only pass labels and values that passed ValidLabel/ValidValue.
func AppendField(b []byte, label, value string) []byte {
	b = append(b, ' ')
	b = append(b, label...)
	b = append(b, '=', '"')
	b = append(b, value...)
	return append(b, '"')
}
