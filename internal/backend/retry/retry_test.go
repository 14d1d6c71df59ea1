package retry

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/runup/runup/internal/backend"
	"github.com/runup/runup/internal/backend/local"
)

// failing fails the first n operations of each kind with err.
type failing struct {
	backend.Backend
	n, calls atomic.Int64
	err      error
	list     []backend.FileInfo
}

func (f *failing) fail() error {
	f.calls.Add(1)
	if f.n.Add(-1) >= 0 {
		return f.err
	}
	return nil
}

func (f *failing) Load(ctx context.Context, h backend.Handle, off, n int64) ([]byte, error) {
	if err := f.fail(); err != nil {
		return nil, err
	}
	return []byte("ok"), nil
}

func (f *failing) List(ctx context.Context, t backend.FileType, fn func(backend.FileInfo) error) error {
	for i, fi := range f.list {
		if i == 1 {
			if err := f.fail(); err != nil {
				return err
			}
		}
		if err := fn(fi); err != nil {
			return err
		}
	}
	return nil
}

func TestRetries(t *testing.T) {
	ctx := context.Background()
	lb, _ := local.Open(t.TempDir())
	h := backend.Handle{Type: backend.Data, Name: "x"}
	transient := errors.New("connection reset")
	for _, tc := range []struct {
		name     string
		fails    int64
		err      error
		ok       bool
		calls    int64 // operations the inner backend saw
		contains string
	}{
		{"succeeds at once", 0, transient, true, 1, ""},
		{"transient failures are retried", 2, transient, true, 3, ""},
		{"attempts run out", 10, transient, false, 4, "gave up after 4 attempts"},
		{"a missing file is an answer", 10, fmt.Errorf("x: %w", backend.ErrNotExist), false, 1, ""},
		{"a refusal is not retried", 10, fmt.Errorf("x: %w", backend.ErrPermanent), false, 1, ""},
		{"cancellation is not retried", 10, context.Canceled, false, 1, ""},
	} {
		f := &failing{Backend: lb, err: tc.err}
		f.n.Store(tc.fails)
		b := Wrap(f, 4, time.Millisecond)
		_, err := b.Load(ctx, h, 0, 0)
		if (err == nil) != tc.ok || !strings.Contains(fmt.Sprint(err), tc.contains) {
			t.Errorf("%s: %v", tc.name, err)
		}
		if f.calls.Load() != tc.calls {
			t.Errorf("%s: %d calls, want %d", tc.name, f.calls.Load(), tc.calls)
		}
	}
}

// Once the storage has failed for the budget, every operation gives up at
// once instead of spending its own attempts.
func TestBudget(t *testing.T) {
	ctx := context.Background()
	lb, _ := local.Open(t.TempDir())
	f := &failing{Backend: lb, err: errors.New("no route to host")}
	f.n.Store(1 << 40)
	b := Wrap(f, 5, 20*time.Millisecond)
	b.Budget = 100 * time.Millisecond
	start := time.Now()
	for range 50 {
		if _, err := b.Load(ctx, backend.Handle{Type: backend.Data, Name: "x"}, 0, 0); err == nil {
			t.Fatal("loaded from a dead store")
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("50 loads from a dead store took %v; the budget is %v", d, b.Budget)
	}
	// One success renews it.
	f.n.Store(0)
	if _, err := b.Load(ctx, backend.Handle{Type: backend.Data, Name: "x"}, 0, 0); err != nil {
		t.Fatal(err)
	}
	f.n.Store(1)
	if _, err := b.Load(ctx, backend.Handle{Type: backend.Data, Name: "x"}, 0, 0); err != nil {
		t.Fatalf("a transient failure after a success: %v", err)
	}
}

// A listing is retried only while nothing was delivered.
func TestListRetriedBeforeDelivery(t *testing.T) {
	lb, _ := local.Open(t.TempDir())
	f := &failing{Backend: lb, err: errors.New("reset"), list: []backend.FileInfo{{Name: "a"}, {Name: "b"}}}
	f.n.Store(1)
	b := Wrap(f, 3, time.Millisecond)
	var seen []string
	err := b.List(context.Background(), backend.Data, func(fi backend.FileInfo) error {
		seen = append(seen, fi.Name)
		return nil
	})
	if err == nil || len(seen) != 1 {
		t.Fatalf("a listing that failed after delivering was retried: %v %v", seen, err)
	}
}
