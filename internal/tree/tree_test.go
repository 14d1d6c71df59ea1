package tree

import (
	"errors"
	"reflect"
	"testing"

	"github.com/runup/runup/internal/crypto"
)

func sample() *Tree {
	t := &Tree{Nodes: []Node{
		{Name: "b.txt", Type: File, Mode: 0o644, UID: 1000, GID: 1000, Size: 5, MTime: -5, CTime: 1 << 60,
			Inode: 7, Device: 8, Links: 2, Content: []crypto.ID{{1}, {2}},
			XAttrs: []XAttr{{Name: "user.x", Value: []byte{0, 1}}}},
		{Name: "a dir", Type: Dir, Mode: 0o755, Subtree: crypto.ID{9}},
		{Name: "link", Type: Symlink, Target: "../x"},
		{Name: "dev", Type: CharDev, Rdev: 259},
		{Name: "ünïcode 'quote\"", Type: Fifo},
	}}
	t.Sort()
	return t
}

func TestRoundTrip(t *testing.T) {
	in := sample()
	b, err := Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip differs:\n%+v\n%+v", in, out)
	}
	again, _ := Encode(out)
	if string(again) != string(b) {
		t.Fatal("encoding is not stable")
	}
	if n, ok := out.Find("link"); !ok || n.Target != "../x" {
		t.Fatal("Find failed")
	}
	empty, _ := Encode(&Tree{})
	if got, err := Decode(empty); err != nil || len(got.Nodes) != 0 {
		t.Fatal("empty tree")
	}
}

func TestRefusesHostileNames(t *testing.T) {
	for _, name := range []string{"", ".", "..", "a/b", "/abs", "nul\x00"} {
		if _, err := Encode(&Tree{Nodes: []Node{{Name: name, Type: File}}}); err == nil {
			t.Errorf("encoded name %q", name)
		}
		// Craft the blob by hand: the decoder must refuse what the encoder would not write.
		good, _ := Encode(&Tree{Nodes: []Node{{Name: "x", Type: File}}})
		bad := append([]byte{1, 1, byte(len(name))}, name...)
		bad = append(bad, good[4:]...)
		if _, err := Decode(bad); !errors.Is(err, ErrDamaged) {
			t.Errorf("decoded name %q: %v", name, err)
		}
	}
	dup, _ := Encode(&Tree{Nodes: []Node{{Name: "x", Type: File}}})
	body := dup[2:]
	twice := append([]byte{1, 2}, append(append([]byte{}, body...), body...)...)
	if _, err := Decode(twice); !errors.Is(err, ErrDamaged) {
		t.Errorf("decoded a duplicated name: %v", err)
	}
}

func TestTruncationRefused(t *testing.T) {
	b, _ := Encode(sample())
	for n := range len(b) {
		if _, err := Decode(b[:n]); err == nil {
			t.Fatalf("truncated to %d accepted", n)
		}
	}
}

func FuzzDecode(f *testing.F) {
	b, _ := Encode(sample())
	f.Add(b)
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0x7f})
	f.Fuzz(func(t *testing.T, b []byte) {
		tr, err := Decode(b)
		if err != nil {
			return
		}
		for _, n := range tr.Nodes {
			if !ValidName(n.Name) {
				t.Fatalf("decoded invalid name %q", n.Name)
			}
		}
		again, err := Encode(tr)
		if err != nil {
			t.Fatalf("decoded tree does not encode: %v", err)
		}
		if _, err := Decode(again); err != nil {
			t.Fatal(err)
		}
	})
}
