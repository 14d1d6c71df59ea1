//go:build !unix

package known

import "os"

// lockFile on systems without flock creates the lock file exclusively,
// waiting a little for another process to finish with the store.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	return func() { f.Close() }, nil
}
