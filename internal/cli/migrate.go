package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/runup/runup/internal/repo"
)

func newMigrate(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "migrate",
		Short: "Upgrade the repository to the current format, in place",
		Long: fmt.Sprintf(`Upgrade a repository of format 1 or 2 to format %d (see docs/design.md).

Format 3 makes a blob's type part of its identity, so that a planted file
whose bytes equal a directory listing can no longer stand in for it, and
stores times exactly. The upgrade walks every job, stores again under its
own type any blob that was shadowed by one of the other type, and writes the
new config last: interrupted, it leaves a valid repository and can run
again. RunUp before format 3 cannot read the repository afterwards. Takes
the exclusive lock.`, repo.FormatVersion),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			e, err := g.loadEnv()
			if err != nil {
				return err
			}
			s, err := e.open(ctx, repo.Options{Uploads: e.uploads()}, exclusiveLock, "migrate")
			if err != nil {
				return err
			}
			defer s.close()
			if v := s.Config().Version; v >= repo.FormatVersion {
				g.printf("The repository is already at format %d.\n", v)
				if g.json {
					return writeJSON(g, map[string]int{"from": v, "to": v})
				}
				return nil
			}
			if _, problems, err := s.AdoptPacks(ctx); err != nil {
				return err
			} else if len(problems) > 0 {
				return withCode(ExitDamaged, fmt.Errorf("%v; run 'runup check' and repair first: nothing was changed", errors.Join(problems...)))
			}
			jobs, problems, err := s.Jobs(ctx)
			if err != nil {
				return err
			}
			if len(problems) > 0 {
				return withCode(ExitDamaged, fmt.Errorf("%v; run 'runup check' first: nothing was changed", errors.Join(problems...)))
			}
			st, err := s.Upgrade(ctx, jobs)
			if err != nil {
				return err
			}
			if g.json {
				return writeJSON(g, st)
			}
			g.printf("Repository upgraded from format %d to %d: %d trees walked, %d blob(s) stored again under their own type.\n",
				st.From, st.To, st.Trees, st.TypedAdded)
			return nil
		},
	}
}
