// Package tree holds the nodes of a job (files, directories, links, …) and
// the stable binary encoding of a directory's listing as a tree blob.
//
// A tree blob is content-addressed like any chunk, so an unchanged directory
// encodes to the same bytes, gets the same ID and costs nothing in a new job.
// The decoder treats its input as hostile: names that could escape a restore
// location, duplicate or unsorted names and impossible counts are refused.
package tree

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/runup/runup/internal/crypto"
)

// Type is a node's kind.
type Type uint8

// Node types.
const (
	File Type = iota + 1
	Dir
	Symlink
	Fifo
	Socket
	CharDev
	BlockDev
)

var typeNames = map[Type]string{File: "file", Dir: "dir", Symlink: "symlink", Fifo: "fifo",
	Socket: "socket", CharDev: "chardev", BlockDev: "blockdev"}

func (t Type) String() string {
	if s, ok := typeNames[t]; ok {
		return s
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// XAttr is one extended attribute.
type XAttr struct {
	Name  string
	Value []byte
}

// Node is one entry of a directory.
type Node struct {
	Name   string
	Type   Type
	Mode   uint32 // permission and set-id/sticky bits (07777)
	UID    uint32
	GID    uint32
	Size   uint64
	MTime  Time
	CTime  Time
	Inode  uint64
	Device uint64
	Links  uint64
	Rdev   uint64
	Target string // symbolic link target
	XAttrs []XAttr
	// Content lists a file's chunks in order.
	Content []crypto.ID
	// Subtree is a directory's tree blob.
	Subtree crypto.ID
}

// Time is a time as filesystems store it, seconds and nanoseconds, so that
// every time a filesystem can hold comes back exactly: nanoseconds in an
// int64 end in 2262, and ext4 holds times up to 2446.
type Time struct {
	Sec  int64
	Nsec int32 // in [0, 1e9)
}

// TimeOf converts a time.Time.
func TimeOf(t time.Time) Time { return Time{Sec: t.Unix(), Nsec: int32(t.Nanosecond())} }

// Time converts to a time.Time.
func (t Time) Time() time.Time { return time.Unix(t.Sec, int64(t.Nsec)) }

// FitsNanos reports whether the time fits tree encoding version 1
// (nanoseconds in an int64).
func (t Time) FitsNanos() bool {
	return t.Sec > math.MinInt64/1_000_000_000+1 && t.Sec < math.MaxInt64/1_000_000_000-1
}

func (t Time) nanos() int64 {
	if !t.FitsNanos() {
		if t.Sec < 0 {
			return math.MinInt64
		}
		return math.MaxInt64
	}
	return t.Sec*1e9 + int64(t.Nsec)
}

func fromNanos(ns int64) Time {
	sec, nsec := ns/1e9, ns%1e9
	if nsec < 0 {
		sec, nsec = sec-1, nsec+1e9
	}
	return Time{Sec: sec, Nsec: int32(nsec)}
}

// Tree is a directory listing, sorted by name.
type Tree struct {
	Nodes []Node
}

// Sort orders the nodes by name, as Encode requires.
func (t *Tree) Sort() {
	slices.SortFunc(t.Nodes, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })
}

// Find returns the node with the given name.
func (t *Tree) Find(name string) (*Node, bool) {
	i, ok := slices.BinarySearchFunc(t.Nodes, name, func(n Node, name string) int { return strings.Compare(n.Name, name) })
	if !ok {
		return nil, false
	}
	return &t.Nodes[i], true
}

// ValidName reports whether name may be a node's name: one path component
// that cannot climb out of its directory.
func ValidName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\x00")
}

// Tree encoding versions: 1 stores times as nanoseconds (an int64), 2 as
// seconds and nanoseconds. Repository format 3 writes version 2; older
// formats keep version 1, so that older programs can read them.
const (
	Version1 = 1
	Version2 = 2
)

// Limits for hostile input.
const (
	maxNameLen   = 4096
	maxTargetLen = 64 << 10
	maxXAttrs    = 1024
	maxXAttrLen  = 64 << 10
)

// minNodeBytes is the smallest encoded node: name length and one letter,
// type, and one byte for each number and empty list.
const minNodeBytes = 16

// ErrDamaged wraps every problem the decoder finds.
var ErrDamaged = errors.New("tree damaged")

// Encode returns the tree's stable encoding in the given version (Version1
// or Version2). Nodes must be sorted by name. Version 1 cannot hold times
// outside 1678–2262; they are clamped, so callers check FitsNanos first.
func Encode(t *Tree, version int) ([]byte, error) {
	if version != Version1 && version != Version2 {
		return nil, fmt.Errorf("encode tree: unknown version %d", version)
	}
	buf := make([]byte, 0, 64+len(t.Nodes)*96)
	buf = append(buf, byte(version))
	buf = binary.AppendUvarint(buf, uint64(len(t.Nodes)))
	for i := range t.Nodes {
		n := &t.Nodes[i]
		if !ValidName(n.Name) {
			return nil, fmt.Errorf("encode tree: invalid name %q", n.Name)
		}
		if i > 0 && t.Nodes[i-1].Name >= n.Name {
			return nil, fmt.Errorf("encode tree: names not sorted or duplicated at %q", n.Name)
		}
		buf = appendString(buf, n.Name)
		buf = append(buf, byte(n.Type))
		for _, v := range []uint64{uint64(n.Mode), uint64(n.UID), uint64(n.GID), n.Size} {
			buf = binary.AppendUvarint(buf, v)
		}
		for _, tm := range []Time{n.MTime, n.CTime} {
			if version == Version1 {
				buf = binary.AppendVarint(buf, tm.nanos())
				continue
			}
			if tm.Nsec < 0 || tm.Nsec >= 1e9 {
				return nil, fmt.Errorf("encode tree: %q has a time with %d ns", n.Name, tm.Nsec)
			}
			buf = binary.AppendVarint(buf, tm.Sec)
			buf = binary.AppendUvarint(buf, uint64(tm.Nsec))
		}
		for _, v := range []uint64{n.Inode, n.Device, n.Links, n.Rdev} {
			buf = binary.AppendUvarint(buf, v)
		}
		buf = appendString(buf, n.Target)
		buf = binary.AppendUvarint(buf, uint64(len(n.XAttrs)))
		for _, x := range n.XAttrs {
			buf = appendString(buf, x.Name)
			buf = appendString(buf, string(x.Value))
		}
		buf = binary.AppendUvarint(buf, uint64(len(n.Content)))
		for _, id := range n.Content {
			buf = append(buf, id[:]...)
		}
		if n.Type == Dir {
			buf = append(buf, n.Subtree[:]...)
		}
	}
	return buf, nil
}

func appendString(buf []byte, s string) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(s)))
	return append(buf, s...)
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrDamaged, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad number")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad number")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes(n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if uint64(len(d.b)) < n {
		d.fail("truncated")
		return nil
	}
	out := d.b[:n]
	d.b = d.b[n:]
	return out
}

func (d *decoder) string(max uint64) string {
	n := d.uvarint()
	if n > max {
		d.fail("string of %d bytes", n)
		return ""
	}
	return string(d.bytes(n))
}

func (d *decoder) u32() uint32 {
	v := d.uvarint()
	if v > 1<<32-1 {
		d.fail("value out of range")
	}
	return uint32(v)
}

func (d *decoder) time(version byte) Time {
	if version == Version1 {
		return fromNanos(d.varint())
	}
	t := Time{Sec: d.varint()}
	ns := d.uvarint()
	if ns >= 1e9 {
		d.fail("%d nanoseconds", ns)
	}
	t.Nsec = int32(ns)
	return t
}

// Decode parses a tree blob of either version.
func Decode(buf []byte) (*Tree, error) {
	if len(buf) < 1 || (buf[0] != Version1 && buf[0] != Version2) {
		return nil, fmt.Errorf("%w: unknown version", ErrDamaged)
	}
	version := buf[0]
	d := &decoder{b: buf[1:]}
	count := d.uvarint()
	// Every node takes at least 16 bytes (a one-letter name and zeros),
	// which bounds the allocation.
	if count > uint64(len(d.b))/minNodeBytes {
		return nil, fmt.Errorf("%w: %d nodes in %d bytes", ErrDamaged, count, len(d.b))
	}
	t := &Tree{Nodes: make([]Node, 0, count)}
	for i := uint64(0); i < count && d.err == nil; i++ {
		var n Node
		n.Name = d.string(maxNameLen)
		if d.err == nil && !ValidName(n.Name) {
			d.fail("invalid name %q", n.Name)
		}
		if d.err == nil && i > 0 && t.Nodes[i-1].Name >= n.Name {
			d.fail("names not sorted or duplicated at %q", n.Name)
		}
		if tb := d.bytes(1); d.err == nil {
			n.Type = Type(tb[0])
			if _, ok := typeNames[n.Type]; !ok {
				d.fail("unknown node type %d", tb[0])
			}
		}
		n.Mode = d.u32()
		n.UID = d.u32()
		n.GID = d.u32()
		n.Size = d.uvarint()
		n.MTime = d.time(version)
		n.CTime = d.time(version)
		n.Inode = d.uvarint()
		n.Device = d.uvarint()
		n.Links = d.uvarint()
		n.Rdev = d.uvarint()
		n.Target = d.string(maxTargetLen)
		nx := d.uvarint()
		if nx > maxXAttrs {
			d.fail("%d extended attributes", nx)
		}
		for j := uint64(0); j < nx && d.err == nil; j++ {
			n.XAttrs = append(n.XAttrs, XAttr{Name: d.string(maxNameLen), Value: []byte(d.string(maxXAttrLen))})
		}
		nc := d.uvarint()
		if nc > uint64(len(d.b))/crypto.IDSize {
			d.fail("%d chunks in %d bytes", nc, len(d.b))
		}
		if nc > 0 && n.Type != File {
			d.fail("%s %q has content", n.Type, n.Name)
		}
		if d.err == nil && nc > 0 {
			n.Content = make([]crypto.ID, nc)
			for j := range n.Content {
				copy(n.Content[j][:], d.bytes(crypto.IDSize))
			}
		}
		if n.Type == Dir {
			copy(n.Subtree[:], d.bytes(crypto.IDSize))
		}
		t.Nodes = append(t.Nodes, n)
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return nil, d.err
	}
	return t, nil
}
