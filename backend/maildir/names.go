package maildir

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/tohost/tohost/protocol/authent"
)

// badChars reports whether s holds a byte that no user or folder name may
// hold: NUL and other control characters, and the path separators.
func badChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f || c == '/' || c == '\\' {
			return true
		}
	}
	return false
}

// userPath maps a user name to its directory relative to the root:
// "local@domain" is "domain/local", a bare "local" is "_/local". Names
// have their ASCII letters lower-cased and nothing else, as the directory
// keys them (two names the directory keeps apart, such as "Élodie@x" and
// "élodie@x", must not share a mailbox); a name that could escape the
// root or collide with another is refused with ErrBadName.
func userPath(user string) (string, error) {
	if user == "" || len(user) > 255 || !utf8.ValidString(user) {
		return "", ErrBadName
	}
	u := authent.FoldName(user)
	local, domain := u, "_"
	if i := strings.LastIndexByte(u, '@'); i >= 0 {
		local, domain = u[:i], u[i+1:]
		if domain == "_" || strings.IndexByte(local, '@') >= 0 {
			return "", ErrBadName
		}
	}
	for _, p := range []string{local, domain} {
		if p == "" || p[0] == '.' || badChars(p) {
			return "", ErrBadName
		}
	}
	return domain + "/" + local, nil
}

// folderInbox is the IMAP name of the Maildir at the user's top.
const folderInbox = "INBOX"

// folderDir maps an IMAP folder name ("/" delimiter) to its Maildir++
// directory name: "" for INBOX, ".A.B" for "A/B". Within a level, "%" is
// written "%25" and "." is written "%2E", so that every name maps to one
// directory and back. It returns the canonical name too (INBOX in upper
// case, also as the first level of its children).
func folderDir(name string) (canon, dir string, err error) {
	if strings.EqualFold(name, folderInbox) {
		return folderInbox, "", nil
	}
	if name == "" || !utf8.ValidString(name) {
		return "", "", ErrBadName
	}
	parts := strings.Split(name, "/")
	var b strings.Builder
	for i, p := range parts {
		if p == "" || p == "." || p == ".." || badChars(p) {
			return "", "", ErrBadName
		}
		if i == 0 && strings.EqualFold(p, folderInbox) {
			p = folderInbox
			parts[0] = p
		}
		b.WriteByte('.')
		for j := 0; j < len(p); j++ {
			switch p[j] {
			case '.':
				b.WriteString("%2E")
			case '%':
				b.WriteString("%25")
			default:
				b.WriteByte(p[j])
			}
		}
	}
	dir = b.String()
	if len(dir) > 200 { // room for ".tohost-uidlist.tmp"-style suffixes under NAME_MAX
		return "", "", ErrBadName
	}
	return strings.Join(parts, "/"), dir, nil
}

// folderName is the inverse of folderDir for a directory name found in a
// user's Maildir; ok is false for names that are not folders of ours
// (".", "..", names folderDir would not produce).
func folderName(dir string) (name string, ok bool) {
	if len(dir) < 2 || dir[0] != '.' {
		return "", false
	}
	parts := strings.Split(dir[1:], ".")
	for i, p := range parts {
		var b strings.Builder
		for j := 0; j < len(p); j++ {
			if p[j] != '%' {
				b.WriteByte(p[j])
				continue
			}
			switch {
			case strings.HasPrefix(p[j:], "%2E"):
				b.WriteByte('.')
			case strings.HasPrefix(p[j:], "%25"):
				b.WriteByte('%')
			default:
				return "", false
			}
			j += 2
		}
		parts[i] = b.String()
	}
	name = strings.Join(parts, "/")
	canon, d, err := folderDir(name)
	if err != nil || d != dir || canon != name || name == folderInbox {
		return "", false
	}
	return name, true
}

// keyCounter makes the Q<n> part of unique names; process-wide so that two
// Stores on one root in one process never make the same name.
var keyCounter atomic.Uint64

// escapeHost escapes a host name for a Maildir unique name: "/" is "\057"
// and ":" is "\072".
func escapeHost(h string) string {
	h = strings.ReplaceAll(h, "/", `\057`)
	return strings.ReplaceAll(h, ":", `\072`)
}

// newKey makes a unique base name, time.M<usec>P<pid>Q<n>.host. A
// shared Store adds R<random> after the counter (as the Maildir
// specification allows): hosts that share a root could share a host name
// and a pid (pid 1 in containers), which must not make one name twice.
func (s *Store) newKey() string {
	now := time.Now()
	if s.shared {
		return fmt.Sprintf("%d.M%dP%dQ%dR%s.%s", now.Unix(), now.Nanosecond()/1000, s.pid, keyCounter.Add(1), randomHex(4), s.host)
	}
	return fmt.Sprintf("%d.M%dP%dQ%d.%s", now.Unix(), now.Nanosecond()/1000, s.pid, keyCounter.Add(1), s.host)
}

// keyParts parses a unique name made by newKey. ok is false for other
// names.
func keyParts(key string) (sec, usec int64, pid int, host string, ok bool) {
	a, rest, ok1 := strings.Cut(key, ".")
	mid, host, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || len(mid) < 2 || mid[0] != 'M' {
		return 0, 0, 0, "", false
	}
	sec, err := strconv.ParseInt(a, 10, 64)
	if err != nil {
		return 0, 0, 0, "", false
	}
	us, rest, ok1 := strings.Cut(mid[1:], "P")
	p, _, ok2 := strings.Cut(rest, "Q")
	if !ok1 || !ok2 {
		return 0, 0, 0, "", false
	}
	usec, err1 := strconv.ParseInt(us, 10, 64)
	pid, err2 := strconv.Atoi(p)
	if err1 != nil || err2 != nil {
		return 0, 0, 0, "", false
	}
	return sec, usec, pid, host, true
}

// splitName splits a message file name into its unique key and its info
// (after ":2,"; "" when there is none).
func splitName(name string) (key, info string) {
	if i := strings.IndexByte(name, ':'); i >= 0 {
		key, info = name[:i], name[i+1:]
		info = strings.TrimPrefix(info, "2,")
		return key, info
	}
	return name, ""
}

// Maildir info letters of the IMAP system flags.
var flagLetters = []struct {
	letter byte
	flag   string
}{
	{'D', `\Draft`},
	{'F', `\Flagged`},
	{'R', `\Answered`},
	{'S', `\Seen`},
	{'T', `\Deleted`},
}

// flagsOf returns the IMAP system flags of a Maildir info.
func flagsOf(info string) []string {
	var fl []string
	for _, l := range flagLetters {
		if strings.IndexByte(info, l.letter) >= 0 {
			fl = append(fl, l.flag)
		}
	}
	return fl
}

// withFlags returns info with its system-flag letters replaced by those of
// flags; other letters (P, keyword letters) stay. Letters are sorted, as
// Maildir requires.
func withFlags(info string, flags []string) string {
	var set [256]bool
	for i := 0; i < len(info); i++ {
		set[info[i]] = true
	}
	for _, l := range flagLetters {
		set[l.letter] = false
		for _, f := range flags {
			if strings.EqualFold(f, l.flag) {
				set[l.letter] = true
			}
		}
	}
	var b []byte
	for c := 0; c < 256; c++ {
		if set[c] {
			b = append(b, byte(c))
		}
	}
	return string(b)
}

// lastValidity makes UIDVALIDITY values strictly increasing within the
// process (a folder deleted and created again in one second gets a new
// one); across restarts the clock moves on.
var (
	validityMu   sync.Mutex
	lastValidity uint32
)

func newValidity() uint32 {
	validityMu.Lock()
	defer validityMu.Unlock()
	v := uint32(time.Now().Unix())
	if v <= lastValidity {
		v = lastValidity + 1
	}
	lastValidity = v
	return v
}

// processStart is about when this process started: a file in tmp/ named
// with this process's pid but older than that was left by an earlier
// process with the same pid (pid 1 in a container, restarted).
var processStart = time.Now()

// pidRunning reports whether the process with this pid that made a file
// with this mtime may still run.
func pidRunning(pid int, mtime time.Time) bool {
	if pid <= 0 {
		return true
	}
	if pid == os.Getpid() {
		return !mtime.Before(processStart)
	}
	return processAlive(pid)
}

func join(elem ...string) string { return filepath.Join(elem...) }
