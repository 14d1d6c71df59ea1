//go:build faultinject

package cli

import (
	"os"

	"github.com/runup/runup/internal/backend"
	"github.com/runup/runup/internal/backend/faulty"
)

// wrapBackend installs the fault named by RUNUP_FAULT. Only test builds
// (-tags faultinject) contain this; release binaries ignore the variable.
func wrapBackend(be backend.Backend) (backend.Backend, error) {
	spec := os.Getenv("RUNUP_FAULT")
	if spec == "" {
		return be, nil
	}
	a, n, err := faulty.Parse(spec)
	if err != nil {
		return nil, usageErr(err)
	}
	return faulty.Wrap(be, a, n), nil
}
