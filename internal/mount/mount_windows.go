package mount

import (
	"errors"

	"github.com/runup/runup/internal/repo"
)

// ErrUnsupported: FUSE is not available on Windows; restore, the web UI
// or 'runup dump' show a job there.
var ErrUnsupported = errors.New("runup mount needs FUSE, which Windows does not have: use 'runup ui' to browse jobs, or 'runup restore'")

// Mount is never made on Windows.
type Mount struct{}

// New refuses on Windows.
func New(*repo.Repository, string, Options) (*Mount, error) { return nil, ErrUnsupported }

func (m *Mount) Wait()          {}
func (m *Mount) Unmount() error { return ErrUnsupported }
