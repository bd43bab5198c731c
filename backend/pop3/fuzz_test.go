package pop3

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

// FuzzCommand checks the command parser, the number and SASL decoders on
// any line: no panic, and what they accept is what the grammar allows.
// The seed corpus is in testdata/fuzz/FuzzCommand.
func FuzzCommand(f *testing.F) {
	for _, s := range []string{"USER alice", "pass two words", "RETR 1", "TOP 1 0", "list",
		"AUTH PLAIN AGFsaWNlAHNlY3JldA==", "XCLIENT ADDR=192.0.2.1 PORT=1234", "", " ", "RETR -1",
		"RETR 4294967296", "TOP 1  2", "AGFsaWNlAHNlY3JldA", "=", "\x00", "QUIT\r"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		cmd, err := parseCommand(line)
		if err == nil {
			if cmd.Name == "" || cmd.Name != strings.ToUpper(cmd.Name) || strings.ContainsAny(cmd.Name, " \x00\r\n") {
				t.Fatalf("parseCommand(%q): keyword %q", line, cmd.Name)
			}
			if strings.ContainsAny(cmd.Arg, "\x00\r\n") {
				t.Fatalf("parseCommand(%q): argument %q", line, cmd.Arg)
			}
			again := cmd.Name
			if strings.Contains(line, " ") {
				again += " " + cmd.Arg
			}
			if !strings.EqualFold(again, line) {
				t.Fatalf("parseCommand(%q) = %q, %q", line, cmd.Name, cmd.Arg)
			}
		} else if strings.ContainsAny(line, "\x00\r\n") == false && line != "" && !strings.HasPrefix(line, " ") {
			name, _, _ := strings.Cut(line, " ")
			if len(name) <= maxKeyword && strings.Trim(strings.ToLower(name), "abcdefghijklmnopqrstuvwxyz") == "" {
				t.Fatalf("parseCommand(%q) refused a well-formed line", line)
			}
		}
		if n, ok := parseNumber(line); ok {
			if n < 0 || n > maxMsgNum || strconv.Itoa(n) != strings.TrimLeft(line, "0") && !(n == 0 && strings.Trim(line, "0") == "") {
				t.Fatalf("parseNumber(%q) = %d", line, n)
			}
		}
		if ns, ok := parseNumbers(line, 2); ok && (len(ns) != 2 || strings.Count(line, " ") != 1) {
			t.Fatalf("parseNumbers(%q) = %v", line, ns)
		}
	})
}

// FuzzWire checks the message writer on any input: every line it sends
// ends in CR LF, none starts with a lone "." (the end of the message),
// its count is the size without stuffing, and the output does not depend
// on how the input is cut.
func FuzzWire(f *testing.F) {
	for _, s := range []string{"a\nb", ".\r\n..\n", "\r\r\n\n", "H: x\n\nbody\n.\n", "\r"} {
		f.Add(s, -1)
		f.Add(s, 1)
	}
	f.Fuzz(func(t *testing.T, in string, lines int) {
		if lines < -1 {
			lines = -1
		}
		var out bytes.Buffer
		n, err := copyMessage(&out, strings.NewReader(in), true, lines)
		if err != nil {
			t.Fatal(err)
		}
		got := out.String()
		if got != "" && !strings.HasSuffix(got, "\r\n") {
			t.Fatalf("%q -> %q: no CR LF at the end", in, got)
		}
		for _, l := range strings.SplitAfter(got, "\n") {
			if l != "" && !strings.HasSuffix(l, "\r\n") {
				t.Fatalf("%q -> %q: line %q without CR LF", in, got, l)
			}
			if l == ".\r\n" {
				t.Fatalf("%q -> %q: a line of one dot", in, got)
			}
		}
		if int(n) != len(unstuff(got)) {
			t.Fatalf("%q -> %q: counted %d", in, got, n)
		}
		if want := wireReference(in); lines < 0 && got != want {
			t.Fatalf("%q -> %q, want %q", in, got, want)
		}
		var one bytes.Buffer
		copyMessage(&one, iotest.OneByteReader(strings.NewReader(in)), true, lines)
		if one.String() != got {
			t.Fatalf("%q: whole %q, one byte at a time %q", in, got, one.String())
		}
	})
}

// wireReference is what POP3 sends for a whole message, computed line by
// line: a line ends at LF, with or without CR before it; a CR not before
// an LF stays; a last line without LF gets one; a leading dot is doubled.
func wireReference(in string) string {
	if in == "" {
		return ""
	}
	parts := strings.Split(in, "\n")
	last := parts[len(parts)-1]
	parts = parts[:len(parts)-1]
	for i := range parts {
		parts[i] = strings.TrimSuffix(parts[i], "\r")
	}
	if last != "" {
		parts = append(parts, last)
	}
	var b strings.Builder
	for _, p := range parts {
		if strings.HasPrefix(p, ".") {
			b.WriteString(".")
		}
		b.WriteString(p + "\r\n")
	}
	return b.String()
}
