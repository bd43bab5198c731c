package authent

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// User is a user as lookup and check return it.
type User struct {
	Name   string // as the server echoed it
	Fields []Field
}

// Get returns the value of the field label, or "" when it is not set.
func (u User) Get(label string) string {
	for _, f := range u.Fields {
		if f.Label == label {
			return f.Value
		}
	}
	return ""
}

// Lookup returns the user's fields. An unknown user is an error wrapping
// ErrRejected and ErrNotFound.
func (c *Client) Lookup(ctx context.Context, user string) (User, error) {
	line, err := LookupLine(user)
	if err != nil {
		return User{}, err
	}
	return c.userReply(ctx, line, nil)
}

// Check verifies user's password; ip (optional) is the client's address,
// for the directory's logs and rate limits. A wrong password or unknown
// user is an error wrapping ErrRejected and ErrBadCredentials.
func (c *Client) Check(ctx context.Context, user, pass, ip string) (User, error) {
	line, err := CheckLine(user, pass, ip)
	if err != nil {
		return User{}, err
	}
	return c.userReply(ctx, line, ErrBadCredentials)
}

func (c *Client) userReply(ctx context.Context, line string, errKind error) (User, error) {
	r, err := c.Do(ctx, line)
	if err != nil {
		return User{}, err
	}
	if err := r.Err(); err != nil {
		if re, ok := err.(*ReplyError); ok && errKind != nil && re.Status == StatusErr && !r.authRequired() {
			re.kinds = append(re.kinds, errKind)
		}
		return User{}, err
	}
	u, err := ParseUserLine(r.Text)
	if err != nil {
		return User{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return u, nil
}

// ParseUserLine parses the text of a lookup/check success line,
// `<user> config 0 label="value" ...` (the part after "+OK "). The two
// words after the name (mailbox location and uid) are skipped; a reply
// that omits them is accepted too.
func ParseUserLine(text string) (User, error) {
	name, rest, _ := strings.Cut(strings.TrimLeft(text, " "), " ")
	if name == "" || strings.Contains(name, "=") {
		return User{}, fmt.Errorf("malformed user reply %.60q", text)
	}
	for range 2 {
		rest = strings.TrimLeft(rest, " ")
		w, r, _ := strings.Cut(rest, " ")
		if w == "" || strings.Contains(w, "=") {
			break
		}
		rest = r
	}
	fields, err := ParseFields(rest)
	if err != nil {
		return User{}, fmt.Errorf("malformed user reply: %w", err)
	}
	return User{Name: name, Fields: fields}, nil
}

// Set creates or updates a user. pass "" keeps the current password
// (sent as (NULL)); a field with an empty value removes that field.
func (c *Client) Set(ctx context.Context, user, pass string, fields []Field) error {
	line, err := SetLine(user, pass, fields)
	if err != nil {
		return err
	}
	return c.simple(ctx, line)
}

// Delete deletes a user; an unknown user wraps ErrNotFound.
func (c *Client) Delete(ctx context.Context, user string) error {
	line, err := DelLine(user)
	if err != nil {
		return err
	}
	return c.simple(ctx, line)
}

// Rename renames a user, keeping password and fields (tohost extension).
func (c *Client) Rename(ctx context.Context, oldName, newName string) error {
	line, err := RenameLine(oldName, newName)
	if err != nil {
		return err
	}
	return c.simple(ctx, line)
}

// Ping checks that a directory answers.
func (c *Client) Ping(ctx context.Context) error { return c.simple(ctx, "ping") }

func (c *Client) simple(ctx context.Context, line string) error {
	r, err := c.Do(ctx, line)
	if err != nil {
		return err
	}
	return r.Err()
}

// Search returns the names matching pattern (a wildcard with * and ?, else
// a substring), skipping the first from, at most max of them (max < 0: no
// limit), and the number of users in the directory (-1 if the server did
// not say). The names are collected in memory.
func (c *Client) Search(ctx context.Context, pattern string, from, max int) ([]string, int, error) {
	line, err := SearchLine(pattern, from, max)
	if err != nil {
		return nil, 0, err
	}
	r, err := c.Do(ctx, line)
	if err != nil {
		return nil, 0, err
	}
	if err := r.Err(); err != nil {
		return nil, 0, err
	}
	return r.Data, SearchTotal(r.Text), nil
}

// SearchTotal extracts M from `Search Complete N items found out of M`,
// or returns -1.
func SearchTotal(text string) int {
	i := strings.LastIndexByte(text, ' ')
	n, err := strconv.Atoi(text[i+1:])
	if err != nil || !strings.Contains(text, " out of ") {
		return -1
	}
	return n
}

// LookupLine returns the request line `lookup <user>`.
func LookupLine(user string) (string, error) {
	if err := checkWord("user name", user, true); err != nil {
		return "", err
	}
	return "lookup " + user, nil
}

// CheckLine returns the request line `check <user> <pass> [<ip>]`.
func CheckLine(user, pass, ip string) (string, error) {
	if err := checkWord("user name", user, true); err != nil {
		return "", asCredentials(err)
	}
	if err := checkWord("password", pass, false); err != nil {
		return "", asCredentials(err)
	}
	line := "check " + user + " " + pass
	if ip != "" {
		if err := checkWord("client address", ip, true); err != nil {
			return "", err
		}
		line += " " + ip
	}
	return line, limitLine(line)
}

// SetLine returns the request line `set <user> <pass>|(NULL) fields...`;
// pass "" (or "(NULL)") keeps the current password.
func SetLine(user, pass string, fields []Field) (string, error) {
	if err := checkWord("user name", user, true); err != nil {
		return "", err
	}
	if pass == "" {
		pass = NullPassword
	} else if err := checkWord("password", pass, false); err != nil {
		return "", err
	}
	b := make([]byte, 0, 64)
	b = append(b, "set "...)
	b = append(b, user...)
	b = append(b, ' ')
	b = append(b, pass...)
	for _, f := range fields {
		if !ValidLabel(f.Label) {
			return "", invalid("bad field label %q: use letters, digits, _ . -", f.Label)
		}
		if !ValidValue(f.Value) {
			return "", invalid("bad value for %s: a value cannot hold \", CR, LF or NUL", f.Label)
		}
		b = AppendField(b, f.Label, f.Value)
	}
	line := string(b)
	return line, limitLine(line)
}

// DelLine returns the request line `del <user>`.
func DelLine(user string) (string, error) {
	if err := checkWord("user name", user, true); err != nil {
		return "", err
	}
	return "del " + user, nil
}

// RenameLine returns the request line `rename <old> <new>`.
func RenameLine(oldName, newName string) (string, error) {
	if err := checkWord("user name", oldName, true); err != nil {
		return "", err
	}
	if err := checkWord("new user name", newName, true); err != nil {
		return "", err
	}
	return "rename " + oldName + " " + newName, nil
}

// SearchLine returns the request line `search <pattern> [-from n] [-max m]`;
// from 0 and max < 0 are left out (the server's defaults).
func SearchLine(pattern string, from, max int) (string, error) {
	if err := checkWord("search pattern", pattern, true); err != nil {
		return "", err
	}
	if from < 0 {
		return "", invalid("negative search offset")
	}
	line := "search " + pattern
	if from > 0 {
		line += " -from " + strconv.Itoa(from)
	}
	if max >= 0 {
		line += " -max " + strconv.Itoa(max)
	}
	return line, nil
}

// ParseFieldArg parses one command-line field argument: label=value, where
// value may be wrapped in double quotes (label="a b" arrives from a shell
// as label=a b, which is accepted as well).
func ParseFieldArg(arg string) (Field, error) {
	label, value, ok := strings.Cut(arg, "=")
	if !ok {
		return Field{}, invalid("field %q: want label=value", arg)
	}
	if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
		value = value[1 : len(value)-1]
	}
	if !ValidLabel(label) {
		return Field{}, invalid("bad field label %q: use letters, digits, _ . -", label)
	}
	if !ValidValue(value) {
		return Field{}, invalid("bad value for %s: a value cannot hold \", CR, LF or NUL", label)
	}
	return Field{Label: label, Value: value}, nil
}

// checkWord refuses an argument that cannot travel as one protocol word.
// Passwords are never echoed in the message.
func checkWord(what, s string, echo bool) error {
	if s == "" {
		return invalid("empty %s", what)
	}
	show := ""
	if echo {
		show = fmt.Sprintf(" %.60q", s)
	}
	for i := 0; i < len(s); i++ {
		switch b := s[i]; {
		case b == ' ' || b == '\t':
			return invalid("%s%s contains a space (the authent protocol cannot carry it)", what, show)
		case b == '\r' || b == '\n':
			return invalid("%s%s contains a line break", what, show)
		case b == 0:
			return invalid("%s%s contains NUL", what, show)
		case echo && (b < 0x20 || b == 0x7f):
			return invalid("%s%s contains a control character", what, show)
		}
	}
	return limitLine(s)
}

func limitLine(line string) error {
	if len(line) > MaxLine {
		return invalid("request longer than %d bytes", MaxLine)
	}
	return nil
}
