package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/runup/runup/internal/backend"
	"github.com/runup/runup/internal/repo"
)

func newInit(g *globals) *cobra.Command {
	var encrypt, noEncryption, noGroups bool
	var version int
	c := &cobra.Command{
		Use:   "init",
		Short: "Create the repository (default: .runup/ beside runup.yaml)",
		Long: `Create the repository. With a password (RUNUP_PASSWORD, --password-file,
runup.yaml's password:, or a prompt with --encrypt) every blob is encrypted
with AES-256-GCM; without one the repository is unencrypted but every byte
is still verified by its hash.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := g.loadEnv()
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
				if len(pw) == 0 {
					return withCode(ExitPassword, errors.New("the password is empty: an encrypted repository needs one; nothing was created"))
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
				return withCode(ExitPassword, errors.New("the password is empty: an encrypted repository needs one; nothing was created"))
			}
			if pw == nil && isURL(e.repoLoc) && !noEncryption {
				return withCode(ExitPassword, errors.New("a remote repository is encrypted by default: set RUNUP_PASSWORD (or --password-file, or password: in runup.yaml), or pass --no-encryption to store data unencrypted off this machine"))
			}
			if !isURL(e.repoLoc) {
				if err := checkEmptyOrMissing(e.repoLoc); err != nil {
					return err
				}
			}
			be, err := e.backend(cmd.Context())
			if err != nil {
				return err
			}
			defer be.Close()
			if err := createLayout(cmd.Context(), be); err != nil {
				return err
			}
			id, err := repo.Init(cmd.Context(), be, repo.InitOptions{Password: pw, NoGroups: noGroups, Version: version})
			if errors.Is(err, repo.ErrAlreadyExists) {
				return fmt.Errorf("RunUp is already initialized in %s", e.repoLoc)
			}
			if err != nil {
				return err
			}
			// The user made this repository here: remember it, replacing
			// whatever was known of the location.
			if store, _, _ := e.remembered(be.Location()); store != nil {
				if err := store.Put(identityOf(be.Location(), id)); err != nil {
					fmt.Fprintf(g.stderr, "warning: %v\n", err)
				}
			}
			if g.json {
				return writeJSON(g, struct {
					ID        string `json:"id"`
					Location  string `json:"repository"`
					Encrypted bool   `json:"encrypted"`
					Version   int    `json:"version"`
				}{id.ID, e.repoLoc, pw != nil, id.Version})
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
	c.Flags().BoolVar(&noEncryption, "no-encryption", false, "allow an unencrypted remote repository")
	c.Flags().IntVar(&version, "repository-version", repo.FormatVersion, "format version to create (older ones for older RunUp; 'runup migrate' upgrades)")
	c.Flags().BoolVar(&noGroups, "no-groups", false, "do not compress small files together (see the threat model in docs/design.md)")
	return c
}

// createLayout makes what a backend needs before its first file: folders
// on a disk or SFTP server, the bucket on object storage.
func createLayout(ctx context.Context, be backend.Backend) error {
	if b, ok := backend.As[interface{ Create() error }](be); ok {
		return b.Create()
	}
	if b, ok := backend.As[interface{ Create(context.Context) error }](be); ok {
		return b.Create(ctx)
	}
	return nil
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
