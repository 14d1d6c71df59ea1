package progress

import (
	"testing"
	"time"
	"unicode/utf8"
)

func TestFit(t *testing.T) {
	for _, tc := range []struct {
		in   string
		cols int
		want string
	}{
		{"short", 80, "short"},
		{"0123456789", 11, "0123456789"},
		{"0123456789", 10, "01234567…"},
		{"files 10 of 20 · /very/long/path/to/the/current/file.txt", 40, "files 10 of 20 · …/the/current/file.txt"},
		{"files 10 of 20 · /very/long/path/to/the/current/file.txt", 24, "files 10 of 20"},
		{"files 10 of 20 · /very/long/path/to/the/current/file.txt", 12, "files 10 o…"},
		{"x", 0, "x"},
	} {
		got := Fit(tc.in, tc.cols)
		if got != tc.want {
			t.Errorf("Fit(%q, %d) = %q, want %q", tc.in, tc.cols, got, tc.want)
		}
		if tc.cols > 1 && utf8.RuneCountInString(got) >= tc.cols {
			t.Errorf("Fit(%q, %d) is %d columns", tc.in, tc.cols, utf8.RuneCountInString(got))
		}
	}
}

func TestETA(t *testing.T) {
	for _, tc := range []struct {
		done, total int64
		elapsed     time.Duration
		want        time.Duration
		ok          bool
	}{
		{50, 100, 10 * time.Second, 10 * time.Second, true},
		{25, 100, 10 * time.Second, 30 * time.Second, true},
		{100, 100, 10 * time.Second, 0, true},
		{0, 100, 10 * time.Second, 0, false},        // nothing done yet
		{10, 100, 500 * time.Millisecond, 0, false}, // too early
		{120, 100, 10 * time.Second, 0, false},      // the total grew under us
	} {
		got, ok := ETA(tc.done, tc.total, tc.elapsed)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ETA(%d, %d, %v) = %v, %v; want %v, %v", tc.done, tc.total, tc.elapsed, got, ok, tc.want, tc.ok)
		}
	}
}

func TestClockPercent(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "0:00", 59 * time.Second: "0:59", 61 * time.Second: "1:01", 3723 * time.Second: "1:02:03"} {
		if got := Clock(d); got != want {
			t.Errorf("Clock(%v) = %q, want %q", d, got, want)
		}
	}
	if Percent(1, 0) != 0 || Percent(50, 200) != 25 || Percent(300, 200) != 100 {
		t.Error("Percent")
	}
}
