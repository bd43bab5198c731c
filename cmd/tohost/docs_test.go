package main

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// readmeCode returns the inline code spans of the repository's README.md
// (fenced blocks left out: an example is not documentation of a flag).
func readmeCode(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	fenced := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "```") {
			fenced = !fenced
			continue
		}
		if !fenced {
			text.WriteString(line)
			text.WriteByte('\n')
		}
	}
	var spans []string
	for _, m := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(text.String(), -1) {
		spans = append(spans, m[1])
	}
	return spans
}

// readmeFlags returns the flags the README names in inline code: every
// --name in a span (`--tls-cert/--tls-key` names both), but not a
// wildcard (`--tls*` names no --tls).
func readmeFlags(spans []string) map[string]bool {
	flag := regexp.MustCompile(`--[a-z0-9][a-z0-9-]*`)
	named := map[string]bool{}
	for _, s := range spans {
		for _, loc := range flag.FindAllStringIndex(s, -1) {
			if loc[1] < len(s) && s[loc[1]] == '*' {
				continue
			}
			named[s[loc[0]:loc[1]]] = true
		}
	}
	return named
}

// walkCommands calls fn for cmd and every command below it, cobra's own
// help and completion commands aside.
func walkCommands(cmd *cobra.Command, fn func(*cobra.Command)) {
	fn(cmd)
	for _, c := range cmd.Commands() {
		if c.Name() == "help" || c.Name() == "completion" {
			continue
		}
		walkCommands(c, fn)
	}
}

// TestREADMEFlags: every flag of every subcommand is documented in
// README.md, named as `--name` in inline code: the local flags of each
// command, and persistent flags once, on the command that defines them.
// Hidden and deprecated flags (kept only so old settings still start) and
// cobra's --help are left out.
func TestREADMEFlags(t *testing.T) {
	named := readmeFlags(readmeCode(t))
	root.InitDefaultVersionFlag() // --version, as cobra adds it when it runs
	seen := 0
	walkCommands(root, func(cmd *cobra.Command) {
		check := func(f *pflag.Flag) {
			if f.Hidden || f.Deprecated != "" || f.Name == "help" {
				return
			}
			seen++
			if !named["--"+f.Name] {
				t.Errorf("%s: flag --%s is not documented in README.md (no `--%s` there)", cmd.CommandPath(), f.Name, f.Name)
			}
		}
		cmd.LocalNonPersistentFlags().VisitAll(check)
		cmd.PersistentFlags().VisitAll(check)
	})
	if seen < 100 {
		t.Fatalf("only %d flags found: the walk missed commands", seen)
	}
}

// TestREADMECommands: every subcommand is named in README.md as
// `tohost <path>` (in a code span, possibly with more after it).
func TestREADMECommands(t *testing.T) {
	spans := readmeCode(t)
	walkCommands(root, func(cmd *cobra.Command) {
		if cmd == root {
			return
		}
		path := cmd.CommandPath()
		for _, s := range spans {
			if s == path || strings.HasPrefix(s, path+" ") {
				return
			}
		}
		t.Errorf("%s is not named in README.md (no `%s` there)", path, path)
	})
}

// TestBenchHelpModes: every mode tohost bench accepts is described in its
// long help, on a line of its own ("  <mode>  what it does"), named in
// --mode's help and documented in README.md as `<mode>`; and the help
// describes no mode it does not accept.
func TestBenchHelpModes(t *testing.T) {
	cmd := newBenchCmd()
	usage := cmd.Flags().Lookup("mode").Usage
	inREADME := map[string]bool{}
	for _, s := range readmeCode(t) {
		inREADME[s] = true
	}
	accepted := map[string]bool{}
	for _, m := range benchModes {
		accepted[m.name] = true
		if !regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(m.name) + `  +\S`).MatchString(cmd.Long) {
			t.Errorf("bench mode %s is not described in tohost bench --help (a line \"  %s  what it does\")", m.name, m.name)
		}
		if !regexp.MustCompile(`(^|[ ,])` + regexp.QuoteMeta(m.name) + `([ ,]|$)`).MatchString(usage) {
			t.Errorf("bench mode %s is not named in --mode's help %q", m.name, usage)
		}
		if !inREADME[m.name] {
			t.Errorf("bench mode %s is not documented in README.md (no `%s` there)", m.name, m.name)
		}
	}
	_, modes, ok := strings.Cut(cmd.Long, "\nModes (--mode):\n")
	if !ok {
		t.Fatal("tohost bench --help has no \"Modes (--mode):\" list")
	}
	for _, m := range regexp.MustCompile(`(?m)^  ([a-z0-9-]+)  +\S`).FindAllStringSubmatch(modes, -1) {
		if !accepted[m[1]] {
			t.Errorf("tohost bench --help describes mode %s, which --mode does not accept", m[1])
		}
	}
	if !accepted[cmd.Flags().Lookup("mode").DefValue] {
		t.Errorf("--mode's default %q is not a mode", cmd.Flags().Lookup("mode").DefValue)
	}
	cmd.SetArgs([]string{"--mode", "lookups"})
	cmd.SetOut(new(strings.Builder))
	cmd.SetErr(new(strings.Builder))
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "--mode") || !strings.Contains(err.Error(), "ldap-bind") {
		t.Errorf("an unknown mode: %v, want an error naming --mode and listing the modes", err)
	}
}
