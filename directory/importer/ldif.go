package importer

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"io"
	"strings"

	"github.com/tohost/tohost/directory"
	"github.com/tohost/tohost/protocol/authent"
)

// LDIF (RFC 2849), as slapcat writes it: entries separated by blank lines,
// lines folded by a leading space, "attr:: base64" values, '#' comments.
//
// An entry with a uid or a mail (NameAttr picks which is the user name
// when it has both) is a user: userPassword is its stored password,
// mailHost or tohost its tohost field, and every other attribute a field
// of that name (the values of a multi-valued attribute joined by ",").
// Attribute options (";lang-en", ";binary") are dropped. Operational
// attributes (entryUUID, createTimestamp...) and binary ones (jpegPhoto,
// certificates) are left out. Entries that are not users (ou, dc, groups)
// are skipped and counted. Change records are rejected.

type ldifReader struct {
	lr       *lineReader
	nameAttr string // "uid" or "mail", lower case
	altAttr  string // the other one
	version  string // the "version:" line, if the file had one
	first    bool
	buf      []byte   // the entry being read
	ends     []int    // where each of its lines ends in buf
	phys     []string // its lines, slices of one string
	attrs    []ldifAttr
	names    lowerCache // attribute names in lower case
	classes  lowerCache // objectClass values in lower case
}

// lowerCache turns the i-th attribute name (or value) of an entry into
// lower case. The entries of a file repeat their attributes in the same
// order, so the answer for the i-th one of the last entry is usually the
// answer again: a string comparison instead of a map lookup per line.
type lowerCache []struct{ s, lower string }

func (c *lowerCache) get(i int, s string) string {
	if i < len(*c) && (*c)[i].s == s {
		return (*c)[i].lower
	}
	lower := strings.ToLower(s)
	if i < 64 {
		for len(*c) <= i {
			*c = append(*c, struct{ s, lower string }{})
		}
		// Copies: s is a slice of a whole entry, which must not be kept.
		kept := strings.Clone(s)
		if lower == s {
			lower = kept
		}
		(*c)[i] = struct{ s, lower string }{kept, lower}
	}
	return lower
}

func newLDIFReader(r io.Reader, nameAttr string) *ldifReader {
	l := &ldifReader{lr: newLineReader(r), nameAttr: "uid", altAttr: "mail", first: true}
	if strings.EqualFold(nameAttr, "mail") {
		l.nameAttr, l.altAttr = "mail", "uid"
	}
	return l
}

// ldifAttr is one unfolded attribute line.
type ldifAttr struct {
	name  string // without options
	lower string
	value string
	opts  bool // had options
}

// notUserClasses are the objectClasses of entries that are not users even
// when they carry a mail (mailing-list groups) or uid.
var notUserClasses = map[string]bool{
	"groupofnames": true, "groupofuniquenames": true, "posixgroup": true,
	"groupofurls": true, "groupofentries": true, "organizationalunit": true,
	"organization": true, "dcobject": true, "domain": true, "dnsdomain": true,
	"organizationalrole": true, "country": true, "locality": true, "alias": true,
	"referral": true, "olcglobal": true, "subentry": true,
}

// ldifSkip are attributes that do not become fields: structure,
// operational attributes and binary values.
var ldifSkip = map[string]bool{
	"dn": true, "objectclass": true, "userpassword": true,
	"structuralobjectclass": true, "entryuuid": true, "entrydn": true, "entrycsn": true,
	"creatorsname": true, "createtimestamp": true, "modifiersname": true,
	"modifytimestamp": true, "contextcsn": true, "subschemasubentry": true,
	"hassubordinates": true, "numsubordinates": true, "memberof": true,
	"pwdchangedtime": true, "pwdaccountlockedtime": true, "pwdfailuretime": true,
	"pwdhistory": true, "pwdgraceusetime": true, "pwdreset": true, "pwdpolicysubentry": true,
	"jpegphoto": true, "photo": true, "audio": true, "usercertificate": true,
	"usersmimecertificate": true, "userpkcs12": true, "cacertificate": true,
	"x500uniqueidentifier": true, "thumbnailphoto": true, "thumbnaillogo": true,
}

// next reads the next entry into rec, or returns io.EOF.
func (l *ldifReader) next(rec *Record) error {
	for {
		raw, phys, start, err := l.entryLines()
		if err != nil {
			return err
		}
		*rec = Record{Line: start, Raw: raw}
		if l.lr.tooLong {
			rec.Err = errLineTooLong
			return nil
		}
		attrs, err := l.unfold(phys)
		if err != nil {
			rec.Err = err
			l.name(rec, attrs) // for the report, when it can be told
			return nil
		}
		if len(attrs) == 0 {
			continue // only comments
		}
		if attrs[0].lower != "dn" {
			rec.Err = errorf("entry does not start with dn:")
			return nil
		}
		l.user(rec, attrs)
		return nil
	}
}

// entryLines returns the text of the next entry (comments included), its
// physical lines and the number of its first line. The entry is copied
// into one string and the lines are slices of it: one allocation per
// entry, not one per line.
func (l *ldifReader) entryLines() (string, []string, int64, error) {
	buf := l.buf[:0]
	ends := l.ends[:0]
	var start int64
	for {
		line, err := l.lr.nextBytes()
		if err == io.EOF && len(ends) > 0 {
			break
		}
		if err != nil {
			return "", nil, 0, err
		}
		if l.first {
			line = bytes.TrimPrefix(line, []byte("\ufeff"))
			l.first = false
			if bytes.HasPrefix(line, []byte("version:")) {
				l.version = string(line)
				continue
			}
		}
		if len(line) == 0 {
			if len(ends) > 0 {
				break
			}
			continue
		}
		if len(ends) == 0 {
			start = l.lr.line
		} else {
			buf = append(buf, '\n')
		}
		buf = append(buf, line...)
		ends = append(ends, len(buf))
		if l.lr.tooLong {
			break
		}
	}
	raw := string(buf)
	phys := l.phys[:0]
	from := 0
	for _, end := range ends {
		phys = append(phys, raw[from:end])
		from = end + 1
	}
	l.buf, l.ends, l.phys = buf, ends, phys
	return raw, phys, start, nil
}

// unfold joins folded lines, drops comments and parses each attribute.
// After a bad line it goes on, so the attributes it returns with the first
// error may still name the user. The returned slice is reused by the next
// call.
func (l *ldifReader) unfold(phys []string) ([]ldifAttr, error) {
	attrs := l.attrs[:0]
	defer func() { l.attrs = attrs[:0] }()
	var first error
	for i := 0; i < len(phys); {
		line := phys[i]
		j := i + 1
		if j < len(phys) && phys[j] != "" && phys[j][0] == ' ' {
			var b strings.Builder
			b.WriteString(line)
			for ; j < len(phys) && phys[j] != "" && phys[j][0] == ' '; j++ {
				b.WriteString(phys[j][1:])
			}
			line = b.String()
		}
		i = j
		if line[0] == '#' {
			continue
		}
		if line[0] == ' ' {
			if first == nil {
				first = errorf("continuation line without a line to continue")
			}
			continue
		}
		a, err := l.parseAttr(len(attrs), line)
		if err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		attrs = append(attrs, a)
	}
	return attrs, first
}

// name sets rec.Name from the name attribute (or the other one).
func (l *ldifReader) name(rec *Record, attrs []ldifAttr) {
	for _, want := range []string{l.nameAttr, l.altAttr} {
		for _, a := range attrs {
			if a.lower == want && !a.opts {
				rec.Name = a.value
				return
			}
		}
	}
}

// parseAttr parses the line of the entry's i-th attribute.
func (l *ldifReader) parseAttr(i int, line string) (ldifAttr, error) {
	colon := strings.IndexByte(line, ':')
	if colon <= 0 {
		return ldifAttr{}, errorf("line %q is not \"attribute: value\"", clip(line))
	}
	desc := line[:colon]
	var a ldifAttr
	name, _, opts := strings.Cut(desc, ";")
	// Attributes become fields: their names follow the field label rule.
	// An empty one (";lang-en: x") is left to the field check, which
	// rejects the record if it becomes a field.
	if name != "" && !authent.ValidLabel(name) {
		return ldifAttr{}, errorf("bad attribute name %q", clip(desc))
	}
	a.name, a.lower, a.opts = name, l.names.get(i, name), opts
	v := line[colon+1:]
	switch {
	case strings.HasPrefix(v, ":"):
		raw, err := base64.StdEncoding.DecodeString(strings.TrimLeft(v[1:], " "))
		if err != nil {
			return ldifAttr{}, errorf("bad base64 value of %s", name)
		}
		a.value = string(raw)
	case strings.HasPrefix(v, "<"):
		return ldifAttr{}, errorf("%s: URL values are not supported", name)
	default:
		a.value = strings.TrimLeft(v, " ")
	}
	if a.lower == "changetype" {
		return ldifAttr{}, errorf("change records are not supported")
	}
	return a, nil
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// user fills rec from a parsed entry.
func (l *ldifReader) user(rec *Record, attrs []ldifAttr) {
	var name, alt string
	haveName, haveAlt, havePass := false, false, false
	for i, a := range attrs {
		switch a.lower {
		case "objectclass":
			if notUserClasses[l.classes.get(i, a.value)] {
				rec.NotUser = true
				return
			}
		case l.nameAttr:
			if !haveName && !a.opts {
				name, haveName = a.value, true
			}
		case l.altAttr:
			if !haveAlt && !a.opts {
				alt, haveAlt = a.value, true
			}
		}
	}
	nameAttr := l.nameAttr
	switch {
	case haveName:
	case haveAlt:
		name, nameAttr = alt, l.altAttr
	default:
		rec.NotUser = true
		return
	}
	rec.Name = name
	nameSeen := false
	for _, a := range attrs {
		switch {
		case a.lower == nameAttr && !a.opts && !nameSeen:
			nameSeen = true // the name itself; more values become a field
			continue
		case a.lower == "userpassword":
			if !havePass {
				rec.Password, rec.Plain = storedPassword(a.value, false)
				havePass = true
			}
			continue
		case ldifSkip[a.lower]:
			continue
		}
		label := a.name
		if a.lower == "mailhost" || a.lower == "tohost" {
			label = directory.LabelTohost
		}
		i := 0
		for i < len(rec.Fields) && !strings.EqualFold(rec.Fields[i].Label, label) {
			i++
		}
		switch {
		case i == len(rec.Fields):
			rec.Fields = append(rec.Fields, directory.Field{Label: label, Value: a.value})
		case a.opts:
			// cn;lang-de beside cn: the plain value is enough
		case label == directory.LabelTohost:
			// mailHost and tohost both given: the first wins
		default:
			rec.Fields[i].Value += "," + a.value
		}
	}
}

// ldifWriter writes users as LDIF entries under base.
type ldifWriter struct {
	w    *bufio.Writer
	base string
	buf  []byte
}

// ldifReserved are labels an LDIF export cannot write as they are:
// importing them would not give the field back.
func ldifReserved(label string) bool {
	l := strings.ToLower(label)
	return ldifSkip[l] || l == "uid" || l == "mailhost" || l == "changetype" || l == "version"
}

func (l *ldifWriter) header() error {
	_, err := l.w.WriteString("version: 1\n\n")
	return err
}

func (l *ldifWriter) write(u *directory.User) (dropped []string, err error) {
	b := l.buf[:0]
	b = appendLDIF(b, "dn", "uid="+escapeDN(u.Display)+","+l.base)
	b = append(b, "objectClass: inetOrgPerson\nobjectClass: inetLocalMailRecipient\n"...)
	b = appendLDIF(b, "uid", u.Display)
	// slapcat always writes userPassword in base64.
	b = append(b, "userPassword:: "...)
	b = appendFolded(b, len("userPassword:: "), base64.StdEncoding.AppendEncode(nil, []byte(exportPassword(u.Password))))
	for _, f := range u.Fields {
		switch {
		case f.Value == "":
		case f.Label == directory.LabelTohost:
			b = appendLDIF(b, "mailHost", f.Value)
		case ldifReserved(f.Label):
			dropped = append(dropped, f.Label)
		default:
			b = appendLDIF(b, f.Label, f.Value)
		}
	}
	b = append(b, '\n')
	l.buf = b
	_, err = l.w.Write(b)
	return dropped, err
}

// appendLDIF appends "name: value" (or "name:: base64" when the value is
// not a safe string), folded at 76 columns.
func appendLDIF(b []byte, name, value string) []byte {
	b = append(b, name...)
	if safeString(value) {
		b = append(b, ": "...)
		return appendFolded(b, len(name)+2, []byte(value))
	}
	b = append(b, ":: "...)
	return appendFolded(b, len(name)+3, base64.StdEncoding.AppendEncode(nil, []byte(value)))
}

// appendFolded appends v to a line that already holds col bytes, folding
// it into lines of at most 76 bytes (continuations start with a space),
// and ends the line.
func appendFolded(b []byte, col int, v []byte) []byte {
	const width = 76
	room := max(width-col, 1)
	for len(v) > room {
		b = append(b, v[:room]...)
		b = append(b, '\n', ' ')
		v = v[room:]
		room = width - 1
	}
	b = append(b, v...)
	return append(b, '\n')
}

// safeString: RFC 2849 SAFE-STRING (ASCII without NUL, CR, LF, not
// starting with space, ':' or '<'), and no trailing space.
func safeString(s string) bool {
	if s == "" {
		return true
	}
	if s[0] == ' ' || s[0] == ':' || s[0] == '<' || s[len(s)-1] == ' ' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == 0 || c == '\r' || c == '\n' || c >= 0x80 {
			return false
		}
	}
	return true
}

// escapeDN escapes an attribute value for a DN (RFC 4514).
func escapeDN(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case strings.IndexByte(",+\"\\<>;=", c) >= 0,
			i == 0 && (c == '#' || c == ' '),
			i == len(s)-1 && c == ' ':
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	return b.String()
}
