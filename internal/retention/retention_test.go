package retention

import (
	"testing"
	"time"

	"github.com/runup/runup/internal/repo"
)

// A year of daily jobs with keep daily 7 / weekly 4 / monthly 12 keeps
// exactly the expected ones.
func TestYearOfDailyJobs(t *testing.T) {
	start := time.Date(2025, 1, 1, 3, 0, 0, 0, time.UTC)
	var jobs []*repo.Job
	for d := range 365 {
		jobs = append(jobs, &repo.Job{Number: d + 1, Time: start.AddDate(0, 0, d)})
	}
	ds := Apply(jobs, Policy{Daily: 7, Weekly: 4, Monthly: 12}, time.UTC)
	kept := map[string][]string{}
	for _, d := range ds {
		if d.Keep {
			kept[d.Job.Time.Format("2006-01-02")] = d.Reasons
		}
	}
	want := map[string]bool{}
	// The 7 newest days: Dec 25..31.
	for d := 25; d <= 31; d++ {
		want[time.Date(2025, 12, d, 0, 0, 0, 0, time.UTC).Format("2006-01-02")] = true
	}
	// The newest job of the 4 newest ISO weeks: Wed Dec 31 (week 1 of 2026),
	// Sun Dec 28, Dec 21, Dec 14.
	for _, d := range []string{"2025-12-31", "2025-12-28", "2025-12-21", "2025-12-14"} {
		want[d] = true
	}
	// The newest job of each of the 12 months: the last day of each.
	for m := time.January; m <= time.December; m++ {
		want[time.Date(2025, m+1, 0, 0, 0, 0, 0, time.UTC).Format("2006-01-02")] = true
	}
	if len(kept) != len(want) {
		t.Errorf("kept %d jobs, want %d", len(kept), len(want))
	}
	for d := range want {
		if _, ok := kept[d]; !ok {
			t.Errorf("%s not kept", d)
		}
	}
	for d := range kept {
		if !want[d] {
			t.Errorf("%s kept by %v", d, kept[d])
		}
	}
	if r := kept["2025-12-31"]; len(r) != 3 {
		t.Errorf("newest job kept by %v, want daily, weekly and monthly", r)
	}
}

func TestLastWithinTags(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	jobs := []*repo.Job{
		{Number: 1, Time: now.Add(-30 * 24 * time.Hour), Tags: []string{"release"}},
		{Number: 2, Time: now.Add(-10 * 24 * time.Hour)},
		{Number: 3, Time: now.Add(-2 * 24 * time.Hour)},
		{Number: 4, Time: now.Add(-1 * time.Hour)},
		{Number: 5, Time: now},
	}
	ds := Apply(jobs, Policy{Last: 2, Within: 3 * 24 * time.Hour, Tags: []string{"release"}}, time.UTC)
	got := map[int]bool{}
	for _, d := range ds {
		got[d.Job.Number] = d.Keep
	}
	want := map[int]bool{1: true, 2: false, 3: true, 4: true, 5: true}
	for n, k := range want {
		if got[n] != k {
			t.Errorf("job %d: keep=%v, want %v", n, got[n], k)
		}
	}
	if !(Policy{}).Empty() || (Policy{Tags: []string{"x"}}).Empty() {
		t.Error("Empty is wrong")
	}
}
