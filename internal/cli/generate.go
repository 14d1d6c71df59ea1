package cli

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// newGenerate writes man pages (and, through cobra's completion command,
// shell completions) for packagers.
func newGenerate(g *globals) *cobra.Command {
	var manDir string
	c := &cobra.Command{
		Use:   "generate --man DIR",
		Short: "Write man pages (runup.1, runup-backup.1, ...) into a directory",
		Long: `Write a man page for runup and each of its commands into DIR, for
packagers ('man -l DIR/runup-backup.1' reads one). Shell completion
scripts come from 'runup completion bash|zsh|fish|powershell'.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if manDir == "" {
				return usageErr(errors.New("say where: runup generate --man DIR"))
			}
			if err := os.MkdirAll(manDir, 0o755); err != nil {
				return err
			}
			root := cmd.Root()
			root.DisableAutoGenTag = true // the same pages from the same code
			hdr := &doc.GenManHeader{Title: "RUNUP", Section: "1", Source: "RunUp " + Version, Manual: "RunUp Manual"}
			if err := doc.GenManTree(root, hdr, manDir); err != nil {
				return fmt.Errorf("man pages in %s: %w", manDir, err)
			}
			entries, _ := os.ReadDir(manDir)
			g.printf("Wrote %d man pages to %s.\n", len(entries), manDir)
			if g.json {
				return writeJSON(g, map[string]any{"dir": manDir, "man_pages": len(entries)})
			}
			return nil
		},
	}
	c.Flags().StringVar(&manDir, "man", "", "write man pages into `DIR`")
	return c
}
