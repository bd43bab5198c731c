package main

import (
	"context"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

func TestParsePrefixes(t *testing.T) {
	got, err := parsePrefixes("--allow", []string{"10.1.2.3/8", " 192.0.2.7 ", "::1", ""})
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.7/32"), netip.MustParsePrefix("::1/128")}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("prefix %d = %v, want %v", i, got[i], want[i])
		}
	}
	for _, bad := range []string{"10.0.0.0/33", "example.com", "10.0.0"} {
		_, err := parsePrefixes("--allow", []string{bad})
		if err == nil || !strings.Contains(err.Error(), "--allow") || !strings.Contains(err.Error(), bad) {
			t.Errorf("%q: err = %v, want one naming the flag and the value", bad, err)
		}
	}
}

func TestEnvironmentFlags(t *testing.T) {
	cmd := &cobra.Command{Use: "x"}
	var n int
	var s string
	cmd.Flags().IntVar(&n, "max-conns", 1, "")
	cmd.Flags().StringVar(&s, "data-dir", "d", "")
	t.Setenv("TOHOST_DATA_DIR", "/var/lib/tohost")
	t.Setenv("TOHOST_MAX_CONNS", "12")
	if err := bindEnv(cmd); err != nil || n != 12 || s != "/var/lib/tohost" {
		t.Fatalf("bindEnv: %v, n=%d s=%q", err, n, s)
	}
	t.Setenv("TOHOST_MAX_CONNS", "many")
	n = 1
	err := bindEnv(cmd)
	if err == nil || !strings.Contains(err.Error(), "TOHOST_MAX_CONNS") {
		t.Fatalf("bad environment value: %v, want an error naming the variable", err)
	}
	// A flag given on the command line wins over the environment.
	cmd.Flags().Set("max-conns", "3")
	t.Setenv("TOHOST_MAX_CONNS", "12")
	if err := bindEnv(cmd); err != nil || n != 3 {
		t.Fatalf("command line overridden: %v n=%d", err, n)
	}
}

func TestTCPAuthConfigErrors(t *testing.T) {
	dir := t.TempDir()
	f := directoryFlags{adminAllow: []string{"127.0.0.0/8"}}
	f.listen = listenFlags{allow: []string{"127.0.0.0/8"}, maxConns: 1, idleTimeout: time.Minute, shutdownTimeout: time.Second}
	f.listen.tlsCert = filepath.Join(dir, "cert.pem")
	if _, err := f.listen.tlsConfig(); err == nil || !strings.Contains(err.Error(), "go together") {
		t.Errorf("cert without key: %v", err)
	}
	f.listen.tlsKey = filepath.Join(dir, "key.pem")
	if _, err := f.listen.tlsConfig(); err == nil || !strings.Contains(err.Error(), "--tls-cert") {
		t.Errorf("missing cert files: %v", err)
	}
	f.secretFile = filepath.Join(dir, "none")
	if _, err := f.tcpauthConfig(nil); err == nil || !strings.Contains(err.Error(), "--secret-file") {
		t.Errorf("missing secret file: %v", err)
	}
	os.WriteFile(f.secretFile, []byte("s3cret \r\n"), 0o600)
	cfg, err := f.tcpauthConfig(nil)
	if err != nil || cfg.Secret != "s3cret " {
		t.Errorf("secret file: %q %v (only the line ending is trimmed)", cfg.Secret, err)
	}
}

// TestOutOfRangeFlags: a negative or zero size, count or duration where
// it means nothing is refused before anything starts, naming the flag
// (--max-conns -1 used to panic inside the TCPAuth server).
func TestOutOfRangeFlags(t *testing.T) {
	for _, tc := range []struct {
		cmd  func() *cobra.Command
		args []string
		flag string
	}{
		{newDirectoryCmd, []string{"--max-conns", "-1"}, "--max-conns"},
		{newDirectoryCmd, []string{"--max-conns", "0"}, "--max-conns"},
		{newDirectoryCmd, []string{"--idle-timeout", "-1s"}, "--idle-timeout"},
		{newDirectoryCmd, []string{"--shutdown-timeout", "0s"}, "--shutdown-timeout"},
		{newDirectoryCmd, []string{"--verify-cache-size", "-2"}, "--verify-cache-size"},
		{newDirectoryCmd, []string{"--cache-size", "0"}, "--cache-size"},
		{newDirectoryCmd, []string{"--negative-ttl", "-1s"}, "--negative-ttl"},
		{newDirectoryCmd, []string{"--postgres-max-conns", "0"}, "--postgres-max-conns"},
		{newImportCmd, []string{"--batch", "-5", "x.csv"}, "--batch"},
		{newImportCmd, []string{"--workers", "-1", "x.csv"}, "--workers"},
		{newImportCmd, []string{"--workers", "5000000000000000000", "x.csv"}, "--workers"},
		{newImportCmd, []string{"--batch", "100000000000000", "x.csv"}, "--batch"},
		{newImportCmd, []string{"--redis-ttl", "-1s", "x.csv"}, "--redis-ttl"},
		{newExportCmd, []string{"--postgres-timeout", "0s"}, "--postgres-timeout"},
		{newUserCmd, []string{"lookup", "x", "--timeout", "0s"}, "--timeout"},
	} {
		dir := t.TempDir()
		args := tc.args
		if tc.flag != "--timeout" {
			args = append(args, "--data-dir", filepath.Join(dir, "data"))
		}
		cmd := tc.cmd()
		cmd.SetArgs(args)
		cmd.SetOut(io.Discard)
		cmd.SetErr(io.Discard)
		cmd.SilenceUsage = true
		err := cmd.ExecuteContext(context.Background())
		if err == nil || !strings.Contains(err.Error(), tc.flag+":") || !strings.Contains(err.Error(), "out of range") {
			t.Errorf("%v: err = %v, want one naming %s", tc.args, err, tc.flag)
		}
		if _, err := os.Stat(filepath.Join(dir, "data")); err == nil {
			t.Errorf("%v: the store was opened before the flags were checked", tc.args)
		}
	}
}

// TestOneLDIFBase: an LDIF export names users as the directory's LDAP
// serves them by default, so the file and the server agree.
func TestOneLDIFBase(t *testing.T) {
	base := newDirectoryCmd().Flags().Lookup("ldap-base").DefValue
	export := newExportCmd().Flags().Lookup("ldif-base").DefValue
	if export != "ou=users,"+base {
		t.Fatalf("export writes under %q, the directory serves users under ou=users,%s", export, base)
	}
}

// TestVersion: `tohost version` and `tohost --version` print the same
// line, starting with the version.
func TestVersion(t *testing.T) {
	var outs []string
	for _, args := range [][]string{{"version"}, {"--version"}} {
		var b strings.Builder
		root.SetOut(&b)
		root.SetArgs(args)
		if err := root.Execute(); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		outs = append(outs, b.String())
	}
	root.SetOut(nil)
	root.SetArgs(nil)
	if !strings.HasPrefix(outs[0], "tohost "+version+" (") || outs[0] != outs[1] {
		t.Fatalf("version %q, --version %q", outs[0], outs[1])
	}
}
