package cli

import (
	"fmt"
	"path/filepath"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/runup/runup/internal/known"
)

func newKnown(g *globals) *cobra.Command {
	var forget string
	c := &cobra.Command{
		Use:   "known [--forget LOCATION]",
		Short: "List the repositories this machine knows, or forget one",
		Long: `RunUp remembers, for every repository location it has used, the
repository's ID, whether it is encrypted and a fingerprint of its key (as
ssh remembers host keys), and refuses a different repository at a known
location with exit code 14. After replacing a repository on purpose (a new
'runup init' at the same place, a restored copy), forget the old one:

  runup known --forget /srv/backups/site

The list lives in known-repositories.json in RunUp's config folder
(~/.config/runup), or where $RUNUP_KNOWN_REPOSITORIES says.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			path, err := known.DefaultPath()
			if err != nil {
				return err
			}
			store := known.Open(path)
			if forget != "" {
				loc := forget
				if !isURL(loc) {
					if loc, err = filepath.Abs(loc); err != nil {
						return usageErr(err)
					}
				}
				found, err := store.Forget(loc)
				if err != nil {
					return err
				}
				if !found {
					return usageErr(fmt.Errorf("%s is not a known repository location (see 'runup known')", loc))
				}
				g.printf("Forgot %s: the repository found there next is trusted on first use.\n", loc)
				return nil
			}
			all, err := store.List()
			if err != nil {
				return err
			}
			if g.json {
				if all == nil {
					all = []known.Repo{}
				}
				return writeJSON(g, all)
			}
			if len(all) == 0 {
				g.printf("No known repositories (%s).\n", path)
				return nil
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "location\tid\tencrypted\tfirst seen\tlast seen\thighest job")
			for _, r := range all {
				fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\t%d\n", r.Location, r.ID[:min(8, len(r.ID))], r.Encrypted,
					r.FirstSeen.Local().Format("2006-01-02 15:04"), r.LastSeen.Local().Format("2006-01-02 15:04"), r.MaxJob)
			}
			return tw.Flush()
		},
	}
	c.Flags().StringVar(&forget, "forget", "", "forget what is known of this location")
	return c
}
