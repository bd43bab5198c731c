// Command tohost is the user directory for mail clusters, with its proxy,
// backend and admin tools. Each daemon or tool is a subcommand; this package
// only parses flags and wires packages together.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

// root is the top-level command; each subcommand file registers itself in init.
var root = &cobra.Command{
	Use:           "tohost",
	Short:         "User directory, proxy and backend for mail clusters",
	SilenceUsage:  true,
	SilenceErrors: true,
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "tohost:", err)
		os.Exit(1)
	}
}
