package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/tohost/tohost/directory/importer"
)

type exportFlags struct {
	store    storeFlags
	format   string
	ldifBase string
	from     string
}

func init() { root.AddCommand(newExportCmd()) }

func newExportCmd() *cobra.Command {
	var f exportFlags
	cmd := &cobra.Command{
		Use:   "export [flags] [FILE|-]",
		Short: "Write every user of the directory to a CSV, NWAuth or LDIF file",
		Long: `export writes every user, in name order, so that importing the file into
an empty directory gives the same users, passwords and fields, field
order included. The format is --format, else the file name's extension
(.csv, .ldif, nwauth.txt), else csv. Without FILE (or with -) it writes to
standard output; a FILE is written under a temporary name and renamed
when complete.

The embedded store is locked while a directory runs on it: export it
from the running directory with --from (its admin HTTP listener; the
directory answers only clients in its --admin-allow networks). Users
changed during such an export may be written as they were before or
after the change; tohost backup is the copy of one moment.`,
		Example: `  tohost export --data-dir /var/lib/tohost users.csv
  tohost export --from http://127.0.0.1:4080 users.csv
  tohost export --postgres postgres://tohost@db/tohost --format ldif > users.ldif`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := "-"
			if len(args) == 1 {
				path = args[0]
			}
			return runExport(cmd.Context(), f, path, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	f.store.registerBulk(fl, true)
	fl.StringVar(&f.format, "format", "", "csv, nwauth or ldif (default: from FILE's name, else csv)")
	fl.StringVar(&f.ldifBase, "ldif-base", importer.DefaultLDIFBase, "DN under which LDIF entries are written")
	fl.StringVar(&f.from, "from", "", "URL of a running directory's admin HTTP listener (its --http-addr, such as http://127.0.0.1:4080) to export from, instead of opening the store")
	return cmd
}

func runExport(ctx context.Context, f exportFlags, path string, stdout, stderr io.Writer) error {
	format := importer.CSV
	switch {
	case f.format != "":
		var err error
		if format, err = importer.ParseFormat(f.format); err != nil {
			return fmt.Errorf("--format: %w", err)
		}
	case path != "-":
		if guess := importer.FormatOfName(path); guess != "" {
			format = guess
		}
	}
	if f.from != "" {
		if f.store.postgres != "" {
			return errors.New("--from and --postgres: choose one")
		}
		return exportFrom(ctx, f, format, path, stdout, stderr)
	}
	store, err := f.store.openBulk(ctx, true)
	if err != nil {
		return err
	}
	defer store.Close()

	w := stdout
	var tmp *os.File
	if path != "-" {
		tmp, err = os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
		if err != nil {
			return err
		}
		defer func() {
			if tmp != nil {
				tmp.Close()
				os.Remove(tmp.Name())
			}
		}()
		w = tmp
	}
	start := time.Now()
	st, err := importer.Export(ctx, store, w, format, importer.ExportOptions{
		LDIFBase: f.ldifBase,
		Warn:     func(s string) { fmt.Fprintln(stderr, "export:", s) },
	})
	if err != nil {
		return err
	}
	if tmp != nil {
		if err := tmp.Sync(); err != nil {
			return err
		}
		if err := tmp.Close(); err != nil {
			return err
		}
		if err := os.Rename(tmp.Name(), path); err != nil {
			return err
		}
		tmp = nil
	}
	where := path
	if path == "-" {
		where = "standard output"
	}
	fmt.Fprintf(stderr, "export (%s) from %s to %s: %s users in %.2f s",
		format, store.kind, where, importer.Group(st.Users), time.Since(start).Seconds())
	if st.Dropped > 0 {
		fmt.Fprintf(stderr, "; %s users or fields left out (see above)", importer.Group(st.Dropped))
	}
	fmt.Fprintln(stderr)
	return nil
}
