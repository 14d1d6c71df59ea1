package restorer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ClearLocation empties dir before a restore, keeping any entry named
// .runup, the paths in keep and the directories that lead to them. It works
// only on absolute, cleaned paths and never follows a symbolic link, so it
// cannot delete anything outside dir.
func ClearLocation(dir string, keep []string) error {
	if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir {
		return fmt.Errorf("clear location: %q is not an absolute clean path", dir)
	}
	if dir == "/" {
		return errors.New("clear location: refusing to empty the root directory")
	}
	fi, err := os.Lstat(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("clear location: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("clear location: %s is not a directory", dir)
	}
	return clearDir(dir, keep)
}

func clearDir(dir string, keep []string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("clear location: %w", err)
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if e.Name() == ".runup" {
			continue
		}
		holds := false
		for _, k := range keep {
			if k == "" {
				continue
			}
			if k == p {
				holds = true
				break
			}
			if strings.HasPrefix(k, p+string(filepath.Separator)) && e.IsDir() {
				if err := clearDir(p, keep); err != nil {
					return err
				}
				holds = true
				break
			}
		}
		if holds {
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("clear location: %w", err)
		}
	}
	return nil
}
