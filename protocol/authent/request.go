package authent

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
)

// Command identifies a request's command word.
type Command uint8

// The commands of docs/protocol.md. Unknown is any other word.
const (
	Unknown Command = iota
	Check
	Lookup
	Set
	Del
	Search
	Version
	Help
	Exit
	Quit
	Ping
	Rename
	Auth
)

var commandNames = [...]string{
	Unknown: "unknown", Check: "check", Lookup: "lookup", Set: "set", Del: "del",
	Search: "search", Version: "version", Help: "help", Exit: "exit", Quit: "quit",
	Ping: "ping", Rename: "rename", Auth: "auth",
}

func (c Command) String() string { return commandNames[c] }

// Admin reports whether c changes or enumerates the directory and therefore
// needs an admin client.
func (c Command) Admin() bool { return c == Set || c == Del || c == Search || c == Rename }

// MaxLine is the longest request line accepted, without its line ending.
const MaxLine = 8 << 10

// NullPassword is the password word of `set` that keeps the current password.
const NullPassword = "(NULL)"

// Request is one parsed request line. Which fields are set depends on Cmd:
// User (check, lookup, set, del, rename), Password (check, set; "" for
// (NULL)), IP (check), Fields (set), NewUser (rename), Pattern/From/Max
// (search), Secret (auth).
type Request struct {
	Cmd      Command
	User     string
	Password string
	IP       string
	Fields   []Field
	NewUser  string
	Pattern  string
	From     int
	Max      int // -1: no limit
	Secret   string
}

// Errors of ParseRequest. ErrLineTooLong and ErrBadChars are fatal: the
// server answers them and closes the connection.
var (
	ErrLineTooLong = errors.New("line too long")
	ErrBadChars    = errors.New("bad characters")
	ErrUnknown     = errors.New("unknown command")
)

// SyntaxError is a malformed request; its text goes after -ERR as it is.
type SyntaxError struct{ Msg string }

func (e *SyntaxError) Error() string { return e.Msg }

func syntaxErr(msg string) error { return &SyntaxError{Msg: msg} }

// TrimLine strips the line ending and trailing spaces from a raw line.
func TrimLine(line []byte) []byte {
	return bytes.TrimRight(line, "\r\n \t")
}

// ParseRequest parses one request line (line ending already removed or not).
func ParseRequest(line []byte) (Request, error) {
	line = TrimLine(line)
	if len(line) > MaxLine {
		return Request{}, ErrLineTooLong
	}
	// NUL, or a CR/LF inside the line (a line reader never yields one, but
	// a caller may pass anything), could break the reply line.
	if bytes.IndexAny(line, "\x00\r\n") >= 0 {
		return Request{}, ErrBadChars
	}
	// One allocation for the whole line; every argument is a substring of it.
	s := string(line)
	word, rest := cut(s)
	req := Request{Cmd: lookupCommand(word), Max: -1}
	var err error
	switch req.Cmd {
	case Check:
		err = req.parseCheck(rest)
	case Lookup, Del:
		req.User, err = oneArg(rest, "user")
	case Set:
		err = req.parseSet(rest)
	case Search:
		err = req.parseSearch(rest)
	case Rename:
		var extra string
		req.User, rest = cut(rest)
		req.NewUser, extra = cut(rest)
		if req.User == "" || req.NewUser == "" || extra != "" {
			err = syntaxErr("usage: rename <old> <new>")
		}
	case Auth:
		req.Secret, err = oneArg(rest, "secret")
	case Version, Help, Exit, Quit, Ping:
		// Arguments are ignored, as NetWin modules do.
	default:
		return Request{}, ErrUnknown
	}
	if err != nil {
		return Request{}, err
	}
	return req, nil
}

// lookupCommand matches a command word case-insensitively without allocating.
func lookupCommand(w string) Command {
	for c := Check; c <= Auth; c++ {
		if strings.EqualFold(w, commandNames[c]) {
			return c
		}
	}
	return Unknown
}

// cut splits off the first space-separated word; runs of spaces are skipped.
func cut(s string) (word, rest string) {
	s = strings.TrimLeft(s, " ")
	if i := strings.IndexByte(s, ' '); i >= 0 {
		return s[:i], strings.TrimLeft(s[i+1:], " ")
	}
	return s, ""
}

func oneArg(s, what string) (string, error) {
	a, rest := cut(s)
	if a == "" {
		return "", syntaxErr("missing " + what)
	}
	if rest != "" {
		return "", syntaxErr("too many arguments")
	}
	return a, nil
}

func (r *Request) parseCheck(s string) error {
	var extra string
	r.User, s = cut(s)
	r.Password, s = cut(s)
	r.IP, extra = cut(s)
	if r.User == "" || r.Password == "" {
		return syntaxErr("usage: check <user> <password> [<ip>]")
	}
	if extra != "" {
		return syntaxErr("too many arguments (a password cannot contain spaces)")
	}
	return nil
}

func (r *Request) parseSet(s string) error {
	r.User, s = cut(s)
	r.Password, s = cut(s)
	if r.User == "" || r.Password == "" {
		return syntaxErr("usage: set <user> <password>|(NULL) [label=\"value\" ...]")
	}
	if r.Password == NullPassword {
		r.Password = ""
	}
	if s == "" {
		return nil
	}
	fields, err := ParseFields(s)
	if err != nil {
		return syntaxErr(strings.TrimPrefix(err.Error(), ErrFieldSyntax.Error()+": "))
	}
	r.Fields = fields
	return nil
}

func (r *Request) parseSearch(s string) error {
	r.Pattern, s = cut(s)
	if r.Pattern == "" {
		return syntaxErr("usage: search <pattern> [-from <n>] [-max <m>]")
	}
	for s != "" {
		var opt, val string
		opt, s = cut(s)
		val, s = cut(s)
		n, err := strconv.Atoi(val)
		if err != nil || n < 0 {
			return syntaxErr("bad number for " + opt)
		}
		switch strings.ToLower(opt) {
		case "-from":
			r.From = n
		case "-max":
			r.Max = n
		default:
			return syntaxErr("unknown search option " + opt)
		}
	}
	return nil
}
