package importer

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"sync/atomic"
)

// maxLine bounds a line: a longer one is reported and skipped, so a
// binary file or a missing newline cannot make the reader hold gigabytes.
const maxLine = 1 << 20

// errLineTooLong is the text of a line longer than maxLine.
var errLineTooLong = errorf("line longer than %d bytes", maxLine)

// lineReader reads a file line by line, counting lines and bytes. Lines
// come without their terminator (LF or CRLF); each is a new string.
type lineReader struct {
	r       *bufio.Reader
	line    int64        // number of the last line returned
	offset  atomic.Int64 // bytes consumed, read by the progress reporter
	pending []string     // lines pushed back with unread, most recent last
	tooLong bool         // the last line returned was cut (errLineTooLong)
}

func newLineReader(r io.Reader) *lineReader {
	br, ok := r.(*bufio.Reader)
	if !ok || br.Size() < maxLine {
		br = bufio.NewReaderSize(r, maxLine)
	}
	return &lineReader{r: br}
}

// next returns the next line and its number; io.EOF at the end. A line
// longer than maxLine is returned cut, with tooLong set.
func (l *lineReader) next() (string, error) {
	b, err := l.nextBytes()
	return string(b), err
}

// nextBytes is next without the string: the line is valid until the next
// call, so a caller that keeps several lines can copy them at once.
func (l *lineReader) nextBytes() ([]byte, error) {
	l.tooLong = false
	if n := len(l.pending); n > 0 {
		s := l.pending[n-1]
		l.pending = l.pending[:n-1]
		l.line++
		return []byte(s), nil
	}
	b, err := l.r.ReadSlice('\n')
	l.offset.Add(int64(len(b)))
	if errors.Is(err, bufio.ErrBufferFull) {
		s := bytes.Clone(b[:64])
		for errors.Is(err, bufio.ErrBufferFull) { // skip the rest of the line
			b, err = l.r.ReadSlice('\n')
			l.offset.Add(int64(len(b)))
		}
		if err != nil && err != io.EOF {
			return nil, err
		}
		l.line++
		l.tooLong = true
		return s, nil
	}
	if err == io.EOF {
		if len(b) == 0 {
			return nil, io.EOF
		}
	} else if err != nil {
		return nil, err
	}
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	l.line++
	return b, nil
}

// unread pushes lines back (in file order) so that next returns them
// again, and rewinds the line count.
func (l *lineReader) unread(lines ...string) {
	for i := len(lines) - 1; i >= 0; i-- {
		l.pending = append(l.pending, lines[i])
	}
	l.line -= int64(len(lines))
}
