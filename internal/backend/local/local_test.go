package local

import (
	"testing"

	"github.com/runup/runup/internal/backend/backendtest"
)

func TestConformance(t *testing.T) {
	be, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := be.Create(); err != nil {
		t.Fatal(err)
	}
	backendtest.Run(t, be)
}
