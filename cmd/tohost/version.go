package main

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

func init() {
	root.Version = versionLine()
	root.SetVersionTemplate("{{.Version}}\n")
	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print the version, the commit it was built from and the Go version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), versionLine())
			return nil
		},
	})
}

// versionLine is "tohost VERSION (commit REV[, modified], built TIME, goX)":
// the version from -ldflags "-X main.version=...", the rest from what the
// Go toolchain records of the checkout it built (go build in a git
// checkout records the commit; `go run` and builds outside one do not).
func versionLine() string {
	s := "tohost " + version
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return s
	}
	var rev, at, modified string
	for _, kv := range info.Settings {
		switch kv.Key {
		case "vcs.revision":
			rev = kv.Value
		case "vcs.time":
			at = kv.Value
		case "vcs.modified":
			if kv.Value == "true" {
				modified = ", modified"
			}
		}
	}
	if rev == "" {
		return fmt.Sprintf("%s (commit unknown, %s)", s, info.GoVersion)
	}
	return fmt.Sprintf("%s (commit %.12s of %s%s, %s)", s, rev, at, modified, info.GoVersion)
}
