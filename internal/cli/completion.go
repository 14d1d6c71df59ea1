package cli

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/runup/runup/internal/repo"
)

// completionWait bounds what completing a job number may cost: the user
// is waiting at the prompt.
const completionWait = 3 * time.Second

// completeProjects offers the project names of runup.yaml (those not yet
// on the command line).
func completeProjects(g *globals) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		e, err := g.loadEnv()
		if err != nil || e.cfg == nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for _, p := range e.cfg.Order {
			if !slices.Contains(args, p) {
				out = append(out, p)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeJobs offers job numbers (newest first, described by project and
// time), latest and PROJECT:latest, for the first max arguments (0: any
// number). It never asks for a password: without one, it offers nothing.
func completeJobs(g *globals, max int) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if max > 0 && len(args) >= max {
			return nil, cobra.ShellCompDirectiveDefault
		}
		return jobCompletions(cmd.Context(), g, true), cobra.ShellCompDirectiveNoFileComp
	}
}

func jobCompletions(ctx context.Context, g *globals, names bool) []cobra.Completion {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, completionWait)
	defer cancel()
	e, err := g.loadEnv()
	if err != nil {
		return nil
	}
	e.noPrompt = true
	r, err := e.openRepo(ctx, repo.Options{})
	if err != nil {
		return nil
	}
	defer r.Close()
	jobs, _, err := r.Jobs(ctx)
	if err != nil {
		return nil
	}
	var out []cobra.Completion
	if names {
		out = append(out, cobra.CompletionWithDesc("latest", "the newest job"))
		var projects []string
		for _, j := range jobs {
			if !slices.Contains(projects, j.Project) {
				projects = append(projects, j.Project)
				out = append(out, cobra.CompletionWithDesc(j.Project+":latest", "the newest job of "+j.Project))
			}
		}
	}
	for i := len(jobs) - 1; i >= 0; i-- {
		j := jobs[i]
		out = append(out, cobra.CompletionWithDesc(strconv.Itoa(j.Number),
			fmt.Sprintf("%s %s %s", j.Project, j.Time.Local().Format("2006-01-02 15:04"), j.Host)))
	}
	return out
}

// completeJobFlag completes the value of -j/--job: numbers only.
func completeJobFlag(g *globals) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		return jobCompletions(cmd.Context(), g, false), cobra.ShellCompDirectiveNoFileComp
	}
}

// addCompletions attaches project and job completion to the commands
// that take them.
func addCompletions(g *globals, root *cobra.Command) {
	for _, c := range root.Commands() {
		switch c.Name() {
		case "backup", "jobs", "forget", "restore":
			c.ValidArgsFunction = completeProjects(g)
		case "ls", "dump":
			c.ValidArgsFunction = completeJobs(g, 1)
		case "diff":
			c.ValidArgsFunction = completeJobs(g, 2)
		case "tag":
			c.ValidArgsFunction = completeJobs(g, 0)
		}
		if f := c.Flags().Lookup("job"); f != nil {
			_ = c.RegisterFlagCompletionFunc("job", completeJobFlag(g))
		}
	}
}
