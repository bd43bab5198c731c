package importer

import (
	"bufio"
	"fmt"
	"io"
	"path/filepath"
	"strings"
)

// Format is a file format the importer reads and writes.
type Format string

// The formats.
const (
	CSV    Format = "csv"
	NWAuth Format = "nwauth"
	LDIF   Format = "ldif"
)

// Formats lists the formats.
var Formats = []Format{CSV, NWAuth, LDIF}

// ParseFormat parses a format name.
func ParseFormat(s string) (Format, error) {
	for _, f := range Formats {
		if strings.EqualFold(s, string(f)) {
			return f, nil
		}
	}
	return "", fmt.Errorf("unknown format %q (csv, nwauth or ldif)", s)
}

// FormatOfName guesses the format from a file name: *.csv, *.ldif
// (*.ldf), nwauth.txt, nwauth.add, *.nwauth. "" when it cannot tell.
func FormatOfName(name string) Format {
	base := strings.ToLower(filepath.Base(name))
	base = strings.TrimSuffix(base, ".gz") // a hint only; not decompressed
	switch ext := filepath.Ext(base); {
	case ext == ".csv":
		return CSV
	case ext == ".ldif" || ext == ".ldf":
		return LDIF
	case ext == ".nwauth" || strings.HasPrefix(base, "nwauth"):
		return NWAuth
	}
	return ""
}

// sniffFormat guesses the format from the first meaningful line: LDIF
// starts with "dn:" or "version:", an NWAuth line has a ':' before any
// ',', a CSV header a ',' (or is just "user").
func sniffFormat(r *bufio.Reader) (Format, error) {
	head, err := r.Peek(64 << 10)
	if err != nil && err != io.EOF && err != bufio.ErrBufferFull {
		return "", err
	}
	s := strings.TrimPrefix(string(head), "\ufeff")
	for line := range strings.Lines(s) {
		line = strings.TrimRight(line, "\r\n")
		if line == "" || line[0] == '#' {
			continue
		}
		lower := strings.ToLower(line)
		if strings.HasPrefix(lower, "dn:") || strings.HasPrefix(lower, "version:") {
			return LDIF, nil
		}
		colon, comma := strings.IndexByte(line, ':'), strings.IndexByte(line, ',')
		switch {
		case colon >= 0 && (comma < 0 || colon < comma):
			return NWAuth, nil
		case comma >= 0 || strings.TrimSpace(lower) == "user":
			return CSV, nil
		}
		break
	}
	return "", fmt.Errorf("cannot tell the format of the input; use --format")
}
