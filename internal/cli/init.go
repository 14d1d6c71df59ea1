package cli

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/runup/runup/internal/backend/local"
	"github.com/runup/runup/internal/repo"
)

func newInit(g *globals) *cobra.Command {
	var encrypt bool
	c := &cobra.Command{
		Use:   "init",
		Short: "Create the repository (default: .runup/ beside runup.yaml)",
		Long: `Create the repository. With a password (RUNUP_PASSWORD, --password-file,
runup.yaml's password:, or a prompt with --encrypt) every blob is encrypted
with AES-256-GCM; without one the repository is unencrypted but every byte
is still verified by its hash.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := g.loadEnv(false)
			if err != nil {
				return err
			}
			be, err := e.backend()
			if err != nil {
				return err
			}
			pw, err := e.password()
			if err != nil {
				return err
			}
			if pw == nil && encrypt {
				if pw, err = promptPassword("New repository password: "); err != nil {
					return err
				}
				if pw == nil {
					return withCode(ExitPassword, errors.New("--encrypt needs a terminal to ask for the password; or set RUNUP_PASSWORD or --password-file"))
				}
				again, err := promptPassword("Repeat the password: ")
				if err != nil {
					return err
				}
				if !bytes.Equal(pw, again) {
					return withCode(ExitPassword, errors.New("the two passwords differ; nothing was created"))
				}
			}
			if pw != nil && len(pw) == 0 {
				return withCode(ExitPassword, errors.New("the password is empty"))
			}
			if lb, ok := be.(*local.Backend); ok {
				if err := checkEmptyOrMissing(lb.Location()); err != nil {
					return err
				}
				if err := lb.Create(); err != nil {
					return err
				}
			}
			err = repo.Init(cmd.Context(), be, repo.InitOptions{Password: pw})
			if errors.Is(err, repo.ErrAlreadyExists) {
				return fmt.Errorf("RunUp is already initialized in %s", e.repoLoc)
			}
			if err != nil {
				return err
			}
			if pw == nil {
				g.printf("RunUp initialized in %s (unencrypted: set RUNUP_PASSWORD or use 'init --encrypt' to encrypt).\n", e.repoLoc)
			} else {
				g.printf("RunUp initialized in %s (encrypted; keep the password safe: without it the data is lost).\n", e.repoLoc)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&encrypt, "encrypt", false, "ask for a password on the terminal and encrypt the repository")
	return c
}

// checkEmptyOrMissing refuses to make a repository inside a directory that
// holds something else, unless it is already a repository.
func checkEmptyOrMissing(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil // missing: Create makes it
	}
	for _, e := range entries {
		switch e.Name() {
		case "config", "keys", "data", "index", "jobs", "locks":
		default:
			return fmt.Errorf("%s exists and is not a RunUp repository: choose an empty or new directory", dir)
		}
	}
	return nil
}
