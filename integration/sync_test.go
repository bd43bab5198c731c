//go:build linux

package integration

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/tohost/tohost/internal/testservices"
)

// TestAcknowledgedAfterSync: the directory sends +OK for a write only after
// the database file holding it was synced. A kill -9 cannot tell (the page
// cache outlives the process, so TestDurableAfterKill9 passes with syncing
// off); the directory's own system calls can. It runs under strace, which
// records in order every write to the database file, every fdatasync and
// fsync of it, and every write to the client's socket. For each +OK in
// that socket stream, the first write of the database file that holds the
// user, then a meta page write (the commit), then a sync of the file must
// come before the write that sends the +OK.
func TestAcknowledgedAfterSync(t *testing.T) {
	const n, one = 300, 20 // set pipelined, then set one by one
	strace, err := exec.LookPath("strace")
	if err != nil {
		t.Fatalf("this test watches the directory's system calls with strace, which is not installed "+
			"(scripts/test-services.sh installs it, or: apt-get install -y strace): %v", err)
	}
	dir := t.TempDir()
	traceFile := filepath.Join(dir, "trace")
	d := &daemon{addr: freeAddr(t), log: new(testservices.Buffer), traced: true}
	d.cmd = exec.Command(strace, append([]string{
		"-f", "--seccomp-bpf", // every thread; stop only at the calls traced
		"-yy",                  // fds with their path or TCP endpoints
		"-xx", "-s", "1048576", // whole buffers, in hex
		"-e", "trace=fdatasync,fsync,write,pwrite64,writev,sendto,sendmsg",
		"-o", traceFile,
		binary,
	}, directoryArgs(filepath.Join(dir, "data"), d.addr)...)...)
	d.start(t)

	c := dial(t, d.addr)
	var req strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&req, "set user%05d@sync.example {SSHA}aGFzaGhhc2hoYXNoaGFzaGhhc2g= tohost=\"b%d\"\r\n", i, i%4)
	}
	c.write(req.String())
	var received strings.Builder
	for i := 0; i < n; i++ {
		l := c.line()
		if want := fmt.Sprintf("+OK user%05d@sync.example added to database", i); l != want {
			t.Fatalf("reply %d = %q, want %q", i, l, want)
		}
		received.WriteString(l + "\r\n")
	}
	// Then one at a time: a commit each.
	for i := n; i < n+one; i++ {
		l := fmt.Sprintf("+OK user%05d@sync.example added to database", i)
		c.expect(fmt.Sprintf("set user%05d@sync.example {SSHA}aGFzaGhhc2hoYXNoaGFzaGhhc2g=", i), l)
		received.WriteString(l + "\r\n")
	}
	// The last reply's write may have returned before strace wrote down its
	// result. It has once the next reply is read: that write starts after.
	c.expect("lookup nobody@sync.example", "-ERR nobody@sync.example does not exist")
	d.kill() // strace writes out the trace when the directory is gone

	calls, err := readTrace(traceFile)
	if err != nil {
		t.Fatalf("%v\n%s", err, d.log)
	}
	socket := "TCP:[" + d.addr + "->" + c.nc.LocalAddr().String() + "]"
	var db, sent []*syscallRecord
	var stream []byte
	for _, sc := range calls {
		switch {
		case strings.HasSuffix(sc.target, "/tohost.db"):
			db = append(db, sc)
		case sc.target == socket && sc.data != nil:
			sent = append(sent, sc)
			stream = append(stream, sc.data...)
		}
	}
	// The trace must show what the client read, or it is read wrongly.
	if !bytes.HasPrefix(stream, []byte(received.String())) {
		t.Fatalf("the trace's writes to %s (%d bytes) do not start with the %d bytes the client read", socket, len(stream), received.Len())
	}

	pageSize := os.Getpagesize() // bbolt's page size for a new file
	// sender returns the socket write that sent stream byte i.
	sender := func(i int) *syscallRecord {
		for _, w := range sent {
			if i < len(w.data) {
				return w
			}
			i -= len(w.data)
		}
		return nil
	}
	replies := regexp.MustCompile(`\+OK (\S+) added to database\r\n`).FindAllSubmatchIndex(stream, -1)
	if len(replies) != n+one {
		t.Fatalf("%d replies in the trace, want %d", len(replies), n+one)
	}
	commits, syncs, unsynced := map[*syscallRecord]bool{}, 0, 0
	for _, sc := range db {
		if sc.isSync() {
			syncs++
		}
	}
	for _, m := range replies {
		user := stream[m[2]:m[3]]
		reply := sender(m[0])
		var data, meta, sync *syscallRecord
		for _, sc := range db {
			switch {
			case data == nil:
				if sc.name == "pwrite64" && bytes.Contains(sc.data, user) {
					data = sc
				}
			case meta == nil:
				if sc.name == "pwrite64" && sc.start > data.end && sc.offset < int64(2*pageSize) && len(sc.data) == pageSize {
					meta = sc
				}
			case sc.isSync() && sc.start > meta.end && sc.end < reply.start:
				sync = sc
			}
			if sync != nil {
				break
			}
		}
		switch {
		case data == nil:
			t.Fatalf("+OK for %s (trace line %d), but no write of the database file holds it", user, reply.start)
		case meta == nil || meta.start > reply.start:
			t.Fatalf("+OK for %s (trace line %d) sent before its commit's meta page was written (user written at line %d)", user, reply.start, data.start)
		case sync == nil:
			if unsynced++; unsynced <= 3 {
				t.Errorf("+OK for %s sent at trace line %d with no fdatasync or fsync of the database file "+
					"between its commit (written at lines %d and %d) and that reply", user, reply.start, data.start, meta.start)
			}
		}
		commits[meta] = true
	}
	if unsynced > 0 {
		t.Fatalf("%d of %d acknowledgements were sent before their write was synced (%d syncs of the file in the trace)", unsynced, n+one, syncs)
	}
	t.Logf("%d acknowledgements from %d commits, each after a sync of the database file", n+one, len(commits))
}

// syscallRecord is one system call in an strace -f -yy -xx trace.
type syscallRecord struct {
	name   string
	target string // the fd's path, or TCP:[local->remote] for a socket
	data   []byte // what a write call wrote (its buffer cut to its result)
	offset int64  // pwrite64's file offset
	ok     bool   // it returned a non-negative result
	// start and end are the trace lines of its entry and its return; a
	// call of another thread that starts after end began after it returned.
	start, end int
}

func (sc *syscallRecord) isSync() bool {
	return (sc.name == "fdatasync" || sc.name == "fsync") && sc.ok
}

// readTrace parses the calls of an strace -f -yy -xx output file in the
// order they started. A call other threads interrupted is split into an
// "NAME(ARGS <unfinished ...>" line and a "<... NAME resumed>ARGS) = RET"
// line; a whole call is "NAME(ARGS) = RET". Each line starts with the
// thread id.
func readTrace(path string) ([]*syscallRecord, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("the strace output: %w", err)
	}
	defer f.Close()
	var calls []*syscallRecord
	pending := map[string]*syscallRecord{} // by thread
	pendingArgs := map[*syscallRecord]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 16<<20)
	for line := 1; sc.Scan(); line++ {
		tid, text, _ := strings.Cut(sc.Text(), " ")
		text = strings.TrimLeft(text, " ")
		var rec *syscallRecord
		var args, ret string
		if rest, ok := strings.CutPrefix(text, "<... "); ok { // resumed
			name, rest, ok := strings.Cut(rest, " resumed>")
			if rec = pending[tid]; !ok || rec == nil || rec.name != name {
				return nil, fmt.Errorf("trace line %d resumes a call that did not start: %.200s", line, text)
			}
			delete(pending, tid)
			if args, ret, ok = splitResult(rest); !ok {
				return nil, fmt.Errorf("trace line %d: no result: %.200s", line, text)
			}
			args = pendingArgs[rec] + args
		} else {
			name, rest, ok := strings.Cut(text, "(")
			if !ok || !isCallName(name) {
				continue // signals, exits
			}
			rec = &syscallRecord{name: name, start: line}
			calls = append(calls, rec)
			if a, ok := strings.CutSuffix(rest, " <unfinished ...>"); ok {
				pending[tid], pendingArgs[rec] = rec, a
				continue
			}
			if args, ret, ok = splitResult(rest); !ok {
				return nil, fmt.Errorf("trace line %d: no result: %.200s", line, text)
			}
		}
		ret, _, _ = strings.Cut(ret, " ")
		rec.end = line
		if err := rec.parse(args, ret); err != nil {
			return nil, fmt.Errorf("trace line %d: %v: %.200s", line, err, text)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("the strace output: %w", err)
	}
	return calls, nil
}

// splitResult splits "ARGS)   = RET" (strace pads short lines before " = ").
func splitResult(s string) (args, ret string, ok bool) {
	i := strings.LastIndex(s, " = ")
	if i < 0 {
		return "", "", false
	}
	args, ok = strings.CutSuffix(strings.TrimRight(s[:i], " "), ")")
	return args, s[i+3:], ok
}

func isCallName(s string) bool {
	for _, r := range s {
		if !(r == '_' || '0' <= r && r <= '9' || 'a' <= r && r <= 'z') {
			return false
		}
	}
	return s != ""
}

// parse fills in what the call's arguments and result say.
func (sc *syscallRecord) parse(args, ret string) error {
	n, err := strconv.ParseInt(ret, 10, 64)
	sc.ok = err == nil && n >= 0
	// The first argument is the fd: 5</path/to/file> or 9<TCP:[a->b]>.
	if _, a, ok := strings.Cut(args, "<"); ok {
		if i := strings.Index(a, ">, "); i >= 0 {
			sc.target = string(unhex(a[:i]))
		} else {
			sc.target = string(unhex(strings.TrimSuffix(a, ">")))
		}
	}
	switch sc.name {
	case "write", "pwrite64", "writev", "sendto", "sendmsg":
	default:
		return nil
	}
	if !sc.ok {
		return nil
	}
	// The buffers written are the quoted strings (writev: one per iovec).
	var buf []byte
	for rest := args; ; {
		_, s, ok := strings.Cut(rest, `"`)
		if !ok {
			break
		}
		s, rest, ok = strings.Cut(s, `"`)
		if !ok {
			return fmt.Errorf("unterminated string")
		}
		if strings.HasPrefix(rest, "...") {
			return fmt.Errorf("buffer cut short")
		}
		buf = append(buf, unhex(s)...)
	}
	if int64(len(buf)) < n {
		return fmt.Errorf("%d bytes shown of %d written", len(buf), n)
	}
	sc.data = buf[:n]
	if sc.name == "pwrite64" {
		i := strings.LastIndex(args, ", ")
		if sc.offset, err = strconv.ParseInt(args[i+2:], 10, 64); err != nil {
			return fmt.Errorf("pwrite64 offset: %v", err)
		}
	}
	return nil
}

// unhex decodes strace -xx text: \xHH escapes and plain characters.
func unhex(s string) []byte {
	out := make([]byte, 0, len(s)/4)
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] == 'x' {
			if b, err := strconv.ParseUint(s[i+2:i+4], 16, 8); err == nil {
				out = append(out, byte(b))
				i += 3
				continue
			}
		}
		out = append(out, s[i])
	}
	return out
}
