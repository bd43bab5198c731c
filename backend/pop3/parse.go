package pop3

import (
	"errors"
	"strconv"
	"strings"
)

// maxKeyword is the longest command keyword accepted. RFC 1939 keywords
// are 3 or 4 characters; extensions (XCLIENT) are longer.
const maxKeyword = 16

// errSyntax: a line that is not a command.
var errSyntax = errors.New("syntax error")

// command is one parsed command line.
type command struct {
	Name string // the keyword, upper-cased
	Arg  string // the rest of the line after one space, kept whole
}

// parseCommand splits a command line (without its CR LF) into its
// keyword and argument. The keyword is letters only, case-insensitive
// (RFC 1939 section 3); the argument is everything after the first space,
// so that a password may hold spaces. A line with a NUL, CR or LF, an
// empty keyword or one over maxKeyword characters is refused.
func parseCommand(line string) (command, error) {
	if strings.ContainsAny(line, "\x00\r\n") {
		return command{}, errSyntax
	}
	name, arg, _ := strings.Cut(line, " ")
	if name == "" || len(name) > maxKeyword {
		return command{}, errSyntax
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return command{}, errSyntax
		}
	}
	return command{Name: strings.ToUpper(name), Arg: arg}, nil
}

// maxMsgNum bounds message numbers and line counts, so that they fit an
// int anywhere.
const maxMsgNum = 1<<31 - 1

// parseNumber reads a decimal number of one to ten digits, no sign, no
// spaces, at most maxMsgNum.
func parseNumber(s string) (int, bool) {
	if s == "" || len(s) > 10 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n > maxMsgNum {
		return 0, false
	}
	return int(n), true
}

// parseArgs splits an argument into exactly want words separated by single
// spaces, each a number.
func parseNumbers(arg string, want int) ([]int, bool) {
	words := strings.Split(arg, " ")
	if len(words) != want {
		return nil, false
	}
	out := make([]int, want)
	for i, w := range words {
		n, ok := parseNumber(w)
		if !ok {
			return nil, false
		}
		out[i] = n
	}
	return out, true
}
