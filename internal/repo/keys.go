package repo

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/runup/runup/internal/backend"
	"github.com/runup/runup/internal/crypto"
)

// KeyInfo describes a key file: one password of the repository. Host, user
// and time are what the file says (it is not sealed: it is read before
// any password); a file whose name does not match its content is listed as
// damaged.
type KeyInfo struct {
	ID       string    `json:"id"`
	Current  bool      `json:"current"`
	UserName string    `json:"userName"`
	HostName string    `json:"hostName"`
	Created  time.Time `json:"created"`
	Damaged  bool      `json:"damaged,omitempty"`
}

// ErrKeyInUse refuses to remove the key that opened the repository, or the
// last one.
var ErrKeyInUse = errors.New("key in use")

// Keys lists the key files, the one that opened the repository first.
func (r *Repository) Keys(ctx context.Context) ([]KeyInfo, error) {
	var names []string
	if err := r.be.List(ctx, backend.Keys, func(fi backend.FileInfo) error {
		if len(names) >= maxKeyFiles {
			return fmt.Errorf("%w: more than %d key files", ErrDamaged, maxKeyFiles)
		}
		names = append(names, fi.Name)
		return nil
	}); err != nil {
		return nil, err
	}
	slices.Sort(names)
	var out []KeyInfo
	for _, name := range names {
		ki := KeyInfo{ID: name, Current: name == r.keyID}
		b, err := backend.LoadAtMost(ctx, r.be, backend.Handle{Type: backend.Keys, Name: name}, maxKeyFileSize)
		if err != nil && !errors.Is(err, backend.ErrTooLarge) {
			return nil, err
		}
		kf, perr := crypto.ParseKeyFile(b)
		if err != nil || perr != nil || KeyFileName(b) != name {
			ki.Damaged = true
		} else {
			ki.UserName, ki.HostName = kf.Username, kf.Host
			ki.Created, _ = time.Parse(time.RFC3339, kf.Created)
		}
		out = append(out, ki)
	}
	slices.SortStableFunc(out, func(a, b KeyInfo) int {
		if a.Current != b.Current {
			if a.Current {
				return -1
			}
			return 1
		}
		return a.Created.Compare(b.Created)
	})
	return out, nil
}

// AddPassword adds a key file: another password that opens the repository.
func (r *Repository) AddPassword(ctx context.Context, password []byte) (string, error) {
	if !r.key.Encrypted {
		return "", errors.New("the repository is not encrypted: it has no passwords (make an encrypted one with 'runup init --encrypt' and 'runup copy')")
	}
	if len(password) == 0 {
		return "", errors.New("the new password is empty")
	}
	if err := r.guard.verify(ctx); err != nil {
		return "", err
	}
	return AddKey(ctx, r.be, r.key, password, crypto.DefaultKDF, r.cfg.Version)
}

// RemoveKey removes a key file. The key that opened the repository and
// the last one are refused: without a key file, nothing opens it again.
func (r *Repository) RemoveKey(ctx context.Context, id string) error {
	keys, err := r.Keys(ctx)
	if err != nil {
		return err
	}
	found := false
	for _, k := range keys {
		if k.ID == id {
			found = true
		}
	}
	switch {
	case !found:
		return fmt.Errorf("no key %s (see 'runup key list')", id)
	case id == r.keyID:
		return fmt.Errorf("%w: key %s opened the repository now; open it with another password to remove this one", ErrKeyInUse, short(id))
	case len(keys) < 2:
		return fmt.Errorf("%w: key %s is the last one", ErrKeyInUse, short(id))
	}
	if err := r.guard.verify(ctx); err != nil {
		return err
	}
	return r.be.Remove(ctx, backend.Handle{Type: backend.Keys, Name: id})
}

// KeyHandle names a key file in the storage.
func KeyHandle(id string) backend.Handle { return backend.Handle{Type: backend.Keys, Name: id} }
