// Package backup serves copies of a running directory's users over its
// admin HTTP listener: GET /backup, the embedded store's file as of one
// moment, and GET /export, every user in an import format. Neither stops
// the directory or its writes.
package backup

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/tohost/tohost/directory"
	"github.com/tohost/tohost/directory/importer"
	"github.com/tohost/tohost/internal/audit"
)

// Headers the client checks a copy against.
const (
	// HeaderUsers: the users in the copy (a response header of /backup,
	// a trailer of /export, sent once it is complete).
	HeaderUsers = "X-Tohost-Users"
	// HeaderDropped: users or fields the export format cannot hold.
	HeaderDropped = "X-Tohost-Dropped"
)

// Snapshotter copies a store as of one moment (bolt.Store).
type Snapshotter interface {
	Backup(w io.Writer, head func(size, users int64)) (int64, error)
}

// idleWrite is how long the client may take to accept more of the copy:
// a backup holds a read transaction open, which must not last for ever
// because a client stopped reading.
const idleWrite = 30 * time.Second

// Backup serves GET /backup: the store file, with Content-Length and
// HeaderUsers. A nil src (a directory on PostgreSQL) answers 501 with
// what to use instead.
func Backup(src Snapshotter, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if src == nil {
			http.Error(w, "no embedded store to copy: back PostgreSQL up with pg_dump, or use tohost export --from", http.StatusNotImplemented)
			return
		}
		rc := http.NewResponseController(w)
		dw := &deadlineWriter{w: w, rc: rc}
		n, err := src.Backup(dw, func(size, users int64) {
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
			w.Header().Set(HeaderUsers, strconv.FormatInt(users, 10))
			w.WriteHeader(http.StatusOK)
			audit.Log(log, audit.Event{Proto: "http", Op: "backup", User: "*", Client: clientIP(r), By: audit.ByAdminNetwork},
				"users", users, "bytes", size)
		})
		if err != nil {
			failed(w, dw.n, log, "backup", n, err)
		}
	})
}

// Export serves GET /export?format=csv|nwauth|ldif[&ldif-base=DN]: every
// user of store, read as a search reads them (users changed meanwhile
// may be in either state). The response ends with the trailers
// HeaderUsers and HeaderDropped; a response without them was cut short.
func Export(store directory.Store, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		format := importer.CSV
		if f := r.URL.Query().Get("format"); f != "" {
			var err error
			if format, err = importer.ParseFormat(f); err != nil {
				http.Error(w, "format: "+err.Error(), http.StatusBadRequest)
				return
			}
		}
		w.Header().Set("Content-Type", contentType(format))
		w.Header().Set("Trailer", HeaderUsers+", "+HeaderDropped)
		dw := &deadlineWriter{w: w, rc: http.NewResponseController(w)}
		st, err := importer.Export(r.Context(), store, dw, format,
			importer.ExportOptions{LDIFBase: r.URL.Query().Get("ldif-base")})
		if err != nil {
			if r.Context().Err() != nil {
				err = fmt.Errorf("%w: %v", errClientGone, err)
			}
			failed(w, dw.n, log, "export", st.Users, err)
			return
		}
		w.Header().Set(HeaderUsers, strconv.FormatInt(st.Users, 10))
		w.Header().Set(HeaderDropped, strconv.FormatInt(st.Dropped, 10))
		audit.Log(log, audit.Event{Proto: "http", Op: "export", User: "*", Client: clientIP(r), By: audit.ByAdminNetwork},
			"format", string(format), "users", st.Users)
	})
}

func contentType(f importer.Format) string {
	switch f {
	case importer.CSV:
		return "text/csv; charset=utf-8"
	case importer.LDIF:
		return "text/x-ldif; charset=utf-8"
	}
	return "text/plain; charset=utf-8"
}

// failed ends a response whose copy failed: with 503 when nothing was
// sent yet, else by cutting the connection, so the client sees a copy
// cut short rather than one that looks complete.
func failed(w http.ResponseWriter, sent int64, log *slog.Logger, what string, done int64, err error) {
	if errors.Is(err, errClientGone) {
		log.Warn(what+" not taken by the client", "err", err)
		panic(http.ErrAbortHandler)
	}
	log.Error(what+" failed", "done", done, "err", err)
	if sent == 0 {
		http.Error(w, fmt.Sprintf("%s failed: %v", what, err), http.StatusServiceUnavailable)
		return
	}
	panic(http.ErrAbortHandler)
}

var errClientGone = errors.New("client stopped reading")

// deadlineWriter gives every write idleWrite to complete.
type deadlineWriter struct {
	w  io.Writer
	rc *http.ResponseController
	n  int64
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	d.rc.SetWriteDeadline(time.Now().Add(idleWrite))
	n, err := d.w.Write(p)
	d.n += int64(n)
	if err != nil {
		return n, fmt.Errorf("%w: %v", errClientGone, err)
	}
	return n, nil
}

func clientIP(r *http.Request) string {
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		return ap.Addr().Unmap().String()
	}
	return r.RemoteAddr
}
