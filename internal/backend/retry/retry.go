// Package retry wraps a backend with retries and exponential backoff for
// transient failures of remote storage: a network hiccup should not cost a
// backup, and a dead server should give a clear error in reasonable time.
package retry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/runup/runup/internal/backend"
)

// Backend retries the operations of the backend it embeds.
type Backend struct {
	backend.Backend
	Attempts int           // total tries per operation
	Base     time.Duration // first wait; doubles each time
	// Budget bounds how long the storage may fail before every operation
	// gives up at once: many operations failing in turn (a restore of
	// thousands of files from a server that went away) end within it,
	// instead of each spending its own attempts.
	Budget time.Duration
	lastOK atomic.Int64 // unix nanoseconds of the last success
}

// DefaultBudget is how long the storage may go without one success.
const DefaultBudget = time.Minute

// Wrap returns be with retries: attempts tries, waiting base, 2×base, …,
// within DefaultBudget.
func Wrap(be backend.Backend, attempts int, base time.Duration) *Backend {
	b := &Backend{Backend: be, Attempts: attempts, Base: base, Budget: DefaultBudget}
	b.lastOK.Store(time.Now().UnixNano())
	return b
}

// permanent errors are answers, not failures: retrying cannot change them.
func permanent(err error) bool {
	var s stop
	return errors.As(err, &s) || errors.Is(err, backend.ErrNotExist) || errors.Is(err, backend.ErrExists) ||
		errors.Is(err, backend.ErrPermanent) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

func (b *Backend) do(ctx context.Context, what string, op func() error) error {
	wait := b.Base
	var err error
	for i := 0; i < b.Attempts; i++ {
		if err = op(); err == nil || permanent(err) {
			if err == nil || !errors.Is(err, backend.ErrPermanent) {
				b.lastOK.Store(time.Now().UnixNano()) // an answer, even "not found"
			}
			return err
		}
		failing := time.Since(time.Unix(0, b.lastOK.Load()))
		if b.Budget > 0 && failing >= b.Budget {
			return fmt.Errorf("%s: the storage has not answered for %v, giving up: %w", what, failing.Round(time.Second), err)
		}
		if i == b.Attempts-1 {
			break
		}
		if b.Budget > 0 {
			wait = min(wait, b.Budget-failing)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
	return fmt.Errorf("%s: gave up after %d attempts: %w", what, b.Attempts, err)
}

// Save implements backend.Backend.
func (b *Backend) Save(ctx context.Context, h backend.Handle, data []byte) error {
	return b.do(ctx, "save "+h.String(), func() error { return b.Backend.Save(ctx, h, data) })
}

// SaveReader implements backend.ReaderSaver when the wrapped backend does.
func (b *Backend) SaveReader(ctx context.Context, h backend.Handle, r io.ReaderAt, size int64) error {
	rs, ok := b.Backend.(backend.ReaderSaver)
	if !ok {
		return errors.New("retry: the wrapped backend cannot save from a reader")
	}
	return b.do(ctx, "save "+h.String(), func() error { return rs.SaveReader(ctx, h, r, size) })
}

// CanSaveReader reports whether SaveReader works.
func (b *Backend) CanSaveReader() bool {
	_, ok := b.Backend.(backend.ReaderSaver)
	return ok
}

// Load implements backend.Backend.
func (b *Backend) Load(ctx context.Context, h backend.Handle, offset, length int64) ([]byte, error) {
	var out []byte
	err := b.do(ctx, "load "+h.String(), func() error {
		var err error
		out, err = b.Backend.Load(ctx, h, offset, length)
		return err
	})
	return out, err
}

// Stat implements backend.Backend.
func (b *Backend) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	var fi backend.FileInfo
	err := b.do(ctx, "stat "+h.String(), func() error {
		var err error
		fi, err = b.Backend.Stat(ctx, h)
		return err
	})
	return fi, err
}

// List implements backend.Backend. A listing is retried only while nothing
// was passed to fn yet, so fn never sees a file twice.
func (b *Backend) List(ctx context.Context, t backend.FileType, fn func(backend.FileInfo) error) error {
	called := false
	var fnErr error
	err := b.do(ctx, "list "+string(t), func() error {
		err := b.Backend.List(ctx, t, func(fi backend.FileInfo) error {
			called = true
			if err := fn(fi); err != nil {
				fnErr = err
				return err
			}
			return nil
		})
		if err != nil && (called || fnErr != nil) {
			return stop{err}
		}
		return err
	})
	var s stop
	if errors.As(err, &s) {
		return s.err
	}
	return err
}

// stop carries an error out of the retry loop without retrying.
type stop struct{ err error }

func (s stop) Error() string { return s.err.Error() }

// Remove implements backend.Backend.
func (b *Backend) Remove(ctx context.Context, h backend.Handle) error {
	return b.do(ctx, "remove "+h.String(), func() error { return b.Backend.Remove(ctx, h) })
}

// Unwrap returns the wrapped backend.
func (b *Backend) Unwrap() backend.Backend { return b.Backend }
