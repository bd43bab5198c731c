package pop3

import (
	"bytes"
	"strings"
	"testing"
	"testing/iotest"
)

func TestCopyMessage(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		lines    int
		want     string
	}{
		{"LF endings", "a\nb\n", -1, "a\r\nb\r\n"},
		{"CRLF kept", "a\r\nb\r\n", -1, "a\r\nb\r\n"},
		{"no final newline", "a\nb", -1, "a\r\nb\r\n"},
		{"empty", "", -1, ""},
		{"dot stuffing", ".\n.x\r\nx.\n..\n", -1, "..\r\n..x\r\nx.\r\n...\r\n"},
		{"dot at the very start and end", ".", -1, "..\r\n"},
		{"bare CR kept", "a\rb\n", -1, "a\rb\r\n"},
		{"CR at the end", "a\r", -1, "a\r\r\n"},
		{"CR before a dot", "a\r.b\n", -1, "a\r.b\r\n"},
		{"empty lines", "\n\n\r\n", -1, "\r\n\r\n\r\n"},
		{"TOP 0", "H: 1\nI: 2\n\nl1\nl2\nl3\n", 0, "H: 1\r\nI: 2\r\n\r\n"},
		{"TOP 2", "H: 1\r\n\r\nl1\r\n.l2\r\nl3\r\n", 2, "H: 1\r\n\r\nl1\r\n..l2\r\n"},
		{"TOP past the end", "H: 1\n\nl1", 9, "H: 1\r\n\r\nl1\r\n"},
		{"TOP without a body", "H: 1\n", 3, "H: 1\r\n"},
		{"TOP of a body with empty lines", "H: 1\n\n\n\nx\n", 2, "H: 1\r\n\r\n\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			n, err := copyMessage(&out, strings.NewReader(tc.in), true, tc.lines)
			if err != nil || out.String() != tc.want {
				t.Fatalf("copyMessage(%q, %d) = %q, %v; want %q", tc.in, tc.lines, out.String(), err, tc.want)
			}
			if want := int64(len(unstuff(tc.want))); n != want {
				t.Errorf("counted %d bytes, want %d (stuffing not counted)", n, want)
			}
			// One byte at a time: chunk boundaries between CR and LF, or
			// before a dot, change nothing.
			out.Reset()
			if _, err := copyMessage(&out, iotest.OneByteReader(strings.NewReader(tc.in)), true, tc.lines); err != nil || out.String() != tc.want {
				t.Fatalf("one byte at a time: %q, %v; want %q", out.String(), err, tc.want)
			}
			if tc.lines < 0 {
				if size, err := wireSize(strings.NewReader(tc.in)); err != nil || size != int64(len(unstuff(tc.want))) {
					t.Errorf("wireSize = %d, %v; want %d", size, err, len(unstuff(tc.want)))
				}
			}
		})
	}
}

// unstuff removes POP3 byte-stuffing from CR LF text.
func unstuff(s string) string {
	return strings.ReplaceAll("\n"+s, "\n..", "\n.")[1:]
}
