// Package progress draws a one-line status on a terminal. The journeys
// expose counters; this package only reads them, so they never print.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
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

// FileReporter is a Reporter that also hears of every file a journey
// handled and how (--verbose): status is "new", "changed" or "unchanged"
// for a backup, "restored" or "skipped" for a restore.
type FileReporter interface {
	Reporter
	File(path, status string, size int64)
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
				fmt.Fprint(l.f, "\r\x1b[K"+Fit(l.render(), width(f)))
			}
		}
	}()
	return l
}

// width is the terminal's width in columns (80 when unknown).
func width(w io.Writer) int {
	if f, ok := w.(*os.File); ok {
		if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols > 0 {
			return cols
		}
	}
	return 80
}

// Fit cuts s to fit in cols columns. A line of the form "status · name"
// loses the start of the name first (its end says most), then the status
// its end. A line as wide as the terminal would wrap on some terminals:
// it keeps one column free.
func Fit(s string, cols int) string {
	r := []rune(s)
	if cols < 2 || len(r) < cols {
		return s
	}
	keep := cols - 1
	if status, name, ok := strings.Cut(s, " · "); ok {
		st, nm := []rune(status), []rune(name)
		if room := keep - len(st) - 3; room >= 8 {
			return status + " · …" + string(nm[len(nm)-(room-1):])
		}
		r = st
		if len(r) <= keep {
			return status
		}
	}
	return string(r[:keep-1]) + "…"
}

// ETA estimates the time left from the fraction done so far, or returns
// false while there is too little to go on.
func ETA(done, total int64, elapsed time.Duration) (time.Duration, bool) {
	if done <= 0 || total <= 0 || done > total || elapsed < time.Second {
		return 0, false
	}
	left := time.Duration(float64(elapsed) * float64(total-done) / float64(done))
	return left.Round(time.Second), true
}

// Clock prints a duration as h:mm:ss or m:ss.
func Clock(d time.Duration) string {
	s := int64(d.Round(time.Second) / time.Second)
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}

// Percent is done/total as a percentage, never above 100.
func Percent(done, total int64) float64 {
	if total <= 0 {
		return 0
	}
	return min(100, 100*float64(done)/float64(total))
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
