package backend

import (
	"errors"
	"strings"
	"time"

	"github.com/tohost/tohost/backend/home"
)

// checkShared checks the settings delivery and submission share and
// fills in their defaults: it wants a name and a directory, reduces the
// name to its host part, and defaults MaxMessageBytes (64 MiB),
// MaxRecipients (1000), IdleTimeout (5 minutes) and DrainTimeout (30 s).
func checkShared(name *string, haveDirectory bool, maxMessageBytes *int64, maxRecipients *int, idleTimeout, drainTimeout *time.Duration) error {
	switch {
	case strings.TrimSpace(*name) == "":
		return errors.New("backend: no name")
	case !haveDirectory:
		return errors.New("backend: no directory")
	}
	*name = home.HostOf(strings.TrimSpace(*name))
	if *maxMessageBytes <= 0 {
		*maxMessageBytes = 64 << 20
	}
	if *maxRecipients <= 0 {
		*maxRecipients = 1000
	}
	if *idleTimeout <= 0 {
		*idleTimeout = 5 * time.Minute
	}
	if *drainTimeout <= 0 {
		*drainTimeout = 30 * time.Second
	}
	return nil
}
