package importer_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tohost/tohost/directory"
	"github.com/tohost/tohost/directory/importer"
	"github.com/tohost/tohost/directory/password"
	"github.com/tohost/tohost/directory/store/bolt"
	"github.com/tohost/tohost/directory/store/postgres"
	"github.com/tohost/tohost/internal/testservices"
)

var ctx = context.Background()

func openBolt(t *testing.T) directory.BulkStore {
	t.Helper()
	s, err := bolt.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func openPostgres(t *testing.T) directory.BulkStore {
	t.Helper()
	s, err := postgres.Open(ctx, testservices.Postgres(t), postgres.Options{MaxConns: 6})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// stores are the stores tests run against.
var stores = []struct {
	name string
	open func(t *testing.T) directory.BulkStore
}{{"bolt", openBolt}, {"postgres", openPostgres}}

// result is what one import did.
type result struct {
	stats   importer.Stats
	reports []string
	rejects string
	err     error
}

// load imports text (named name) into s.
func load(t *testing.T, s directory.BulkStore, name, text string, opts importer.Options) result {
	t.Helper()
	var r result
	var rejects bytes.Buffer
	var mu sync.Mutex
	opts.Rejects = &rejects
	opts.Report = func(rep importer.Report) {
		mu.Lock()
		r.reports = append(r.reports, rep.String())
		mu.Unlock()
	}
	if opts.Scheme == "" {
		opts.Scheme = password.SchemeSSHA // fast; ARGON2ID is the default
	}
	r.stats, r.err = importer.Import(ctx, s, input(name, text), opts)
	r.rejects = rejects.String()
	return r
}

func input(name, text string) importer.Input {
	return importer.Input{Name: name, Size: int64(len(text)),
		Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(text)), nil }}
}

func get(t *testing.T, s directory.Store, name string) *directory.User {
	t.Helper()
	u, err := s.Get(ctx, name)
	if err != nil {
		t.Fatalf("get %s: %v", name, err)
	}
	return u
}

func missing(t *testing.T, s directory.Store, name string) {
	t.Helper()
	if _, err := s.Get(ctx, name); !errors.Is(err, directory.ErrNotFound) {
		t.Fatalf("%s: %v, want not found", name, err)
	}
}

func fields(u *directory.User) string {
	var b strings.Builder
	for _, f := range u.Fields {
		fmt.Fprintf(&b, "%s=%s;", f.Label, f.Value)
	}
	return b.String()
}

func wantStats(t *testing.T, got importer.Stats, want importer.Stats) {
	t.Helper()
	got.Elapsed, got.Format = 0, ""
	if got != want {
		t.Fatalf("stats %+v\n want %+v", got, want)
	}
}

func wantReports(t *testing.T, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("reports:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

const ssha = "{SSHA}AMut7XaZFkRp1/2md9R/ykBZvpJgU+iVJDjc3w=="

// TestCSV: RFC 4180 quoting, every kind of malformed record, rejected
// with its line and reason, and written to the rejects file as read.
func TestCSV(t *testing.T) {
	s := openBolt(t)
	text := "\ufeffuser,password_hash,tohost,quota,name\r\n" +
		"Alice@X.com," + ssha + ",b1,100,\"Smith, Alice\"\r\n" + // 2: quoted comma, CRLF
		"bob@x.com,{CRYPT}$6$salt$hash,b2,,\"Bob \"\"B\"\" Jones\"\n" + // 3: escaped quotes parse, but no value holds a quote
		"\n" + // 4: empty line
		"a b@x," + ssha + ",b1,1,x\n" + // 5: bad name
		"carol@x,nohash,b1,1,x\n" + // 6: hash without scheme
		"dave@x," + ssha + ",b1,1,\"unterminated\n" + // 7: open quote ...
		"erin@x," + ssha + ",b1,1,x\n" + // 8: ... not closed within reach: only line 7 rejected
		"frank@x," + ssha + ",b1,1,x\"y\n" + // 9: quote in unquoted field
		"gina@x," + ssha + ",b1,1,\"x\"y\n" + // 10: text after closing quote
		"hank@x," + ssha + ",b1\n" + // 11: too few fields
		"ivan@x," + ssha + ",b1,1,\"two\n" + // 12: a quoted value with a line break ...
		"lines\"\n" + // 13: ... is one record, rejected
		"judy@x,,b1,1,x\n" + // 14: no password
		"kim@x," + ssha + ",b1,\"1\",\"\"\n" + // 15: quoted plain value, empty quoted
		"leo@x,\"" + ssha + "\",b2,\"1,000\",x\n" // 16: quoted comma
	r := load(t, s, "users.csv", text, importer.Options{})
	if r.err != nil {
		t.Fatal(r.err)
	}
	wantStats(t, r.stats, importer.Stats{Read: 13, Created: 4, Rejected: 9})
	wantReports(t, r.reports,
		`line 3: user "bob@x.com": bad value for name`,
		`line 5: user "a b@x": name contains a space`,
		`line 6: user "carol@x": password_hash has no {SCHEME} and is no crypt string`,
		`line 7: user "dave@x": unterminated quoted field`,
		`line 9: user "frank@x": quote in unquoted field 5`,
		`line 10: user "gina@x": text after the closing quote of field 5`,
		`line 11: user "hank@x": 3 fields, the header has 5`,
		`line 12: user "ivan@x": a quoted value holds a line break`,
		`line 14: user "judy@x": no password`,
	)
	a := get(t, s, "alice@x.com")
	if a.Display != "Alice@X.com" || a.Password != ssha || fields(a) != "tohost=b1;quota=100;name=Smith, Alice;" {
		t.Fatalf("alice: %+v", a)
	}
	if l := get(t, s, "leo@x"); l.Password != ssha || fields(l) != "tohost=b2;quota=1,000;name=x;" {
		t.Fatalf("leo: %+v", l)
	}
	get(t, s, "erin@x")
	if k := get(t, s, "kim@x"); fields(k) != "tohost=b1;quota=1;" {
		t.Fatalf("kim: %+v", k)
	}
	wantRejects := "user,password_hash,tohost,quota,name\n" +
		"bob@x.com,{CRYPT}$6$salt$hash,b2,,\"Bob \"\"B\"\" Jones\"\n" +
		"a b@x," + ssha + ",b1,1,x\n" +
		"carol@x,nohash,b1,1,x\n" +
		"dave@x," + ssha + ",b1,1,\"unterminated\n" +
		"frank@x," + ssha + ",b1,1,x\"y\n" +
		"gina@x," + ssha + ",b1,1,\"x\"y\n" +
		"hank@x," + ssha + ",b1\n" +
		"ivan@x," + ssha + ",b1,1,\"two\nlines\"\n" +
		"judy@x,,b1,1,x\n"
	if r.rejects != wantRejects {
		t.Fatalf("rejects file:\n%s\nwant:\n%s", r.rejects, wantRejects)
	}
}

// TestCSVPasswords: cleartext is hashed with the configured scheme, a
// hash is kept, a bare crypt string gets {CRYPT}; both columns in one row
// is an error.
func TestCSVPasswords(t *testing.T) {
	s := openBolt(t)
	r := load(t, s, "p.csv", "user,password,password_hash\n"+
		"a@x,secret,\n"+
		"b@x,,$2y$10$abcdefghijklmnopqrstuu5Q0Mbe8DkqsJzCRIhKpK2vMw1eT3kDW\n"+
		"c@x,secret,"+ssha+"\n", importer.Options{Scheme: password.SchemeSSHA512})
	wantStats(t, r.stats, importer.Stats{Read: 3, Created: 2, Rejected: 1})
	a := get(t, s, "a@x")
	if ok, err := password.Verify(a.Password, "secret"); !ok || err != nil || !strings.HasPrefix(a.Password, "{SSHA512}") {
		t.Fatalf("a@x password %q: %v %v", a.Password, ok, err)
	}
	if b := get(t, s, "b@x"); !strings.HasPrefix(b.Password, "{CRYPT}$2y$10$") {
		t.Fatalf("b@x password %q", b.Password)
	}
	wantReports(t, r.reports, `line 4: user "c@x": both password and password_hash given`)
}

// TestHashControlCharacters: a stored hash holding a control character
// is rejected in every format (a bare CR in a CSV field, a tab in an
// NWAuth line, a line break in a base64 LDIF value): no hash holds one,
// and an export would break the line.
func TestHashControlCharacters(t *testing.T) {
	b64 := base64.StdEncoding.EncodeToString([]byte(ssha + "\nx"))
	for name, text := range map[string]string{
		"h.csv":  "user,password_hash\na@x," + ssha + "\rx\nb@x," + ssha + "\n",
		"h.txt":  "a@x:" + ssha + "\tx:\nb@x:" + ssha + ":\n",
		"h.ldif": "dn: uid=a@x,ou=users,dc=x\nuid: a@x\nuserPassword:: " + b64 + "\n\ndn: uid=b@x,ou=users,dc=x\nuid: b@x\nuserPassword: " + ssha + "\n\n",
	} {
		s := openBolt(t)
		r := load(t, s, name, text, importer.Options{Format: formatOf(name)})
		wantStats(t, r.stats, importer.Stats{Read: 2, Created: 1, Rejected: 1})
		if len(r.reports) != 1 || !strings.HasSuffix(r.reports[0], `user "a@x": password hash contains a control character`) {
			t.Errorf("%s: reports %q", name, r.reports)
		}
	}
}

// TestStrictPlainControlCharacter: with the PLAIN scheme a cleartext
// password is stored as written, so the strict import's checking pass
// rejects one holding a control character, and nothing is imported.
func TestStrictPlainControlCharacter(t *testing.T) {
	s := openBolt(t)
	r := load(t, s, "p.csv", "user,password\na@x,ok\nb@x,pw\rx\n", importer.Options{Scheme: password.SchemePlain, Strict: true})
	if !errors.Is(r.err, importer.ErrRejected) {
		t.Fatalf("strict import: %v, want ErrRejected", r.err)
	}
	if n, _ := s.Count(ctx); n != 0 {
		t.Fatalf("%d users imported by a strict import with a rejected record", n)
	}
}

func formatOf(name string) importer.Format {
	switch {
	case strings.HasSuffix(name, ".csv"):
		return importer.CSV
	case strings.HasSuffix(name, ".ldif"):
		return importer.LDIF
	}
	return importer.NWAuth
}

// TestCSVHeader: a header the import cannot use fails it before anything
// is written.
func TestCSVHeader(t *testing.T) {
	s := openBolt(t)
	for header, want := range map[string]string{
		"name,password\n":             `no "user" column`,
		"user,password,bad label\n":   `column 3: bad field label "bad label"`,
		"user,password,Password\n":    `column "Password" given twice`,
		"user,\"pass\n":               "unterminated quoted field",
		"":                            "no header",
		"user,password,tohost,tohost": "", // a label may head two columns
	} {
		r := load(t, s, "h.csv", header+"\n", importer.Options{})
		if want == "" {
			if r.err != nil {
				t.Errorf("header %q: %v", header, r.err)
			}
			continue
		}
		if r.err == nil || !strings.Contains(r.err.Error(), want) {
			t.Errorf("header %q: error %v, want %q", header, r.err, want)
		}
	}
	if n, _ := s.Count(ctx); n != 0 {
		t.Fatalf("count %d", n)
	}
	// Two columns of one label: a row fills one of them, or is rejected.
	r := load(t, s, "h.csv", "user,password,a,b,a\nx@x,p,1,2,\ny@x,p,,2,1\nz@x,p,1,,1\n", importer.Options{})
	wantReports(t, r.reports, `line 4: user "z@x": field a given twice`)
	if x, y := get(t, s, "x@x"), get(t, s, "y@x"); fields(x) != "a=1;b=2;" || fields(y) != "b=2;a=1;" {
		t.Fatalf("x %s y %s", fields(x), fields(y))
	}
}

// TestNWAuth: hashes kept as they are, bare crypt strings stored as
// {CRYPT}, cleartext hashed; comments skipped; bad info rejected.
func TestNWAuth(t *testing.T) {
	s := openBolt(t)
	text := "# exported by nwauth\n" +
		"marijn@mydomain.com:{ssha}tVANQoXYZ:created=\"1060034937\" mailaccess=\"free_user\" tohost=backend1\n" +
		"des@x:abJnggxhB/yWI:\n" + // traditional DES crypt
		"md5@x:$1$salt$hash\n" + // no info at all
		"clear@x:letmein:name=\"Clear Text\"\n" +
		"bad@x:{ssha}x:quota=\"1\n" + // unterminated quote
		"nocolon@x\n" +
		"Bad Name@x:{ssha}x:\n" +
		"empty@x::quota=\"1\"\n" +
		"twice@x:{ssha}x:a=\"1\" a=\"2\"\n" +
		"lbl@x:{ssha}x:a?=\"1\"\n"
	r := load(t, s, "nwauth.txt", text, importer.Options{})
	if r.err != nil || r.stats.Format != importer.NWAuth {
		t.Fatal(r.stats.Format, r.err)
	}
	wantStats(t, r.stats, importer.Stats{Read: 10, Created: 4, Rejected: 6})
	wantReports(t, r.reports,
		`line 6: user "bad@x": unterminated quote in value for quota`,
		`line 7: user "nocolon@x": no ':' after the user name`,
		`line 8: user "Bad Name@x": name contains a space`,
		`line 9: user "empty@x": no password`,
		`line 10: user "twice@x": field a given twice`,
		`line 11: user "lbl@x": bad label "a?"`,
	)
	if u := get(t, s, "marijn@mydomain.com"); u.Password != "{ssha}tVANQoXYZ" ||
		fields(u) != "created=1060034937;mailaccess=free_user;tohost=backend1;" {
		t.Fatalf("%+v", u)
	}
	if u := get(t, s, "des@x"); u.Password != "{CRYPT}abJnggxhB/yWI" || len(u.Fields) != 0 {
		t.Fatalf("%+v", u)
	}
	if u := get(t, s, "md5@x"); u.Password != "{CRYPT}$1$salt$hash" {
		t.Fatalf("%+v", u)
	}
	u := get(t, s, "clear@x")
	if ok, _ := password.Verify(u.Password, "letmein"); !ok || !strings.HasPrefix(u.Password, "{SSHA}") {
		t.Fatalf("cleartext stored as %q", u.Password)
	}
	if !strings.Contains(r.rejects, "bad@x:{ssha}x:quota=\"1\n") || strings.Count(r.rejects, "\n") != 6 {
		t.Fatalf("rejects:\n%s", r.rejects)
	}
}

// TestLDIF: slapcat output with base64 values, folded lines, comments and
// operational attributes; entries that are not users are skipped and
// counted; broken entries rejected.
func TestLDIF(t *testing.T) {
	s := openBolt(t)
	pw := "e1NTSEF9QU11dDdYYVpGa1JwMS8ybWQ5Ui95a0JadnBKZ1UraVZKRGpjM3c9PQ==" // base64 of ssha
	text := "version: 1\n\n" +
		"# the base\n" +
		"dn: dc=example,dc=com\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n\n" +
		"dn: ou=users,dc=example,dc=com\nobjectClass: organizationalUnit\nou: users\n\n" +
		"dn: uid=Bob@Example.com,ou=users,dc=example,dc=com\n" +
		"objectClass: inetOrgPerson\n" +
		"objectClass: inetLocalMailRecipient\n" +
		"structuralObjectClass: inetOrgPerson\n" +
		"uid: Bob@Example.com\n" +
		"mail: bob@example.com\n" +
		"mail: bobby@example.com\n" +
		"cn: Bob\n" +
		"cn;lang-de: Robert\n" +
		"sn:: w5xiZXI=\n" + // "Über"
		"description: a long description that slapcat folds because it goes past\n" +
		"  seventy-six columns\n" +
		"# a comment inside the entry\n" +
		"userPassword:: " + pw + "\n" +
		"mailHost: backend2.example\n" +
		"jpegPhoto:: /9j/4AAQ\n" +
		"entryUUID: 5a8e8a1e-0000-0000-0000-000000000000\n" +
		"createTimestamp: 20240101000000Z\n" +
		"\n" +
		"dn: cn=staff,ou=groups,dc=example,dc=com\nobjectClass: groupOfNames\ncn: staff\nmail: staff@example.com\nmember: uid=bob\n\n" +
		"dn: uid=onlymail,ou=users,dc=example,dc=com\r\nobjectClass: account\r\nmail: Only@Mail.com\r\nuserPassword: {CRYPT}$6$x$y\r\ntohost: b3\r\n\r\n" +
		"dn: uid=nopw,ou=users,dc=example,dc=com\nuid: nopw@x\n\n" +
		"dn: uid=bad64,ou=users,dc=example,dc=com\nuid: bad64@x\nuserPassword:: %%%\n\n" +
		"uid: nodn@x\nuserPassword: {SSHA}x\n\n" +
		"dn: uid=change@x,ou=users,dc=example,dc=com\nchangetype: add\nuid: change@x\n\n" +
		"dn: uid=url@x,ou=users,dc=example,dc=com\nuid: url@x\njpegPhoto:< file:///etc/passwd\n\n" +
		"dn: uid=quote,ou=users,dc=example,dc=com\nuid: quote@x\nuserPassword: {SSHA}x\ncn:: YSJi\n\n" +
		// Attribute names and classes in any case.
		"dn: cn=team,dc=example,dc=com\nOBJECTCLASS: GroupOfNames\nMAIL: team@example.com\n\n" +
		"dn: uid=eve,dc=example,dc=com\nObjectClass: inetOrgPerson\nUID: Eve@x\nUSERPASSWORD: {SSHA}x\nMailHost: b4\n"
	r := load(t, s, "dump.ldif", text, importer.Options{})
	if r.err != nil {
		t.Fatal(r.err)
	}
	wantStats(t, r.stats, importer.Stats{Read: 13, Created: 3, Rejected: 6, NotUsers: 4})
	if u := get(t, s, "eve@x"); u.Password != "{SSHA}x" || fields(u) != "tohost=b4;" {
		t.Fatalf("%+v", u)
	}
	wantReports(t, r.reports,
		`line 45: user "nopw@x": no password`,
		`line 48: user "bad64@x": bad base64 value of userPassword`,
		`line 52: entry does not start with dn:`,
		`line 55: user "change@x": change records are not supported`,
		`line 59: user "url@x": jpegPhoto: URL values are not supported`,
		`line 63: user "quote@x": bad value for cn`,
	)
	u := get(t, s, "bob@example.com")
	if u.Display != "Bob@Example.com" || u.Password != ssha {
		t.Fatalf("%+v", u)
	}
	want := "mail=bob@example.com,bobby@example.com;cn=Bob;sn=Über;" +
		"description=a long description that slapcat folds because it goes past seventy-six columns;tohost=backend2.example;"
	if got := fields(u); got != want {
		t.Fatalf("fields\n got %s\nwant %s", got, want)
	}
	if u := get(t, s, "only@mail.com"); u.Password != "{CRYPT}$6$x$y" || fields(u) != "tohost=b3;" {
		t.Fatalf("%+v", u)
	}
	if !strings.HasPrefix(r.rejects, "version: 1\n\ndn: uid=nopw,ou=users,dc=example,dc=com\nuid: nopw@x\n\n") {
		t.Fatalf("rejects:\n%s", r.rejects)
	}
	// --ldif-name mail: the mail is the name, the uid a field.
	s2 := openBolt(t)
	r = load(t, s2, "dump.ldif", text, importer.Options{NameAttr: "mail"})
	if u := get(t, s2, "bob@example.com"); !strings.HasPrefix(fields(u), "uid=Bob@Example.com;mail=bobby@example.com;") {
		t.Fatalf("%s", fields(u))
	}
}

// TestDuplicates: a user twice in a file: the later record wins and is
// reported, whether both are in one batch or in different batches.
func TestDuplicates(t *testing.T) {
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			for _, batch := range []int{100, 2} {
				s := st.open(t)
				r := load(t, s, "d.csv", "user,password_hash,v\n"+
					"a@x,{SSHA}1,first\n"+
					"b@x,{SSHA}1,b\n"+
					"A@X,{SSHA}2,second\n"+
					"c@x,{SSHA}1,c\n"+
					"a@x,{SSHA}3,third\n", importer.Options{BatchSize: batch})
				wantStats(t, r.stats, importer.Stats{Read: 5, Created: 3, Duplicates: 2})
				if u := get(t, s, "a@x"); u.Password != "{SSHA}3" || u.Get("v") != "third" {
					t.Fatalf("batch %d: %+v", batch, u)
				}
				if len(r.reports) != 2 || !strings.HasPrefix(r.reports[0], `line 4: user "A@X": `) ||
					!strings.HasPrefix(r.reports[1], `line 6: user "a@x": `) {
					t.Fatalf("batch %d: reports %q", batch, r.reports)
				}
				if batch == 100 && r.reports[0] != `line 4: user "A@X": duplicate of line 2; this line wins` {
					t.Fatalf("report %q", r.reports[0])
				}
			}
		})
	}
}

// TestModes: upsert inserts and replaces; insert leaves existing users
// alone and reports them; replace deletes everyone else but the users
// whose records were rejected.
func TestModes(t *testing.T) {
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			s := st.open(t)
			base := "user,password_hash,tohost\na@x,{SSHA}a,b1\nb@x,{SSHA}b,b1\nc@x,{SSHA}c,b1\nd@x,{SSHA}d,b1\n"
			wantStats(t, load(t, s, "m.csv", base, importer.Options{}).stats, importer.Stats{Read: 4, Created: 4})

			next := "user,password_hash,tohost\na@x,{SSHA}a,b2\nb@x,{SSHA}b,b1\ne@x,{SSHA}e,b1\nbad name@x,{SSHA}x,b1\nd@x,{SSHA}d,\"b\"\"\n"
			r := load(t, s, "m.csv", next, importer.Options{Mode: directory.BulkInsert})
			wantStats(t, r.stats, importer.Stats{Read: 5, Created: 1, Skipped: 2, Rejected: 2})
			wantReports(t, r.reports,
				`line 5: user "bad name@x": name contains a space`,
				`line 6: user "d@x": unterminated quoted field`,
				`line 2: user "a@x": exists; left alone (--mode insert)`,
				`line 3: user "b@x": exists; left alone (--mode insert)`)
			if get(t, s, "a@x").Tohost() != "b1" {
				t.Fatal("insert mode changed a@x")
			}

			r = load(t, s, "m.csv", next, importer.Options{Mode: directory.BulkUpsert})
			wantStats(t, r.stats, importer.Stats{Read: 5, Updated: 1, Unchanged: 2, Rejected: 2})
			if get(t, s, "a@x").Tohost() != "b2" {
				t.Fatal("upsert did not update a@x")
			}

			r = load(t, s, "m.csv", next, importer.Options{Mode: directory.BulkReplace})
			wantStats(t, r.stats, importer.Stats{Read: 5, Unchanged: 3, Rejected: 2, Deleted: 1})
			missing(t, s, "c@x") // not in the file
			get(t, s, "d@x")     // in the file, but rejected: kept
			if n, _ := s.Count(ctx); n != 4 {
				t.Fatalf("count %d", n)
			}
			// A file without any valid user deletes nothing.
			r = load(t, s, "m.csv", "user,password_hash\nbad name,x\n", importer.Options{Mode: directory.BulkReplace})
			if r.err == nil || !strings.Contains(r.err.Error(), "no valid user") {
				t.Fatal(r.err)
			}
			if n, _ := s.Count(ctx); n != 4 {
				t.Fatalf("count %d", n)
			}
		})
	}
}

// TestRejectsFileReimport: the rejects file, fixed, imports cleanly.
func TestRejectsFileReimport(t *testing.T) {
	s := openBolt(t)
	for _, f := range []struct{ name, text, fix, bad string }{
		{"r.csv", "user,password_hash,tohost\nok@x,{SSHA}a,b1\nbad name@x,{SSHA}a,b1\nq@x,{SSHA}a,\"b\n", "", ""},
		{"nwauth.txt", "ok2@x:{SSHA}a:tohost=\"b1\"\nbad name2@x:{SSHA}a:\nq2@x:{SSHA}a:tohost=\"b\n", "", ""},
		{"r.ldif", "dn: uid=ok3@x\nuid: ok3@x\nuserPassword: {SSHA}a\n\ndn: uid=bad\nuid: bad name3@x\nuserPassword: {SSHA}a\n\n" +
			"dn: uid=q3@x\nuid: q3@x\nuserPassword:: %%%\n", "", ""},
	} {
		r := load(t, s, f.name, f.text, importer.Options{})
		if r.stats.Rejected != 2 || r.stats.Created != 1 {
			t.Fatalf("%s: %+v", f.name, r.stats)
		}
		fixed := strings.NewReplacer("bad name", "fixed", "\"b\n", "\"b\"\n", "%%%", "e1NTSEF9YQ==").Replace(r.rejects)
		r = load(t, s, f.name, fixed, importer.Options{})
		if r.stats.Rejected != 0 || r.stats.Created != 2 || r.err != nil {
			t.Fatalf("%s, fixed rejects:\n%s\n%+v %v %q", f.name, fixed, r.stats, r.err, r.reports)
		}
	}
	if n, _ := s.Count(ctx); n != 9 {
		t.Fatalf("count %d", n)
	}
}

// TestStrict: one bad record and nothing is imported; a clean file is.
func TestStrict(t *testing.T) {
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			s := st.open(t)
			bad := "user,password\na@x,p\nb@x,p\nbad name,p\nc@x,p\n"
			r := load(t, s, "s.csv", bad, importer.Options{Strict: true, BatchSize: 1})
			if !errors.Is(r.err, importer.ErrRejected) || r.stats.Rejected != 1 || r.stats.Loaded() != 0 {
				t.Fatalf("%+v %v", r.stats, r.err)
			}
			wantReports(t, r.reports, `line 4: user "bad name": name contains a space`)
			if n, _ := s.Count(ctx); n != 0 {
				t.Fatalf("strict import wrote %d users", n)
			}
			r = load(t, s, "s.csv", strings.Replace(bad, "bad name", "d@x", 1), importer.Options{Strict: true, BatchSize: 1})
			wantStats(t, r.stats, importer.Stats{Read: 4, Created: 4})
			if r.err != nil || r.rejects != "" {
				t.Fatal(r.err, r.rejects)
			}
		})
	}
}

// interrupting is a BulkStore that cancels the import's context after a
// number of batches were written, as Ctrl-C would.
type interrupting struct {
	directory.BulkStore
	after  int32
	cancel context.CancelFunc
}

func (s *interrupting) BeginBulk(ctx context.Context, o directory.BulkOptions) (directory.Bulk, error) {
	b, err := s.BulkStore.BeginBulk(ctx, o)
	return &interruptingBulk{Bulk: b, s: s}, err
}

type interruptingBulk struct {
	directory.Bulk
	s *interrupting
	n atomic.Int32
}

func (b *interruptingBulk) Write(ctx context.Context, e []directory.BulkEntry) (directory.BulkResult, error) {
	res, err := b.Bulk.Write(ctx, e)
	if b.n.Add(1) == b.s.after {
		b.s.cancel()
	}
	return res, err
}

// TestInterruptAndRerun: an import interrupted after some batches keeps
// whole batches, deletes nothing (replace mode), and running it again
// gives the same directory as an uninterrupted import.
func TestInterruptAndRerun(t *testing.T) {
	var b strings.Builder
	b.WriteString("user,password_hash,n\n")
	for i := range 1000 {
		fmt.Fprintf(&b, "u%04d@x,{SSHA}%d,%d\n", i, i, i)
	}
	b.WriteString("bad name,{SSHA}x,1\n")
	text := b.String()
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			s := st.open(t)
			load(t, s, "i.csv", "user,password_hash\nold@x,{SSHA}o\n", importer.Options{})
			ictx, cancel := context.WithCancel(ctx)
			is := &interrupting{BulkStore: s, after: 3, cancel: cancel}
			stats, err := importer.Import(ictx, is, input("i.csv", text),
				importer.Options{Mode: directory.BulkReplace, BatchSize: 100, Workers: 2})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("interrupted import: %v", err)
			}
			n, _ := s.Count(ctx)
			if n < 301 || (n-1)%100 != 0 || stats.Created != n-1 {
				t.Fatalf("after the interruption: count %d, stats %+v: want whole batches, old@x kept", n, stats)
			}
			get(t, s, "old@x")
			r := load(t, s, "i.csv", text, importer.Options{Mode: directory.BulkReplace, BatchSize: 100})
			if r.stats.Created+r.stats.Unchanged != 1000 || r.stats.Deleted != 1 || r.stats.Rejected != 1 {
				t.Fatalf("rerun: %+v %v", r.stats, r.err)
			}
			fresh := st.open(t)
			load(t, fresh, "i.csv", text, importer.Options{BatchSize: 100})
			if a, b := dump(t, s), dump(t, fresh); a != b {
				t.Fatal("interrupted and rerun differs from one import")
			}
		})
	}
}

// dump lists every user's name, display, password and fields.
func dump(t *testing.T, s directory.Store) string {
	t.Helper()
	var b strings.Builder
	err := s.Search(ctx, directory.NewMatch(""), func(u *directory.User) error {
		fmt.Fprintf(&b, "%s|%s|%s|%s\n", u.Name, u.Display, u.Password, fields(u))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// roundTripUsers hold fields in different orders, values that need
// quoting (CSV) or base64 (LDIF), long values that LDIF folds.
var roundTripUsers = "Alice@Example.com:{SSHA}AMut7XaZFkRp1/2md9R/ykBZvpJgU+iVJDjc3w==:tohost=\"b1\" quota=\"100\" name=\"Smith, Alice\"\n" +
	"bob@example.com:{CRYPT}$6$salt$hash:quota=\"200\" tohost=\"b2\" note=\"ünïcödé, with \\ backslash\"\n" +
	"carol@example.com:{PLAIN}pw:name=\" leading space\" fwd=\"a@x,b@y\" status=\"suspended\"\n" +
	"dave@example.com:{SSHA}x:long=\"" + strings.Repeat("0123456789", 20) + "\" tohost=\"b1\" name=\"Dave\"\n" +
	"erin@example.com:{SSHA}y:\n" +
	"frank@example.com:{SSHA}z:name=\"Frank\" quota=\"1\" tohost=\"b3\" cn=\"x:y\" description=\"<angle> and : colon\"\n"

// TestRoundTrip: export → import gives the same directory, field order
// included, for every format and store; exporting again gives the same
// file.
func TestRoundTrip(t *testing.T) {
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			src := st.open(t)
			if r := load(t, src, "nwauth.txt", roundTripUsers, importer.Options{}); r.err != nil || r.stats.Created != 6 {
				t.Fatalf("%+v %v %q", r.stats, r.err, r.reports)
			}
			want := dump(t, src)
			for _, f := range importer.Formats {
				t.Run(string(f), func(t *testing.T) {
					var out bytes.Buffer
					es, err := importer.Export(ctx, src, &out, f, importer.ExportOptions{})
					if err != nil || es.Users != 6 || es.Dropped != 0 {
						t.Fatalf("export: %+v %v", es, err)
					}
					dst := st.open(t)
					r := load(t, dst, "export", out.String(), importer.Options{}) // format from the content
					if r.err != nil || r.stats.Created != 6 || r.stats.Format != f {
						t.Fatalf("import of the export: %+v %v %q\n%s", r.stats, r.err, r.reports, out.String())
					}
					if got := dump(t, dst); got != want {
						t.Fatalf("round trip through %s:\n%s\nwant:\n%s\nfile:\n%s", f, got, want, out.String())
					}
					var again bytes.Buffer
					if _, err := importer.Export(ctx, dst, &again, f, importer.ExportOptions{}); err != nil || again.String() != out.String() {
						t.Fatalf("second export differs (%v):\n%s\nfirst:\n%s", err, again.String(), out.String())
					}
				})
			}
		})
	}
}

// TestExportCSVColumns: users that agree on one field order (some fields
// missing) get one column per label; users that do not get columns in
// which every user's order is kept (TestRoundTrip proves the rest).
func TestExportCSVColumns(t *testing.T) {
	s := openBolt(t)
	load(t, s, "nwauth.txt", "a@x:{SSHA}a:tohost=\"1\" name=\"A\"\nb@x:{SSHA}b:quota=\"2\" name=\"B\"\n"+
		"c@x:{SSHA}c:tohost=\"3\" quota=\"3\"\n", importer.Options{})
	var out bytes.Buffer
	if _, err := importer.Export(ctx, s, &out, importer.CSV, importer.ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	if want := "user,password_hash,tohost,quota,name\na@x,{SSHA}a,1,,A\nb@x,{SSHA}b,,2,B\nc@x,{SSHA}c,3,3,\n"; out.String() != want {
		t.Fatalf("export:\n%s\nwant:\n%s", out.String(), want)
	}
	load(t, s, "nwauth.txt", "d@x:{SSHA}d:name=\"D\" tohost=\"4\"\n", importer.Options{})
	out.Reset()
	if _, err := importer.Export(ctx, s, &out, importer.CSV, importer.ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	header, _, _ := strings.Cut(out.String(), "\n")
	if header != "user,password_hash,tohost,quota,name,tohost" {
		t.Fatalf("header %s", header)
	}
}

// TestExportLeavesOut: fields a format cannot hold are reported.
func TestExportLeavesOut(t *testing.T) {
	s := openBolt(t)
	if _, err := s.Update(ctx, "a@x", func(*directory.User) (*directory.User, error) {
		return &directory.User{Name: "a@x", Display: "a@x", Password: "p:q",
			Fields: []directory.Field{{Label: "password", Value: "1"}, {Label: "objectClass", Value: "2"}}}, nil
	}); err != nil {
		t.Fatal(err)
	}
	for f, want := range map[importer.Format]string{
		importer.CSV:    "field password cannot be a CSV column",
		importer.LDIF:   "field objectClass cannot be an LDIF attribute",
		importer.NWAuth: "password holds a ':'",
	} {
		var warns []string
		_, err := importer.Export(ctx, s, io.Discard, f, importer.ExportOptions{Warn: func(s string) { warns = append(warns, s) }})
		if err != nil || len(warns) != 1 || !strings.Contains(warns[0], want) {
			t.Errorf("%s: %v %q", f, err, warns)
		}
	}
}

func TestFormatDetection(t *testing.T) {
	names := map[string]importer.Format{
		"users.csv": importer.CSV, "x/dump.LDIF": importer.LDIF, "a.ldf": importer.LDIF,
		"/etc/nwauth.txt": importer.NWAuth, "nwauth.add": importer.NWAuth, "users.nwauth": importer.NWAuth, "users.txt": "",
	}
	for n, want := range names {
		if got := importer.FormatOfName(n); got != want {
			t.Errorf("FormatOfName(%s) = %q, want %q", n, got, want)
		}
	}
	s := openBolt(t)
	for text, want := range map[string]importer.Format{
		"\n# comment\ndn: uid=a\nuid: a@x\nuserPassword: {SSHA}x\n":  importer.LDIF,
		"version: 1\n\ndn: uid=a\nuid: a@x\nuserPassword: {SSHA}x\n": importer.LDIF,
		"a@x:{SSHA}x:tohost=\"a,b\"\n":                               importer.NWAuth,
		"\ufeffuser,password\na@x,p\n":                               importer.CSV,
	} {
		if r := load(t, s, "-", text, importer.Options{}); r.err != nil || r.stats.Format != want || r.stats.Loaded() != 1 {
			t.Errorf("%q: %s %+v %v", text, r.stats.Format, r.stats, r.err)
		}
	}
	if r := load(t, s, "-", "just words\n", importer.Options{}); r.err == nil {
		t.Error("undetectable input accepted")
	}
}

// TestFlatMemory: the heap an import needs does not grow with the file.
func TestFlatMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("reads 330,000 records")
	}
	peak := func(n int) uint64 {
		// The file is generated as it is read: the test holds none of it.
		in := importer.Input{Name: "f.csv", Open: func() (io.ReadCloser, error) {
			pr, pw := io.Pipe()
			go func() {
				w := bufio.NewWriter(pw)
				w.WriteString("user,password_hash,tohost,quota,name\n")
				for i := range n {
					fmt.Fprintf(w, "user%07d@domain%02d.example,%s,backend%d.example,104857600,Grace Hall\n", i, i%100, ssha, i%4)
				}
				w.Flush()
				pw.Close()
			}()
			return pr, nil
		}}
		runtime.GC()
		var max uint64
		var mu sync.Mutex
		st, err := importer.Import(ctx, discard{}, in, importer.Options{BatchSize: 5000, ProgressEvery: 2 * time.Millisecond,
			Progress: func(importer.Progress) {
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				mu.Lock()
				if ms.HeapInuse > max {
					max = ms.HeapInuse
				}
				mu.Unlock()
			}})
		if err != nil || st.Created != int64(n) {
			t.Fatal(st, err)
		}
		return max
	}
	small, large := peak(30_000), peak(300_000)
	t.Logf("peak heap in use: %d MB for 30,000 users, %d MB for 300,000", small>>20, large>>20)
	if large > 2*small+16<<20 {
		t.Fatalf("heap grows with the file: %d MB for 30,000 users, %d MB for 300,000", small>>20, large>>20)
	}
}

// TestRecordBounds: a record over the directory's bounds is rejected with
// its line and the bound it broke; its neighbours are imported.
func TestRecordBounds(t *testing.T) {
	s := openBolt(t)
	var many strings.Builder
	for i := 0; i <= directory.MaxFields; i++ {
		fmt.Fprintf(&many, ` f%d="v"`, i)
	}
	text := "ok1@x:{ssha}x:\n" +
		"many@x:{ssha}x:" + many.String() + "\n" +
		"large@x:{ssha}x:note=\"" + strings.Repeat("y", directory.MaxRecordBytes) + "\"\n" +
		"ok2@x:{ssha}x:\n"
	r := load(t, s, "nwauth.txt", text, importer.Options{})
	if r.err != nil {
		t.Fatal(r.err)
	}
	wantStats(t, r.stats, importer.Stats{Read: 4, Created: 2, Rejected: 2})
	wantReports(t, r.reports,
		fmt.Sprintf(`line 2: user "many@x": too many fields: %d, at most %d`, directory.MaxFields+1, directory.MaxFields),
		fmt.Sprintf(`line 3: user "large@x": record too large: %d bytes, at most %d`, 2*len("large@x")+len("{ssha}x")+len("note")+directory.MaxRecordBytes, directory.MaxRecordBytes),
	)
	missing(t, s, "many@x")
	missing(t, s, "large@x")
	get(t, s, "ok2@x")
}
