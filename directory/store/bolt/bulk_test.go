package bolt

import (
	"testing"

	"github.com/tohost/tohost/directory"
	"github.com/tohost/tohost/directory/store/storetest"
)

func TestBulkConformance(t *testing.T) {
	storetest.RunBulk(t, func(t *testing.T) directory.BulkStore {
		s, err := Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
