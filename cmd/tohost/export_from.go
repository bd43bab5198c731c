package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/tohost/tohost/directory/backup"
	"github.com/tohost/tohost/directory/importer"
)

// exportFrom writes the running directory's export (GET /export) to path,
// or to stdout for "-". A file is renamed into place only once the
// directory's trailer says the export completed; on stdout a cut-short
// export is an error after the fact.
func exportFrom(ctx context.Context, f exportFlags, format importer.Format, path string, stdout, stderr io.Writer) error {
	start := time.Now()
	q := url.Values{"format": {string(format)}, "ldif-base": {f.ldifBase}}
	complete := func(resp *http.Response, _ string) error {
		if resp.Trailer.Get(backup.HeaderUsers) == "" {
			return fmt.Errorf("the directory did not finish the export (no %s trailer)", backup.HeaderUsers)
		}
		return nil
	}
	var resp *http.Response
	var err error
	if path == "-" {
		resp, err = fetchStream(ctx, f.from, q, stdout)
		if err == nil {
			err = complete(resp, "")
		}
	} else {
		resp, _, err = fetchTo(ctx, f.from, "/export", q, path, complete)
	}
	if err != nil {
		return err
	}
	where := path
	if path == "-" {
		where = "standard output"
	}
	fmt.Fprintf(stderr, "export (%s) from %s to %s: %s users in %.2f s", format, f.from, where,
		resp.Trailer.Get(backup.HeaderUsers), time.Since(start).Seconds())
	if d := resp.Trailer.Get(backup.HeaderDropped); d != "" && d != "0" {
		fmt.Fprintf(stderr, "; %s users or fields the format cannot hold left out", d)
	}
	fmt.Fprintln(stderr)
	return nil
}

// fetchStream copies GET /export to w as it arrives.
func fetchStream(ctx context.Context, base string, q url.Values, w io.Writer) (*http.Response, error) {
	resp, u, err := adminGet(ctx, base, "/export", q)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return nil, fmt.Errorf("%s: cut short: %w", u, err)
	}
	return resp, nil
}
