package backend_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/runup/runup/internal/backend"
	"github.com/runup/runup/internal/backend/local"
)

func TestPath(t *testing.T) {
	for _, tc := range []struct {
		h    backend.Handle
		want string
	}{
		{backend.Handle{Type: backend.Config, Name: "ignored"}, "config"},
		{backend.Handle{Type: backend.Data, Name: "ab12"}, "data/ab/ab12"},
		{backend.Handle{Type: backend.Data, Name: "a"}, "data/a"},
		{backend.Handle{Type: backend.Index, Name: "ab12"}, "index/ab12"},
		{backend.Handle{Type: backend.Jobs, Name: "0000000001"}, "jobs/0000000001"},
	} {
		if got := backend.Path(tc.h); got != tc.want {
			t.Errorf("Path(%v) = %q, want %q", tc.h, got, tc.want)
		}
	}
}

func TestCheckRange(t *testing.T) {
	h := backend.Handle{Type: backend.Data, Name: "ab"}
	for _, tc := range []struct {
		size, off, n int64
		ok           bool
	}{
		{10, 0, 0, true}, {10, 0, 10, true}, {10, 9, 1, true}, {10, 10, 0, true},
		{10, 10, 1, false}, {10, 11, 0, false}, {10, 5, 6, false}, {10, -1, 1, false}, {10, 0, -1, false},
	} {
		err := backend.CheckRange(h, tc.size, tc.off, tc.n)
		if (err == nil) != tc.ok || err != nil && !errors.Is(err, backend.ErrRange) {
			t.Errorf("CheckRange(size %d, %d bytes at %d) = %v, want ok %v", tc.size, tc.n, tc.off, err, tc.ok)
		}
	}
}

// A file the storage made larger than any RunUp writes costs a stat, not
// the memory to hold it.
func TestLoadAtMost(t *testing.T) {
	ctx := context.Background()
	be, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := be.Create(); err != nil {
		t.Fatal(err)
	}
	h := backend.Handle{Type: backend.Locks, Name: "x"}
	if err := be.Save(ctx, h, bytes.Repeat([]byte("a"), 100)); err != nil {
		t.Fatal(err)
	}
	if b, err := backend.LoadAtMost(ctx, be, h, 100); err != nil || len(b) != 100 {
		t.Fatalf("at the bound: %d bytes, %v", len(b), err)
	}
	if _, err := backend.LoadAtMost(ctx, be, h, 99); !errors.Is(err, backend.ErrTooLarge) {
		t.Fatalf("past the bound: %v", err)
	}
	empty := backend.Handle{Type: backend.Locks, Name: "empty"}
	be.Save(ctx, empty, nil)
	if b, err := backend.LoadAtMost(ctx, be, empty, 10); err != nil || b == nil || len(b) != 0 {
		t.Fatalf("empty file: %v %v", b, err)
	}
}

// wrapper is a backend wrapper as retry and cache are: it offers Unwrap.
type wrapper struct{ backend.Backend }

func (w wrapper) Unwrap() backend.Backend { return w.Backend }

func TestAs(t *testing.T) {
	be, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	chain := wrapper{wrapper{be}}
	if got, ok := backend.As[*local.Backend](chain); !ok || got != be {
		t.Fatalf("As through two wrappers: %v %v", got, ok)
	}
	if _, ok := backend.As[interface{ NoSuchMethod() }](chain); ok {
		t.Fatal("As found a capability nobody has")
	}
}

// The watchdog ends a request that makes no progress, and only that one.
func TestWatchdog(t *testing.T) {
	ctx, w := backend.NewWatchdog(context.Background(), 250*time.Millisecond)
	r := w.Reader(iotest.OneByteReader(strings.NewReader(strings.Repeat("x", 12))))
	for range 12 { // progress keeps it alive past its timeout (300 ms)
		time.Sleep(25 * time.Millisecond)
		if _, err := r.Read(make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
	}
	if ctx.Err() != nil {
		t.Fatal("cancelled while making progress")
	}
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("no cancel after the timeout without progress")
	}
	if err := w.Err(ctx.Err()); !errors.Is(err, backend.ErrStalled) {
		t.Fatalf("Err = %v, want ErrStalled", err)
	}
	w.Stop()

	_, w = backend.NewWatchdog(context.Background(), time.Hour)
	w.Stop()
	if err := w.Err(io.ErrUnexpectedEOF); !errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, backend.ErrStalled) {
		t.Fatalf("a stopped watchdog's Err = %v", err)
	}
}
