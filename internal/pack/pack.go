// Package pack is the pack file format: sealed blobs one after another,
// then a sealed header that lists them, then the header's length.
//
//	blob_0 | blob_1 | ... | blob_n | sealed header | uint32 LE header length
//
// Small data blobs are sealed together in groups, so that zstd finds what
// neighbouring small files share: each member has its own header entry,
// and all of a group's members point at the group's sealed bytes.
//
// The header alone is enough to rebuild the index, so losing every index
// file loses nothing. A pack's name is the keyed hash of its bytes.
package pack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/runup/runup/internal/crypto"
)

// BlobType says whether a blob holds file content or a directory tree.
type BlobType uint8

// Blob types.
const (
	Data BlobType = 0
	Tree BlobType = 1
)

func (t BlobType) String() string {
	switch t {
	case Data:
		return "data"
	case Tree:
		return "tree"
	}
	return fmt.Sprintf("blobtype(%d)", uint8(t))
}

// Flags describe how a blob is stored.
type Flags uint8

// Blob flags.
const (
	// FlagZstd marks a blob (or a group) compressed with zstd before sealing.
	FlagZstd Flags = 1
	// FlagGrouped marks a member of a group. In a header, the first member
	// carries the group's sealed length and the others a length of 0; each
	// member's plaintext follows the previous one's inside the group.
	FlagGrouped Flags = 2
)

const (
	// headerVersion 1 has no groups; 2 may have them. A writer uses 2 only
	// when a pack holds a group, so packs of format 1 repositories stay
	// readable by older versions.
	headerVersion  = 1
	headerVersion2 = 2
	entrySize      = 1 + 1 + crypto.IDSize + 4 + 4
	// MaxHeaderSize bounds what a reader will load for a header: 400k
	// blobs, far beyond any pack this writer makes.
	MaxHeaderSize = 16 << 20
	// TailSize is how much of a pack's end to read at once, in the hope
	// that it holds the whole header.
	TailSize = 64 << 10
)

// Blob is one entry of a pack header.
type Blob struct {
	Type   BlobType
	Flags  Flags
	ID     crypto.ID
	Offset uint32 // from the start of the pack (of the group, for a member)
	Length uint32 // sealed length in the pack (of the group, for a member)
	RawLen uint32 // plaintext length after decompression
	Inner  uint32 // a group member's offset in the group's plaintext
}

// Grouped reports whether the blob is stored in a group.
func (b Blob) Grouped() bool { return b.Flags&FlagGrouped != 0 }

// Member is one blob of a group: its plaintext is the group's plaintext
// from the end of the previous member.
type Member struct {
	ID     crypto.ID
	RawLen int
}

// Writer builds one pack, in memory or streamed to an io.Writer. It is not
// safe for concurrent use. A streaming Writer keeps its first write error
// and refuses further work.
type Writer struct {
	buf     []byte    // memory: the pack so far
	out     io.Writer // streaming: where the bytes go (nil in memory)
	sum     hash.Hash // streaming: the pack's ID as it is written
	scratch []byte
	n       int
	blobs   []Blob
	err     error
}

// NewWriter starts a pack in buf's storage (its length is ignored), so
// callers can reuse pack-sized buffers instead of growing new ones.
func NewWriter(buf []byte) *Writer { return &Writer{buf: buf[:0]} }

// NewStreamWriter starts a pack written to out as it grows; sum receives
// the same bytes and gives the pack's ID.
func NewStreamWriter(out io.Writer, sum hash.Hash) *Writer {
	return &Writer{out: io.MultiWriter(out, sum), sum: sum}
}

// Len is the pack's size so far, without its header.
func (w *Writer) Len() int { return w.n }

// Count is the number of blobs added.
func (w *Writer) Count() int { return len(w.blobs) }

// Add appends a sealed blob.
func (w *Writer) Add(t BlobType, f Flags, id crypto.ID, rawLen int, sealed []byte) {
	w.AddSealed(t, f, id, rawLen, func(dst []byte) []byte { return append(dst, sealed...) })
}

// AddSealed appends a blob that seal writes straight into the pack's
// buffer, saving a copy; seal must append to dst and return the result.
func (w *Writer) AddSealed(t BlobType, f Flags, id crypto.ID, rawLen int, seal func(dst []byte) []byte) int {
	start := w.n
	if w.out == nil {
		w.buf = seal(w.buf)
		w.n = len(w.buf)
	} else {
		w.scratch = seal(w.scratch[:0])
		w.write(w.scratch)
	}
	n := w.n - start
	w.blobs = append(w.blobs, Blob{Type: t, Flags: f, ID: id, Offset: uint32(start), Length: uint32(n), RawLen: uint32(rawLen)})
	return n
}

// AddGroup appends small data blobs sealed as one: seal writes the group's
// sealed bytes, and members lists the blobs whose plaintexts, one after
// another, make up the group's plaintext. flags apply to the whole group.
func (w *Writer) AddGroup(f Flags, members []Member, seal func(dst []byte) []byte) int {
	n := w.AddSealed(Data, f|FlagGrouped, members[0].ID, members[0].RawLen, seal)
	g := w.blobs[len(w.blobs)-1]
	inner := uint32(members[0].RawLen)
	for _, m := range members[1:] {
		w.blobs = append(w.blobs, Blob{Type: Data, Flags: g.Flags, ID: m.ID, Offset: g.Offset, Length: g.Length,
			RawLen: uint32(m.RawLen), Inner: inner})
		inner += uint32(m.RawLen)
	}
	return n
}

func (w *Writer) write(b []byte) {
	if w.err != nil {
		return
	}
	if _, err := w.out.Write(b); err != nil {
		w.err = err
		return
	}
	w.n += len(b)
}

// Finish seals the header and returns the pack's ID, its blobs and, for an
// in-memory pack, its bytes (in the Writer's buffer). The Writer must not
// be used afterwards.
func (w *Writer) Finish(key *crypto.MasterKey) ([]byte, crypto.ID, []Blob, error) {
	sealed := SealHeader(key, w.blobs)
	if w.out == nil {
		w.buf = append(w.buf, sealed...)
		return w.buf, key.Hash(w.buf), w.blobs, nil
	}
	w.write(sealed)
	var id crypto.ID
	w.sum.Sum(id[:0])
	return nil, id, w.blobs, w.err
}

// SealHeader returns the sealed header of a pack holding blobs, and its
// length: what ends the pack file. Blobs are in pack order.
func SealHeader(key *crypto.MasterKey, blobs []Blob) []byte {
	version := byte(headerVersion)
	for _, b := range blobs {
		if b.Grouped() {
			version = headerVersion2
			break
		}
	}
	hdr := make([]byte, 0, 1+binary.MaxVarintLen64+len(blobs)*entrySize)
	hdr = append(hdr, version)
	hdr = binary.AppendUvarint(hdr, uint64(len(blobs)))
	for i, b := range blobs {
		hdr = append(hdr, byte(b.Type), byte(b.Flags))
		hdr = append(hdr, b.ID[:]...)
		length := b.Length
		if b.Grouped() && i > 0 && blobs[i-1].Grouped() && blobs[i-1].Offset == b.Offset {
			length = 0 // a later member: the group's length is on its first
		}
		hdr = binary.LittleEndian.AppendUint32(hdr, length)
		hdr = binary.LittleEndian.AppendUint32(hdr, b.RawLen)
	}
	sealed := key.Seal(nil, hdr)
	return binary.LittleEndian.AppendUint32(sealed, uint32(len(sealed)))
}

// ErrDamaged wraps every structural problem found in a pack.
var ErrDamaged = errors.New("pack damaged")

// ReadHeader decodes a pack's header. tail holds the last bytes of the pack
// (at most size bytes); load fetches more when the header is longer.
func ReadHeader(key *crypto.MasterKey, size int64, tail []byte, load func(off, n int64) ([]byte, error)) ([]Blob, error) {
	if size < 4 || int64(len(tail)) < 4 || int64(len(tail)) > size {
		return nil, fmt.Errorf("%w: %d bytes is too short", ErrDamaged, size)
	}
	hlen := int64(binary.LittleEndian.Uint32(tail[len(tail)-4:]))
	if hlen > size-4 || hlen > MaxHeaderSize || hlen < int64(key.Overhead()) {
		return nil, fmt.Errorf("%w: header length %d does not fit size %d", ErrDamaged, hlen, size)
	}
	var sealed []byte
	if hlen+4 <= int64(len(tail)) {
		sealed = tail[int64(len(tail))-4-hlen : len(tail)-4]
	} else {
		var err error
		if sealed, err = load(size-4-hlen, hlen); err != nil {
			return nil, err
		}
	}
	hdr, err := key.Open(nil, sealed)
	if err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrDamaged, err)
	}
	return parseHeader(hdr, size-4-hlen)
}

func parseHeader(hdr []byte, dataLen int64) ([]Blob, error) {
	if len(hdr) < 1 || (hdr[0] != headerVersion && hdr[0] != headerVersion2) {
		return nil, fmt.Errorf("%w: unknown header version", ErrDamaged)
	}
	allowed := FlagZstd
	if hdr[0] == headerVersion2 {
		allowed |= FlagGrouped
	}
	count, n := binary.Uvarint(hdr[1:])
	if n <= 0 {
		return nil, fmt.Errorf("%w: bad blob count", ErrDamaged)
	}
	rest := hdr[1+n:]
	if count != uint64(len(rest)/entrySize) || len(rest)%entrySize != 0 {
		return nil, fmt.Errorf("%w: header holds %d bytes for %d blobs", ErrDamaged, len(rest), count)
	}
	blobs := make([]Blob, count)
	var off int64
	for i := range blobs {
		e := rest[i*entrySize : (i+1)*entrySize]
		b := Blob{Type: BlobType(e[0]), Flags: Flags(e[1]), Offset: uint32(off)}
		copy(b.ID[:], e[2:2+crypto.IDSize])
		b.Length = binary.LittleEndian.Uint32(e[2+crypto.IDSize:])
		b.RawLen = binary.LittleEndian.Uint32(e[6+crypto.IDSize:])
		if b.Type > Tree || b.Flags&^allowed != 0 || (b.Grouped() && b.Type != Data) {
			return nil, fmt.Errorf("%w: blob %d has type %d flags %d", ErrDamaged, i, b.Type, b.Flags)
		}
		if b.Grouped() && b.Length == 0 {
			// A later member of the group before it.
			if i == 0 || !blobs[i-1].Grouped() || blobs[i-1].Flags != b.Flags {
				return nil, fmt.Errorf("%w: blob %d continues no group", ErrDamaged, i)
			}
			prev := blobs[i-1]
			inner := uint64(prev.Inner) + uint64(prev.RawLen)
			if inner > 1<<32-1 {
				return nil, fmt.Errorf("%w: group of blob %d is too large", ErrDamaged, i)
			}
			b.Offset, b.Length, b.Inner = prev.Offset, prev.Length, uint32(inner)
			blobs[i] = b
			continue
		}
		off += int64(b.Length)
		if off > dataLen {
			return nil, fmt.Errorf("%w: blobs run past the header", ErrDamaged)
		}
		blobs[i] = b
	}
	if off != dataLen {
		return nil, fmt.Errorf("%w: blobs cover %d of %d bytes", ErrDamaged, off, dataLen)
	}
	return blobs, nil
}
