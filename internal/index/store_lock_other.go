//go:build !unix

package index

import (
	"os"
	"path/filepath"
)

// LockStore serialises the processes that bring one store up to date; on
// systems without flock a generation is still switched atomically, so two
// builders only waste work.
func LockStore(root string) (func(), error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(root, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	return func() { f.Close() }, nil
}
