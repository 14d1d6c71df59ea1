// Package local stores a repository in a directory on a local filesystem.
//
// Writes follow the classic atomic recipe: a temporary file beside the target,
// fsync, a hard link to the final name (which fails if it exists, so files
// are never replaced), unlink of the temporary name, fsync of the directory.
package local

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/runup/runup/internal/backend"
)

// Backend is a repository directory.
type Backend struct {
	root string
}

var _ backend.Backend = (*Backend)(nil)

// Open returns the backend for an existing or new repository directory. It
// does not create anything.
func Open(root string) (*Backend, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("repository path %q: %w", root, err)
	}
	return &Backend{root: abs}, nil
}

// Create makes the directory layout; an existing empty directory is fine.
func (b *Backend) Create() error {
	dirs := []string{b.root}
	for _, t := range backend.AllTypes {
		if t != backend.Config {
			dirs = append(dirs, filepath.Join(b.root, string(t)))
		}
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("create repository: %w", err)
		}
	}
	return syncDir(filepath.Dir(b.root))
}

// Location implements backend.Backend.
func (b *Backend) Location() string { return b.root }

func (b *Backend) path(h backend.Handle) string {
	return filepath.Join(b.root, filepath.FromSlash(backend.Path(h)))
}

func validName(h backend.Handle) error {
	if h.Type == backend.Config {
		return nil
	}
	if h.Name == "" || strings.ContainsAny(h.Name, "/\\\x00") || h.Name[0] == '.' {
		return fmt.Errorf("invalid file name %q", h.Name)
	}
	return nil
}

// Save implements backend.Backend.
func (b *Backend) Save(ctx context.Context, h backend.Handle, data []byte) error {
	if err := validName(h); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	final := b.path(h)
	dir := filepath.Dir(final)
	if h.Type == backend.Data {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return writeErr("save", h, err)
		}
	}
	tmp, err := writeTemp(dir, filepath.Base(final), data)
	if err != nil {
		return writeErr("save", h, err)
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, final); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("save %v: %w", h, backend.ErrExists)
		}
		if !errors.Is(err, syscall.EPERM) && !errors.Is(err, syscall.ENOTSUP) {
			return writeErr("save", h, err)
		}
		// Filesystems without hard links: check, then rename. Not atomic
		// against a concurrent writer of the same name, which for content
		// named files is harmless.
		if _, err := os.Lstat(final); err == nil {
			return fmt.Errorf("save %v: %w", h, backend.ErrExists)
		}
		if err := os.Rename(tmp, final); err != nil {
			return writeErr("save", h, err)
		}
	}
	if err := syncDir(dir); err != nil {
		return writeErr("save", h, err)
	}
	return nil
}

// Replace implements backend.Replacer: a temporary file, fsync, rename over
// the old one, fsync of the directory.
func (b *Backend) Replace(ctx context.Context, h backend.Handle, data []byte) error {
	if err := validName(h); err != nil {
		return err
	}
	final := b.path(h)
	tmp, err := writeTemp(filepath.Dir(final), filepath.Base(final), data)
	if err != nil {
		return fmt.Errorf("replace %v: %w", h, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("replace %v: %w", h, err)
	}
	return syncDir(filepath.Dir(final))
}

// writeErr wraps a failed write, marking a read-only filesystem or a
// refusal of permission as backend.ErrReadOnly.
func writeErr(op string, h backend.Handle, err error) error {
	if errors.Is(err, syscall.EROFS) || errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("%s %v: %w: %w", op, h, backend.ErrReadOnly, err)
	}
	return fmt.Errorf("%s %v: %w", op, h, err)
}

func writeTemp(dir, base string, data []byte) (string, error) {
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	name := filepath.Join(dir, "."+base+".tmp-"+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o400)
	if err != nil {
		return "", err
	}
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(name)
		return "", werr
	}
	return name, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	// Some filesystems refuse fsync on directories; their entries are
	// durable by other means.
	if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTSUP) {
		return nil
	}
	return err
}

// Load implements backend.Backend.
func (b *Backend) Load(ctx context.Context, h backend.Handle, offset, length int64) ([]byte, error) {
	if err := validName(h); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := os.Open(b.path(h))
	if err != nil {
		return nil, fmt.Errorf("load %v: %w", h, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("load %v: %w", h, err)
	}
	if err := backend.CheckRange(h, fi.Size(), offset, length); err != nil {
		return nil, err
	}
	if length == 0 {
		length = fi.Size() - offset
	}
	buf := make([]byte, length)
	if _, err := f.ReadAt(buf, offset); err != nil && !(err == io.EOF && length == 0) {
		return nil, fmt.Errorf("load %v: %w", h, err)
	}
	return buf, nil
}

// LoadInto implements backend.LoaderInto.
func (b *Backend) LoadInto(ctx context.Context, h backend.Handle, offset int64, buf []byte) error {
	if err := validName(h); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	f, err := os.Open(b.path(h))
	if err != nil {
		return fmt.Errorf("load %v: %w", h, err)
	}
	defer f.Close()
	if n, err := f.ReadAt(buf, offset); err != nil {
		if err == io.EOF {
			return fmt.Errorf("load %v: %w: %d bytes at %d, size %d", h, backend.ErrRange, len(buf), offset, offset+int64(n))
		}
		return fmt.Errorf("load %v: %w", h, err)
	}
	return nil
}

// Stat implements backend.Backend.
func (b *Backend) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	if err := validName(h); err != nil {
		return backend.FileInfo{}, err
	}
	fi, err := os.Stat(b.path(h))
	if err != nil {
		return backend.FileInfo{}, fmt.Errorf("stat %v: %w", h, err)
	}
	return backend.FileInfo{Name: h.Name, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// List implements backend.Backend.
func (b *Backend) List(ctx context.Context, t backend.FileType, fn func(backend.FileInfo) error) error {
	dir := filepath.Join(b.root, string(t))
	if t == backend.Data {
		subs, err := os.ReadDir(dir)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return fmt.Errorf("list %s: %w", t, err)
		}
		for _, s := range subs {
			if !s.IsDir() || len(s.Name()) != 2 {
				continue
			}
			if err := listDir(ctx, filepath.Join(dir, s.Name()), fn); err != nil {
				return err
			}
		}
		return nil
	}
	return listDir(ctx, dir, fn)
}

func listDir(ctx context.Context, dir string, fn func(backend.FileInfo) error) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("list %s: %w", dir, err)
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		info, err := e.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return fmt.Errorf("list %s: %w", dir, err)
		}
		if err := fn(backend.FileInfo{Name: e.Name(), Size: info.Size(), ModTime: info.ModTime()}); err != nil {
			return err
		}
	}
	return nil
}

// Remove implements backend.Backend.
func (b *Backend) Remove(ctx context.Context, h backend.Handle) error {
	if err := validName(h); err != nil {
		return err
	}
	p := b.path(h)
	if err := os.Remove(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("remove %v: %w", h, err)
	}
	return syncDir(filepath.Dir(p))
}

// Close implements backend.Backend.
func (b *Backend) Close() error { return nil }

// stream is a temporary file in the repository that becomes a repository
// file by Commit: flushed, fsynced, linked to its final name (refused if it
// exists), and its directory fsynced.
type stream struct {
	b   *Backend
	f   *os.File
	buf *bufio.Writer
	dir string
}

var _ backend.Streamer = (*Backend)(nil)

// Stream implements backend.Streamer.
func (b *Backend) Stream(ctx context.Context, t backend.FileType) (backend.Stream, error) {
	dir := filepath.Join(b.root, string(t))
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	f, err := os.OpenFile(filepath.Join(dir, ".stream.tmp-"+hex.EncodeToString(rnd[:])), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o400)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", t, err)
	}
	return &stream{b: b, f: f, buf: bufio.NewWriterSize(f, 1<<20), dir: dir}, nil
}

func (s *stream) Write(p []byte) (int, error) { return s.buf.Write(p) }

func (s *stream) Abort() error {
	s.f.Close()
	return os.Remove(s.f.Name())
}

func (s *stream) Commit(ctx context.Context, h backend.Handle) error {
	if err := validName(h); err != nil {
		s.Abort()
		return err
	}
	err := s.buf.Flush()
	if err == nil {
		err = s.f.Sync()
	}
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	defer os.Remove(s.f.Name())
	if err != nil {
		return fmt.Errorf("save %v: %w", h, err)
	}
	final := s.b.path(h)
	if err := os.MkdirAll(filepath.Dir(final), 0o700); err != nil {
		return fmt.Errorf("save %v: %w", h, err)
	}
	if err := os.Link(s.f.Name(), final); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("save %v: %w", h, backend.ErrExists)
		}
		return fmt.Errorf("save %v: %w", h, err)
	}
	if err := syncDir(filepath.Dir(final)); err != nil {
		return fmt.Errorf("save %v: %w", h, err)
	}
	return nil
}

// RemoveTemporary deletes temporary files that interrupted writers left.
// Only call it while no other process writes (under an exclusive lock).
func (b *Backend) RemoveTemporary(ctx context.Context) (int, error) {
	n := 0
	err := filepath.WalkDir(b.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.Type().IsRegular() && strings.HasPrefix(d.Name(), ".") && strings.Contains(d.Name(), ".tmp-") {
			if err := os.Remove(p); err == nil {
				n++
			}
		}
		return ctx.Err()
	})
	return n, err
}
