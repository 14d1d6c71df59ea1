package cli

import (
	"context"
	"errors"

	"github.com/runup/runup/internal/config"
	"github.com/runup/runup/internal/known"
	"github.com/runup/runup/internal/repo"
)

// Exit codes. Documented in the README and in `runup --help`.
const (
	ExitOK          = 0   // success
	ExitError       = 1   // any other error
	ExitUsage       = 2   // bad command line or runup.yaml
	ExitIncomplete  = 3   // backup done, but some files could not be read
	ExitNoRepo      = 10  // no repository at the location
	ExitLocked      = 11  // the repository lock could not be taken
	ExitPassword    = 12  // wrong or missing password
	ExitDamaged     = 13  // damaged or unsupported repository data
	ExitIdentity    = 14  // not the repository this machine knows, or unencrypted while a password is set
	ExitInterrupted = 130 // interrupted (Ctrl-C, SIGTERM)
)

const exitCodesHelp = `Exit codes:
  0    success
  1    error
  2    bad command line or runup.yaml
  3    backup incomplete: some files could not be read (the job is saved)
  10   no repository at the location (run 'runup init')
  11   the repository is locked by another process
  12   wrong or missing password
  13   damaged or unsupported repository data
  14   not the repository this machine knows at that location (replaced?), or
       not encrypted while a password is set: nothing was read or written
  130  interrupted`

// exitError carries an exit code to Main.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: code, err: err}
}

func usageErr(err error) error { return withCode(ExitUsage, err) }

// exitCode maps an error to its exit code.
func exitCode(err error) int {
	var ee *exitError
	var ce *config.Error
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ee):
		return ee.code
	case errors.Is(err, context.Canceled):
		return ExitInterrupted
	case errors.As(err, &ce), errors.Is(err, config.ErrNotFound):
		return ExitUsage
	case errors.Is(err, known.ErrChanged), errors.Is(err, repo.ErrNotEncrypted):
		return ExitIdentity
	case errors.Is(err, repo.ErrLocked), errors.Is(err, repo.ErrLockLost):
		return ExitLocked
	case errors.Is(err, repo.ErrNotFound):
		return ExitNoRepo
	case errors.Is(err, repo.ErrWrongPassword), errors.Is(err, repo.ErrNoPassword):
		return ExitPassword
	case errors.Is(err, repo.ErrDamaged), errors.Is(err, repo.ErrUnsupportedFormat):
		return ExitDamaged
	}
	return ExitError
}
