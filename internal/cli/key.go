package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/runup/runup/internal/repo"
)

func newKey(g *globals) *cobra.Command {
	var newPasswordFile string
	c := &cobra.Command{
		Use:   "key",
		Short: "List, add, remove and change the repository's passwords",
		Long: `Every password of an encrypted repository is a key file that wraps the
repository's one master key. 'add' makes another password, 'passwd'
changes the one in use (adds the new one, then removes the old), 'remove'
removes another (never the one in use, nor the last). The new password
comes from --new-password-file, else a prompt that asks twice.`,
	}
	c.PersistentFlags().StringVar(&newPasswordFile, "new-password-file", "", "read the new password from this file")
	list := &cobra.Command{
		Use:   "list",
		Short: "List the keys: ID, user, host, creation time; * marks the one in use",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := keySession(cmd.Context(), g, readLock)
			if err != nil {
				return err
			}
			defer s.close()
			keys, err := s.Keys(cmd.Context())
			if err != nil {
				return err
			}
			if g.json {
				return writeJSON(g, keys)
			}
			tw := tabwriter.NewWriter(g.stdout, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, " \tID\tuser\thost\tcreated")
			for _, k := range keys {
				mark, created := " ", "-"
				if k.Current {
					mark = "*"
				}
				if !k.Created.IsZero() {
					created = k.Created.Local().Format("2006-01-02 15:04")
				}
				if k.Damaged {
					created = "damaged: does not match its name"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", mark, k.ID[:min(12, len(k.ID))], dash(k.UserName), dash(k.HostName), created)
			}
			return tw.Flush()
		},
	}
	add := &cobra.Command{
		Use:   "add",
		Short: "Add a password",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			pw, err := newPassword(newPasswordFile)
			if err != nil {
				return err
			}
			s, err := keySession(cmd.Context(), g, sharedLock)
			if err != nil {
				return err
			}
			defer s.close()
			id, err := s.AddPassword(cmd.Context(), pw)
			if err != nil {
				return err
			}
			if g.json {
				return writeJSON(g, map[string]string{"id": id})
			}
			g.printf("Added key %s: the new password opens the repository.\n", id[:12])
			return nil
		},
	}
	remove := &cobra.Command{
		Use:   "remove ID",
		Short: "Remove a password (not the one in use, not the last)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := keySession(cmd.Context(), g, exclusiveLock)
			if err != nil {
				return err
			}
			defer s.close()
			id, err := fullKeyID(cmd.Context(), s, args[0])
			if err != nil {
				return err
			}
			if err := s.RemoveKey(cmd.Context(), id); err != nil {
				if errors.Is(err, repo.ErrKeyInUse) {
					return usageErr(err)
				}
				return err
			}
			if g.json {
				return writeJSON(g, map[string]string{"removed": id})
			}
			g.printf("Removed key %s: its password no longer opens the repository.\n", id[:12])
			return nil
		},
	}
	passwd := &cobra.Command{
		Use:   "passwd",
		Short: "Change the password in use",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			pw, err := newPassword(newPasswordFile)
			if err != nil {
				return err
			}
			s, err := keySession(ctx, g, exclusiveLock)
			if err != nil {
				return err
			}
			defer s.close()
			old := s.KeyID()
			id, err := s.AddPassword(ctx, pw)
			if err != nil {
				return err
			}
			// The new key exists before the old one goes: interrupted
			// between, both passwords open the repository.
			if err := s.Remove(ctx, repo.KeyHandle(old)); err != nil {
				return fmt.Errorf("the new password works, but the old key %s could not be removed: %w (remove it with 'runup key remove %s')", old[:12], err, old[:12])
			}
			if s.env.knownStore != nil {
				k := s.env.known
				k.KeyID = id
				if err := s.env.knownStore.Put(k); err != nil {
					fmt.Fprintf(g.stderr, "warning: %v\n", err)
				}
			}
			if g.json {
				return writeJSON(g, map[string]string{"id": id, "removed": old})
			}
			g.printf("Password changed (key %s replaces %s).\n", id[:12], old[:12])
			return nil
		},
	}
	c.AddCommand(list, add, remove, passwd)
	return c
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// keySession opens the repository for key work (no index needed).
func keySession(ctx context.Context, g *globals, lk lockKind) (*session, error) {
	e, err := g.loadEnv()
	if err != nil {
		return nil, err
	}
	return e.lockedRepo(ctx, repo.Options{}, lk, "key")
}

// fullKeyID expands a unique prefix of a key ID, as 'key list' shows it.
func fullKeyID(ctx context.Context, s *session, prefix string) (string, error) {
	keys, err := s.Keys(ctx)
	if err != nil {
		return "", err
	}
	var match []string
	for _, k := range keys {
		if strings.HasPrefix(k.ID, prefix) {
			match = append(match, k.ID)
		}
	}
	switch {
	case len(match) == 1 && len(prefix) >= 4:
		return match[0], nil
	case len(match) > 1:
		return "", usageErr(fmt.Errorf("key ID %q is ambiguous: give more of it", prefix))
	}
	return "", usageErr(fmt.Errorf("no key %q (see 'runup key list')", prefix))
}

// newPassword reads a new password from a file or asks twice.
func newPassword(file string) ([]byte, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, usageErr(fmt.Errorf("--new-password-file: %w", err))
		}
		b = bytes.TrimRight(b, "\r\n")
		if len(b) == 0 {
			return nil, withCode(ExitPassword, fmt.Errorf("--new-password-file %s is empty", file))
		}
		return b, nil
	}
	pw, err := promptPassword("New password: ")
	if err != nil {
		return nil, err
	}
	if pw == nil {
		return nil, usageErr(errors.New("no terminal to ask for the new password: use --new-password-file FILE"))
	}
	if len(pw) == 0 {
		return nil, withCode(ExitPassword, errors.New("the new password is empty; nothing was changed"))
	}
	again, err := promptPassword("Repeat the new password: ")
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(pw, again) {
		return nil, withCode(ExitPassword, errors.New("the two passwords differ; nothing was changed"))
	}
	return pw, nil
}
