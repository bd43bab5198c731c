package maildir

import (
	"os"
	"strings"
	"testing"
)

// TestParseListRefusesBadLists: a UID list that is not what writeList
// writes is refused as corrupt, never half-read.
func TestParseListRefusesBadLists(t *testing.T) {
	good := "3 V7 N4\n1 :a\n3 :b\n"
	if l, err := parseList([]byte(good)); err != nil || l.validity != 7 || l.next != 4 || len(l.ents) != 2 {
		t.Fatalf("good list: %+v %v", l, err)
	}
	if l, err := parseList([]byte("3 V7 N2\n5 :a\n")); err != nil || l.next != 6 {
		t.Fatalf("a next UID at or below a used one is raised past it: %+v %v", l, err)
	}
	for name, bad := range map[string]string{
		"empty":            "",
		"garbage header":   "hello\n1 :a\n",
		"no validity":      "3 V0 N4\n",
		"uid not a number": "3 V7 N4\nx :a\n",
		"uid zero":         "3 V7 N4\n0 :a\n",
		"uids not rising":  "3 V7 N9\n3 :a\n2 :b\n",
		"uid repeated":     "3 V7 N9\n3 :a\n3 :b\n",
		"no key":           "3 V7 N9\n3 :\n",
		"no separator":     "3 V7 N9\n3 a\n",
		"uid over 32 bits": "3 V7 N9\n4294967296 :a\n",
	} {
		if _, err := parseList([]byte(bad)); err != errCorrupt {
			t.Errorf("%s: %v, want errCorrupt", name, err)
		}
	}
}

// TestCorruptUIDList: a UID list damaged on disk is kept aside, a new one
// starts with a new UIDVALIDITY (so IMAP clients resynchronise), and no
// message is lost.
func TestCorruptUIDList(t *testing.T) {
	root := t.TempDir()
	s, err := Open(root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"one", "two"} {
		if _, err := s.Deliver("u@x.test", strings.NewReader("Subject: "+m+"\r\n\r\n"+m+"\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	f := mustFolder(t, s, "u@x.test", "INBOX")
	mustSync(t, f)
	validity := f.UIDValidity()
	list := join(f.dir, uidListName)
	if err := os.WriteFile(list, []byte("3 V1 N3\n2 :x\n1 :y\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s2, err := Open(root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	f2 := mustFolder(t, s2, "u@x.test", "INBOX")
	msgs := mustSync(t, f2)
	if len(msgs) != 2 {
		t.Fatalf("%d messages after the list was damaged, want 2", len(msgs))
	}
	if f2.UIDValidity() == validity {
		t.Fatal("UIDVALIDITY kept although the UIDs were lost")
	}
	if b, err := os.ReadFile(list + ".broken"); err != nil || !strings.Contains(string(b), "2 :x") {
		t.Fatalf("the damaged list was not kept aside: %q %v", b, err)
	}
}
