// Package progress draws a one-line status on a terminal. The journeys
// expose counters; this package only reads them, so they never print.
package progress

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/term"
)

// Reporter receives what a journey (backup, restore) has to say about
// single entries; the journeys never print. Its methods are called from
// several goroutines at once.
type Reporter interface {
	// Error: an entry could not be handled; the result is incomplete.
	Error(path string, err error)
	// Warning: something worth knowing that lost no data.
	Warning(path string, msg string)
}

// Line redraws a status line until stopped. On a non-terminal it draws
// nothing.
type Line struct {
	f      io.Writer
	render func() string
	stop   chan struct{}
	wg     sync.WaitGroup
}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// Start begins redrawing render() on f every interval, if f is a terminal.
func Start(f io.Writer, enabled bool, render func() string) *Line {
	l := &Line{f: f, render: render, stop: make(chan struct{})}
	if !enabled || !IsTerminal(f) {
		return l
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-l.stop:
				fmt.Fprint(l.f, "\r\x1b[K")
				return
			case <-t.C:
				fmt.Fprint(l.f, "\r\x1b[K"+l.render())
			}
		}
	}()
	return l
}

// Watch calls fn with render() every half second until stopped: progress
// for a program rather than a terminal (the web UI of the daemon).
func Watch(fn func(string), render func() string) *Line {
	l := &Line{render: render, stop: make(chan struct{})}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-t.C:
				fn(l.render())
			}
		}
	}()
	return l
}

// Stop clears the line.
func (l *Line) Stop() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

// Bytes formats a byte count for people.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// Rate formats bytes per second.
func Rate(n int64, d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return Bytes(int64(float64(n)/d.Seconds())) + "/s"
}
