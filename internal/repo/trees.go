package repo

import (
	"context"
	"fmt"

	"github.com/runup/runup/internal/crypto"
	"github.com/runup/runup/internal/pack"
	"github.com/runup/runup/internal/tree"
)

// SaveTree encodes and stores a directory listing, returning its ID.
func (r *Repository) SaveTree(ctx context.Context, t *tree.Tree) (crypto.ID, SaveStats, error) {
	b, err := tree.Encode(t, r.TreeVersion())
	if err != nil {
		return crypto.ID{}, SaveStats{}, err
	}
	id := r.key.Hash(b)
	st, err := r.SaveBlob(ctx, pack.Tree, id, b)
	return id, st, err
}

// TreeVersion is the tree encoding this repository's format allows: exact
// times from format 3 on.
func (r *Repository) TreeVersion() int {
	if r.cfg.Version >= 3 {
		return tree.Version2
	}
	return tree.Version1
}

// LoadTree reads and decodes a directory listing.
func (r *Repository) LoadTree(ctx context.Context, id crypto.ID) (*tree.Tree, error) {
	b, err := r.LoadBlob(ctx, pack.Tree, id, nil)
	if err != nil {
		return nil, err
	}
	t, err := tree.Decode(b)
	if err != nil {
		return nil, fmt.Errorf("%w: tree %v: %v", ErrDamaged, id.Short(), err)
	}
	return t, nil
}
