package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/tohost/tohost/directory/backup"
	"github.com/tohost/tohost/directory/importer"
	"github.com/tohost/tohost/directory/store/bolt"
)

func init() { root.AddCommand(newBackupCmd()) }

func newBackupCmd() *cobra.Command {
	var from string
	cmd := &cobra.Command{
		Use:   "backup [flags] FILE",
		Short: "Copy a running directory's embedded store to FILE, without stopping it",
		Long: `backup asks a running directory (its admin HTTP listener, --http-addr) for
a copy of its embedded store, taken in one read transaction while it goes
on answering and writing: the copy holds every write acknowledged before
the copy began. The directory answers only clients in its --admin-allow
networks.

FILE is written under a temporary name beside it, synced, checked (it
opens as a store, its pages are sound, every user decodes, and the count
is the one the directory sent) and only then renamed to FILE.

To restore: stop the directory, copy FILE to tohost.db in its --data-dir,
start it. A directory on PostgreSQL has no such copy: use pg_dump, or
tohost export --from.`,
		Example: `  tohost backup /var/backups/tohost-$(date +%F).db
  tohost backup --from http://10.0.0.5:4080 tohost.db`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBackup(cmd.Context(), from, args[0], cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVar(&from, "from", "http://127.0.0.1:4080", "URL of the running directory's admin HTTP listener (its --http-addr)")
	return cmd
}

func runBackup(ctx context.Context, from, file string, stderr io.Writer) error {
	start := time.Now()
	var users int64
	_, n, err := fetchTo(ctx, from, "/backup", nil, file, func(resp *http.Response, tmp string) error {
		want, err := strconv.ParseInt(resp.Header.Get(backup.HeaderUsers), 10, 64)
		if err != nil {
			return fmt.Errorf("the directory sent no user count (%s): is --from a tohost directory?", backup.HeaderUsers)
		}
		if users, err = bolt.Verify(tmp); err != nil {
			return fmt.Errorf("the copy does not check: %w", err)
		}
		if users != want {
			return fmt.Errorf("the copy holds %d users, the directory said %d", users, want)
		}
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "backup from %s to %s: %s users, %s bytes in %.2f s\n",
		from, file, importer.Group(users), importer.Group(n), time.Since(start).Seconds())
	return nil
}
