package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tohost/tohost/directory/store/bolt"
	"github.com/tohost/tohost/internal/testservices"
)

// tohost runs the binary and returns its exit code, stdout and stderr.
func tohost(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return exit.ExitCode(), stdout.String(), stderr.String()
	case err != nil:
		t.Fatal(err)
	}
	return 0, stdout.String(), stderr.String()
}

func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestImportExportCLI: import reports bad records by line and exits
// non-zero, writes them to --rejects; the directory then serves the good
// ones; export → import into another directory gives the same users.
func TestImportExportCLI(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	in := writeFile(t, dir, "users.csv", "user,password,tohost,quota\n"+
		"Bob@Example.com,s3cret,backend1,100\n"+
		"a b@x,pw,backend1,1\n"+
		"carol@example.com,pw2,\"backend2\n"+
		"dave@example.com,pw3,backend2,\n")
	rejects := filepath.Join(dir, "rejects.csv")
	code, out, errOut := tohost(t, "import", "--data-dir", data, "--password-scheme", "SSHA", "--rejects", rejects, in)
	if code == 0 || !strings.Contains(out, "read 4, imported 2, updated 0, unchanged 0, skipped 0, rejected 2") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	for _, want := range []string{`users.csv: line 3: user "a b@x": name contains a space`,
		`users.csv: line 4: user "carol@example.com": unterminated quoted field`, "2 records rejected"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	if b, _ := os.ReadFile(rejects); string(b) != "user,password,tohost,quota\na b@x,pw,backend1,1\ncarol@example.com,pw2,\"backend2\n" {
		t.Fatalf("rejects file:\n%s", b)
	}
	if code, _, errOut := tohost(t, "import", "--data-dir", data, "--mode", "replace", in); code == 0 || !strings.Contains(errOut, "--yes") {
		t.Fatalf("replace without --yes: exit %d: %s", code, errOut)
	}

	for _, format := range []string{"csv", "nwauth", "ldif"} {
		file := filepath.Join(dir, "export."+format)
		if code, _, errOut := tohost(t, "export", "--data-dir", data, "--format", format, file); code != 0 {
			t.Fatalf("export %s: %s", format, errOut)
		}
		copyDir := filepath.Join(dir, "copy-"+format)
		if code, out, errOut := tohost(t, "import", "--data-dir", copyDir, file); code != 0 || !strings.Contains(out, "imported 2") {
			t.Fatalf("import of the %s export: %s %s", format, out, errOut)
		}
		again := filepath.Join(dir, "again."+format)
		tohost(t, "export", "--data-dir", copyDir, "--format", format, again)
		a, _ := os.ReadFile(file)
		b, _ := os.ReadFile(again)
		if !bytes.Equal(a, b) {
			t.Fatalf("%s round trip differs:\n%s\n---\n%s", format, a, b)
		}
	}

	d := startDirectory(t, data)
	c := dial(t, d.addr)
	c.expect("lookup bob@example.com", `+OK bob@example.com config 0 tohost="backend1" quota="100"`)
	c.expect("check BOB@example.com s3cret", `+OK BOB@example.com config 0 tohost="backend1" quota="100"`)
	c.expect("lookup carol@example.com", "-ERR carol@example.com does not exist")

	// The embedded store belongs to the running directory.
	if code, _, errOut := tohost(t, "import", "--data-dir", data, in); code == 0 || !strings.Contains(errOut, "in use") {
		t.Fatalf("import beside a running directory: exit %d: %s", code, errOut)
	}
}

// TestImportInvalidatesCaches: two directory nodes on Postgres and Redis
// have users (and a miss) in their caches with hour-long TTLs; an import
// through the same Postgres and Redis is then served by both: the caches
// were invalidated, no TTL ran out.
func TestImportInvalidatesCaches(t *testing.T) {
	pg := testservices.Postgres(t)
	redisAddr, prefix := testservices.Redis(t)
	shared := []string{"--postgres", pg, "--redis", "redis://" + redisAddr, "--redis-prefix", prefix,
		"--cache-ttl", "1h", "--redis-ttl", "1h", "--negative-ttl", "1h"}
	a := dial(t, startDirectory(t, t.TempDir(), shared...).addr)
	b := dial(t, startDirectory(t, t.TempDir(), shared...).addr)
	a.expect("set u@x pw tohost=backend1", "+OK u@x added to database")
	for _, c := range []*conn{a, b} {
		c.eventually("lookup u@x", `+OK u@x config 0 tohost="backend1"`)
		c.expect("lookup u@x", `+OK u@x config 0 tohost="backend1"`) // now from the caches
		c.expect("lookup new@x", "-ERR new@x does not exist")        // a cached miss
	}
	in := writeFile(t, t.TempDir(), "nwauth.txt", "u@x:{SSHA}x:tohost=\"backend2\"\nnew@x:{SSHA}y:tohost=\"backend3\"\n")
	code, out, errOut := tohost(t, append([]string{"import"}, append(shared[:6], in)...)...)
	if code != 0 {
		t.Fatalf("import: %s %s", out, errOut)
	}
	for _, c := range []*conn{a, b} {
		c.eventually("lookup u@x", `+OK u@x config 0 tohost="backend2"`)
		c.eventually("lookup new@x", `+OK new@x config 0 tohost="backend3"`)
	}
}

// TestImportInterruptAndRerun: SIGINT in the middle of an import leaves
// whole batches and a non-zero exit; running it again completes it. The
// import reads a pipe: the test sends the first batches, waits until the
// progress shows them loaded, interrupts, waits for the import to say it
// was interrupted, and only then sends the rest, which must not be loaded.
func TestImportInterruptAndRerun(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	const users, batch, before = 200_000, 5000, 3
	var b strings.Builder
	b.WriteString("user,password_hash,tohost\n")
	for i := range users {
		fmt.Fprintf(&b, "user%06d@example.com,{SSHA}x%d,backend%d\n", i, i, i%4)
	}
	full := b.String()
	// The header, the records of the first batches, and a few more.
	split := indexNth(full, '\n', 1+before*batch+10) + 1

	cmd := exec.Command(binary, "import", "--data-dir", data, "--batch", fmt.Sprint(batch),
		"--format", "csv", "--progress", "bar", "-")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderrPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stderr := watch(stderrPipe)
	exited := make(chan struct{}) // closed once waitErr is set
	var waitErr error
	go func() { <-stderr.done; waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
	})
	go io.WriteString(stdin, full[:split]) // the pipe stays open: more is to come

	// The progress bar says how many users the store took: "15,000 users".
	loadedUsers := regexp.MustCompile(`([0-9,]+) users,`)
	if !stderr.wait(func(s string) bool {
		for _, m := range loadedUsers.FindAllStringSubmatch(s, -1) {
			if k, _ := strconv.Atoi(strings.ReplaceAll(m[1], ",", "")); k >= before*batch {
				return true
			}
		}
		return false
	}) {
		t.Fatalf("the progress never showed %d users loaded:\n%s%s", before*batch, stdout.String(), stderr)
	}
	cmd.Process.Signal(syscall.SIGINT)
	if !stderr.wait(func(s string) bool { return strings.Contains(s, "interrupted") }) {
		t.Fatalf("the import never said it was interrupted:\n%s", stderr)
	}
	// The rest of the input never comes (the pipe stays open, quiet):
	// the import must end anyway, with what it has loaded.
	select {
	case <-exited:
		err = waitErr
	case <-time.After(5 * hangGuard):
		t.Fatalf("the import did not end after SIGINT while its input was quiet:\n%s", stderr)
	}
	n := countUsers(t, data)
	t.Logf("interrupted after %d users: %v\n%s%s", n, err, stdout.String(), stderr)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() == 0 {
		t.Fatalf("interrupted import: %v, want a non-zero exit", err)
	}
	if n < before*batch || n >= users || n%batch != 0 {
		t.Fatalf("%d users: want whole batches of %d, the %d loaded before the interrupt and not all", n, batch, before)
	}
	if !strings.Contains(stdout.String(), fmt.Sprintf("imported %s", group(n))) {
		t.Fatalf("summary does not say %d users were imported: %s%s", n, stdout.String(), stderr)
	}
	in := writeFile(t, dir, "users.csv", full)
	code, out, errOut := tohost(t, "import", "--data-dir", data, "--batch", fmt.Sprint(batch), in)
	if code != 0 || countUsers(t, data) != users {
		t.Fatalf("rerun: exit %d\n%s%s", code, out, errOut)
	}
}

// watched collects a process's output and lets a test wait for it to say
// something.
type watched struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // closed and replaced on every write
	done    chan struct{} // closed at the end of the output
}

func watch(r io.Reader) *watched {
	w := &watched{changed: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		b := make([]byte, 4096)
		for {
			n, err := r.Read(b)
			w.mu.Lock()
			w.buf.Write(b[:n])
			close(w.changed)
			w.changed = make(chan struct{})
			w.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return w
}

func (w *watched) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// wait returns true once cond holds on the output so far; false when the
// output ended without it, or the hang guard ran out.
func (w *watched) wait(cond func(string) bool) bool {
	guard := time.NewTimer(5 * hangGuard)
	defer guard.Stop()
	for {
		w.mu.Lock()
		ok, changed := cond(w.buf.String()), w.changed
		w.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-changed:
		case <-w.done:
			return cond(w.String())
		case <-guard.C:
			return false
		}
	}
}

// indexNth returns the index of the nth c in s (n from 1), or -1.
func indexNth(s string, c byte, n int) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			if n--; n == 0 {
				return i
			}
		}
	}
	return -1
}

func countUsers(t *testing.T, dataDir string) int {
	t.Helper()
	s, err := bolt.Open(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	n, err := s.Count(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return int(n)
}

func group(n int) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
