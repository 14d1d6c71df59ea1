// Package backend defines the storage interface under a repository.
//
// A backend stores whole, write-once files by type and name. Everything above
// it (format, encryption, indexes) lives in package repo, so an SFTP or S3
// implementation needs only these few methods.
package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"
)

// FileType is the kind of a repository file; it picks the folder it lives in.
type FileType string

// The repository's file types.
const (
	Config FileType = "config" // the single repository config file
	Keys   FileType = "keys"
	Data   FileType = "data" // pack files
	Index  FileType = "index"
	Jobs   FileType = "jobs"
	Locks  FileType = "locks"
)

// AllTypes lists every file type, the config first.
var AllTypes = []FileType{Config, Keys, Data, Index, Jobs, Locks}

// Handle names one file.
type Handle struct {
	Type FileType
	Name string // ignored for Config
}

// Path is a file's place in the repository layout, slash-separated and
// relative to the repository's root; every backend stores files there, so
// a repository can be copied between them as it is. Packs are spread over
// 256 folders by the first two digits of their name.
func Path(h Handle) string {
	switch {
	case h.Type == Config:
		return "config"
	case h.Type == Data && len(h.Name) >= 2:
		return "data/" + h.Name[:2] + "/" + h.Name
	}
	return string(h.Type) + "/" + h.Name
}

func (h Handle) String() string {
	if h.Type == Config {
		return "config"
	}
	return string(h.Type) + "/" + h.Name
}

// FileInfo describes a stored file.
type FileInfo struct {
	Name string
	Size int64
	// ModTime is when the file was written, as the storage says: used
	// only to leave recent files alone (prune's grace period).
	ModTime time.Time
}

// ErrExists is returned by Save when the file is already there: files are
// written once, and a second writer of the same name loses.
var ErrExists = errors.New("file already exists")

// ErrReadOnly marks a write refused because the storage is read-only (a
// mounted snapshot, write-protected media, read-only credentials). Reading
// still works, and commands that only read go on without a lock.
var ErrReadOnly = errors.New("the storage is read-only")

// ErrPermanent marks a failure that retrying cannot cure: bad credentials,
// an invalid bucket name, a refused request.
var ErrPermanent = errors.New("permanent failure")

// ErrNotExist is returned (wrapped) for a missing file; it is fs.ErrNotExist so
// that errors.Is works against either.
var ErrNotExist = fs.ErrNotExist

// Backend is the storage under a repository.
//
// Every method is safe for concurrent use. Files are write-once: Save never
// replaces an existing file, and a file becomes visible only once it is
// completely and durably stored.
type Backend interface {
	// Location names the backend for messages (a path or URL without secrets).
	Location() string
	// Save stores data at h atomically and durably. If h exists it returns an
	// error wrapping ErrExists and leaves the existing file untouched.
	Save(ctx context.Context, h Handle, data []byte) error
	// Load returns length bytes of h starting at offset; length 0 means to the
	// end. A missing file gives an error wrapping ErrNotExist; a file shorter
	// than offset+length gives an error, never a short slice.
	Load(ctx context.Context, h Handle, offset, length int64) ([]byte, error)
	// Stat returns the size of h, or an error wrapping ErrNotExist.
	Stat(ctx context.Context, h Handle) (FileInfo, error)
	// List calls fn for every file of type t, in no particular order.
	List(ctx context.Context, t FileType, fn func(FileInfo) error) error
	// Remove deletes h; removing a missing file is not an error.
	Remove(ctx context.Context, h Handle) error
	// Close releases resources held by the backend.
	Close() error
}

// Stream is a file being written. Commit makes it visible under its final
// name, with Save's guarantees (write-once, complete, durable); Abort
// discards it.
type Stream interface {
	io.Writer
	Commit(ctx context.Context, h Handle) error
	Abort() error
}

// Streamer is implemented by backends that can take a file while it is
// being written, so that large files (packs) need not be held in memory.
type Streamer interface {
	Stream(ctx context.Context, t FileType) (Stream, error)
}

// ReaderSaver is implemented by backends that can save a file read from a
// local one (a pack spooled to disk as it was built), so that a pack is
// never held in memory whole. It has Save's guarantees; r may be read more
// than once (a retry).
type ReaderSaver interface {
	SaveReader(ctx context.Context, h Handle, r io.ReaderAt, size int64) error
}

// Replacer is implemented by backends that can replace a file atomically:
// readers see the old content or the new, never none. Only the config is
// ever replaced, by 'runup migrate'; every other file is write-once.
type Replacer interface {
	Replace(ctx context.Context, h Handle, data []byte) error
}

// LoaderInto is implemented by backends that can read a range into the
// caller's buffer, so that a reader of many ranges (restore) reuses one
// buffer instead of allocating each.
type LoaderInto interface {
	// LoadInto fills buf from offset; a range past the end is an error.
	LoadInto(ctx context.Context, h Handle, offset int64, buf []byte) error
}

// LoadAll reads a whole file.
func LoadAll(ctx context.Context, b Backend, h Handle) ([]byte, error) {
	return b.Load(ctx, h, 0, 0)
}

// ErrTooLarge is returned by LoadAtMost for a file beyond its bound.
var ErrTooLarge = errors.New("file is larger than any RunUp writes")

// LoadAtMost reads a whole file of at most limit bytes. The storage is not
// trusted: a file it makes huge costs a stat, not the memory to hold it.
func LoadAtMost(ctx context.Context, b Backend, h Handle, limit int64) ([]byte, error) {
	fi, err := b.Stat(ctx, h)
	if err != nil {
		return nil, err
	}
	if fi.Size > limit {
		return nil, fmt.Errorf("%v is %d bytes: %w (at most %d)", h, fi.Size, ErrTooLarge, limit)
	}
	if fi.Size == 0 {
		return []byte{}, nil
	}
	return b.Load(ctx, h, 0, fi.Size)
}

// ErrRange is returned (wrapped) for a read beyond a file's end: the file
// is shorter than whoever asked believed, which for a pack is damage.
var ErrRange = errors.New("read beyond the end of the file")

// CheckRange validates a Load request against a file size.
func CheckRange(h Handle, size, offset, length int64) error {
	if offset < 0 || length < 0 || offset > size || (length > 0 && offset+length > size) {
		return fmt.Errorf("%v: %w: %d bytes at %d, size %d", h, ErrRange, length, offset, size)
	}
	return nil
}

type metadataKey struct{}

// WithMetadata marks a Save of a file that holds metadata (a pack of
// trees), which a caching backend should keep.
func WithMetadata(ctx context.Context) context.Context {
	return context.WithValue(ctx, metadataKey{}, true)
}

// IsMetadata reports whether ctx carries WithMetadata.
func IsMetadata(ctx context.Context) bool {
	v, _ := ctx.Value(metadataKey{}).(bool)
	return v
}

// As finds, in a chain of wrappers that each offer Unwrap (retry, cache,
// fault injection), the first backend with the optional capability T.
func As[T any](be Backend) (T, bool) {
	for be != nil {
		if t, ok := be.(T); ok {
			return t, true
		}
		u, ok := be.(interface{ Unwrap() Backend })
		if !ok {
			break
		}
		be = u.Unwrap()
	}
	var zero T
	return zero, false
}
