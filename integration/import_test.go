package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
// through the same Postgres and Redis is served by both at once.
func TestImportInvalidatesCaches(t *testing.T) {
	pg := testservices.Postgres(t)
	redisAddr, prefix := testservices.Redis(t)
	shared := []string{"--postgres", pg, "--redis", "redis://" + redisAddr, "--redis-prefix", prefix,
		"--cache-ttl", "1h", "--redis-ttl", "1h", "--negative-ttl", "1h"}
	a := dial(t, startDirectory(t, t.TempDir(), shared...).addr)
	b := dial(t, startDirectory(t, t.TempDir(), shared...).addr)
	a.expect("set u@x pw tohost=backend1", "+OK u@x added to database")
	for _, c := range []*conn{a, b} {
		c.eventually(time.Second, "lookup u@x", `+OK u@x config 0 tohost="backend1"`)
		c.expect("lookup u@x", `+OK u@x config 0 tohost="backend1"`) // now from the caches
		c.expect("lookup new@x", "-ERR new@x does not exist")        // a cached miss
	}
	in := writeFile(t, t.TempDir(), "nwauth.txt", "u@x:{SSHA}x:tohost=\"backend2\"\nnew@x:{SSHA}y:tohost=\"backend3\"\n")
	code, out, errOut := tohost(t, append([]string{"import"}, append(shared[:6], in)...)...)
	if code != 0 {
		t.Fatalf("import: %s %s", out, errOut)
	}
	for _, c := range []*conn{a, b} {
		took := c.eventually(time.Second, "lookup u@x", `+OK u@x config 0 tohost="backend2"`)
		c.eventually(time.Second, "lookup new@x", `+OK new@x config 0 tohost="backend3"`)
		t.Logf("import seen after %v", took)
	}
}

// TestImportInterruptAndRerun: SIGINT in the middle of an import leaves
// whole batches and a non-zero exit; running it again completes it.
func TestImportInterruptAndRerun(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	const users, batch = 200_000, 5000
	var b strings.Builder
	b.WriteString("user,password_hash,tohost\n")
	for i := range users {
		fmt.Fprintf(&b, "user%06d@example.com,{SSHA}x%d,backend%d\n", i, i, i%4)
	}
	in := writeFile(t, dir, "users.csv", b.String())
	args := []string{"import", "--data-dir", data, "--batch", fmt.Sprint(batch), in}

	cmd := exec.Command(binary, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(700 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	n := countUsers(t, data)
	t.Logf("interrupted after %d users: %v\n%s%s", n, err, stdout.String(), stderr.String())
	if err == nil && n != users {
		t.Fatalf("exit 0 but %d users", n)
	}
	if n%batch != 0 {
		t.Fatalf("%d users: not whole batches of %d", n, batch)
	}
	if err != nil && (!strings.Contains(stdout.String(), fmt.Sprintf("imported %s", group(n))) ||
		!strings.Contains(stderr.String(), "interrupted")) {
		t.Fatalf("summary does not say %d users were imported: %s%s", n, stdout.String(), stderr.String())
	}
	code, out, errOut := tohost(t, args...)
	if code != 0 || countUsers(t, data) != users {
		t.Fatalf("rerun: exit %d\n%s%s", code, out, errOut)
	}
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
