package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/runup/runup/internal/backend"
	"github.com/runup/runup/internal/crypto"
	"github.com/runup/runup/internal/pack"
	"github.com/runup/runup/internal/tree"
)

// UpgradeStats tell what an upgrade did.
type UpgradeStats struct {
	From, To   int
	Trees      int // trees walked
	TypedAdded int // blobs stored again under their own type
}

// Upgrade brings a repository of format 1 or 2 to the current format, in
// place. The caller holds the exclusive lock and has loaded the index.
//
// In formats 1 and 2 a blob's type was not part of its identity: a file
// whose bytes equal a tree's (an empty directory's tree is two bytes) made
// the backup skip the tree, or the tree made it skip the file. Such jobs
// read correctly through the fallback of Lookup, but format 3 finds blobs
// by type and ID. So every job's trees are walked first, and every tree or
// chunk that is stored only under the other type is stored again under its
// own; the new config is written last, after those blobs are durable. An
// upgrade interrupted before that leaves a valid format-2 repository with a
// few more blobs, and can run again.
func (r *Repository) Upgrade(ctx context.Context, jobs []*Job) (UpgradeStats, error) {
	st := UpgradeStats{From: r.cfg.Version, To: FormatVersion}
	if r.cfg.Version >= FormatVersion {
		return st, nil
	}
	rep, ok := backend.As[backend.Replacer](r.be)
	if !ok {
		return st, errors.New("upgrade: this storage cannot replace the config")
	}
	// Blobs read through the fallback, to be stored under their own type
	// once the repository is typed.
	type blob struct {
		t    pack.BlobType
		id   crypto.ID
		data []byte
	}
	var missing []blob
	seenTree := map[crypto.ID]bool{}
	seenData := map[crypto.ID]bool{}
	var walk func(id crypto.ID) error
	walk = func(id crypto.ID) error {
		if seenTree[id] {
			return nil
		}
		seenTree[id] = true
		st.Trees++
		raw, err := r.LoadBlob(ctx, pack.Tree, id, nil)
		if err != nil {
			return err
		}
		if !r.idx.Has(pack.Tree, id) {
			missing = append(missing, blob{pack.Tree, id, raw})
		}
		t, err := tree.Decode(raw)
		if err != nil {
			return fmt.Errorf("%w: tree %v: %v", ErrDamaged, id.Short(), err)
		}
		for _, n := range t.Nodes {
			switch n.Type {
			case tree.Dir:
				if err := walk(n.Subtree); err != nil {
					return err
				}
			case tree.File:
				for _, c := range n.Content {
					if seenData[c] || r.idx.Has(pack.Data, c) {
						continue
					}
					seenData[c] = true
					b, err := r.LoadBlob(ctx, pack.Data, c, nil)
					if err != nil {
						return err
					}
					missing = append(missing, blob{pack.Data, c, b})
				}
			}
		}
		return nil
	}
	for _, j := range jobs {
		if err := walk(j.Tree); err != nil {
			return st, fmt.Errorf("upgrade: job %d: %w; nothing was changed (run 'runup check')", j.Number, err)
		}
	}
	cfg := r.cfg
	cfg.Version = FormatVersion
	plain, err := json.Marshal(cfg)
	if err != nil {
		return st, err
	}
	old := r.cfg
	r.cfg = cfg // typed from here on: SaveBlob no longer takes one type for the other
	for _, b := range missing {
		s, err := r.SaveBlob(ctx, b.t, b.id, b.data)
		if err != nil {
			r.cfg = old
			return st, err
		}
		if s.Added {
			st.TypedAdded++
		}
	}
	if _, err := r.Flush(ctx); err != nil {
		r.cfg = old
		return st, err
	}
	if err := r.guard.check(); err != nil {
		r.cfg = old
		return st, err
	}
	if err := rep.Replace(ctx, backend.Handle{Type: backend.Config}, r.key.Seal(nil, plain)); err != nil {
		r.cfg = old
		return st, fmt.Errorf("upgrade: write the new config: %w", err)
	}
	return st, nil
}
