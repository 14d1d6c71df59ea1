package cli

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/runup/runup/internal/config"
	"github.com/runup/runup/internal/progress"
	"github.com/runup/runup/internal/pruner"
	"github.com/runup/runup/internal/repo"
	"github.com/runup/runup/internal/retention"
)

type pruneFlags struct {
	maxUnused     string
	maxRepackSize string
}

func (p *pruneFlags) add(c *cobra.Command) {
	c.Flags().StringVar(&p.maxUnused, "max-unused", "5%", "repack packs whose unused share is larger than this")
	c.Flags().StringVar(&p.maxRepackSize, "max-repack-size", "", "repack at most this much in one run (e.g. 2G)")
}

func (p *pruneFlags) options(dryRun bool) (pruner.Options, error) {
	o := pruner.Options{DryRun: dryRun}
	pct, err := strconv.ParseFloat(strings.TrimSuffix(p.maxUnused, "%"), 64)
	if err != nil || pct < 0 || pct > 100 {
		return o, usageErr(fmt.Errorf("--max-unused %q: want a percentage like 5%%", p.maxUnused))
	}
	o.MaxUnused = pct / 100
	if p.maxRepackSize != "" {
		if o.MaxRepackSize, err = config.ParseSize(p.maxRepackSize); err != nil {
			return o, usageErr(fmt.Errorf("--max-repack-size: %w", err))
		}
	}
	return o, nil
}

func runPrune(ctx context.Context, g *globals, s *session, o pruner.Options) error {
	st, err := prune(ctx, g, s, o)
	if err != nil {
		return err
	}
	if g.json {
		return writeJSON(g, st)
	}
	return nil
}

// prune prunes and prints the outcome as text (not with --json: the
// caller writes the JSON document, which may hold more).
func prune(ctx context.Context, g *globals, s *session, o pruner.Options) (*pruner.Stats, error) {
	o.Grace = lockTiming().WithDefaults().Stale
	st, err := pruner.Prune(ctx, s.Repository, o)
	if err != nil {
		return nil, err
	}
	verb := "Removed"
	if o.DryRun {
		verb = "Would remove"
	}
	g.printf("%s %d unused pack(s) and repack %d; %d kept. %s of %s freed.\n", verb, st.PacksDeleted, st.PacksRepacked,
		st.PacksKept, progress.Bytes(st.BytesFreed), progress.Bytes(st.BytesBefore))
	if st.PacksRecent > 0 {
		g.printf("%d pack(s) written in the last %v and not yet indexed were left alone: a backup may still use them.\n",
			st.PacksRecent, o.Grace)
	}
	return st, nil
}

// forgetResult is what 'forget --json' prints: restic's keep and remove
// lists (per job, with the reasons a job is kept), and prune's outcome.
type forgetResult struct {
	Keep   []forgetEntry `json:"keep"`
	Remove []forgetEntry `json:"remove"`
	DryRun bool          `json:"dry_run"`
	Prune  *pruner.Stats `json:"prune,omitempty"`
}

type forgetEntry struct {
	Number  int       `json:"number"`
	Project string    `json:"project,omitempty"`
	Time    time.Time `json:"time,omitzero"`
	Host    string    `json:"host,omitempty"`
	Reasons []string  `json:"reasons,omitempty"`
}

func entryOf(j *repo.Job, reasons []string) forgetEntry {
	return forgetEntry{Number: j.Number, Project: j.Project, Time: j.Time, Host: j.Host, Reasons: reasons}
}

func newPrune(g *globals) *cobra.Command {
	var pf pruneFlags
	var dryRun bool
	c := &cobra.Command{
		Use:   "prune",
		Short: "Remove data no job uses; repack mostly unused packs",
		Long: `Remove data that no job references. Packs with no used data are deleted;
packs whose unused share exceeds --max-unused are repacked. New data and
index are written before anything is removed, so an interrupted prune
leaves a valid repository. Takes the exclusive lock.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := pf.options(dryRun)
			if err != nil {
				return err
			}
			e, err := g.loadEnv()
			if err != nil {
				return err
			}
			s, err := e.open(cmd.Context(), repo.Options{Uploads: e.uploads()}, exclusiveLock, "prune")
			if err != nil {
				return err
			}
			defer s.close()
			return runPrune(cmd.Context(), g, s, o)
		},
	}
	pf.add(c)
	c.Flags().BoolVarP(&dryRun, "dry-run", "n", false, "say what would be removed, remove nothing")
	return c
}

// errNoPolicy: forget was given no policy, and no project has keep:.
var errNoPolicy = errors.New("no keep policy: give --keep-last, --keep-daily, … or add keep: to the project in runup.yaml (version '2'); nothing was removed")

type keepFlags struct {
	last, hourly, daily, weekly, monthly, yearly int
	within                                       string
	tags                                         []string
}

func (k *keepFlags) add(c *cobra.Command) {
	f := c.Flags()
	f.IntVar(&k.last, "keep-last", 0, "keep the N newest jobs")
	f.IntVar(&k.hourly, "keep-hourly", 0, "keep the newest job of each of the last N hours")
	f.IntVar(&k.daily, "keep-daily", 0, "keep the newest job of each of the last N days")
	f.IntVar(&k.weekly, "keep-weekly", 0, "keep the newest job of each of the last N weeks")
	f.IntVar(&k.monthly, "keep-monthly", 0, "keep the newest job of each of the last N months")
	f.IntVar(&k.yearly, "keep-yearly", 0, "keep the newest job of each of the last N years")
	f.StringVar(&k.within, "keep-within", "", "keep jobs within this long of the newest (e.g. 30d, 1y6m)")
	f.StringSliceVar(&k.tags, "keep-tag", nil, "keep jobs with this tag (repeatable)")
}

func (k *keepFlags) policy() (retention.Policy, error) {
	p := retention.Policy{Last: k.last, Hourly: k.hourly, Daily: k.daily, Weekly: k.weekly, Monthly: k.monthly,
		Yearly: k.yearly, Tags: k.tags}
	for _, n := range []int{k.last, k.hourly, k.daily, k.weekly, k.monthly, k.yearly} {
		if n < 0 {
			return p, usageErr(errors.New("--keep-* counts must be 0 or more"))
		}
	}
	if k.within != "" {
		d, err := config.ParseDuration(k.within)
		if err != nil {
			return p, usageErr(fmt.Errorf("--keep-within: %w", err))
		}
		p.Within = d
	}
	return p, nil
}

func fromConfig(k *config.Keep) retention.Policy {
	if k == nil {
		return retention.Policy{}
	}
	return retention.Policy{Last: k.Last, Hourly: k.Hourly, Daily: k.Daily, Weekly: k.Weekly, Monthly: k.Monthly,
		Yearly: k.Yearly, Within: k.Within, Tags: k.Tags}
}

func newForget(g *globals) *cobra.Command {
	var (
		kf      keepFlags
		pf      pruneFlags
		dryRun  bool
		doPrune bool
	)
	c := &cobra.Command{
		Use:   "forget [PROJECT... | JOB...]",
		Short: "Remove jobs by a keep policy (runup.yaml keep: or --keep-* flags), or by number",
		Long: `Remove jobs. With job numbers, those jobs. Otherwise each project's jobs are
kept by a policy: the --keep-* flags, or the project's keep: in runup.yaml
(version 2). Without any policy forget refuses rather than remove every job.
--dry-run lists every job kept and removed, with the rule that kept it.
--prune reclaims the space afterwards. Takes the exclusive lock.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runForget(cmd.Context(), g, kf, pf, dryRun, doPrune, args)
		},
	}
	kf.add(c)
	pf.add(c)
	c.Flags().BoolVarP(&dryRun, "dry-run", "n", false, "list what would be kept and removed, remove nothing")
	c.Flags().BoolVar(&doPrune, "prune", false, "prune after forgetting")
	return c
}

// runForget removes jobs by number or by the keep policies, then prunes if
// asked.
func runForget(ctx context.Context, g *globals, kf keepFlags, pf pruneFlags, dryRun, doPrune bool, args []string) error {
	flagPolicy, err := kf.policy()
	if err != nil {
		return err
	}
	po, err := pf.options(dryRun)
	if err != nil {
		return err
	}
	e, err := g.loadEnv()
	if err != nil {
		return err
	}
	// Forgetting reads job records only; prune loads the index itself.
	s, err := e.lockedRepo(ctx, repo.Options{Uploads: e.uploads()}, exclusiveLock, "forget")
	if err != nil {
		return err
	}
	defer s.close()
	jobs, err := s.jobs(ctx)
	if err != nil {
		return err
	}
	var remove []*repo.Job
	res := forgetResult{Keep: []forgetEntry{}, Remove: []forgetEntry{}, DryRun: dryRun}
	numeric := len(args) > 0
	for _, a := range args {
		if _, err := strconv.Atoi(a); err != nil {
			numeric = false
		}
	}
	if numeric {
		if !flagPolicy.Empty() {
			return usageErr(errors.New("give job numbers or a --keep-* policy, not both"))
		}
		missing, _, err := s.MissingJobs(ctx)
		if err != nil {
			return err
		}
		for _, a := range args {
			j, err := resolveJob(jobs, a)
			if err != nil {
				// A job whose record is missing or damaged can be
				// forgotten too: a tombstone says it is gone on purpose.
				n, _ := strconv.Atoi(a)
				_, _, lerr := s.LoadJobRevisions(ctx, n)
				if !slices.Contains(missing, n) && !errors.Is(lerr, repo.ErrDamaged) {
					return err
				}
				remove = append(remove, &repo.Job{Number: n})
				g.printf("remove job %d  (its record is missing or damaged)\n", n)
				continue
			}
			remove = append(remove, j)
			g.printf("remove job %d  %s  %s\n", j.Number, j.Time.Local().Format("2006-01-02 15:04"), j.Project)
		}
	} else {
		byProject := map[string][]*repo.Job{}
		var projects []string
		for _, j := range jobs {
			if _, ok := byProject[j.Project]; !ok {
				projects = append(projects, j.Project)
			}
			byProject[j.Project] = append(byProject[j.Project], j)
		}
		if len(args) > 0 {
			for _, a := range args {
				if _, ok := byProject[a]; !ok {
					return usageErr(fmt.Errorf("project %q has no jobs", a))
				}
			}
			projects = args
		}
		anyPolicy := false
		for _, p := range projects {
			pol := flagPolicy
			if pol.Empty() && e.cfg != nil {
				if proj, ok := e.cfg.Projects[p]; ok {
					pol = fromConfig(proj.Keep)
				}
			}
			if pol.Empty() {
				g.printf("project %s: no keep policy; all %d jobs kept\n", p, len(byProject[p]))
				continue
			}
			anyPolicy = true
			for _, d := range retention.Apply(byProject[p], pol, time.Local) {
				j := d.Job
				if d.Keep {
					res.Keep = append(res.Keep, entryOf(j, d.Reasons))
					g.printf("keep   job %d  %s  %s  (%s)\n", j.Number, j.Time.Local().Format("2006-01-02 15:04"), j.Project, strings.Join(d.Reasons, ", "))
				} else {
					g.printf("remove job %d  %s  %s\n", j.Number, j.Time.Local().Format("2006-01-02 15:04"), j.Project)
					remove = append(remove, j)
				}
			}
		}
		if !anyPolicy {
			return usageErr(errNoPolicy)
		}
	}
	slices.SortFunc(remove, func(a, b *repo.Job) int { return a.Number - b.Number })
	for _, j := range remove {
		res.Remove = append(res.Remove, entryOf(j, nil))
	}
	// finish prunes if asked and prints the JSON document.
	finish := func() error {
		if doPrune {
			st, err := prune(ctx, g, s, po)
			if err != nil {
				return err
			}
			res.Prune = st
		}
		if g.json {
			return writeJSON(g, res)
		}
		return nil
	}
	if dryRun {
		g.printf("Dry run: %d job(s) would be removed.\n", len(remove))
		return finish()
	}
	for _, j := range remove {
		if err := s.ForgetJob(ctx, j.Number); err != nil {
			return err
		}
	}
	g.printf("Removed %d job(s).\n", len(remove))
	if len(remove) > 0 && !doPrune {
		g.printf("Run 'runup prune' to reclaim their space.\n")
	}
	return finish()
}
