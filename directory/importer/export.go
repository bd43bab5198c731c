package importer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/tohost/tohost/directory"
)

// ExportOptions configure an export.
type ExportOptions struct {
	// LDIFBase is the DN under which LDIF entries are written
	// (default DefaultLDIFBase).
	LDIFBase string
	// Warn, when set, is told about every field or user that the format
	// cannot hold (and that is therefore left out).
	Warn func(string)
}

// DefaultLDIFBase is the parent DN of exported LDIF entries.
const DefaultLDIFBase = "ou=users,dc=tohost"

// ExportStats count an export.
type ExportStats struct {
	Users   int64 // users written
	Dropped int64 // users or fields left out (see ExportOptions.Warn)
}

// Export writes every user of store to w in format, in name order, so
// that importing the file into an empty directory gives the same users,
// passwords and fields, in the same order. CSV reads the directory twice:
// once to choose the columns, once to write.
func Export(ctx context.Context, store directory.Store, w io.Writer, format Format, opts ExportOptions) (ExportStats, error) {
	if opts.LDIFBase == "" {
		opts.LDIFBase = DefaultLDIFBase
	}
	var st ExportStats
	warn := func(format string, args ...any) {
		st.Dropped++
		if opts.Warn != nil {
			opts.Warn(fmt.Sprintf(format, args...))
		}
	}
	bw := bufio.NewWriterSize(w, 256<<10)
	all := directory.NewMatch("")
	var write func(u *directory.User) error
	switch format {
	case CSV:
		var cols csvColumns
		err := store.Search(ctx, all, func(u *directory.User) error {
			cols.add(csvFields(u.Fields))
			return nil
		})
		if err != nil {
			return st, err
		}
		cw := newCSVWriter(bw, cols.labels)
		if err := cw.header(); err != nil {
			return st, err
		}
		write = func(u *directory.User) error {
			fields := csvFields(u.Fields)
			if len(fields) < len(u.Fields) {
				for _, f := range u.Fields {
					if csvReserved(f.Label) && f.Value != "" {
						warn("user %s: field %s cannot be a CSV column; left out", u.Name, f.Label)
					}
				}
				c := *u
				c.Fields = fields
				u = &c
			}
			err := cw.write(u)
			if err != nil && strings.Contains(err.Error(), "has no column") {
				return fmt.Errorf("%w (the directory changed during the export; run it again)", err)
			}
			return err
		}
	case NWAuth:
		nw := &nwauthWriter{w: bw}
		write = func(u *directory.User) error {
			err := nw.write(u)
			if errors.Is(err, errNWAuthPassword) {
				warn("user %s: its password holds a ':', which nwauth.txt cannot hold; user left out", u.Name)
				st.Users--
				return nil
			}
			return err
		}
	case LDIF:
		lw := &ldifWriter{w: bw, base: opts.LDIFBase}
		if err := lw.header(); err != nil {
			return st, err
		}
		write = func(u *directory.User) error {
			dropped, err := lw.write(u)
			for _, l := range dropped {
				warn("user %s: field %s cannot be an LDIF attribute; left out", u.Name, l)
			}
			return err
		}
	default:
		return st, fmt.Errorf("unknown format %q", format)
	}
	err := store.Search(ctx, all, func(u *directory.User) error {
		st.Users++
		return write(u)
	})
	if err != nil {
		return st, err
	}
	return st, bw.Flush()
}

// csvReserved: labels that are CSV's own columns.
func csvReserved(label string) bool {
	switch strings.ToLower(label) {
	case "user", "password", "password_hash":
		return true
	}
	return false
}

// csvFields returns the fields a CSV file can hold (fields without a
// reserved label), without copying when all can.
func csvFields(fields []directory.Field) []directory.Field {
	for i, f := range fields {
		if csvReserved(f.Label) {
			out := append([]directory.Field(nil), fields[:i]...)
			for _, g := range fields[i+1:] {
				if !csvReserved(g.Label) {
					out = append(out, g)
				}
			}
			return out
		}
	}
	return fields
}
