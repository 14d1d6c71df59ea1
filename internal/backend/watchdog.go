package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// ErrStalled is returned (wrapped) by a request that made no progress for
// the backend's timeout: a server that stopped answering without refusing.
// It is transient, and retried.
var ErrStalled = errors.New("no progress")

// DefaultTimeout is how long a request may make no progress.
const DefaultTimeout = time.Minute

// Watchdog cancels a request's context when it makes no progress for its
// timeout: each Touch (a byte read or written, an entry listed) restarts
// the clock. A frozen server then costs one timeout, never forever.
type Watchdog struct {
	timer  *time.Timer
	cancel context.CancelCauseFunc
	d      time.Duration
	ctx    context.Context
}

var errWatchdog = errors.New("watchdog")

// NewWatchdog returns a context that is cancelled after d without a Touch.
func NewWatchdog(ctx context.Context, d time.Duration) (context.Context, *Watchdog) {
	if d <= 0 {
		d = DefaultTimeout
	}
	ctx, cancel := context.WithCancelCause(ctx)
	w := &Watchdog{cancel: cancel, d: d, ctx: ctx}
	w.timer = time.AfterFunc(d, func() { cancel(errWatchdog) })
	return ctx, w
}

// Touch records progress.
func (w *Watchdog) Touch() { w.timer.Reset(w.d) }

// Stop ends the watch and releases the context.
func (w *Watchdog) Stop() {
	w.timer.Stop()
	w.cancel(nil)
}

// Err turns the failure of a watched request into ErrStalled when the
// watchdog caused it.
func (w *Watchdog) Err(err error) error {
	if err != nil && errors.Is(context.Cause(w.ctx), errWatchdog) {
		return fmt.Errorf("%w for %v: the server stopped answering", ErrStalled, w.d)
	}
	return err
}

// Reader touches the watchdog as r delivers bytes.
func (w *Watchdog) Reader(r io.Reader) io.Reader { return &touchReader{r, w} }

type touchReader struct {
	r io.Reader
	w *Watchdog
}

func (t *touchReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 {
		t.w.Touch()
	}
	return n, err
}
