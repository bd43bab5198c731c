package imap

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
)

func TestLogin(t *testing.T) {
	e := newEnv(t, nil)

	c := e.dial(nil)
	if err := c.Login("alice@example.org", "secret").Wait(); err != nil {
		t.Fatalf("good login: %v", err)
	}
	if got := e.dir.lastIP(); got != "127.0.0.1" {
		t.Errorf("directory got ip %q, want 127.0.0.1", got)
	}
	// tohost with the port of this backend is this backend.
	e.login("bob@example.org", nil)

	for _, tc := range []struct {
		user, pass string
		code       imap.ResponseCode
	}{
		{"alice@example.org", "wrong", imap.ResponseCodeAuthenticationFailed},
		{"nobody@example.org", "x", imap.ResponseCodeAuthenticationFailed},
		{"carol@example.org", "pw", imap.ResponseCodeAuthorizationFailed}, // lives on be2
		{"dave@example.org", "pw", imap.ResponseCodeAuthorizationFailed},  // no tohost, no AcceptDefault
	} {
		c := e.dial(nil)
		err := c.Login(tc.user, tc.pass).Wait()
		if err == nil {
			t.Errorf("%s/%s: logged in", tc.user, tc.pass)
			continue
		}
		if code := imapCode(err); code != tc.code {
			t.Errorf("%s/%s: %v, want code %s", tc.user, tc.pass, err, tc.code)
		}
		if c.State() != imap.ConnStateNotAuthenticated {
			t.Errorf("%s: state %v after a refused login", tc.user, c.State())
		}
	}

	// AUTHENTICATE PLAIN
	c = e.dial(nil)
	if err := c.Authenticate(sasl.NewPlainClient("", "alice@example.org", "secret")); err != nil {
		t.Errorf("AUTHENTICATE PLAIN: %v", err)
	}
	c = e.dial(nil)
	if err := c.Authenticate(sasl.NewPlainClient("", "alice@example.org", "nope")); err == nil {
		t.Errorf("AUTHENTICATE PLAIN with a wrong password succeeded")
	}

	// Directory outage: a temporary failure, never "wrong password".
	e.dir.down.Store(true)
	c = e.dial(nil)
	err := c.Login("alice@example.org", "secret").Wait()
	if imapCode(err) != imap.ResponseCodeUnavailable {
		t.Errorf("login during an outage: %v, want NO [UNAVAILABLE]", err)
	}
	e.dir.down.Store(false)
	if err := c.Login("alice@example.org", "secret").Wait(); err != nil {
		t.Errorf("login after the outage: %v", err)
	}
}

func TestLoginAcceptDefault(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.AcceptDefault = true })
	e.login("dave@example.org", nil)
	c := e.dial(nil)
	if err := c.Login("carol@example.org", "pw").Wait(); imapCode(err) != imap.ResponseCodeAuthorizationFailed {
		t.Errorf("other backend's user with AcceptDefault: %v", err)
	}
}

func TestListSpecialUse(t *testing.T) {
	e := newEnv(t, nil)
	c := e.login("alice@example.org", nil)
	for _, name := range []string{"Sent", "Drafts", "Trash", "Junk", "Archive", "Projects", "Projects/2024"} {
		if err := c.Create(name, nil).Wait(); err != nil {
			t.Fatalf("CREATE %s: %v", name, err)
		}
	}
	list := must(c.List("", "*", nil).Collect())
	attrs := map[string][]imap.MailboxAttr{}
	for _, l := range list {
		attrs[l.Mailbox] = l.Attrs
		if l.Delim != '/' {
			t.Errorf("%s: delimiter %q", l.Mailbox, l.Delim)
		}
	}
	want := map[string]imap.MailboxAttr{"Sent": imap.MailboxAttrSent, "Drafts": imap.MailboxAttrDrafts,
		"Trash": imap.MailboxAttrTrash, "Junk": imap.MailboxAttrJunk, "Archive": imap.MailboxAttrArchive}
	for name, a := range want {
		if !slices.Contains(attrs[name], a) {
			t.Errorf("%s: attrs %v, want %s", name, attrs[name], a)
		}
	}
	for _, name := range []string{"INBOX", "Projects", "Projects/2024"} {
		if _, ok := attrs[name]; !ok {
			t.Errorf("%s not listed: %v", name, list)
		}
		for _, a := range attrs[name] {
			if slices.Contains([]imap.MailboxAttr{imap.MailboxAttrSent, imap.MailboxAttrDrafts, imap.MailboxAttrTrash, imap.MailboxAttrJunk, imap.MailboxAttrArchive}, a) {
				t.Errorf("%s has special use %s", name, a)
			}
		}
	}
	if !slices.Contains(attrs["Projects"], imap.MailboxAttrHasChildren) {
		t.Errorf("Projects: %v, want \\HasChildren", attrs["Projects"])
	}
	// LIST (SPECIAL-USE) "" "*": only the five.
	su := must(c.List("", "*", &imap.ListOptions{SelectSpecialUse: true}).Collect())
	if len(su) != 5 {
		t.Errorf("LIST (SPECIAL-USE): %d folders, want 5: %+v", len(su), su)
	}
	// A pattern.
	pl := must(c.List("", "Projects/%", nil).Collect())
	if len(pl) != 1 || pl[0].Mailbox != "Projects/2024" {
		t.Errorf("LIST Projects/%%: %+v", pl)
	}
	// Subscriptions: LSUB-style selection.
	if err := c.Subscribe("Sent").Wait(); err != nil {
		t.Fatal(err)
	}
	sub := must(c.List("", "*", &imap.ListOptions{SelectSubscribed: true}).Collect())
	if len(sub) != 1 || sub[0].Mailbox != "Sent" || !slices.Contains(sub[0].Attrs, imap.MailboxAttrSubscribed) {
		t.Errorf("LIST (SUBSCRIBED): %+v", sub)
	}
	if err := c.Unsubscribe("Sent").Wait(); err != nil {
		t.Fatal(err)
	}
	if sub := must(c.List("", "*", &imap.ListOptions{SelectSubscribed: true}).Collect()); len(sub) != 0 {
		t.Errorf("after UNSUBSCRIBE: %+v", sub)
	}
	ns := must(c.Namespace().Wait())
	if len(ns.Personal) != 1 || ns.Personal[0].Delim != '/' {
		t.Errorf("NAMESPACE: %+v", ns)
	}
}

func folderNames(t *testing.T, c *imapclient.Client) []string {
	t.Helper()
	var names []string
	for _, l := range must(c.List("", "*", nil).Collect()) {
		names = append(names, l.Mailbox)
	}
	slices.Sort(names)
	return names
}

func TestCreateRenameDelete(t *testing.T) {
	e := newEnv(t, nil)
	c := e.login("alice@example.org", nil)
	if err := c.Create("Work", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Create("Work", nil).Wait(); imapCode(err) != imap.ResponseCodeAlreadyExists {
		t.Errorf("CREATE twice: %v", err)
	}
	if err := c.Create("Work/Old", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	uid := appendMsg(t, c, "Work/Old", testMessage("kept", "body"), nil)
	if err := c.Rename("Work", "Job", nil).Wait(); err != nil {
		t.Fatalf("RENAME: %v", err)
	}
	if got, want := folderNames(t, c), []string{"INBOX", "Job", "Job/Old"}; !slices.Equal(got, want) {
		t.Errorf("after RENAME: %v, want %v", got, want)
	}
	sel := must(c.Select("Job/Old", nil).Wait())
	if sel.NumMessages != 1 {
		t.Errorf("Job/Old has %d messages", sel.NumMessages)
	}
	msgs := must(c.Fetch(imap.UIDSetNum(uid), &imap.FetchOptions{UID: true}).Collect())
	if len(msgs) != 1 {
		t.Errorf("UID %d not found after RENAME", uid)
	}
	if err := c.Unselect().Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete("Job/Old").Wait(); err != nil {
		t.Fatalf("DELETE: %v", err)
	}
	if err := c.Delete("Nope").Wait(); imapCode(err) != imap.ResponseCodeNonExistent {
		t.Errorf("DELETE of nothing: %v", err)
	}
	if err := c.Delete("INBOX").Wait(); err == nil {
		t.Errorf("DELETE INBOX succeeded")
	}
	if _, err := c.Select("Job/Old", nil).Wait(); imapCode(err) != imap.ResponseCodeNonExistent {
		t.Errorf("SELECT of a deleted folder: %v", err)
	}
	if got, want := folderNames(t, c), []string{"INBOX", "Job"}; !slices.Equal(got, want) {
		t.Errorf("after DELETE: %v, want %v", got, want)
	}
	if err := c.Create("a//b", nil).Wait(); err == nil {
		t.Errorf("CREATE a//b succeeded")
	}
}

const multipart = "From: Alice <alice@example.org>\r\n" +
	"To: Bob <bob@example.org>, carol@example.org\r\n" +
	"Subject: Quarterly report\r\n" +
	"Date: Tue, 03 Jan 2006 10:00:00 +0100\r\n" +
	"Message-ID: <report@example.org>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=\"XYZ\"\r\n" +
	"\r\n" +
	"--XYZ\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"\r\n" +
	"Numbers are up.\r\n" +
	"--XYZ\r\n" +
	"Content-Type: application/octet-stream; name=\"data.bin\"\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"\r\n" +
	"AAECAwQ=\r\n" +
	"--XYZ--\r\n"

func TestAppendFetch(t *testing.T) {
	e := newEnv(t, nil)
	c := e.login("alice@example.org", nil)
	date := time.Date(2020, 5, 6, 7, 8, 9, 0, time.UTC)
	uid := appendMsg(t, c, "INBOX", multipart, &imap.AppendOptions{Flags: []imap.Flag{imap.FlagFlagged, "$Custom"}, Time: date})
	if uid != 1 {
		t.Errorf("first UID %d", uid)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	whole := &imap.FetchItemBodySection{Peek: true}
	partial := &imap.FetchItemBodySection{Peek: true, Partial: &imap.SectionPartial{Offset: 6, Size: 5}}
	part1 := &imap.FetchItemBodySection{Peek: true, Part: []int{1}}
	part2 := &imap.FetchItemBodySection{Peek: true, Part: []int{2}}
	subj := &imap.FetchItemBodySection{Peek: true, Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Subject"}}
	msgs := must(c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{
		UID: true, Flags: true, Envelope: true, InternalDate: true, RFC822Size: true,
		BodyStructure: &imap.FetchItemBodyStructure{Extended: true},
		BodySection:   []*imap.FetchItemBodySection{whole, partial, part1, part2, subj},
	}).Collect())
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	m := msgs[0]
	if m.UID != uid {
		t.Errorf("UID %d, want %d", m.UID, uid)
	}
	if !slices.Equal(m.Flags, []imap.Flag{imap.FlagFlagged}) {
		t.Errorf("flags %v, want [\\Flagged]", m.Flags)
	}
	if !m.InternalDate.Equal(date) {
		t.Errorf("INTERNALDATE %v, want %v", m.InternalDate, date)
	}
	if m.RFC822Size != int64(len(multipart)) {
		t.Errorf("RFC822.SIZE %d, want %d", m.RFC822Size, len(multipart))
	}
	env := m.Envelope
	if env == nil || env.Subject != "Quarterly report" || env.MessageID != "report@example.org" ||
		len(env.From) != 1 || env.From[0].Addr() != "alice@example.org" || env.From[0].Name != "Alice" ||
		len(env.To) != 2 || env.To[1].Addr() != "carol@example.org" {
		t.Errorf("envelope %+v", env)
	}
	bs, ok := m.BodyStructure.(*imap.BodyStructureMultiPart)
	if !ok || bs.Subtype != "mixed" || len(bs.Children) != 2 {
		t.Fatalf("body structure %#v", m.BodyStructure)
	}
	p1 := bs.Children[0].(*imap.BodyStructureSinglePart)
	p2 := bs.Children[1].(*imap.BodyStructureSinglePart)
	if p1.Type != "text" || p1.Subtype != "plain" || p1.Params["charset"] != "utf-8" || p1.Size != uint32(len("Numbers are up.")) {
		t.Errorf("part 1: %+v", p1)
	}
	if p2.Type != "application" || p2.Encoding != "base64" || p2.Params["name"] != "data.bin" {
		t.Errorf("part 2: %+v", p2)
	}
	if got := m.FindBodySection(whole); !bytes.Equal(got, []byte(multipart)) {
		t.Errorf("BODY[] differs:\n%q\nwant\n%q", got, multipart)
	}
	if got, want := string(m.FindBodySection(partial)), multipart[6:11]; got != want {
		t.Errorf("BODY[]<6.5> = %q, want %q", got, want)
	}
	if got := string(m.FindBodySection(part1)); got != "Numbers are up." {
		t.Errorf("BODY[1] = %q", got)
	}
	if got := string(m.FindBodySection(part2)); got != "AAECAwQ=" {
		t.Errorf("BODY[2] = %q", got)
	}
	if got := string(m.FindBodySection(subj)); got != "Subject: Quarterly report\r\n\r\n" {
		t.Errorf("BODY[HEADER.FIELDS (Subject)] = %q", got)
	}
	// A partial past the end is empty.
	past := &imap.FetchItemBodySection{Peek: true, Partial: &imap.SectionPartial{Offset: 100000, Size: 10}}
	msgs = must(c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{past}}).Collect())
	if got := msgs[0].FindBodySection(past); len(got) != 0 {
		t.Errorf("partial past the end: %q", got)
	}
	// PEEK kept \Seen off; BODY[] sets it, and says so.
	body := &imap.FetchItemBodySection{}
	msgs = must(c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{body}}).Collect())
	if !slices.Contains(msgs[0].Flags, imap.FlagSeen) {
		t.Errorf("FETCH BODY[] flags %v: no \\Seen", msgs[0].Flags)
	}
	msgs = must(c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Flags: true}).Collect())
	if !slices.Equal(msgs[0].Flags, []imap.Flag{imap.FlagFlagged, imap.FlagSeen}) {
		t.Errorf("flags after BODY[]: %v", msgs[0].Flags)
	}
}

func TestAppendTooBig(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxMessageSize = 100 })
	c := e.login("alice@example.org", nil)
	msg := testMessage("big", strings.Repeat("x", 200))
	cmd := c.Append("INBOX", int64(len(msg)), nil)
	cmd.Write([]byte(msg))
	cmd.Close()
	if _, err := cmd.Wait(); imapCode(err) != imap.ResponseCodeTooBig {
		t.Errorf("APPEND over the limit: %v, want NO [TOOBIG]", err)
	}
	// The session goes on, and small messages still go in.
	appendMsg(t, c, "INBOX", "Subject: s\r\n\r\nok\r\n", nil)
	st := must(c.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait())
	if *st.NumMessages != 1 {
		t.Errorf("%d messages", *st.NumMessages)
	}
}

func TestAppendNoFolder(t *testing.T) {
	e := newEnv(t, nil)
	c := e.login("alice@example.org", nil)
	msg := testMessage("x", "y")
	cmd := c.Append("Nope", int64(len(msg)), nil)
	cmd.Write([]byte(msg))
	cmd.Close()
	if _, err := cmd.Wait(); imapCode(err) != imap.ResponseCodeTryCreate {
		t.Errorf("APPEND to a missing folder: %v, want NO [TRYCREATE]", err)
	}
}
