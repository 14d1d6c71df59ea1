package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/runup/runup/internal/repo"
)

func newUnlock(g *globals) *cobra.Command {
	var all bool
	c := &cobra.Command{
		Use:   "unlock",
		Short: "Remove stale locks (of dead processes, or not refreshed for 30 minutes)",
		Long: `Remove stale locks: those of processes of this host that no longer run,
and those not refreshed for 30 minutes. --remove-all removes every lock:
use it only when no other RunUp process uses the repository.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := g.loadEnv()
			if err != nil {
				return err
			}
			r, err := e.openRepo(cmd.Context(), repo.Options{})
			if err != nil {
				return err
			}
			defer r.Close()
			n, unreadable, err := r.RemoveLocks(cmd.Context(), all)
			if err != nil {
				return err
			}
			g.printf("Removed %d lock(s).\n", n)
			if g.json {
				if err := writeJSON(g, map[string]int{"removed": n, "unverifiable": unreadable}); err != nil {
					return err
				}
			}
			if unreadable > 0 {
				return withCode(ExitDamaged, fmt.Errorf("%d lock file(s) cannot be verified (damaged or forged) and count as held: if no other RunUp process uses the repository, remove them with 'runup unlock --remove-all'", unreadable))
			}
			return nil
		},
	}
	c.Flags().BoolVar(&all, "remove-all", false, "remove all locks, not only stale ones")
	return c
}
