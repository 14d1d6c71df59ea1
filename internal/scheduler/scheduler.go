// Package scheduler turns the cron expressions of runup.yaml into due runs.
//
// A schedule is standard cron (five fields) or one of @hourly, @daily,
// @weekly, @monthly, @yearly and @every DURATION, parsed by
// github.com/robfig/cron. What is RunUp's own is when a run is due: a run
// is due when the schedule fired at least once since the last run started,
// so a run missed while the machine was off happens once at start-up, as
// anacron does, and never twice to catch up.
package scheduler

import (
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// Schedule is a parsed cron expression.
type Schedule struct {
	spec  string
	sched cron.Schedule
}

var parser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// MinEvery is the shortest @every interval: shorter ones would keep a
// repository locked all the time (tests use seconds).
const MinEvery = time.Second

// Parse reads a cron expression: "0 3 * * *", "@daily", "@every 15m".
func Parse(spec string) (Schedule, error) {
	s := strings.TrimSpace(spec)
	if s == "" {
		return Schedule{}, fmt.Errorf("empty schedule: write cron syntax like '0 3 * * *', or @hourly, @daily, @every 15m")
	}
	if strings.HasPrefix(s, "TZ=") || strings.HasPrefix(s, "CRON_TZ=") {
		return Schedule{}, fmt.Errorf("schedule %q: time zones are not supported here; schedules follow the machine's local time", spec)
	}
	if rest, ok := strings.CutPrefix(s, "@every "); ok {
		d, err := time.ParseDuration(strings.TrimSpace(rest))
		if err != nil {
			return Schedule{}, fmt.Errorf("schedule %q: %q is not a duration like 90s, 15m or 6h", spec, strings.TrimSpace(rest))
		}
		if d < MinEvery {
			return Schedule{}, fmt.Errorf("schedule %q: the interval must be at least %v", spec, MinEvery)
		}
	}
	sched, err := parser.Parse(s)
	if err != nil {
		return Schedule{}, fmt.Errorf("schedule %q: %v (write cron syntax like '0 3 * * *', or @hourly, @daily, @every 15m)", spec, err)
	}
	return Schedule{spec: s, sched: sched}, nil
}

// String is the expression as written.
func (s Schedule) String() string { return s.spec }

// IsZero reports whether s is the zero Schedule (no schedule).
func (s Schedule) IsZero() bool { return s.sched == nil }

// Next is the first time the schedule fires after t.
func (s Schedule) Next(t time.Time) time.Time { return s.sched.Next(t) }

// Due reports whether a run is due at now, given when the last run started
// (zero: never). Several firings missed in a row make one run.
func (s Schedule) Due(last, now time.Time) bool {
	if last.IsZero() {
		return true
	}
	return !s.Next(last).After(now)
}

// NextRun is when the next run should start: now if one is due, else the
// schedule's next firing.
func (s Schedule) NextRun(last, now time.Time) time.Time {
	if s.Due(last, now) {
		return now
	}
	return s.Next(last)
}
