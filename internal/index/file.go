package index

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/runup/runup/internal/crypto"
	"github.com/runup/runup/internal/pack"
)

// PackBlobs is everything an index file says about one pack.
type PackBlobs struct {
	ID    crypto.ID
	Blobs []pack.Blob
}

// fileVersion 2 adds group members (pack.FlagGrouped and their inner
// offset). Like pack headers, a file is written as version 2 only when it
// lists a group member.
const (
	fileVersion  = 1
	fileVersion2 = 2
)

// minBlobBytes is the least an encoded blob takes; it bounds how many blobs a
// decoder believes a file of a given size can hold.
const minBlobBytes = 2 + crypto.IDSize + 3

// ErrDamaged wraps every structural problem of an index file.
var ErrDamaged = errors.New("index file damaged")

// Encode returns an index file's plaintext.
func Encode(packs []PackBlobs) []byte {
	version := byte(fileVersion)
	for _, p := range packs {
		for _, b := range p.Blobs {
			if b.Grouped() {
				version = fileVersion2
			}
		}
	}
	buf := []byte{version}
	buf = binary.AppendUvarint(buf, uint64(len(packs)))
	for _, p := range packs {
		buf = append(buf, p.ID[:]...)
		buf = binary.AppendUvarint(buf, uint64(len(p.Blobs)))
		for _, b := range p.Blobs {
			buf = append(buf, byte(b.Type), byte(b.Flags))
			buf = append(buf, b.ID[:]...)
			buf = binary.AppendUvarint(buf, uint64(b.Offset))
			buf = binary.AppendUvarint(buf, uint64(b.Length))
			buf = binary.AppendUvarint(buf, uint64(b.RawLen))
			if b.Grouped() {
				buf = binary.AppendUvarint(buf, uint64(b.Inner))
			}
		}
	}
	return buf
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint(max uint64) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 || v > max {
		d.err = fmt.Errorf("%w: bad number", ErrDamaged)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes(n int) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.b) < n {
		d.err = fmt.Errorf("%w: truncated", ErrDamaged)
		return nil
	}
	out := d.b[:n]
	d.b = d.b[n:]
	return out
}

// Decode parses an index file's plaintext.
func Decode(buf []byte) ([]PackBlobs, error) {
	if len(buf) < 1 || (buf[0] != fileVersion && buf[0] != fileVersion2) {
		return nil, fmt.Errorf("%w: unknown version", ErrDamaged)
	}
	allowed := pack.FlagZstd
	if buf[0] == fileVersion2 {
		allowed |= pack.FlagGrouped
	}
	d := &decoder{b: buf[1:]}
	npacks := d.uvarint(uint64(len(buf)) / (crypto.IDSize + 1))
	packs := make([]PackBlobs, 0, npacks)
	for i := uint64(0); i < npacks && d.err == nil; i++ {
		var p PackBlobs
		copy(p.ID[:], d.bytes(crypto.IDSize))
		nblobs := d.uvarint(uint64(len(d.b)) / minBlobBytes)
		p.Blobs = make([]pack.Blob, 0, nblobs)
		for j := uint64(0); j < nblobs && d.err == nil; j++ {
			var b pack.Blob
			tf := d.bytes(2)
			if d.err != nil {
				break
			}
			b.Type, b.Flags = pack.BlobType(tf[0]), pack.Flags(tf[1])
			if b.Type > pack.Tree || b.Flags&^allowed != 0 || (b.Grouped() && b.Type != pack.Data) {
				d.err = fmt.Errorf("%w: bad blob type", ErrDamaged)
			}
			copy(b.ID[:], d.bytes(crypto.IDSize))
			b.Offset = uint32(d.uvarint(1<<32 - 1))
			b.Length = uint32(d.uvarint(1<<32 - 1))
			b.RawLen = uint32(d.uvarint(1<<32 - 1))
			if b.Grouped() {
				b.Inner = uint32(d.uvarint(1<<32 - 1))
			}
			p.Blobs = append(p.Blobs, b)
		}
		packs = append(packs, p)
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", ErrDamaged, len(d.b))
	}
	if d.err != nil {
		return nil, d.err
	}
	return packs, nil
}
