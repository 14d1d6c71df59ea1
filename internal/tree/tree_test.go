package tree

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/runup/runup/internal/crypto"
)

func sample() *Tree {
	t := &Tree{Nodes: []Node{
		{Name: "b.txt", Type: File, Mode: 0o644, UID: 1000, GID: 1000, Size: 5, MTime: Time{-1, 999_999_995}, CTime: Time{1 << 30, 123},
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
	for _, v := range []int{Version1, Version2} {
		in := sample()
		b, err := Encode(in, v)
		if err != nil {
			t.Fatal(err)
		}
		out, err := Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(in, out) {
			t.Fatalf("version %d: round trip differs:\n%+v\n%+v", v, in, out)
		}
		again, _ := Encode(out, v)
		if string(again) != string(b) {
			t.Fatal("encoding is not stable")
		}
		if n, ok := out.Find("link"); !ok || n.Target != "../x" {
			t.Fatal("Find failed")
		}
		empty, _ := Encode(&Tree{}, v)
		if got, err := Decode(empty); err != nil || len(got.Nodes) != 0 {
			t.Fatal("empty tree")
		}
	}
}

// Every time a filesystem can hold comes back exactly from version 2;
// version 1 holds 1678 to 2262.
func TestTimes(t *testing.T) {
	for _, tc := range []struct {
		tm   Time
		fits bool
	}{
		{Time{0, 0}, true},
		{Time{-1, 1}, true},
		{Time{1_700_000_000, 999_999_999}, true},
		{Time{9_300_000_000, 0}, false},  // 2264, beyond int64 ns
		{Time{15_032_385_535, 5}, false}, // 2446, ext4's last second
		{Time{-9_300_000_000, 0}, false}, // before 1678
	} {
		if tc.tm.FitsNanos() != tc.fits {
			t.Errorf("%+v: FitsNanos %v", tc.tm, !tc.fits)
		}
		tr := &Tree{Nodes: []Node{{Name: "f", Type: File, MTime: tc.tm, CTime: tc.tm}}}
		b, err := Encode(tr, Version2)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(b)
		if err != nil || got.Nodes[0].MTime != tc.tm || got.Nodes[0].CTime != tc.tm {
			t.Errorf("%+v: version 2 gave %+v, %v", tc.tm, got, err)
		}
		if !tc.tm.Time().Equal(time.Unix(tc.tm.Sec, int64(tc.tm.Nsec))) || TimeOf(tc.tm.Time()) != tc.tm {
			t.Errorf("%+v: time.Time conversion", tc.tm)
		}
		b, _ = Encode(tr, Version1)
		got, _ = Decode(b)
		if tc.fits && got.Nodes[0].MTime != tc.tm {
			t.Errorf("%+v: version 1 gave %+v", tc.tm, got.Nodes[0].MTime)
		}
	}
	// The smallest node there is decodes (it once counted one byte too many).
	for _, v := range []int{Version1, Version2} {
		b, _ := Encode(&Tree{Nodes: []Node{{Name: "f", Type: File}}}, v)
		if _, err := Decode(b); err != nil {
			t.Errorf("version %d: smallest node: %v", v, err)
		}
	}
	bad := &Tree{Nodes: []Node{{Name: "f", Type: File, MTime: Time{0, 1e9}}}}
	if _, err := Encode(bad, Version2); err == nil {
		t.Error("encoded 1e9 nanoseconds")
	}
}

func TestRefusesHostileNames(t *testing.T) {
	for _, name := range []string{"", ".", "..", "a/b", "/abs", "nul\x00"} {
		if _, err := Encode(&Tree{Nodes: []Node{{Name: name, Type: File}}}, Version1); err == nil {
			t.Errorf("encoded name %q", name)
		}
		// Craft the blob by hand: the decoder must refuse what the encoder would not write.
		good, _ := Encode(&Tree{Nodes: []Node{{Name: "x", Type: File}}}, Version1)
		bad := append([]byte{1, 1, byte(len(name))}, name...)
		bad = append(bad, good[4:]...)
		if _, err := Decode(bad); !errors.Is(err, ErrDamaged) {
			t.Errorf("decoded name %q: %v", name, err)
		}
	}
	dup, _ := Encode(&Tree{Nodes: []Node{{Name: "x", Type: File}}}, Version1)
	body := dup[2:]
	twice := append([]byte{1, 2}, append(append([]byte{}, body...), body...)...)
	if _, err := Decode(twice); !errors.Is(err, ErrDamaged) {
		t.Errorf("decoded a duplicated name: %v", err)
	}
}

func TestTruncationRefused(t *testing.T) {
	for _, v := range []int{Version1, Version2} {
		b, _ := Encode(sample(), v)
		for n := range len(b) {
			if _, err := Decode(b[:n]); err == nil {
				t.Fatalf("version %d truncated to %d accepted", v, n)
			}
		}
	}
}

func FuzzDecode(f *testing.F) {
	b, _ := Encode(sample(), Version1)
	f.Add(b)
	b, _ = Encode(sample(), Version2)
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
		again, err := Encode(tr, int(b[0]))
		if err != nil {
			t.Fatalf("decoded tree does not encode: %v", err)
		}
		if _, err := Decode(again); err != nil {
			t.Fatal(err)
		}
	})
}
