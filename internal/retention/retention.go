// Package retention decides which jobs a keep policy keeps, and says which
// rule kept each one.
package retention

import (
	"fmt"
	"slices"
	"time"

	"github.com/runup/runup/internal/repo"
)

// Policy is a keep policy, as in runup.yaml's keep: or forget's flags.
type Policy struct {
	Last, Hourly, Daily, Weekly, Monthly, Yearly int
	Within                                       time.Duration
	Tags                                         []string
}

// Empty reports whether the policy keeps nothing: forget refuses it
// rather than removing every job.
func (p Policy) Empty() bool {
	return p.Last == 0 && p.Hourly == 0 && p.Daily == 0 && p.Weekly == 0 && p.Monthly == 0 && p.Yearly == 0 &&
		p.Within == 0 && len(p.Tags) == 0
}

// Decision is the fate of one job.
type Decision struct {
	Job     *repo.Job
	Keep    bool
	Reasons []string // the rules that keep it
}

type bucket struct {
	name  string
	count int
	key   func(time.Time) string
}

// Apply decides for one project's jobs, newest first in the result. Times
// are bucketed in loc (the local time zone for users, UTC in tests).
func Apply(jobs []*repo.Job, p Policy, loc *time.Location) []Decision {
	sorted := slices.Clone(jobs)
	slices.SortFunc(sorted, func(a, b *repo.Job) int {
		if c := b.Time.Compare(a.Time); c != 0 {
			return c
		}
		return b.Number - a.Number
	})
	ds := make([]Decision, len(sorted))
	for i, j := range sorted {
		ds[i].Job = j
	}
	keep := func(i int, why string) {
		ds[i].Keep = true
		ds[i].Reasons = append(ds[i].Reasons, why)
	}
	for i := 0; i < p.Last && i < len(ds); i++ {
		keep(i, "last")
	}
	buckets := []bucket{
		{"hourly", p.Hourly, func(t time.Time) string { return t.Format("2006-01-02 15") }},
		{"daily", p.Daily, func(t time.Time) string { return t.Format("2006-01-02") }},
		{"weekly", p.Weekly, func(t time.Time) string { y, w := t.ISOWeek(); return fmt.Sprintf("%d-%02d", y, w) }},
		{"monthly", p.Monthly, func(t time.Time) string { return t.Format("2006-01") }},
		{"yearly", p.Yearly, func(t time.Time) string { return t.Format("2006") }},
	}
	for _, b := range buckets {
		// The newest job of each of the most recent count periods.
		last, n := "", 0
		for i := range ds {
			if n >= b.count {
				break
			}
			k := b.key(ds[i].Job.Time.In(loc))
			if k != last {
				keep(i, b.name)
				last = k
				n++
			}
		}
	}
	if p.Within > 0 && len(ds) > 0 {
		// Relative to the newest job, so that a pause in backups does not
		// empty the repository.
		limit := ds[0].Job.Time.Add(-p.Within)
		for i := range ds {
			if !ds[i].Job.Time.Before(limit) {
				keep(i, "within "+p.Within.String())
			}
		}
	}
	for i := range ds {
		for _, t := range p.Tags {
			if slices.Contains(ds[i].Job.Tags, t) {
				keep(i, "tag "+t)
				break
			}
		}
	}
	return ds
}
