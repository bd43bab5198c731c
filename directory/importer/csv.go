package importer

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/tohost/tohost/directory"
)

// CSV (RFC 4180): the first record is the header and names the columns.
//
//	user           the user name (required)
//	password       a cleartext password, hashed on import
//	password_hash  a stored password: "{SCHEME}..." or a bare crypt string
//	anything else  a field of that label (tohost among them)
//
// An empty cell means "no such field"; fields are added in column order.
// A label may head several columns (an export does that when users hold
// their fields in different orders); a row fills at most one of them.
//
// Values hold no line breaks (no stored value may), so a quoted field that
// runs past the end of its line is always an error; the reader looks up to
// csvMaxLines ahead for the closing quote so that the whole broken record
// is reported as one, and otherwise rejects only the first line.

// csvMaxLines bounds how many lines one quoted field may span.
const csvMaxLines = 20

type csvColumn int

const (
	colField csvColumn = iota
	colUser
	colPassword
	colHash
)

type csvReader struct {
	lr      *lineReader
	header  string // the header line as read, for the rejects file
	kinds   []csvColumn
	labels  []string
	cells   []string
	nFields int
}

func newCSVReader(r io.Reader) *csvReader {
	return &csvReader{lr: newLineReader(r)}
}

// readHeader reads the header; an unusable header fails the whole import.
func (c *csvReader) readHeader() error {
	var line string
	for {
		var err error
		line, err = c.lr.next()
		if err == io.EOF {
			return fmt.Errorf("csv: no header line")
		}
		if err != nil {
			return err
		}
		if c.lr.line == 1 {
			line = strings.TrimPrefix(line, "\ufeff")
		}
		if line != "" {
			break
		}
	}
	cells, err, open := splitCSV(line, nil)
	if open {
		err = errorf("unterminated quoted field")
	}
	if err != nil {
		return fmt.Errorf("csv header, line %d: %v", c.lr.line, err)
	}
	c.header = line
	seen := map[csvColumn]bool{}
	for i, h := range cells {
		h = strings.TrimSpace(h)
		kind := colField
		switch strings.ToLower(h) {
		case "user":
			kind = colUser
		case "password":
			kind = colPassword
		case "password_hash":
			kind = colHash
		default:
			if err := directory.ValidateField(directory.Field{Label: h}); err != nil {
				return fmt.Errorf("csv header, line %d, column %d: %v", c.lr.line, i+1, err)
			}
			c.nFields++
		}
		if kind != colField && seen[kind] {
			return fmt.Errorf("csv header, line %d: column %q given twice", c.lr.line, h)
		}
		seen[kind] = true
		c.kinds = append(c.kinds, kind)
		c.labels = append(c.labels, h)
	}
	if !seen[colUser] {
		return fmt.Errorf("csv header, line %d: no \"user\" column (header: %s)", c.lr.line, line)
	}
	return nil
}

// next reads the next record into rec, or returns io.EOF.
func (c *csvReader) next(rec *Record) error {
	var line string
	for {
		var err error
		line, err = c.lr.next()
		if err != nil {
			return err
		}
		if line != "" {
			break
		}
	}
	*rec = Record{Line: c.lr.line, Raw: line}
	if c.lr.tooLong {
		rec.Err = errLineTooLong
		return nil
	}
	cells, err, open := splitCSV(line, c.cells[:0])
	if open {
		cells, err = c.continued(rec, line)
	}
	c.cells = cells
	if err != nil {
		rec.Err = err
		c.fillName(rec, cells)
		return nil
	}
	if len(cells) != len(c.kinds) {
		rec.Err = errorf("%d fields, the header has %d", len(cells), len(c.kinds))
		c.fillName(rec, cells)
		return nil
	}
	c.fill(rec, cells)
	return nil
}

// continued handles a quoted field open at the end of the line: it reads
// on until the quote closes. If the lines up to there make one well-formed
// record, it is one multi-line record (rejected: no value holds a line
// break). Otherwise, or if csvMaxLines pass first, only the first line is
// rejected, and the lines read ahead are read again as records of their
// own: a stray quote must not swallow the good lines after it.
func (c *csvReader) continued(rec *Record, first string) ([]string, error) {
	lines := []string{first}
	joined := first
	for len(lines) < csvMaxLines {
		l, err := c.lr.next()
		if err != nil || c.lr.tooLong {
			if err == nil {
				c.lr.unread(l)
			}
			break
		}
		lines = append(lines, l)
		joined += "\n" + l
		cells, err, open := splitCSV(joined, c.cells[:0])
		if open {
			continue
		}
		if err == nil && len(cells) == len(c.kinds) {
			rec.Raw = joined
			return cells, errorf("a quoted value holds a line break")
		}
		break
	}
	c.lr.unread(lines[1:]...)
	cells, _, _ := splitCSV(first, c.cells[:0])
	return cells, errorf("unterminated quoted field")
}

func (c *csvReader) fillName(rec *Record, cells []string) {
	for i, k := range c.kinds {
		if k == colUser && i < len(cells) {
			rec.Name = cells[i]
		}
	}
}

func (c *csvReader) fill(rec *Record, cells []string) {
	var pass, hash string
	n := 0
	for i, k := range c.kinds {
		if k == colField && cells[i] != "" {
			n++
		}
	}
	if n > 0 {
		rec.Fields = make([]directory.Field, 0, n)
	}
	for i, k := range c.kinds {
		switch k {
		case colUser:
			rec.Name = cells[i]
		case colPassword:
			pass = cells[i]
		case colHash:
			hash = cells[i]
		default:
			if cells[i] != "" {
				rec.Fields = append(rec.Fields, directory.Field{Label: c.labels[i], Value: cells[i]})
			}
		}
	}
	switch {
	case pass != "" && hash != "":
		rec.Err = errorf("both password and password_hash given")
	case pass != "":
		rec.Password, rec.Plain = pass, true
	case hash != "":
		stored, plain := storedPassword(hash, false)
		if plain {
			rec.Err = errorf("password_hash has no {SCHEME} and is no crypt string")
		}
		rec.Password = stored
	}
}

// splitCSV splits one CSV record. open reports a quoted field still open
// at the end of s (the record continues on the next line).
func splitCSV(s string, dst []string) (cells []string, err error, open bool) {
	cells = dst
	i := 0
	for {
		if i < len(s) && s[i] == '"' {
			var b []byte // only when the field holds "" escapes
			start := i + 1
			j := start
			for {
				q := strings.IndexByte(s[j:], '"')
				if q < 0 {
					return cells, nil, true
				}
				q += j
				if q+1 < len(s) && s[q+1] == '"' {
					b = append(b, s[j:q+1]...)
					j = q + 2
					continue
				}
				if b != nil {
					cells = append(cells, string(append(b, s[j:q]...)))
				} else {
					cells = append(cells, s[start:q])
				}
				i = q + 1
				break
			}
			if i < len(s) && s[i] != ',' {
				return cells, errorf("text after the closing quote of field %d", len(cells)), false
			}
		} else {
			end := strings.IndexByte(s[i:], ',')
			if end < 0 {
				end = len(s)
			} else {
				end += i
			}
			f := s[i:end]
			if strings.IndexByte(f, '"') >= 0 {
				return append(cells, f), errorf("quote in unquoted field %d", len(cells)+1), false
			}
			cells = append(cells, f)
			i = end
		}
		if i >= len(s) {
			return cells, nil, false
		}
		i++ // the comma
		if i == len(s) {
			return append(cells, ""), nil, false
		}
	}
}

// csvWriter writes users as CSV under a header made by csvHeader.
type csvWriter struct {
	w      *bufio.Writer
	labels []string // the field columns, in order
	buf    []byte
	pos    []int
	vals   []string
}

// csvColumns computes field columns such that every user's labels, in
// their order, are a subsequence of the columns: each user's field order
// survives the round trip. Users that agree on one order (the usual case)
// give each label one column. It is fed one user at a time.
type csvColumns struct{ labels []string }

func (h *csvColumns) add(fields []directory.Field) {
	pos := 0 // the columns before pos are matched
	for i, f := range fields {
		if f.Value == "" {
			continue
		}
		if j := h.find(f.Label, pos); j >= 0 {
			pos = j + 1
			continue
		}
		// A new column goes as late as the user's later fields allow:
		// just before the column the next of them will take.
		at := len(h.labels)
		for _, g := range fields[i+1:] {
			if g.Value == "" {
				continue
			}
			if j := h.find(g.Label, pos); j >= 0 {
				at = j
				break
			}
		}
		h.labels = slices.Insert(h.labels, at, f.Label)
		pos = at + 1
	}
}

// find returns the first column of label at or after from, or -1.
func (h *csvColumns) find(label string, from int) int {
	for j := from; j < len(h.labels); j++ {
		if h.labels[j] == label {
			return j
		}
	}
	return -1
}

func newCSVWriter(w *bufio.Writer, labels []string) *csvWriter {
	return &csvWriter{w: w, labels: labels}
}

func (c *csvWriter) header() error {
	c.buf = append(c.buf[:0], "user,password_hash"...)
	for _, l := range c.labels {
		c.buf = append(c.buf, ',')
		c.buf = appendCSV(c.buf, l)
	}
	c.buf = append(c.buf, '\n')
	_, err := c.w.Write(c.buf)
	return err
}

func (c *csvWriter) write(u *directory.User) error {
	b := appendCSV(c.buf[:0], u.Display)
	b = append(b, ',')
	b = appendCSV(b, exportPassword(u.Password))
	// Each field goes to the first column of its label after the
	// previous field's column.
	c.pos, c.vals = c.pos[:0], c.vals[:0]
	col := 0
	for _, f := range u.Fields {
		if f.Value == "" {
			continue
		}
		for col < len(c.labels) && c.labels[col] != f.Label {
			col++
		}
		if col == len(c.labels) {
			return fmt.Errorf("csv: user %s: field %s has no column", u.Name, f.Label)
		}
		c.pos = append(c.pos, col)
		c.vals = append(c.vals, f.Value)
		col++
	}
	k := 0
	for col := range c.labels {
		b = append(b, ',')
		if k < len(c.pos) && c.pos[k] == col {
			b = appendCSV(b, c.vals[k])
			k++
		}
	}
	b = append(b, '\n')
	c.buf = b
	_, err := c.w.Write(b)
	return err
}

// appendCSV appends s, quoted when it holds a comma, quote, line break or
// leading or trailing space.
func appendCSV(b []byte, s string) []byte {
	if !strings.ContainsAny(s, ",\"\r\n") && (s == "" || s[0] != ' ' && s[len(s)-1] != ' ') {
		return append(b, s...)
	}
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' {
			b = append(b, '"')
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}
