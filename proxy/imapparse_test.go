package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
)

// stringSource feeds the parser from a byte stream, as a session does:
// lines up to MaxLine, literals read as announced.
type stringSource struct {
	r        *bufio.Reader
	literals []string // "n" or "n+" per literal read
}

func newStringSource(s string) *stringSource {
	return &stringSource{r: bufio.NewReader(strings.NewReader(s))}
}

func (s *stringSource) readLine() (string, error) {
	line, err := s.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	if len(line) > MaxLine {
		return "", errLineTooLong
	}
	return strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r"), nil
}

func (s *stringSource) readLiteral(n int, sync bool) ([]byte, error) {
	spec := strconv.Itoa(n)
	if !sync {
		spec += "+"
	}
	s.literals = append(s.literals, spec)
	b := make([]byte, n)
	_, err := io.ReadFull(s.r, b)
	return b, err
}

// render writes a command's arguments: atoms bare, strings quoted the Go
// way, lists in parentheses.
func render(args []imapArg) string {
	var b strings.Builder
	for i, a := range args {
		if i > 0 {
			b.WriteByte(' ')
		}
		switch a.kind {
		case argAtom:
			b.WriteString(a.s)
		case argString:
			b.WriteString(strconv.Quote(a.s))
		case argList:
			b.WriteString("(" + render(a.list) + ")")
		}
	}
	return b.String()
}

func TestReadIMAPCommand(t *testing.T) {
	big := strconv.Itoa(maxLiteral + 1)
	for _, tc := range []struct {
		in, want string // want: "tag NAME args" or "error: ..."
		literals string
	}{
		{in: "a1 login bob secret\r\n", want: "a1 LOGIN bob secret"},
		{in: "a1 LOGIN bob secret\n", want: "a1 LOGIN bob secret"},
		{in: `a LOGIN "b\"o\\b" ""` + "\r\n", want: `a LOGIN "b\"o\\b" ""`},
		{in: "a LOGIN \"pässwörd\" x\r\n", want: `a LOGIN "pässwörd" x`},
		{in: "a LOGIN {3}\r\nbob {6+}\r\nsecret\r\n", want: `a LOGIN "bob" "secret"`, literals: "3 6+"},
		{in: "a LOGIN {0}\r\n {2}\r\n\r\n\r\n", want: `a LOGIN "" "\r\n"`, literals: "0 2"},
		{in: "a ID (\"name\" {2}\r\nxy \"v\" NIL)\r\n", want: `a ID ("name" "xy" "v" NIL)`, literals: "2"},
		{in: "a ID ()\r\n", want: "a ID ()"},
		{in: "a ID NIL\r\n", want: "a ID NIL"},
		{in: "a LIST \"\" *\r\n", want: `a LIST "" *`},
		{in: "a STORE 1 +FLAGS (\\Seen)\r\n", want: `a STORE 1 +FLAGS (\Seen)`},
		{in: "a.b-c_1 NOOP\r\n", want: "a.b-c_1 NOOP"},

		{in: "\r\n", want: "error: * BAD Missing or invalid tag"},
		{in: "+ NOOP\r\n", want: "error: * BAD Missing or invalid tag"},
		{in: "* NOOP\r\n", want: "error: * BAD Missing or invalid tag"},
		{in: "a\r\n", want: "error: a BAD Missing command"},
		{in: "a  NOOP\r\n", want: "error: a BAD Missing or invalid command name"},
		{in: "a NOOP \r\n", want: "error: a BAD Missing argument"},
		{in: "a LOGIN bob  x\r\n", want: "error: a BAD Invalid argument"},
		{in: "a LOGIN \"bob\r\n", want: "error: a BAD Unterminated quoted string"},
		{in: "a LOGIN \"b\\ob\" x\r\n", want: "error: a BAD Invalid escape in quoted string"},
		{in: "a LOGIN \"b\x00b\" x\r\n", want: "error: a BAD Invalid character in quoted string"},
		{in: "a LOGIN \"b\rb\" x\r\n", want: "error: a BAD Invalid character in quoted string"},
		{in: "a LOGIN \"bob\"x\r\n", want: "error: a BAD Invalid characters in command"},
		{in: "a LOGIN {3} x\r\n", want: "error: a BAD Invalid literal"},
		{in: "a LOGIN {}\r\n", want: "error: a BAD Invalid literal size"},
		{in: "a LOGIN {-1}\r\n", want: "error: a BAD Invalid literal size"},
		{in: "a LOGIN {3}\r\nb\x00b x\r\n", want: "error: a BAD NUL in literal", literals: "3"},
		{in: "a LOGIN {" + big + "}\r\n", want: "error: literal too big " + big + " sync"},
		{in: "a LOGIN {" + big + "+}\r\n", want: "error: literal too big " + big + " non-sync"},
		{in: "a LOGIN {99999999999}\r\n", want: "error: a BAD Invalid literal size"},
		{in: "a ID ((((((x))))))\r\n", want: "error: a BAD Lists nested too deep"},
		{in: "a ID (x\r\n", want: "error: a BAD Invalid list"},
		{in: "a ID (x  y)\r\n", want: "error: a BAD Invalid argument"},
		{in: "a X" + strings.Repeat(" x", maxArgs+1) + "\r\n", want: "error: a BAD Too many arguments"},
		{in: "a LOGIN " + strings.Repeat("x", MaxLine) + "\r\n", want: "error: line too long"},
		{in: "a LOGIN {3}\r\nbo", want: "error: unexpected EOF", literals: "3"},
		{in: "a NOOP", want: "error: EOF"},
	} {
		src := newStringSource(tc.in)
		cmd, err := readIMAPCommand(src)
		var got string
		var syntax *imapSyntaxError
		var tooBig *imapLiteralTooBig
		switch {
		case errors.As(err, &syntax):
			got = "error: " + syntax.tag + " BAD " + syntax.text
		case errors.As(err, &tooBig):
			mode := "sync"
			if !tooBig.sync {
				mode = "non-sync"
			}
			got = fmt.Sprintf("error: literal too big %d %s", tooBig.n, mode)
		case err != nil:
			got = "error: " + err.Error()
		default:
			got = strings.TrimSuffix(cmd.tag+" "+cmd.name+" "+render(cmd.args), " ")
		}
		if got != tc.want {
			t.Errorf("%q:\n got %s\nwant %s", tc.in, got, tc.want)
		}
		if lits := strings.Join(src.literals, " "); lits != tc.literals {
			t.Errorf("%q: literals read %q, want %q", tc.in, lits, tc.literals)
		}
	}
}

func TestReadIMAPCommandBudget(t *testing.T) {
	// Literals within the size limit, too many of them for one command.
	var b strings.Builder
	b.WriteString("a X")
	for b.Len() < 2*maxCommand {
		b.WriteString(" {" + strconv.Itoa(maxLiteral) + "+}\r\n" + strings.Repeat("y", maxLiteral))
	}
	b.WriteString("\r\n")
	_, err := readIMAPCommand(newStringSource(b.String()))
	var tooBig *imapLiteralTooBig
	if !errors.As(err, &tooBig) {
		t.Fatalf("got %v, want a literal too big", err)
	}
}

func TestIMAPQuote(t *testing.T) {
	for in, want := range map[string]string{"bob": `"bob"`, "": `""`, "a b": `"a b"`} {
		if got, err := imapQuote(in); err != nil || got != want {
			t.Errorf("%q: %q, %v", in, got, err)
		}
	}
	for _, in := range []string{`a"b`, `a\b`, "a\rb", "a\nb", "ü", "a\tb", "\x7f"} {
		if _, err := imapQuote(in); err == nil {
			t.Errorf("%q quoted", in)
		}
	}
}

func TestDecodePlain(t *testing.T) {
	for _, tc := range []struct{ in, user, pass, err string }{
		{in: plain("", "bob", "secret"), user: "bob", pass: "secret"},
		{in: plain("bob", "bob", "se cret"), user: "bob", pass: "se cret"},
		{in: plain("", "bob", ""), user: "bob", pass: ""},
		{in: plain("eve", "bob", "x"), err: errAuthzid.Error()},
		{in: plain("", "", "x"), err: "Invalid PLAIN response"},
		{in: "=", err: "Invalid PLAIN response"},
		{in: "Ym9i", err: "Invalid PLAIN response"},
		{in: "Ym9i!", err: "Invalid base64 data"},
	} {
		u, p, err := decodePlain(tc.in)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("%q: %v, want %s", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || u != tc.user || p != tc.pass {
			t.Errorf("%q: %q %q %v", tc.in, u, p, err)
		}
	}
}

// encodeAstring writes s for the parser as the backend side does: quoted
// where it can, else a non-synchronising literal.
func encodeAstring(s string) string {
	if q, err := imapQuote(s); err == nil {
		return q
	}
	return "{" + strconv.Itoa(len(s)) + "+}\r\n" + s
}

// FuzzIMAPCommand feeds the parser arbitrary input: it must not panic,
// every command it returns must be well formed, and every string in it
// must survive the way the proxy writes it to a backend.
func FuzzIMAPCommand(f *testing.F) {
	for _, s := range []string{
		"a LOGIN bob secret\r\n",
		"a LOGIN {3}\r\nbob {6+}\r\nsecret\r\nb NOOP\r\n",
		`a LOGIN "we\"ird" "\\"` + "\r\n",
		"a ID (\"name\" \"x\" \"version\" {1}\r\n1)\r\n",
		"a AUTHENTICATE PLAIN AGJvYgBzZWNyZXQ=\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		src := newStringSource(string(data))
		for range 50 {
			cmd, err := readIMAPCommand(src)
			var syntax *imapSyntaxError
			var tooBig *imapLiteralTooBig
			if errors.As(err, &syntax) || errors.As(err, &tooBig) {
				continue
			}
			if err != nil {
				return
			}
			if cmd.tag == "" || strings.IndexFunc(cmd.tag, func(r rune) bool { return r > 0x7f || !isTagChar(byte(r)) }) >= 0 {
				t.Fatalf("bad tag %q", cmd.tag)
			}
			if cmd.name == "" || cmd.name != strings.ToUpper(cmd.name) {
				t.Fatalf("bad name %q", cmd.name)
			}
			checkArgs(t, cmd.args)
		}
	})
}

func checkArgs(t *testing.T, args []imapArg) {
	for _, a := range args {
		if a.kind == argList {
			checkArgs(t, a.list)
			continue
		}
		if a.kind == argAtom && a.s == "" {
			t.Fatal("empty atom")
		}
		if strings.ContainsRune(a.s, 0) {
			t.Fatalf("NUL in %q", a.s)
		}
		// Round trip through the backend's encoding.
		line := "t LOGIN " + encodeAstring(a.s) + " x\r\n"
		cmd, err := readIMAPCommand(newStringSource(line))
		if len(a.s) > maxLiteral || errors.Is(err, errLineTooLong) {
			continue // too long to be written back in one command
		}
		if err != nil {
			t.Fatalf("%q written as %q: %v", a.s, line, err)
		}
		if len(cmd.args) != 2 || cmd.args[0].kind != argString || cmd.args[0].s != a.s {
			t.Fatalf("%q written as %q read back as %q", a.s, line, render(cmd.args))
		}
	}
}
