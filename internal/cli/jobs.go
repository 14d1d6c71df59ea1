package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/runup/runup/internal/progress"
	"github.com/runup/runup/internal/repo"
)

// resolveJob reads a job spec: a number, "latest", or "PROJECT:latest".
func resolveJob(jobs []*repo.Job, spec string) (*repo.Job, error) {
	if n, err := strconv.Atoi(spec); err == nil {
		for _, j := range jobs {
			if j.Number == n {
				return j, nil
			}
		}
		return nil, fmt.Errorf("job %d does not exist: %s", n, jobNumbers(jobs))
	}
	project, latest := "", spec
	if p, rest, ok := strings.Cut(spec, ":"); ok {
		project, latest = p, rest
	}
	if latest != "latest" {
		return nil, usageErr(fmt.Errorf("job %q: give a number, latest, or PROJECT:latest", spec))
	}
	var best *repo.Job
	for _, j := range jobs {
		if (project == "" || j.Project == project) && (best == nil || j.Number > best.Number) {
			best = j
		}
	}
	if best == nil {
		if project != "" {
			return nil, fmt.Errorf("project %q has no jobs", project)
		}
		return nil, fmt.Errorf("the repository has no jobs yet (run 'runup backup')")
	}
	return best, nil
}

// readSession opens the repository for reading, with its jobs, and its
// index only when the command reads blobs: listing jobs needs none.
func (g *globals) readSession(ctx context.Context, needIndex bool) (*session, []*repo.Job, error) {
	e, err := g.loadEnv()
	if err != nil {
		return nil, nil, err
	}
	open := e.open
	if !needIndex {
		open = e.lockedRepo
	}
	s, err := open(ctx, repo.Options{}, readLock, "read")
	if err != nil {
		return nil, nil, err
	}
	jobs, problems, err := s.Jobs(ctx)
	if err != nil {
		s.close()
		return nil, nil, err
	}
	for _, p := range problems {
		fmt.Fprintf(g.stderr, "warning: %v (run 'runup check')\n", p)
	}
	return s, jobs, nil
}

func newJobs(g *globals) *cobra.Command {
	var tags, hosts []string
	c := &cobra.Command{
		Use:   "jobs [PROJECT]",
		Short: "List jobs: number, project, time, host, tags, files, size, size added, duration",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, jobs, err := g.readSession(cmd.Context(), false)
			if err != nil {
				return err
			}
			defer s.close()
			if len(args) == 1 && !slices.ContainsFunc(jobs, func(j *repo.Job) bool { return j.Project == args[0] }) {
				// A project of runup.yaml without jobs yet is no mistake.
				if cfg := s.env.cfg; cfg == nil || cfg.Projects[args[0]] == nil {
					known := projectNames(s.env, jobs)
					return usageErr(fmt.Errorf("unknown project %q: the projects are %s", args[0], strings.Join(known, ", ")))
				}
			}
			var out []*repo.Job
			for _, j := range jobs {
				if len(args) == 1 && j.Project != args[0] {
					continue
				}
				if len(tags) > 0 && !slices.ContainsFunc(tags, func(t string) bool { return slices.Contains(j.Tags, t) }) {
					continue
				}
				if len(hosts) > 0 && !slices.Contains(hosts, j.Host) {
					continue
				}
				out = append(out, j)
			}
			if g.json {
				if out == nil {
					out = []*repo.Job{}
				}
				return writeJSON(g, out)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(tw, "job\tproject\ttime\thost\ttags\tfiles\tsize\tadded\tduration\t")
			for _, j := range out {
				s := j.Summary
				tagList := strings.Join(j.Tags, ",")
				if tagList == "" {
					tagList = "-"
				}
				mark := ""
				if j.Incomplete {
					mark = " (incomplete)"
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%.1fs%s\t\n", j.Number, j.Project, j.Time.Local().Format("2006-01-02 15:04:05"),
					j.Host, tagList, s.FilesNew+s.FilesChanged+s.FilesUnchanged, progress.Bytes(s.BytesTotal), progress.Bytes(s.BytesAdded), s.Seconds, mark)
			}
			tw.Flush()
			if len(out) == 0 {
				g.printf("No jobs.\n")
			}
			return nil
		},
	}
	c.Flags().StringSliceVar(&tags, "tag", nil, "only jobs with this tag (repeatable)")
	c.Flags().StringSliceVar(&hosts, "host", nil, "only jobs from this host (repeatable)")
	return c
}

// projectNames lists the projects runup.yaml names and those with jobs.
func projectNames(e *env, jobs []*repo.Job) []string {
	var names []string
	if e.cfg != nil {
		names = append(names, e.cfg.Order...)
	}
	for _, j := range jobs {
		if !slices.Contains(names, j.Project) {
			names = append(names, j.Project)
		}
	}
	if len(names) == 0 {
		return []string{"(none yet)"}
	}
	return names
}

// jobNumbers says which jobs exist, for a message about one that does not.
func jobNumbers(jobs []*repo.Job) string {
	switch n := len(jobs); {
	case n == 0:
		return "the repository has no jobs yet (run 'runup backup')"
	case n <= 12:
		nums := make([]string, n)
		for i, j := range jobs {
			nums[i] = fmt.Sprint(j.Number)
		}
		return "the jobs are " + strings.Join(nums, ", ")
	default:
		return fmt.Sprintf("there are %d jobs, from %d to %d, with gaps where jobs were forgotten (see 'runup jobs')", n, jobs[0].Number, jobs[n-1].Number)
	}
}

func writeJSON(g *globals, v any) error {
	enc := json.NewEncoder(g.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// event prints, with --json, one JSON line of a long-running command
// (mount, ui), its kind in message_type as restic's are.
func (g *globals) event(kind string, fields map[string]any) {
	if !g.json {
		return
	}
	fields["message_type"] = kind
	_ = json.NewEncoder(g.stdout).Encode(fields)
}

func newTag(g *globals) *cobra.Command {
	var add, remove []string
	c := &cobra.Command{
		Use:   "tag JOB... --add T | --remove T",
		Short: "Add or remove labels of jobs",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(add) == 0 && len(remove) == 0 {
				return usageErr(fmt.Errorf("say --add TAG or --remove TAG"))
			}
			ctx := cmd.Context()
			e, err := g.loadEnv()
			if err != nil {
				return err
			}
			s, err := e.lockedRepo(ctx, repo.Options{}, exclusiveLock, "tag")
			if err != nil {
				return err
			}
			defer s.close()
			jobs, _, err := s.Jobs(ctx)
			if err != nil {
				return err
			}
			type tagged struct {
				Number int      `json:"number"`
				Tags   []string `json:"tags"`
			}
			changed := []tagged{}
			for _, spec := range args {
				j, err := resolveJob(jobs, spec)
				if err != nil {
					return err
				}
				for _, t := range add {
					if !slices.Contains(j.Tags, t) {
						j.Tags = append(j.Tags, t)
					}
				}
				j.Tags = slices.DeleteFunc(j.Tags, func(t string) bool { return slices.Contains(remove, t) })
				if err := s.UpdateJob(ctx, j); err != nil {
					return err
				}
				g.printf("Job %d: tags %s\n", j.Number, strings.Join(j.Tags, ", "))
				changed = append(changed, tagged{j.Number, append([]string{}, j.Tags...)})
			}
			if g.json {
				return writeJSON(g, changed)
			}
			return nil
		},
	}
	c.Flags().StringSliceVar(&add, "add", nil, "tag to add (repeatable)")
	c.Flags().StringSliceVar(&remove, "remove", nil, "tag to remove (repeatable)")
	return c
}

// parseWhen reads a date or time for --since/--until.
func parseWhen(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339, "2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, usageErr(fmt.Errorf("time %q: use 2006-01-02, 2006-01-02 15:04 or RFC 3339", s))
}
