package proxy

import (
	"errors"
	"strconv"
	"strings"
)

// The IMAP command parser of the login phase (RFC 9051 section 9, RFC
// 3501): a tag, a command name and arguments, each an atom, a quoted
// string, a literal ({n} synchronising, {n+} non-synchronising, RFC 7888)
// or a parenthesised list. A command may span several lines, one after
// each literal; the parser asks its source for them as it goes.

const (
	// maxLiteral is the largest literal accepted before login: user
	// names, passwords and ID values are far shorter.
	maxLiteral = 8 << 10
	// maxCommand bounds one command, lines and literals together.
	maxCommand = 32 << 10
	// maxListDepth bounds nested lists.
	maxListDepth = 4
	// maxArgs bounds the arguments of one command, list members included.
	maxArgs = 128
)

// argKind tells an atom (NIL included) from a string and a list.
type argKind uint8

const (
	argAtom   argKind = iota
	argString         // quoted or literal
	argList
)

// imapArg is one argument of a command.
type imapArg struct {
	kind argKind
	s    string    // atom or string
	list []imapArg // argList
}

// astring returns the argument as an IMAP astring (an atom or a string)
// and whether it is one.
func (a imapArg) astring() (string, bool) {
	return a.s, a.kind == argAtom || a.kind == argString
}

// imapCommand is one command line, literals included.
type imapCommand struct {
	tag  string
	name string // upper case
	args []imapArg
}

// imapSource gives the parser the lines and literals of a command.
type imapSource interface {
	// readLine reads the next line without its CR LF.
	readLine() (string, error)
	// readLiteral reads a literal of n bytes, announced with sync true
	// for {n} (the client waits for a continuation request) or false for
	// {n+} (the data follows at once).
	readLiteral(n int, sync bool) ([]byte, error)
}

// imapSyntaxError is a command that cannot be parsed: answered with tag
// BAD text (tag is "*" when the line has no usable tag).
type imapSyntaxError struct {
	tag, text string
}

func (e *imapSyntaxError) Error() string { return e.text }

// imapLiteralTooBig is a literal over the limits, not read: refused with a
// tagged BAD. After a synchronising one the client must not send the
// data; after a non-synchronising one it already does, so the connection
// is closed.
type imapLiteralTooBig struct {
	tag  string
	n    int64
	sync bool
}

func (e *imapLiteralTooBig) Error() string { return "literal too big" }

// imapParser reads one command.
type imapParser struct {
	src    imapSource
	line   string
	pos    int
	budget int // bytes the command may still take
	tag    string
	nargs  int
}

// readIMAPCommand reads and parses the next command from src. Errors are
// an *imapSyntaxError, an *imapLiteralTooBig, or src's own (errLineTooLong,
// a closed connection...).
func readIMAPCommand(src imapSource) (*imapCommand, error) {
	line, err := src.readLine()
	if err != nil {
		return nil, err
	}
	p := &imapParser{src: src, line: line, budget: maxCommand - len(line), tag: "*"}
	tag := p.take(isTagChar)
	if tag == "" {
		return nil, p.bad("Missing or invalid tag")
	}
	p.tag = tag
	if !p.sp() {
		return nil, p.bad("Missing command")
	}
	name := p.take(isAtomChar)
	if name == "" {
		return nil, p.bad("Missing or invalid command name")
	}
	cmd := &imapCommand{tag: tag, name: strings.ToUpper(name)}
	for p.pos < len(p.line) {
		if !p.sp() {
			return nil, p.bad("Invalid characters in command")
		}
		a, err := p.arg(0)
		if err != nil {
			return nil, err
		}
		cmd.args = append(cmd.args, a)
	}
	return cmd, nil
}

func (p *imapParser) bad(text string) error { return &imapSyntaxError{tag: p.tag, text: text} }

// sp consumes one space.
func (p *imapParser) sp() bool {
	if p.pos < len(p.line) && p.line[p.pos] == ' ' {
		p.pos++
		return true
	}
	return false
}

// take consumes the longest run of bytes for which ok holds.
func (p *imapParser) take(ok func(byte) bool) string {
	start := p.pos
	for p.pos < len(p.line) && ok(p.line[p.pos]) {
		p.pos++
	}
	return p.line[start:p.pos]
}

// arg parses one argument at list depth depth.
func (p *imapParser) arg(depth int) (imapArg, error) {
	p.nargs++
	if p.nargs > maxArgs {
		return imapArg{}, p.bad("Too many arguments")
	}
	if p.pos >= len(p.line) {
		return imapArg{}, p.bad("Missing argument")
	}
	switch p.line[p.pos] {
	case '"':
		s, err := p.quoted()
		return imapArg{kind: argString, s: s}, err
	case '{':
		s, err := p.literal()
		return imapArg{kind: argString, s: s}, err
	case '(':
		if depth >= maxListDepth {
			return imapArg{}, p.bad("Lists nested too deep")
		}
		p.pos++
		a := imapArg{kind: argList}
		for {
			if p.pos < len(p.line) && p.line[p.pos] == ')' {
				p.pos++
				return a, nil
			}
			if len(a.list) > 0 && !p.sp() {
				return imapArg{}, p.bad("Invalid list")
			}
			e, err := p.arg(depth + 1)
			if err != nil {
				return imapArg{}, err
			}
			a.list = append(a.list, e)
		}
	}
	s := p.take(isAtomChar)
	if s == "" {
		return imapArg{}, p.bad("Invalid argument")
	}
	return imapArg{kind: argAtom, s: s}, nil
}

// quoted parses a quoted string: \" and \\ are its only escapes; NUL, CR
// and LF are not allowed in it. 8-bit bytes are (UTF-8, RFC 9051).
func (p *imapParser) quoted() (string, error) {
	p.pos++ // the opening quote
	var b strings.Builder
	for p.pos < len(p.line) {
		c := p.line[p.pos]
		p.pos++
		switch c {
		case '"':
			return b.String(), nil
		case '\\':
			if p.pos >= len(p.line) || (p.line[p.pos] != '"' && p.line[p.pos] != '\\') {
				return "", p.bad("Invalid escape in quoted string")
			}
			b.WriteByte(p.line[p.pos])
			p.pos++
		case 0, '\r', '\n':
			return "", p.bad("Invalid character in quoted string")
		default:
			b.WriteByte(c)
		}
	}
	return "", p.bad("Unterminated quoted string")
}

// literal parses {n} or {n+} at the end of the line, reads the n bytes
// from the source, then the line that goes on with the command.
func (p *imapParser) literal() (string, error) {
	end := strings.IndexByte(p.line[p.pos:], '}')
	if end < 0 || p.pos+end+1 != len(p.line) {
		return "", p.bad("Invalid literal")
	}
	spec := p.line[p.pos+1 : p.pos+end]
	sync := true
	if strings.HasSuffix(spec, "+") {
		spec, sync = spec[:len(spec)-1], false
	}
	if spec == "" || len(spec) > 10 || strings.Trim(spec, "0123456789") != "" {
		return "", p.bad("Invalid literal size")
	}
	n, err := strconv.ParseInt(spec, 10, 64)
	if err != nil {
		return "", p.bad("Invalid literal size")
	}
	if n > maxLiteral || n > int64(p.budget) {
		return "", &imapLiteralTooBig{tag: p.tag, n: n, sync: sync}
	}
	data, err := p.src.readLiteral(int(n), sync)
	if err != nil {
		return "", err
	}
	p.budget -= len(data)
	// The command goes on (or ends) on the next line.
	line, err := p.src.readLine()
	if err != nil {
		return "", err
	}
	p.budget -= len(line)
	if p.budget < 0 {
		return "", p.bad("Command too long")
	}
	p.line, p.pos = line, 0
	if strings.IndexByte(string(data), 0) >= 0 {
		return "", p.bad("NUL in literal")
	}
	return string(data), nil
}

// isAtomChar reports whether c may be part of an atom. Lenient where it
// costs nothing: list wildcards, backslashes (flags), ']' and 8-bit bytes
// are taken; spaces, controls, parentheses, quotes and '{' end an atom.
func isAtomChar(c byte) bool {
	switch {
	case c <= ' ', c == 0x7f:
		return false
	case c == '(', c == ')', c == '{', c == '"':
		return false
	}
	return true
}

// isTagChar reports whether c may be part of a tag: an ASTRING-CHAR but
// '+' (RFC 9051), nor the wildcards, nor a backslash.
func isTagChar(c byte) bool {
	switch c {
	case '+', '*', '%', '\\', ']':
		return false
	}
	return isAtomChar(c) && c < 0x80
}

// errNeedLiteral: a value that cannot be sent as a quoted string.
var errNeedLiteral = errors.New("needs a literal")

// imapQuote returns s as an IMAP quoted string, or errNeedLiteral when s
// has bytes a quoted string must not or had better not carry (CR, LF,
// other controls, 8-bit bytes, quotes and backslashes).
func imapQuote(s string) (string, error) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < ' ' || c >= 0x7f || c == '"' || c == '\\' {
			return "", errNeedLiteral
		}
	}
	return `"` + s + `"`, nil
}
