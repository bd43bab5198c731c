package main

import (
	"io"
	"log/slog"
	"os/user"

	"github.com/tohost/tohost/directory"
	"github.com/tohost/tohost/directory/importer"
	"github.com/tohost/tohost/internal/audit"
)

// auditImport writes the import's audit line to w (standard error), in
// the daemons' format, so the same filter finds imports among the other
// changes. The admin is the local account that ran it.
func auditImport(w io.Writer, source, storeKind string, mode directory.BulkMode, st importer.Stats, err error) {
	by := "unknown"
	if u, uerr := user.Current(); uerr == nil {
		by = u.Username
	}
	extra := []any{"store", storeKind, "mode", mode.String(), "created", st.Created, "updated", st.Updated,
		"deleted", st.Deleted, "rejected", st.Rejected}
	if err != nil {
		extra = append(extra, "err", err.Error())
	}
	audit.Log(slog.New(slog.NewTextHandler(w, nil)), audit.Event{Proto: "cli", Op: "import", User: source, By: by}, extra...)
}
