//go:build !faultinject

package cli

import "github.com/runup/runup/internal/backend"

func wrapBackend(be backend.Backend) (backend.Backend, error) { return be, nil }
