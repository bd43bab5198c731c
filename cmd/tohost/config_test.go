package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

// configCmd is a command tohost test with a few flags, under a parent, so
// its config section is [test].
func configCmd() (*cobra.Command, map[string]*string) {
	parent := &cobra.Command{Use: "tohost"}
	cmd := &cobra.Command{Use: "test", Run: func(*cobra.Command, []string) {}}
	parent.AddCommand(cmd)
	vals := map[string]*string{}
	for _, n := range []string{"one", "two", "three", "four"} {
		vals[n] = cmd.Flags().String(n, "default-"+n, "")
	}
	cmd.Flags().Duration("wait", time.Second, "")
	cmd.Flags().StringSlice("nets", nil, "")
	return cmd, vals
}

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tohost.toml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConfigPrecedence: a flag on the command line beats its TOHOST_*
// variable, which beats the config file, which beats the default.
func TestConfigPrecedence(t *testing.T) {
	cmd, vals := configCmd()
	path := writeConfig(t, `
[test]
one = "file"
two = "file"
three = "file"
wait = "90s"
nets = ["10.0.0.0/8", "192.0.2.0/24"]

[other]
unknown-here = 1
`)
	t.Setenv("TOHOST_ONE", "env")
	t.Setenv("TOHOST_TWO", "env")
	if err := cmd.ParseFlags([]string{"--one", "cli"}); err != nil {
		t.Fatal(err)
	}
	if err := bindEnv(cmd); err != nil {
		t.Fatal(err)
	}
	if err := loadConfig(cmd, path); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"one": "cli", "two": "env", "three": "file", "four": "default-four"}
	for n, w := range want {
		if *vals[n] != w {
			t.Errorf("--%s = %q, want %q", n, *vals[n], w)
		}
	}
	if d, _ := cmd.Flags().GetDuration("wait"); d != 90*time.Second {
		t.Errorf("--wait = %v", d)
	}
	if n, _ := cmd.Flags().GetStringSlice("nets"); strings.Join(n, " ") != "10.0.0.0/8 192.0.2.0/24" {
		t.Errorf("--nets = %q", n)
	}
}

// TestConfigErrors: a key that is no flag of the command, a duration
// written as a number, a list for a single value and a broken file are
// refused, naming the file, the section and the key.
func TestConfigErrors(t *testing.T) {
	for text, want := range map[string]string{
		"[test]\ntypo-flag = \"x\"\n": "[test] typo-flag: not a flag of tohost test",
		"[test]\nwait = 30\n":         "[test] wait: write a duration as a string",
		"[test]\none = [\"a\"]\n":     "[test] one: a list, but the flag takes one string",
		"[test]\nwait = \"soon\"\n":   "[test] wait: ",
		"[test\n":                     "tohost.toml",
	} {
		cmd, _ := configCmd()
		path := writeConfig(t, text)
		err := loadConfig(cmd, path)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), path) {
			t.Errorf("%q: %v, want %q and the file's name", text, err, want)
		}
	}
}

// TestConfigReachesSubcommands: --config works on a real subcommand
// (through the root's pre-run), here export's --data-dir.
func TestConfigReachesSubcommands(t *testing.T) {
	typo := filepath.Join(t.TempDir(), "from-config")
	path := writeConfig(t, "[export]\ndata-dir = \""+typo+"\"\n")
	root.SetArgs([]string{"export", "--config", path})
	defer func() { root.SetArgs(nil); configPath = "" }()
	err := root.Execute()
	if err == nil || !strings.Contains(err.Error(), "no directory store in "+typo) {
		t.Fatalf("export with [export] data-dir in the config: %v", err)
	}
}
