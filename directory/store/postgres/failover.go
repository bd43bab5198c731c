package postgres

import (
	"errors"
	"io"
	"net"

	"github.com/jackc/pgx/v5/pgconn"
)

// SQLSTATEs after which pooled connections may lead to a server that is no
// longer the primary.
const (
	readOnlyTransaction = "25006" // a demoted primary, now a standby
	adminShutdown       = "57P01"
	crashShutdown       = "57P02"
	cannotConnectNow    = "57P03"
)

// unavailable wraps a failure of the database, and after a failure that
// suggests a failover drops every pooled connection: new ones are made
// through the URL's host list (with target_session_attrs=read-write, to
// the new primary), where the old ones would fail one request each, or
// keep writing to a demoted server that refuses writes.
func (s *Store) unavailable(err error) error {
	if err != nil && failedOver(err) {
		s.pool.Reset()
	}
	return unavailable(err)
}

func failedOver(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case readOnlyTransaction, adminShutdown, crashShutdown, cannotConnectNow:
			return true
		}
		return false
	}
	var ne *net.OpError
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}
