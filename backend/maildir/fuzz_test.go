package maildir

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/tohost/tohost/protocol/authent"
)

// FuzzFolderName: a folder name the mapping accepts is one Maildir++
// directory right under the user's, whose name maps back to the same
// folder; INBOX and only INBOX is the user's directory itself.
func FuzzFolderName(f *testing.F) {
	for _, s := range []string{"INBOX", "inbox/Sub", "A/B", "a.b", "%2E", "..", "a/../b", ".hidden", "x/y/z", "Trash", "100%", "\x00", "a//b", "&AOk-t&AOk-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		canon, dir, err := folderDir(name)
		if err != nil {
			return
		}
		if (dir == "") != (canon == folderInbox) {
			t.Fatalf("%q: canonical %q, directory %q", name, canon, dir)
		}
		if !strings.EqualFold(canon, name) {
			t.Fatalf("%q: canonical %q", name, canon)
		}
		if canon2, dir2, err := folderDir(canon); err != nil || canon2 != canon || dir2 != dir {
			t.Fatalf("%q: canonical %q maps to %q %q %v", name, canon, canon2, dir2, err)
		}
		if dir == "" {
			return
		}
		if strings.ContainsAny(dir, "/\\\x00") || dir == "." || dir == ".." || dir[0] != '.' {
			t.Fatalf("%q: directory %q", name, dir)
		}
		const udir = "/root/example.org/user"
		if p := filepath.Join(udir, dir); filepath.Dir(p) != udir {
			t.Fatalf("%q: directory %q is not in the user's", name, p)
		}
		back, ok := folderName(dir)
		if !ok || back != canon {
			t.Fatalf("%q: directory %q maps back to %q %v", name, dir, back, ok)
		}
	})
}

// FuzzUserName: a user name the mapping accepts is a directory two levels
// under the root, the same for the name in any ASCII case; names that
// differ otherwise get different directories.
func FuzzUserName(f *testing.F) {
	for _, s := range []string{"user@example.org", "User@Example.ORG", "bare", "..", "../x", "a/b@c", "x@..", "x@_", "a@b@c", ".x@y", "x@.y", "\x00", "é@ü.de", "Élodie@x", "\u212Aelvin@x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, user string) {
		p, err := userPath(user)
		if err != nil {
			return
		}
		const root = "/srv/mail"
		full := filepath.Join(root, p)
		if filepath.Dir(filepath.Dir(full)) != root || filepath.Join(root, filepath.Clean(p)) != full {
			t.Fatalf("%q: %q is not two levels under the root", user, full)
		}
		parts := strings.Split(p, "/")
		if len(parts) != 2 {
			t.Fatalf("%q: %q", user, p)
		}
		for _, part := range parts {
			if part == "" || part[0] == '.' || strings.ContainsAny(part, "\x00\\") {
				t.Fatalf("%q: part %q", user, part)
			}
		}
		if p2, err := userPath(strings.ToUpper(authent.FoldName(user))); isASCII(user) && (err != nil || p2 != p) {
			t.Fatalf("%q: upper case maps to %q %v, not %q", user, p2, err, p)
		}
		if lower := strings.ToLower(user); authent.FoldName(lower) != authent.FoldName(user) {
			if p2, err := userPath(lower); err == nil && p2 == p {
				t.Fatalf("%q and %q share the mailbox %q", user, lower, p)
			}
		}
		if parts[0] == "_" && strings.Contains(user, "@") {
			t.Fatalf("%q: a domain in the directory of bare names", user)
		}
	})
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
