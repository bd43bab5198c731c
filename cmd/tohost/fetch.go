package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// fetchTo downloads the admin endpoint path (with query) of the
// directory at base into file: under a temporary name beside it, synced,
// accepted by check (given the response, once the body is read, and the
// temporary file's name), then renamed, so file is either the complete,
// checked copy or untouched. It returns the response for its headers
// and trailers.
func fetchTo(ctx context.Context, base, path string, query url.Values, file string,
	check func(resp *http.Response, tmp string) error) (*http.Response, int64, error) {
	resp, u, err := adminGet(ctx, base, path, query)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	n, err := writeAtomically(file, func(w io.Writer) error {
		if _, err := io.Copy(w, resp.Body); err != nil {
			return fmt.Errorf("%s: cut short: %w", u, err)
		}
		return nil
	}, func(tmp string) error { return check(resp, tmp) })
	return resp, n, err
}

// adminGet asks the directory at base for an admin endpoint and returns
// the response when it is 200 OK, with the URL asked.
func adminGet(ctx context.Context, base, path string, query url.Values) (*http.Response, string, error) {
	u, err := adminURL(base, path, query)
	if err != nil {
		return nil, "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, "", err
	}
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return nil, "", fmt.Errorf("%s: %s: %s", u, resp.Status, strings.TrimSpace(string(msg)))
	}
	return resp, u, nil
}

// adminURL joins the --from base (scheme optional) and an endpoint.
func adminURL(base, path string, query url.Values) (string, error) {
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("--from: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return "", fmt.Errorf("--from %s: want http://HOST:PORT, the directory's --http-addr", base)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	u.RawQuery = query.Encode()
	return u.String(), nil
}

// writeAtomically writes file through fill under a temporary name in the
// same directory, syncs it, lets check read it, and renames it into place, then syncs the
// directory so the rename survives a crash too. On any error the
// temporary file is removed and file is left as it was.
func writeAtomically(file string, fill func(w io.Writer) error, check func(tmp string) error) (n int64, err error) {
	dir := filepath.Dir(file)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(file)+".*")
	if err != nil {
		return 0, err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	cw := &countingWriter{w: tmp}
	if err := fill(cw); err != nil {
		return 0, err
	}
	if err := tmp.Sync(); err != nil {
		return 0, err
	}
	if err := tmp.Close(); err != nil {
		return 0, err
	}
	if err := check(tmp.Name()); err != nil {
		return 0, err
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return 0, err
	}
	if d, derr := os.Open(dir); derr == nil {
		d.Sync()
		d.Close()
	}
	return cw.n, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
