//go:build !faultinject

package cli

import (
	"github.com/runup/runup/internal/backend"
	"github.com/runup/runup/internal/repo"
)

func wrapBackend(be backend.Backend) (backend.Backend, error) { return be, nil }

// lockTiming is the default lock timing: only test builds change it.
func lockTiming() repo.LockTiming { return repo.LockTiming{} }
