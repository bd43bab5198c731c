package bolt

import (
	"testing"

	"github.com/tohost/tohost/directory"
	"github.com/tohost/tohost/directory/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) directory.Store {
		s, err := Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
