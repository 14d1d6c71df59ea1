// Package faulty wraps a backend to inject failures at chosen points of a
// real run: it makes crash and outage tests deterministic, so that every
// step of the commit order is tested rather than hoped for.
package faulty

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/runup/runup/internal/backend"
)

// Action is what happens at the chosen save.
type Action int

// Actions.
const (
	KillBefore  Action = iota // SIGKILL the process before save number N
	KillAfter                 // SIGKILL it after save N is durable
	FailFrom                  // save N and every later one fail
	PauseBefore               // wait two seconds before save N (to hold a lock)
)

// Backend counts writes (saves and removes) and acts at number N (1-based).
type Backend struct {
	backend.Backend
	action Action
	n      int64
	saves  atomic.Int64
}

// ErrInjected is the error of FailFrom.
var ErrInjected = errors.New("injected failure")

// Parse reads a spec like "kill-before:3", "kill-after:3" or "fail-from:2".
func Parse(spec string) (Action, int64, error) {
	name, num, ok := strings.Cut(spec, ":")
	n, err := strconv.ParseInt(num, 10, 64)
	if !ok || err != nil || n < 1 {
		return 0, 0, fmt.Errorf("fault spec %q: want kill-before:N, kill-after:N, fail-from:N or pause-before:N", spec)
	}
	switch name {
	case "kill-before":
		return KillBefore, n, nil
	case "kill-after":
		return KillAfter, n, nil
	case "fail-from":
		return FailFrom, n, nil
	case "pause-before":
		return PauseBefore, n, nil
	}
	return 0, 0, fmt.Errorf("fault spec %q: unknown action %q", spec, name)
}

// Wrap returns be with the fault installed.
func Wrap(be backend.Backend, a Action, n int64) *Backend {
	return &Backend{Backend: be, action: a, n: n}
}

func kill() {
	if p, err := os.FindProcess(os.Getpid()); err == nil {
		_ = p.Kill() // SIGKILL on Unix
	}
	select {} // the signal is fatal; never return into the caller
}

// Save implements backend.Backend. Saves and removes are counted together:
// both are steps of a commit order.
func (b *Backend) Save(ctx context.Context, h backend.Handle, data []byte) error {
	return b.step("save", h, func() error { return b.Backend.Save(ctx, h, data) })
}

// SaveReader implements backend.ReaderSaver when the wrapped backend does,
// counted as a save.
func (b *Backend) SaveReader(ctx context.Context, h backend.Handle, r io.ReaderAt, size int64) error {
	rs, ok := b.Backend.(backend.ReaderSaver)
	if !ok {
		return errors.New("faulty: the wrapped backend cannot save from a reader")
	}
	return b.step("save", h, func() error { return rs.SaveReader(ctx, h, r, size) })
}

// CanSaveReader reports whether SaveReader works.
func (b *Backend) CanSaveReader() bool {
	if c, ok := b.Backend.(interface{ CanSaveReader() bool }); ok {
		return c.CanSaveReader()
	}
	_, ok := b.Backend.(backend.ReaderSaver)
	return ok
}

// Remove implements backend.Backend.
func (b *Backend) Remove(ctx context.Context, h backend.Handle) error {
	return b.step("remove", h, func() error { return b.Backend.Remove(ctx, h) })
}

func (b *Backend) step(op string, h backend.Handle, do func() error) error {
	i := b.saves.Add(1)
	switch {
	case b.action == KillBefore && i == b.n:
		kill()
	case b.action == FailFrom && i >= b.n:
		return fmt.Errorf("%s %v: %w", op, h, ErrInjected)
	case b.action == PauseBefore && i == b.n:
		time.Sleep(2 * time.Second)
	}
	err := do()
	if b.action == KillAfter && i == b.n {
		kill()
	}
	return err
}

// Unwrap returns the wrapped backend.
func (b *Backend) Unwrap() backend.Backend { return b.Backend }

// Stream implements backend.Streamer when the wrapped backend does; the
// commit of a stream counts as a step like a save.
func (b *Backend) Stream(ctx context.Context, t backend.FileType) (backend.Stream, error) {
	st, ok := b.Backend.(backend.Streamer)
	if !ok {
		return nil, errors.New("faulty: the wrapped backend cannot stream")
	}
	s, err := st.Stream(ctx, t)
	if err != nil {
		return nil, err
	}
	return &faultyStream{Stream: s, b: b}, nil
}

// CanStream reports whether Stream works.
func (b *Backend) CanStream() bool {
	_, ok := b.Backend.(backend.Streamer)
	return ok
}

type faultyStream struct {
	backend.Stream
	b *Backend
}

func (s *faultyStream) Commit(ctx context.Context, h backend.Handle) error {
	return s.b.step("save", h, func() error { return s.Stream.Commit(ctx, h) })
}
