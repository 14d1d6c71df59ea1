// Package repo is a RunUp repository: its keys and config, its blobs in
// packs, its index and its job records. It is the only user of a backend
// above the backend implementations, and the only place that knows the
// repository's file layout; docs/design.md describes the format.
package repo

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zeebo/blake3"

	"github.com/runup/runup/internal/backend"
	"github.com/runup/runup/internal/crypto"
	"github.com/runup/runup/internal/index"
)

// FormatVersion is the repository format new repositories get. Version 2
// added groups of small blobs; version 3 makes a blob's type part of its
// identity (a file's chunk and a directory's tree with the same content
// are two blobs) and stores times exactly (docs/design.md). This code reads
// versions 1 to 3 and writes into each only what its version allows, so
// older programs never meet data they cannot read; 'runup migrate'
// upgrades a repository in place.
const FormatVersion = 3

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
	// ErrNotEncrypted refuses a repository whose keys are in clear when the
	// user gave a password: someone who can write the storage could have
	// put a repository of their own in its place.
	ErrNotEncrypted = errors.New("the repository is not encrypted, but a password is set")
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
	// NoGroups turns off the compression of small files in groups, for
	// repositories where someone who can plant files and watch pack sizes
	// must not learn about neighbouring files (docs/design.md, threat model).
	NoGroups bool `json:"no_groups,omitempty"`
}

// Options tune an open repository.
type Options struct {
	// Compression for new blobs; the zero value is CompressAuto.
	Compression Compression
	// Uploads is how many packs are written at once; 0 means 2. Each costs
	// a pack of memory; a local disk needs only 1.
	Uploads int
	// RequireEncryption refuses a repository that is not encrypted: set it
	// whenever the user gave a password. Nothing but the config and the key
	// files is read before the refusal.
	RequireEncryption bool
	// HighestJob is the highest job number this machine saw in the
	// repository before: jobs up to it must exist or have a tombstone, and
	// its number is never given again.
	HighestJob int
	// IndexDir is where the index is kept on local disk (a folder per
	// repository below it), so that memory does not grow with the
	// repository; "" keeps the whole index in memory.
	IndexDir string
	// SpoolDir is a local folder where packs for remote storage are built
	// before upload; "" builds them in memory.
	SpoolDir string
	// Lock sets lock refresh and stale times (zero: the defaults).
	Lock LockTiming
	// PreferKey names the key file to try first (the one that opened the
	// repository last time), so that a repository with many key files
	// costs one key derivation.
	PreferKey string
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
	guard  writeGuard

	indexMu    sync.Mutex
	indexFiles map[string]bool // names of loaded index files

	healMu     sync.Mutex // one rebuild of a damaged store at a time
	indexReads atomic.Int64

	jobsMu     sync.Mutex
	tombstones map[string]bool // verified tombstones
	highestJob int
}

// PasswordFunc supplies a password when one is needed; it is not called for
// an unencrypted repository.
type PasswordFunc func() ([]byte, error)

// InitOptions describe a new repository.
type InitOptions struct {
	Password []byte // nil makes an unencrypted repository
	KDF      crypto.KDFParams
	NoGroups bool // do not compress small files together (see Config)
	// Version is the format to create (0: FormatVersion); older formats
	// are for repositories that older RunUps must still read.
	Version int
}

// Identity is what a machine remembers of a repository to recognise it.
type Identity struct {
	ID          string
	Encrypted   bool
	Version     int
	Fingerprint string // of the master key
	KeyID       string // the key file used
}

// Init writes a new repository's key and config. It refuses a backend that
// already holds a config, or any repository file: a repository whose config
// was lost is damaged, and a second key beside its old ones would make it
// unusable.
func Init(ctx context.Context, be backend.Backend, o InitOptions) (Identity, error) {
	if _, err := be.Stat(ctx, backend.Handle{Type: backend.Config}); err == nil {
		return Identity{}, fmt.Errorf("%s: %w", be.Location(), ErrAlreadyExists)
	} else if !errors.Is(err, backend.ErrNotExist) {
		return Identity{}, err
	}
	if t, err := firstFileType(ctx, be); err != nil {
		return Identity{}, err
	} else if t != "" {
		return Identity{}, fmt.Errorf("%w: %s holds repository files (%s/) but no config: the config is missing; restore it from a copy of the repository, or choose an empty location", ErrDamaged, be.Location(), t)
	}
	if o.Version == 0 {
		o.Version = FormatVersion
	}
	if !formatSupported(o.Version) {
		return Identity{}, formatError(o.Version)
	}
	key, err := crypto.NewMasterKey(o.Password != nil)
	if err != nil {
		return Identity{}, err
	}
	if o.KDF == (crypto.KDFParams{}) {
		o.KDF = crypto.DefaultKDF
	}
	// Key files carry the repository's format, so that the RunUp a format
	// was made for can open it.
	keyID, err := AddKey(ctx, be, key, o.Password, o.KDF, o.Version)
	if err != nil {
		return Identity{}, err
	}
	var rnd [16]byte
	_, _ = rand.Read(rnd[:])
	cfg := Config{Version: o.Version, ID: hex.EncodeToString(rnd[:]), Created: time.Now().UTC(),
		ChunkMin: chunkMin, ChunkAvg: chunkAvg, ChunkMax: chunkMax, PackSize: packSize, Encrypted: key.Encrypted,
		NoGroups: o.NoGroups}
	plain, err := json.Marshal(cfg)
	if err != nil {
		return Identity{}, err
	}
	// The config is written last: a repository is either complete or absent.
	if err := be.Save(ctx, backend.Handle{Type: backend.Config}, key.Seal(nil, plain)); err != nil {
		return Identity{}, err
	}
	return Identity{ID: cfg.ID, Encrypted: key.Encrypted, Version: cfg.Version, Fingerprint: fingerprint(key), KeyID: keyID}, nil
}

// firstFileType returns the type of some repository file other than the
// config, or "" when there is none.
func firstFileType(ctx context.Context, be backend.Backend) (backend.FileType, error) {
	errFound := errors.New("found")
	for _, t := range []backend.FileType{backend.Keys, backend.Jobs, backend.Index, backend.Data} {
		err := be.List(ctx, t, func(backend.FileInfo) error { return errFound })
		if errors.Is(err, errFound) {
			return t, nil
		}
		if err != nil {
			return "", err
		}
	}
	return "", nil
}

// AddKey stores another key file for the master key (another password) of
// a repository of the given format, and returns its name.
func AddKey(ctx context.Context, be backend.Backend, key *crypto.MasterKey, password []byte, kdf crypto.KDFParams, version int) (string, error) {
	kf, err := crypto.WrapKey(key, password, kdf, version)
	if err != nil {
		return "", err
	}
	kf.Host, _ = os.Hostname()
	if u, err := user.Current(); err == nil {
		kf.Username = u.Username
	}
	kf.Created = time.Now().UTC().Format(time.RFC3339)
	b, err := json.Marshal(kf)
	if err != nil {
		return "", err
	}
	name := KeyFileName(b)
	return name, be.Save(ctx, backend.Handle{Type: backend.Keys, Name: name}, b)
}

// KeyFileName is a key file's name: an unkeyed hash of its bytes, since it
// is written before a master key is known. Checking a name against the
// content tells a damaged key file from a wrong password.
func KeyFileName(b []byte) string {
	k := crypto.MasterKey{}
	_ = k.Init()
	return k.Hash(b).String()
}

// Bounds on what opening costs, whatever the storage holds: key files are
// small, and a password is tried on a bounded number of them (each costs a
// key derivation, at most a quarter of a second and 64 MiB).
const (
	maxKeyFileSize = 64 << 10
	maxKeyFiles    = 1000
	maxKeyTries    = 8
)

// keyCandidate is a key file that parsed.
type keyCandidate struct {
	name string
	kf   *crypto.KeyFile
}

// Open opens an existing repository, trying the key files with the password
// that pw supplies. Everything read is treated as hostile: a key file whose
// name is not the hash of its content is damaged (never a wrong password),
// key derivation costs are bounded, and with o.RequireEncryption a
// repository with keys in clear is refused before anything else is read.
func Open(ctx context.Context, be backend.Backend, pw PasswordFunc, o Options) (*Repository, error) {
	cfgSealed, err := backend.LoadAll(ctx, be, backend.Handle{Type: backend.Config})
	if err != nil {
		if !errors.Is(err, backend.ErrNotExist) {
			return nil, err
		}
		if t, lerr := firstFileType(ctx, be); lerr == nil && t != "" {
			return nil, fmt.Errorf("%w: %s has repository files (%s/) but its config is missing: restore the config from a copy of the repository (do not run init there)", ErrDamaged, be.Location(), t)
		}
		return nil, fmt.Errorf("%s: %w", be.Location(), ErrNotFound)
	}
	if len(cfgSealed) > maxKeyFileSize {
		return nil, fmt.Errorf("%w: config is %d bytes", ErrDamaged, len(cfgSealed))
	}
	var names []string
	if err := be.List(ctx, backend.Keys, func(fi backend.FileInfo) error {
		if len(names) >= maxKeyFiles {
			return fmt.Errorf("%w: more than %d key files in %s/keys", ErrDamaged, maxKeyFiles, be.Location())
		}
		names = append(names, fi.Name)
		return nil
	}); err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%w: no key files in %s/keys", ErrDamaged, be.Location())
	}
	// The key that opened the repository last time goes first.
	slices.SortStableFunc(names, func(a, b string) int {
		return cmp.Compare(boolInt(b == o.PreferKey), boolInt(a == o.PreferKey))
	})
	var (
		clear, wrapped []keyCandidate
		damaged        []string
		future         int
	)
	for _, name := range names {
		b, err := backend.LoadAtMost(ctx, be, backend.Handle{Type: backend.Keys, Name: name}, maxKeyFileSize)
		if errors.Is(err, backend.ErrNotExist) {
			continue // removed meanwhile
		}
		if err != nil && !errors.Is(err, backend.ErrTooLarge) {
			return nil, err
		}
		var probe struct {
			Format int `json:"format"`
		}
		if err == nil && json.Unmarshal(b, &probe) == nil && probe.Format != 0 && !formatSupported(probe.Format) {
			// Written by a newer RunUp: said so if no other key opens.
			future = max(future, probe.Format)
			continue
		}
		if err != nil || KeyFileName(b) != name {
			damaged = append(damaged, name)
			continue
		}
		kf, err := crypto.ParseKeyFile(b)
		if err != nil || !formatSupported(kf.Format) {
			damaged = append(damaged, name)
			continue
		}
		if kf.KDF == "none" {
			clear = append(clear, keyCandidate{name, kf})
		} else {
			wrapped = append(wrapped, keyCandidate{name, kf})
		}
	}
	if len(clear)+len(wrapped) == 0 && future > 0 {
		return nil, formatError(future)
	}
	damage := func() error {
		names := make([]string, len(damaged))
		for i, n := range damaged {
			names[i] = "keys/" + short(n)
		}
		return fmt.Errorf("%w: key file %s does not match its name (damaged or altered); another password's key file, or a copy of the repository, is needed", ErrDamaged, strings.Join(names, ", "))
	}
	if o.RequireEncryption {
		if len(wrapped) == 0 {
			if len(clear) > 0 {
				return nil, fmt.Errorf("%s: %w: if it was made unencrypted on purpose, open it without a password; otherwise someone may have replaced it", be.Location(), ErrNotEncrypted)
			}
			return nil, damage()
		}
		clear = nil // a clear key beside wrapped ones is an intruder's
	}
	var key *crypto.MasterKey
	var keyID string
	switch {
	case len(clear) > 0 && len(wrapped) == 0:
		k, err := clear[0].kf.Unwrap(nil)
		if err != nil {
			return nil, fmt.Errorf("%w: key file %s: %v", ErrDamaged, short(clear[0].name), err)
		}
		key, keyID = k, clear[0].name
	case len(wrapped) > 0:
		var password []byte
		if pw != nil {
			if password, err = pw(); err != nil {
				return nil, err
			}
		}
		if password == nil {
			return nil, ErrNoPassword
		}
		for i, c := range wrapped {
			if i == maxKeyTries {
				break
			}
			k, err := c.kf.Unwrap(password)
			if err == nil {
				key, keyID = k, c.name
				break
			}
			if !errors.Is(err, crypto.ErrWrongPassword) {
				damaged = append(damaged, c.name)
			}
		}
		if key == nil {
			if len(damaged) > 0 && len(damaged) >= len(wrapped) {
				return nil, damage()
			}
			return nil, ErrWrongPassword
		}
	default:
		return nil, damage()
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
	if cfg.Encrypted != key.Encrypted {
		return nil, fmt.Errorf("%w: config says encrypted=%v, its key says %v", ErrDamaged, cfg.Encrypted, key.Encrypted)
	}
	if cfg.ChunkMin != chunkMin || cfg.ChunkAvg != chunkAvg || cfg.ChunkMax != chunkMax || cfg.PackSize <= 0 || cfg.PackSize > 1<<30 {
		return nil, fmt.Errorf("%w: config has chunk sizes %d/%d/%d and pack size %d", ErrUnsupportedFormat,
			cfg.ChunkMin, cfg.ChunkAvg, cfg.ChunkMax, cfg.PackSize)
	}
	r := &Repository{be: be, key: key, cfg: cfg, keyID: keyID, opts: o, idx: index.New(),
		indexFiles: map[string]bool{}, tombstones: map[string]bool{}, highestJob: o.HighestJob}
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

// short is the start of a file name, for messages; names come from the
// storage and may be of any length.
func short(name string) string {
	if len(name) > 8 {
		return name[:8]
	}
	return name
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// KeyID is the name of the key file that opened the repository.
func (r *Repository) KeyID() string { return r.keyID }

// Identity returns what a machine remembers of the repository.
func (r *Repository) Identity() Identity {
	return Identity{ID: r.cfg.ID, Encrypted: r.cfg.Encrypted, Version: r.cfg.Version, Fingerprint: fingerprint(r.key), KeyID: r.keyID}
}

// fingerprint identifies a master key without revealing it: a repository
// substituted at a known location, even one with the same ID, has another.
func fingerprint(k *crypto.MasterKey) string {
	h := blake3.New()
	_, _ = h.Write([]byte("runup master key fingerprint v1\x00"))
	_, _ = h.Write(k.SealKey[:])
	_, _ = h.Write(k.IDKey[:])
	return hex.EncodeToString(h.Sum(nil)[:16])
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
	for _, p := range r.idx.Parts() {
		p.S.Close()
	}
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
	err := r.save(ctx, h, data)
	if !errors.Is(err, backend.ErrExists) {
		return err
	}
	old, lerr := backend.LoadAll(ctx, r.be, h)
	if lerr == nil && bytes.Equal(old, data) {
		return nil
	}
	if err := r.Remove(ctx, h); err != nil {
		return err
	}
	return r.save(ctx, h, data)
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

// PackSizes counts the pack files and the bytes they take.
func (r *Repository) PackSizes(ctx context.Context) (packs int, size int64, err error) {
	err = r.be.List(ctx, backend.Data, func(fi backend.FileInfo) error {
		packs++
		size += fi.Size
		return nil
	})
	return packs, size, err
}
