package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tohost/tohost/directory"
	"github.com/tohost/tohost/directory/importer"
)

type importFlags struct {
	store      storeFlags
	format     string
	mode       string
	yes        bool
	rejects    string
	strict     bool
	hash       hashFlags
	ldifName   string
	batch      int
	workers    int
	progress   string
	invalidate time.Duration
}

func init() { root.AddCommand(newImportCmd()) }

func newImportCmd() *cobra.Command {
	var f importFlags
	cmd := &cobra.Command{
		Use:   "import [flags] FILE|-",
		Short: "Load users from a CSV, NWAuth (nwauth.txt) or LDIF file into the directory",
		Long: `import loads users in bulk into the configured store (--data-dir, or
--postgres with --redis as for directory), in large transactions.

Formats (--format, else guessed from the file name, then the content):
  csv     header row names the columns: user (required), password (cleartext)
          or password_hash ({SCHEME}...), and any other column is a field
          of that label (tohost among them). RFC 4180 quoting.
  nwauth  nwauth.txt / nwauth.add lines: user:hash:label="value" ...
          {SCHEME} hashes are kept, bare crypt strings stored as {CRYPT},
          cleartext hashed with --password-scheme.
  ldif    RFC 2849, as slapcat writes it: one user per entry with uid
          (or mail, see --ldif-name); userPassword is the hash, mailHost or
          tohost the tohost field, other attributes become fields. Entries
          that are not users (ou, dc, groups) are skipped and counted.

Modes: upsert (default) inserts new users and replaces existing ones;
insert leaves existing users alone and reports them; replace makes the
directory hold exactly the file's users (needs --yes).

Every rejected record is reported (line, user, reason) and, with
--rejects, written to a file in the input's format to fix and import
again. The exit status is non-zero when anything was rejected. --strict
checks the whole file first and imports nothing if any record is bad.
An interrupted import keeps its committed batches; running it again
gives the same directory. Afterwards every cache is invalidated.

The embedded store cannot be imported into while a directory runs on it.`,
		Example: `  tohost import --data-dir /var/lib/tohost users.csv
  tohost import --postgres postgres://tohost@db/tohost --redis redis://cache:6379/0 nwauth.txt
  slapcat -l - | tohost import --format ldif --mode replace --yes --rejects bad.ldif -`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runImport(cmd.Context(), f, args[0], cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	f.store.registerBulk(fl, false)
	fl.StringVar(&f.format, "format", "", "input format: csv, nwauth or ldif (default: from the file name or content)")
	fl.StringVar(&f.mode, "mode", "upsert", "upsert, insert or replace")
	fl.BoolVar(&f.yes, "yes", false, "confirm --mode replace, which deletes every user not in the file")
	fl.StringVar(&f.rejects, "rejects", "", "write rejected records to this file, in the input's format")
	fl.BoolVar(&f.strict, "strict", false, "check the whole file first; import nothing if any record is rejected")
	f.hash.register(fl, "scheme for cleartext passwords in the file: ARGON2ID, BLF-CRYPT, CRYPT, SSHA512, SSHA256, SSHA, ...")
	fl.StringVar(&f.ldifName, "ldif-name", "uid", "LDIF attribute that names a user: uid or mail (an entry without it uses the other)")
	fl.IntVar(&f.batch, "batch", 0, "records per transaction (default 20000 for postgres, 50000 for the embedded store)")
	fl.IntVar(&f.workers, "workers", 0, "parallel workers checking records and hashing passwords (default: CPUs)")
	fl.StringVar(&f.progress, "progress", "auto", "auto (a bar on a terminal), bar, lines or none")
	fl.DurationVar(&f.invalidate, "invalidate-every", time.Minute, "with --redis, also invalidate the caches this often during a long import (0: only at the end)")
	return cmd
}

func runImport(ctx context.Context, f importFlags, path string, stdout, stderr io.Writer) error {
	mode, err := directory.ParseBulkMode(f.mode)
	if err != nil {
		return fmt.Errorf("--mode: %w", err)
	}
	if mode == directory.BulkReplace && !f.yes {
		return errors.New("--mode replace deletes every user that is not in the file; add --yes to confirm")
	}
	hasher, err := f.hash.hasher()
	if err != nil {
		return err
	}
	var format importer.Format
	if f.format != "" {
		if format, err = importer.ParseFormat(f.format); err != nil {
			return fmt.Errorf("--format: %w", err)
		}
	}
	if err := errors.Join(f.store.check(), within("batch", f.batch, 0, 1_000_000), within("workers", f.workers, 0, 1024),
		atLeast("invalidate-every", f.invalidate, 0)); err != nil {
		return err
	}
	if f.ldifName != "uid" && f.ldifName != "mail" {
		return fmt.Errorf("--ldif-name: %q is neither uid nor mail", f.ldifName)
	}
	inputFormat := format
	if inputFormat == "" && path != "-" {
		inputFormat = importer.FormatOfName(path)
	}
	if err := rejectsFormat(f.rejects, inputFormat); err != nil {
		return err
	}
	if os.Getenv("GOGC") == "" {
		// The heap is a few batches, recycled: collecting it less often
		// leaves more CPU to parsing and to the database (≈5%).
		debug.SetGCPercent(400)
	}
	in, cleanup, err := importInput(path, f.strict)
	if err != nil {
		return err
	}
	defer cleanup()

	store, err := f.store.openBulk(ctx, false)
	if err != nil {
		return err
	}
	defer store.Close()

	batch := f.batch
	if batch <= 0 {
		batch = 20_000
		if f.store.postgres == "" {
			batch = 50_000
		}
	}
	opts := importer.Options{Format: format, Mode: mode, Scheme: hasher.Scheme, Argon2: hasher.Argon2, Strict: f.strict,
		NameAttr: f.ldifName, BatchSize: batch, Workers: f.workers}

	var rejects *os.File
	var rejectsBuf *bufio.Writer
	if f.rejects != "" {
		if rejects, err = os.Create(f.rejects); err != nil {
			return fmt.Errorf("--rejects: %w", err)
		}
		defer rejects.Close()
		rejectsBuf = bufio.NewWriter(rejects)
		opts.Rejects = rejectsBuf
	}

	out := importer.NewConsole(stderr, in, f.progress)
	opts.Report = out.Report
	opts.Progress = out.Progress

	// A second SIGINT/SIGTERM (the first one cancels ctx) also stops the
	// restoring of indexes after an interrupted import.
	cleanupCtx, cancelCleanup := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelCleanup()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		n := 0
		for range sigs {
			if n++; n == 2 {
				out.Note("interrupted again: stopping the clean-up; the next import finishes it")
				cancelCleanup()
				return
			}
		}
	}()
	go func() {
		<-ctx.Done()
		if ctx.Err() != nil && cleanupCtx.Err() == nil {
			out.Note("interrupted: committed batches stay; finishing up (interrupt again to stop that)")
		}
	}()
	opts.Cleanup = cleanupCtx

	stopInvalidating := periodicInvalidate(ctx, store, f.invalidate, out)
	stats, err := importer.Import(ctx, store, in, opts)
	stopInvalidating()
	out.Done()

	if rejectsBuf != nil {
		if ferr := rejectsBuf.Flush(); ferr != nil && err == nil {
			err = fmt.Errorf("--rejects: %w", ferr)
		}
	}
	// Whatever happened, users may have been written: no cache may keep
	// serving what was there before.
	if stats.Created+stats.Updated+stats.Duplicates+stats.Deleted > 0 {
		if store.invalidate != nil {
			ictx, cancel := context.WithTimeout(cleanupCtx, time.Minute)
			if ierr := store.invalidate(ictx); ierr != nil {
				out.Note("invalidating the caches failed: " + ierr.Error() +
					"; directory nodes serve cached users until --redis-ttl / --cache-ttl expire")
			}
			cancel()
		} else if f.store.postgres != "" {
			out.Note("no --redis: directory nodes without a shared cache may serve cached users until their --cache-ttl expires")
		}
	}
	fmt.Fprintln(stdout, importer.Summary(in.Name, store.kind, stats))
	if stats.Created+stats.Updated+stats.Duplicates+stats.Deleted > 0 {
		auditImport(stderr, in.Name, store.kind, mode, stats, err)
	}
	switch {
	case err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled):
		return errors.New("interrupted: the batches committed so far stay; run the same import again to complete it")
	case err != nil:
		return err
	case stats.Rejected > 0:
		return fmt.Errorf("%d record%s rejected", stats.Rejected, importer.Plural(stats.Rejected))
	}
	return nil
}

// importInput opens the file, or stdin for "-". A strict import reads its
// input twice, so stdin is first copied to a temporary file.
func importInput(path string, strict bool) (importer.Input, func(), error) {
	nop := func() {}
	if path != "-" {
		fi, err := os.Stat(path)
		if err != nil {
			return importer.Input{}, nop, err
		}
		if fi.IsDir() {
			return importer.Input{}, nop, fmt.Errorf("%s is a directory", path)
		}
		return importer.Input{Name: path, Size: fi.Size(),
			Open: func() (io.ReadCloser, error) { return os.Open(path) }}, nop, nil
	}
	if !strict {
		return importer.Input{Name: "-", Open: func() (io.ReadCloser, error) {
			return io.NopCloser(os.Stdin), nil
		}}, nop, nil
	}
	tmp, err := os.CreateTemp("", "tohost-import-*")
	if err != nil {
		return importer.Input{}, nop, err
	}
	cleanup := func() { tmp.Close(); os.Remove(tmp.Name()) }
	n, err := io.Copy(tmp, os.Stdin)
	if err != nil {
		cleanup()
		return importer.Input{}, nop, fmt.Errorf("reading stdin: %w", err)
	}
	name := tmp.Name()
	return importer.Input{Name: "-", Size: n, Open: func() (io.ReadCloser, error) { return os.Open(name) }}, cleanup, nil
}

// periodicInvalidate invalidates the caches every `every` while a long
// import runs, so nodes do not serve pre-import records until the end.
func periodicInvalidate(ctx context.Context, store *bulkStore, every time.Duration, out *importer.Console) func() {
	if store.invalidate == nil || every <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				if err := store.invalidate(ctx); err != nil && ctx.Err() == nil {
					out.Note("invalidating the caches failed: " + err.Error())
				}
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// rejectsFormat refuses a --rejects file whose name says another format
// than the input's (a rejected.csv of nwauth lines): the rejects are
// written in the input's format, to be fixed and imported again, and a
// wrong extension would make that import read them wrongly.
func rejectsFormat(rejects string, input importer.Format) error {
	if rejects == "" || input == "" {
		return nil
	}
	if named := importer.FormatOfName(rejects); named != "" && named != input {
		return fmt.Errorf("--rejects %s: rejected records are written as the input is, in %s, but the name says %s; name it for %s", rejects, input, named, input)
	}
	return nil
}
