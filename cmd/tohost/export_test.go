package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExportNeedsAStore: an export from a --data-dir that holds no store
// fails, naming the flag, and creates nothing there.
func TestExportNeedsAStore(t *testing.T) {
	cmd := newExportCmd()
	typo := filepath.Join(t.TempDir(), "typo")
	var out, errb bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SilenceUsage = true
	cmd.SetArgs([]string{"--data-dir", typo})
	err := cmd.ExecuteContext(context.Background())
	if err == nil || !strings.Contains(err.Error(), "no directory store in "+typo) || !strings.Contains(err.Error(), "--data-dir") {
		t.Fatalf("export from %s: %v", typo, err)
	}
	if _, err := os.Stat(typo); !os.IsNotExist(err) {
		t.Fatalf("the export created %s: %v", typo, err)
	}
	if out.Len() != 0 {
		t.Fatalf("export wrote %q", out.String())
	}
}

// TestRejectsNamedForTheInput: a --rejects file named for another format
// than the input's is refused before anything is imported.
func TestRejectsNamedForTheInput(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "nwauth.txt")
	if err := os.WriteFile(in, []byte("a@x:{SSHA}x:\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		rejects string
		ok      bool
	}{{"rejected.csv", false}, {"rejected.ldif", false}, {"rejected.nwauth", true}, {"rejected.txt", true}} {
		cmd := newImportCmd()
		cmd.SilenceUsage = true
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		data := filepath.Join(dir, "data-"+c.rejects)
		cmd.SetArgs([]string{"--data-dir", data, "--rejects", filepath.Join(dir, c.rejects), in})
		err := cmd.ExecuteContext(context.Background())
		if c.ok != (err == nil) {
			t.Fatalf("--rejects %s: %v", c.rejects, err)
		}
		if !c.ok {
			if !strings.Contains(err.Error(), "in nwauth") {
				t.Fatalf("--rejects %s: %v, want the input's format named", c.rejects, err)
			}
			if _, err := os.Stat(data); !os.IsNotExist(err) {
				t.Fatalf("--rejects %s: the import ran anyway", c.rejects)
			}
		}
	}
}
