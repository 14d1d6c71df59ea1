package scheduler

import (
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	tests := []struct {
		spec, err string
	}{
		{"0 3 * * *", ""},
		{"@daily", ""},
		{"@hourly", ""},
		{"@weekly", ""},
		{"@every 15m", ""},
		{"@every 2s", ""},
		{"*/5 * * * 1-5", ""},
		{"", "empty schedule"},
		{"0 3 * *", "expected exactly 5 fields"},
		{"61 * * * *", "end of range (61) above maximum (59)"},
		{"@every 100ms", "at least 1s"},
		{"@every soon", "not a duration"},
		{"@fortnightly", "unrecognized descriptor"},
		{"CRON_TZ=UTC 0 3 * * *", "time zones"},
		{"0 0 3 * * *", "expected exactly 5 fields"}, // no seconds field
	}
	for _, tt := range tests {
		_, err := Parse(tt.spec)
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("Parse(%q): %v", tt.spec, err)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("Parse(%q) = %v, want an error with %q", tt.spec, err, tt.err)
		}
	}
}

func at(s string) time.Time {
	t, err := time.ParseInLocation("2006-01-02 15:04:05", s, time.Local)
	if err != nil {
		panic(err)
	}
	return t
}

func TestDue(t *testing.T) {
	tests := []struct {
		spec      string
		last, now string // "" last: never ran
		due       bool
		next      string
	}{
		// Never ran: due at once.
		{"0 3 * * *", "", "2026-11-26 14:00:00", true, "2026-11-26 14:00:00"},
		// Ran at 03:00 today: next at 03:00 tomorrow.
		{"0 3 * * *", "2026-11-26 03:00:00", "2026-11-26 14:00:00", false, "2026-11-27 03:00:00"},
		// The machine was off at 03:00 for three days: one run, now.
		{"0 3 * * *", "2026-11-23 03:00:00", "2026-11-26 14:00:00", true, "2026-11-26 14:00:00"},
		// Exactly at the firing time it is due.
		{"0 3 * * *", "2026-11-25 03:00:00", "2026-11-26 03:00:00", true, "2026-11-26 03:00:00"},
		{"@hourly", "2026-11-26 13:30:00", "2026-11-26 13:59:59", false, "2026-11-26 14:00:00"},
		{"@every 2s", "2026-11-26 13:30:00", "2026-11-26 13:30:01", false, "2026-11-26 13:30:02"},
		{"@every 2s", "2026-11-26 13:30:00", "2026-11-26 13:31:00", true, "2026-11-26 13:31:00"},
		{"@weekly", "2026-11-22 00:00:00", "2026-11-28 23:59:00", false, "2026-11-29 00:00:00"},
	}
	for _, tt := range tests {
		s, err := Parse(tt.spec)
		if err != nil {
			t.Fatal(err)
		}
		var last time.Time
		if tt.last != "" {
			last = at(tt.last)
		}
		now := at(tt.now)
		if got := s.Due(last, now); got != tt.due {
			t.Errorf("%s last %q now %s: due %v, want %v", tt.spec, tt.last, tt.now, got, tt.due)
		}
		if got := s.NextRun(last, now); !got.Equal(at(tt.next)) {
			t.Errorf("%s last %q now %s: next %v, want %s", tt.spec, tt.last, tt.now, got, tt.next)
		}
	}
}
