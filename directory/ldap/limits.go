package ldap

import (
	"errors"
	"fmt"
	"time"

	"github.com/jimlambrt/gldap"
)

// Bounds on the shape of a search request, checked before any work that
// grows with them, so that no single request costs more than a few
// milliseconds before its answer: a list of 100,000 attribute names took
// half a minute of CPU to deduplicate. They are far above what mail
// software asks (a handful of attributes, a filter of a few hundred
// bytes). Over them a search gets adminLimitExceeded, naming the limit.
const (
	maxAttributes     = 1000     // names in the attribute list
	maxAttributeBytes = 64 << 10 // their total size
	maxFilterBytes    = 64 << 10 // the filter, as encoded
	maxFilterDepth    = 64       // nesting of &, | and !
)

// Server-side limits of a search, as slapd's sizelimit and timelimit
// (Config.SizeLimit, Config.TimeLimit).
const (
	DefaultSizeLimit = 500
	DefaultTimeLimit = 60 * time.Second
)

var (
	errFilterDepth = fmt.Errorf("filter nested deeper than the limit of %d", maxFilterDepth)
	// errTimeLimit is the cause of a search context whose time is up.
	errTimeLimit = errors.New("time limit exceeded")
)

// overLimit returns why a search request is over a bound on its shape, or
// "". It only counts: nothing is parsed or compared.
func overLimit(m *gldap.SearchMessage) string {
	if n := len(m.Attributes); n > maxAttributes {
		return fmt.Sprintf("attribute list of %d names is over the limit of %d", n, maxAttributes)
	}
	size := 0
	for _, a := range m.Attributes {
		size += len(a)
	}
	if size > maxAttributeBytes {
		return fmt.Sprintf("attribute list of %d bytes is over the limit of %d", size, maxAttributeBytes)
	}
	if p := m.FilterPacket; p != nil && p.Data != nil && p.Data.Len() > maxFilterBytes {
		return fmt.Sprintf("filter of %d bytes is over the limit of %d", p.Data.Len(), maxFilterBytes)
	}
	return ""
}

// limits are a search's size and time limits, the server's and the
// client's together (0: none).
type limits struct {
	size int           // entries of the whole search, paged or not
	page int           // the most entries of one page
	time time.Duration // of this request
}

// limitsFor combines the client's limits with the server's: the smaller
// wins. The admin is exempt from the server's, as slapd's rootdn. A paged
// search is bounded per page: the server's size limit caps the page size
// (as Active Directory's MaxPageSize), so a client pages through any
// number of entries, each request bounded; the client's own size limit
// holds for the whole paged search.
func (s *Server) limitsFor(ss *session, m *gldap.SearchMessage, paging *gldap.ControlPaging) limits {
	var size int
	var d time.Duration
	if !ss.admin {
		size, d = max(s.cfg.SizeLimit, 0), max(s.cfg.TimeLimit, 0)
	}
	l := limits{size: int(min(max(m.SizeLimit, 0), 1<<31)), time: d}
	if m.TimeLimit > 0 {
		l.time = smallest(l.time, time.Duration(min(m.TimeLimit, 1<<31))*time.Second)
	}
	if paging != nil {
		l.page = smallest(int(paging.PagingSize), size)
		return l
	}
	l.size = smallest(l.size, size)
	return l
}

// smallest returns the smaller of two limits, where 0 is none.
func smallest[T int | time.Duration](a, b T) T {
	switch {
	case a <= 0:
		return b
	case b <= 0:
		return a
	}
	return min(a, b)
}
