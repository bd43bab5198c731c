package importer

import (
	"bufio"
	"errors"
	"io"
	"strings"

	"github.com/tohost/tohost/directory"
	"github.com/tohost/tohost/protocol/authent"
)

// NWAuth (nwauth.txt, nwauth.add): one user per line,
//
//	user:password:label="value" label2="value2" ...
//
// The password is a hash with a {SCHEME} ({ssha}...), kept as it is; a bare
// crypt(3) string, among them NWAuth's traditional 13-character DES crypt,
// stored as {CRYPT}...; anything else is cleartext, hashed on import. Empty
// lines and lines starting with '#' are skipped.

type nwauthReader struct {
	lr *lineReader
}

func newNWAuthReader(r io.Reader) *nwauthReader {
	return &nwauthReader{lr: newLineReader(r)}
}

func (n *nwauthReader) next(rec *Record) error {
	var line string
	for {
		var err error
		line, err = n.lr.next()
		if err != nil {
			return err
		}
		if n.lr.line == 1 {
			line = strings.TrimPrefix(line, "\ufeff")
		}
		if line != "" && line[0] != '#' {
			break
		}
	}
	*rec = Record{Line: n.lr.line, Raw: line}
	if n.lr.tooLong {
		rec.Err = errLineTooLong
		return nil
	}
	name, rest, ok := strings.Cut(line, ":")
	rec.Name = name
	if !ok {
		rec.Err = errorf("no ':' after the user name")
		return nil
	}
	pass, info, _ := strings.Cut(rest, ":")
	rec.Password, rec.Plain = storedPassword(pass, true)
	fields, err := authent.ParseFields(info)
	if err != nil {
		rec.Err = errorf("%s", strings.TrimPrefix(err.Error(), authent.ErrFieldSyntax.Error()+": "))
		return nil
	}
	if len(fields) > 0 {
		rec.Fields = make([]directory.Field, len(fields))
		for i, f := range fields {
			rec.Fields[i] = directory.Field{Label: f.Label, Value: f.Value}
		}
	}
	return nil
}

// nwauthWriter writes users as nwauth.txt lines.
type nwauthWriter struct {
	w   *bufio.Writer
	buf []byte
}

var errNWAuthPassword = errors.New("nwauth: password holds a ':'")

func (n *nwauthWriter) write(u *directory.User) error {
	pass := exportPassword(u.Password)
	if strings.IndexByte(pass, ':') >= 0 {
		return errNWAuthPassword
	}
	b := append(n.buf[:0], u.Display...)
	b = append(b, ':')
	b = append(b, pass...)
	b = append(b, ':')
	first := true
	for _, f := range u.Fields {
		if f.Value == "" {
			continue
		}
		if first {
			b = append(b, f.Label...)
			b = append(b, '=', '"')
			b = append(b, f.Value...)
			b = append(b, '"')
			first = false
			continue
		}
		b = authent.AppendField(b, f.Label, f.Value)
	}
	b = append(b, '\n')
	n.buf = b
	_, err := n.w.Write(b)
	return err
}
