// Package schema holds the PostgreSQL migrations of the directory, embedded
// in the binary so a directory node can bring its database up to date at
// start without any file beside it.
package schema

import "embed"

// Migrations holds migrations/*.sql, in goose's format (-- +goose Up/Down).
// Files are numbered; a migration, once released, is never edited: add a
// new file instead.
//
//go:embed migrations/*.sql
var Migrations embed.FS
