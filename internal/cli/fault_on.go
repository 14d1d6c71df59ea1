//go:build faultinject

package cli

import (
	"os"
	"time"

	"github.com/runup/runup/internal/backend"
	"github.com/runup/runup/internal/backend/faulty"
	"github.com/runup/runup/internal/repo"
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

// lockTiming reads RUNUP_LOCK_STALE (a duration), so that tests can make
// locks go stale in seconds: refresh comes at a sixth of it, and prune's
// grace period follows it.
func lockTiming() repo.LockTiming {
	d, err := time.ParseDuration(os.Getenv("RUNUP_LOCK_STALE"))
	if err != nil {
		return repo.LockTiming{}
	}
	return repo.LockTiming{Stale: d}
}
