// Package repo is a RunUp repository: its keys and config, its blobs in
// packs, its index and its job records. It is the only user of a backend
// above the backend implementations, and the only place that knows the
// repository's file layout; docs/design.md describes the format.
package repo

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"sync"
	"time"

	"github.com/runup/runup/internal/backend"
	"github.com/runup/runup/internal/crypto"
	"github.com/runup/runup/internal/index"
)

// FormatVersion is the repository format new repositories get. Version 2
// adds groups of small blobs; this code reads versions 1 and 2 and writes
// groups only into version 2 repositories, so older programs never meet
// data they cannot read.
const FormatVersion = 2

const minFormatVersion = 1

func formatError(v int) error {
	return fmt.Errorf("%w %d (this RunUp reads versions %d to %d): upgrade RunUp", ErrUnsupportedFormat, v, minFormatVersion, FormatVersion)
}

func formatSupported(v int) bool { return v >= minFormatVersion && v <= FormatVersion }

// Errors callers test with errors.Is.
var (
	ErrNotFound          = errors.New("no repository found")
	ErrAlreadyExists     = errors.New("repository already initialized")
	ErrNoPassword        = errors.New("the repository is encrypted and no password was given")
	ErrWrongPassword     = crypto.ErrWrongPassword
	ErrUnsupportedFormat = errors.New("unsupported repository format version")
	ErrDamaged           = errors.New("repository damaged")
)

// Config is the repository's sealed config file.
type Config struct {
	Version   int       `json:"version"`
	ID        string    `json:"id"`
	Created   time.Time `json:"created"`
	ChunkMin  int       `json:"chunk_min"`
	ChunkAvg  int       `json:"chunk_avg"`
	ChunkMax  int       `json:"chunk_max"`
	PackSize  int       `json:"pack_size"`
	Encrypted bool      `json:"encrypted"`
}

// Options tune an open repository.
type Options struct {
	// Compression for new blobs; the zero value is CompressAuto.
	Compression Compression
	// Uploads is how many packs are written at once; 0 means 2. Each costs
	// a pack of memory; a local disk needs only 1.
	Uploads int
}

// Repository is an open repository. Its methods are safe for concurrent use.
type Repository struct {
	be     backend.Backend
	key    *crypto.MasterKey
	cfg    Config
	keyID  string
	opts   Options
	idx    *index.Index
	comp   *compressor
	packer *packer

	indexMu    sync.Mutex
	indexFiles map[string]bool // names of loaded index files
}

// PasswordFunc supplies a password when one is needed; it is not called for
// an unencrypted repository.
type PasswordFunc func() ([]byte, error)

// InitOptions describe a new repository.
type InitOptions struct {
	Password []byte // nil makes an unencrypted repository
	KDF      crypto.KDFParams
}

// Init writes a new repository's key and config. It refuses a backend that
// already holds a config.
func Init(ctx context.Context, be backend.Backend, o InitOptions) error {
	if _, err := be.Stat(ctx, backend.Handle{Type: backend.Config}); err == nil {
		return fmt.Errorf("%s: %w", be.Location(), ErrAlreadyExists)
	} else if !errors.Is(err, backend.ErrNotExist) {
		return err
	}
	key, err := crypto.NewMasterKey(o.Password != nil)
	if err != nil {
		return err
	}
	if o.KDF == (crypto.KDFParams{}) {
		o.KDF = crypto.DefaultKDF
	}
	if err := AddKey(ctx, be, key, o.Password, o.KDF); err != nil {
		return err
	}
	var rnd [16]byte
	_, _ = rand.Read(rnd[:])
	cfg := Config{Version: FormatVersion, ID: hex.EncodeToString(rnd[:]), Created: time.Now().UTC(),
		ChunkMin: chunkMin, ChunkAvg: chunkAvg, ChunkMax: chunkMax, PackSize: packSize, Encrypted: key.Encrypted}
	plain, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	// The config is written last: a repository is either complete or absent.
	return be.Save(ctx, backend.Handle{Type: backend.Config}, key.Seal(nil, plain))
}

// AddKey stores another key file for the master key (another password).
func AddKey(ctx context.Context, be backend.Backend, key *crypto.MasterKey, password []byte, kdf crypto.KDFParams) error {
	kf, err := crypto.WrapKey(key, password, kdf, FormatVersion)
	if err != nil {
		return err
	}
	kf.Host, _ = os.Hostname()
	if u, err := user.Current(); err == nil {
		kf.Username = u.Username
	}
	kf.Created = time.Now().UTC().Format(time.RFC3339)
	b, err := json.Marshal(kf)
	if err != nil {
		return err
	}
	return be.Save(ctx, backend.Handle{Type: backend.Keys, Name: KeyFileName(b)}, b)
}

// KeyFileName is a key file's name: an unkeyed hash of its bytes, since it
// is written before a master key is known.
func KeyFileName(b []byte) string {
	k := crypto.MasterKey{}
	_ = k.Init()
	return k.Hash(b).String()
}

// Open opens an existing repository, trying every key file with the
// password that pw supplies.
func Open(ctx context.Context, be backend.Backend, pw PasswordFunc, o Options) (*Repository, error) {
	cfgSealed, err := backend.LoadAll(ctx, be, backend.Handle{Type: backend.Config})
	if err != nil {
		if errors.Is(err, backend.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", be.Location(), ErrNotFound)
		}
		return nil, err
	}
	var keyFiles []backend.FileInfo
	if err := be.List(ctx, backend.Keys, func(fi backend.FileInfo) error {
		keyFiles = append(keyFiles, fi)
		return nil
	}); err != nil {
		return nil, err
	}
	if len(keyFiles) == 0 {
		return nil, fmt.Errorf("%w: no key files in %s/keys", ErrDamaged, be.Location())
	}
	var (
		password []byte
		asked    bool
		lastErr  error
	)
	for _, fi := range keyFiles {
		if fi.Size > 1<<20 {
			lastErr = fmt.Errorf("%w: key file %s is %d bytes", ErrDamaged, fi.Name, fi.Size)
			continue
		}
		h := backend.Handle{Type: backend.Keys, Name: fi.Name}
		b, err := backend.LoadAll(ctx, be, h)
		if err != nil {
			lastErr = err
			continue
		}
		var probe struct {
			Format int `json:"format"`
		}
		if json.Unmarshal(b, &probe) == nil && !formatSupported(probe.Format) && probe.Format != 0 {
			return nil, formatError(probe.Format)
		}
		kf, err := crypto.ParseKeyFile(b)
		if err != nil {
			lastErr = fmt.Errorf("%w: key file %s: %v", ErrDamaged, fi.Name, err)
			continue
		}
		if !formatSupported(kf.Format) {
			return nil, formatError(kf.Format)
		}
		if kf.KDF != "none" && !asked {
			asked = true
			if pw != nil {
				if password, err = pw(); err != nil {
					return nil, err
				}
			}
			if password == nil {
				return nil, ErrNoPassword
			}
		}
		key, err := kf.Unwrap(password)
		if err != nil {
			if errors.Is(err, crypto.ErrWrongPassword) {
				if lastErr == nil {
					lastErr = ErrWrongPassword
				}
				continue
			}
			lastErr = fmt.Errorf("%w: key file %s: %v", ErrDamaged, fi.Name, err)
			continue
		}
		plain, err := key.Open(nil, cfgSealed)
		if err != nil {
			// The key opened, so the config itself is damaged or forged.
			return nil, fmt.Errorf("%w: config: %v", ErrDamaged, err)
		}
		var cfg Config
		if err := json.Unmarshal(plain, &cfg); err != nil {
			return nil, fmt.Errorf("%w: config: %v", ErrDamaged, err)
		}
		if !formatSupported(cfg.Version) {
			return nil, formatError(cfg.Version)
		}
		if cfg.ChunkMin != chunkMin || cfg.ChunkAvg != chunkAvg || cfg.ChunkMax != chunkMax || cfg.PackSize <= 0 || cfg.PackSize > 1<<30 {
			return nil, fmt.Errorf("%w: config has chunk sizes %d/%d/%d and pack size %d", ErrUnsupportedFormat,
				cfg.ChunkMin, cfg.ChunkAvg, cfg.ChunkMax, cfg.PackSize)
		}
		r := &Repository{be: be, key: key, cfg: cfg, keyID: fi.Name, opts: o, idx: index.New(),
			indexFiles: map[string]bool{}}
		if r.comp, err = newCompressor(o.Compression); err != nil {
			return nil, err
		}
		uploads := o.Uploads
		if uploads <= 0 {
			uploads = 2
		}
		r.packer = newPacker(r, uploads)
		r.hintCache()
		return r, nil
	}
	if lastErr == nil {
		lastErr = ErrWrongPassword
	}
	return nil, lastErr
}

// hintCache tells a caching backend, wherever it sits in the chain of
// wrappers, which packs hold trees.
func (r *Repository) hintCache() {
	if c, ok := backend.As[interface{ SetTreePacks(func(string) bool) }](r.be); ok {
		c.SetTreePacks(func(name string) bool {
			id, err := crypto.ParseID(name)
			return err == nil && r.Index().IsTreePack(id)
		})
	}
}

// Config returns the repository's config.
func (r *Repository) Config() Config { return r.cfg }

// Key returns the master key, for chunking and hashing.
func (r *Repository) Key() *crypto.MasterKey { return r.key }

// Backend returns the storage under the repository.
func (r *Repository) Backend() backend.Backend { return r.be }

// Index returns the in-memory index.
func (r *Repository) Index() *index.Index { return r.idx }

// Close releases the backend. Unflushed blobs are lost; call Flush first.
func (r *Repository) Close() error {
	r.packer.abort()
	return r.be.Close()
}

func (r *Repository) saveSealed(ctx context.Context, t backend.FileType, plain []byte) (string, error) {
	sealed := r.key.Seal(nil, plain)
	name := r.key.Hash(sealed).String()
	return name, r.saveOnce(ctx, backend.Handle{Type: t, Name: name}, sealed)
}

// saveOnce saves a content-named file. A file already there under the name
// should hold the same bytes (an unencrypted repository seals
// deterministically); if it does not, it is damaged and is replaced, so
// that rewriting is a repair.
func (r *Repository) saveOnce(ctx context.Context, h backend.Handle, data []byte) error {
	err := r.be.Save(ctx, h, data)
	if !errors.Is(err, backend.ErrExists) {
		return err
	}
	old, lerr := backend.LoadAll(ctx, r.be, h)
	if lerr == nil && bytes.Equal(old, data) {
		return nil
	}
	if err := r.be.Remove(ctx, h); err != nil {
		return err
	}
	return r.be.Save(ctx, h, data)
}

func (r *Repository) loadSealed(ctx context.Context, h backend.Handle) ([]byte, error) {
	sealed, err := backend.LoadAll(ctx, r.be, h)
	if err != nil {
		return nil, err
	}
	plain, err := r.key.Open(nil, sealed)
	if err != nil {
		return nil, fmt.Errorf("%w: %v: %v", ErrDamaged, h, err)
	}
	return plain, nil
}
