package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/runup/runup/internal/config"
	"github.com/runup/runup/internal/copier"
	"github.com/runup/runup/internal/progress"
	"github.com/runup/runup/internal/repo"
)

func newCopy(g *globals) *cobra.Command {
	var to, toPasswordFile, project string
	c := &cobra.Command{
		Use:   "copy --to LOCATION [JOB...]",
		Short: "Copy jobs to another repository (by default every job it lacks)",
		Long: `Copy jobs into another repository, which must exist ('runup init --repo
LOCATION' makes one). Only chunks the target does not hold are sent,
sealed with the target's keys; each job keeps its project, host, time and
tags, and is numbered by the target. A job copied before (from this
repository, or from where this one got it) is not copied again, so an
interrupted copy is simply run again.

The target's password: --to-password-file, else $RUNUP_TO_PASSWORD, else
the source's (RUNUP_PASSWORD, --password-file, runup.yaml), else a prompt.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if to == "" {
				return usageErr(errors.New("say where to copy with --to LOCATION (a path, sftp://… or s3://…)"))
			}
			e, err := g.loadEnv()
			if err != nil {
				return err
			}
			target := e.targetEnv(to, false, toPassword(e, toPasswordFile, ""))
			if target.repoLoc == e.repoLoc {
				return usageErr(fmt.Errorf("--to %s is the source repository itself", to))
			}
			ctx := cmd.Context()
			s, err := e.open(ctx, repo.Options{}, readLock, "copy")
			if err != nil {
				return err
			}
			defer s.close()
			jobs, err := s.jobs(ctx)
			if err != nil {
				return err
			}
			var chosen []*repo.Job
			for _, a := range args {
				j, err := resolveJob(jobs, a)
				if err != nil {
					return err
				}
				chosen = append(chosen, j)
			}
			if len(args) == 0 {
				for _, j := range jobs {
					if project == "" || j.Project == project {
						chosen = append(chosen, j)
					}
				}
			}
			res, err := copyJobs(ctx, g, s, target, chosen)
			if g.json && res != nil {
				if jerr := writeJSON(g, res); jerr != nil && err == nil {
					err = jerr
				}
			}
			return err
		},
	}
	c.Flags().StringVar(&to, "to", "", "the repository to copy into (a path, sftp://… or s3://…)")
	c.Flags().StringVar(&toPasswordFile, "to-password-file", "", "read the target's password from this file (else $RUNUP_TO_PASSWORD, else the source's)")
	c.Flags().StringVar(&project, "project", "", "copy only this project's jobs")
	return c
}

// toPassword is where a copy target's password comes from: a file, then
// $RUNUP_TO_PASSWORD, then a password source of runup.yaml's copy-to, then
// the source's own sources, then a prompt (nil bytes).
func toPassword(e *env, file, spec string) func() ([]byte, error) {
	return func() ([]byte, error) {
		switch {
		case file != "":
			b, err := os.ReadFile(file)
			if err != nil {
				return nil, usageErr(fmt.Errorf("--to-password-file: %w", err))
			}
			if b = []byte(strings.TrimRight(string(b), "\r\n")); len(b) == 0 {
				return nil, usageErr(fmt.Errorf("--to-password-file %s is empty", file))
			}
			return b, nil
		case os.Getenv("RUNUP_TO_PASSWORD") != "":
			return []byte(os.Getenv("RUNUP_TO_PASSWORD")), nil
		case spec != "":
			pw, err := config.ReadPassword(spec, e.cfg.File)
			if err != nil {
				return nil, withCode(ExitPassword, fmt.Errorf("copy-to: %w", err))
			}
			return pw, nil
		}
		return (&env{g: e.g, cfg: e.cfg}).password()
	}
}

// copyResult is what a copy did, for --json.
type copyResult struct {
	Target string      `json:"target"`
	Copied []copiedJob `json:"copied"`
	Stats  copyStats   `json:"stats"`
}

type copiedJob struct {
	Source int `json:"source_job"`
	Target int `json:"target_job"`
}

type copyStats struct {
	BlobsRead  int64 `json:"blobs_read"`
	BytesRead  int64 `json:"bytes_read"`
	BlobsAdded int64 `json:"blobs_added"`
	BytesAdded int64 `json:"bytes_added"`
}

// copyJobs copies the chosen jobs of s that the target lacks into it.
func copyJobs(ctx context.Context, g *globals, s *session, target *env, chosen []*repo.Job) (*copyResult, error) {
	t, err := target.open(ctx, repo.Options{Uploads: target.uploads()}, sharedLock, "copy")
	if err != nil {
		if errors.Is(err, repo.ErrNotFound) {
			return nil, fmt.Errorf("no repository at %s to copy into: create it with 'runup init --repo %s': %w", target.repoLoc, target.repoLoc, repo.ErrNotFound)
		}
		return nil, fmt.Errorf("copy target %s: %w", target.repoLoc, err)
	}
	defer t.close()
	if _, _, err := t.AdoptPacks(ctx); err != nil {
		return nil, err
	}
	srcID, dstID := s.Config().ID, t.Config().ID
	if srcID == dstID {
		return nil, usageErr(fmt.Errorf("%s is the source repository itself", target.repoLoc))
	}
	all, _, err := s.Jobs(ctx)
	if err != nil {
		return nil, err
	}
	have, problems, err := t.Jobs(ctx)
	if err != nil {
		return nil, err
	}
	for _, p := range problems {
		fmt.Fprintf(g.stderr, "warning: %s: %v\n", target.repoLoc, p)
	}
	missing := copier.Missing(chosen, have, srcID, dstID)
	res := &copyResult{Target: target.repoLoc, Copied: []copiedJob{}}
	if len(missing) == 0 {
		g.printf("%s already holds every job asked for.\n", target.repoLoc)
		return res, nil
	}
	var st copier.Stats
	for _, j := range missing {
		hint, ok := copier.FindHint(j, all, have, srcID, dstID)
		var hp *copier.Hint
		if ok {
			hp = &hint
		}
		line := g.progressLine(func() string {
			return fmt.Sprintf("copy job %d: %d chunks read (%s), %s added", j.Number, st.BlobsRead.Load(),
				progress.Bytes(st.BytesRead.Load()), progress.Bytes(st.BytesAdded.Load()))
		})
		nj, err := copier.Copy(ctx, s.Repository, t.Repository, j, hp, copier.Options{Workers: s.env.readers(), Stats: &st})
		line.Stop()
		if err != nil {
			return res, err
		}
		have = append(have, nj)
		res.Copied = append(res.Copied, copiedJob{Source: j.Number, Target: nj.Number})
		g.printf("copied job %d (%s, %s) to %s as job %d\n", j.Number, j.Project, j.Time.Local().Format("2006-01-02 15:04"), target.repoLoc, nj.Number)
	}
	res.Stats = copyStats{BlobsRead: st.BlobsRead.Load(), BytesRead: st.BytesRead.Load(), BlobsAdded: st.BlobsAdded.Load(), BytesAdded: st.BytesAdded.Load()}
	g.printf("%d job(s) copied: %s read, %s added to %s.\n", len(res.Copied), progress.Bytes(res.Stats.BytesRead), progress.Bytes(res.Stats.BytesAdded), target.repoLoc)
	if err := t.PublishIndex(ctx); err != nil {
		fmt.Fprintf(g.stderr, "warning: local index store: %v\n", err)
	}
	return res, nil
}
