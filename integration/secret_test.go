package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSecretFile: a directory and its admin CLI read the same secret file
// (written with a trailing newline, as echo does) and agree; without it
// the CLI is refused.
func TestSecretFile(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("s3cr3t-value\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDirectory(t, t.TempDir(), "--secret-file", secret)
	out, err := exec.Command(binary, "user", "--directory", d.addr, "--secret-file", secret,
		"set", "a@x", "pw", "tohost=b1").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "+OK a@x added to database") {
		t.Fatalf("user set with the secret: %v\n%s", err, out)
	}
	out, err = exec.Command(binary, "user", "--directory", d.addr, "--timeout", "2s", "lookup", "a@x").CombinedOutput()
	if err == nil {
		t.Fatalf("lookup without the secret succeeded:\n%s", out)
	}
	for _, mode := range []string{"set", "lookup"} {
		out, err = exec.Command(binary, "bench", "--addr", d.addr, "--secret", "s3cr3t-value", "--mode", mode,
			"--users", "50", "-c", "2", "-n", "50", "-d", "0").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "errors=0") {
			t.Fatalf("bench %s with the secret: %v\n%s", mode, err, out)
		}
	}
	out, err = exec.Command(binary, "bench", "--addr", d.addr, "--secret", "wrong", "--mode", "lookup",
		"--users", "50", "-c", "1", "-n", "5", "-d", "0", "--timeout", "2s").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "auth refused") {
		t.Fatalf("bench with a wrong secret: %v\n%s", err, out)
	}
	c := dial(t, d.addr)
	c.expect("lookup a@x", "-ERR authentication required")
	c.expect("auth s3cr3t-value", "+OK")
	c.expect("lookup a@x", `+OK a@x config 0 tohost="b1"`)
}
