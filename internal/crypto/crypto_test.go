package crypto

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

var testKDF = KDFParams{Time: 1, Memory: 64, Threads: 1}

func TestSealOpenRoundTrip(t *testing.T) {
	for _, enc := range []bool{true, false} {
		k, err := NewMasterKey(enc)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []int{0, 1, 15, 16, 17, 4096, 1 << 20} {
			plain := bytes.Repeat([]byte{byte(n)}, n)
			sealed := k.Seal(nil, plain)
			if len(sealed) != n+k.Overhead() {
				t.Fatalf("enc=%v n=%d: sealed length %d", enc, n, len(sealed))
			}
			if enc && n > 16 && bytes.Contains(sealed, plain[:16]) {
				t.Fatalf("plaintext visible in sealed data")
			}
			got, err := k.Open(nil, sealed)
			if err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("enc=%v n=%d: open: %v", enc, n, err)
			}
			for _, i := range []int{0, len(sealed) / 2, len(sealed) - 1} {
				bad := bytes.Clone(sealed)
				bad[i] ^= 1
				if _, err := k.Open(nil, bad); !errors.Is(err, ErrAuth) {
					t.Fatalf("enc=%v n=%d: flipped byte %d accepted", enc, n, i)
				}
			}
			if _, err := k.Open(nil, sealed[:len(sealed)-1]); !errors.Is(err, ErrAuth) {
				t.Fatalf("truncated data accepted")
			}
		}
	}
}

func TestOtherKeyFails(t *testing.T) {
	a, _ := NewMasterKey(true)
	b, _ := NewMasterKey(true)
	if _, err := b.Open(nil, a.Seal(nil, []byte("hello"))); !errors.Is(err, ErrAuth) {
		t.Fatal("data sealed by another key opened")
	}
	if a.Hash([]byte("x")) == b.Hash([]byte("x")) {
		t.Fatal("content IDs are not keyed")
	}
}

func TestKeyFile(t *testing.T) {
	k, _ := NewMasterKey(true)
	kf, err := WrapKey(k, []byte("secret"), testKDF, 1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := kf.Unwrap([]byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	if got.SealKey != k.SealKey || got.IDKey != k.IDKey || got.Chunker != k.Chunker {
		t.Fatal("unwrapped key differs")
	}
	if _, err := kf.Unwrap([]byte("wrong")); !errors.Is(err, ErrWrongPassword) {
		t.Fatalf("wrong password: %v", err)
	}
	if _, err := kf.Unwrap(nil); !errors.Is(err, ErrWrongPassword) {
		t.Fatalf("no password: %v", err)
	}
	huge := *kf
	huge.Params = &KDFParams{Time: 1, Memory: 1 << 30, Threads: 1}
	if _, err := huge.Unwrap([]byte("secret")); err == nil || errors.Is(err, ErrWrongPassword) {
		t.Fatalf("absurd KDF cost accepted: %v", err)
	}
	if _, err := WrapKey(k, nil, testKDF, 1); err == nil {
		t.Fatal("encrypted key stored in clear")
	}
	plain, _ := NewMasterKey(false)
	pf, err := WrapKey(plain, nil, testKDF, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pf.Unwrap(nil); err != nil {
		t.Fatal(err)
	}
}

func FuzzParseKeyFile(f *testing.F) {
	k, _ := NewMasterKey(false)
	plain, _ := WrapKey(k, nil, testKDF, 1)
	b, _ := json.Marshal(plain)
	f.Add(b)
	ek, _ := NewMasterKey(true)
	enc, _ := WrapKey(ek, []byte("pw"), testKDF, 1)
	b, _ = json.Marshal(enc)
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		kf, err := ParseKeyFile(b)
		if err != nil {
			return
		}
		if kf.KDF == "none" {
			_, _ = kf.Unwrap(nil)
		} else if kf.Params.Memory <= 1024 && kf.Params.Time <= 2 {
			_, _ = kf.Unwrap([]byte("pw")) // cheap costs only: the fuzzer runs many
		}
	})
}

func BenchmarkHash(b *testing.B) {
	k, _ := NewMasterKey(true)
	data := bytes.Repeat([]byte("runup"), 1<<18) // 1.25 MiB, about a chunk
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		k.Hash(data)
	}
}

func BenchmarkSeal(b *testing.B) {
	k, _ := NewMasterKey(true)
	data := bytes.Repeat([]byte("runup"), 1<<18)
	dst := make([]byte, 0, len(data)+k.Overhead())
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		dst = k.Seal(dst[:0], data)
	}
}

// Pooled hashers are reset to the key: a hash never depends on what was
// hashed before.
func TestHashReuse(t *testing.T) {
	k, _ := NewMasterKey(false)
	h := k.NewHash()
	h.Write([]byte("second"))
	want := h.Sum(nil)
	for range 3 {
		k.Hash(bytes.Repeat([]byte("first"), 5000))
		if got := k.Hash([]byte("second")); !bytes.Equal(got[:], want) {
			t.Fatalf("hash after reuse %x, want %x", got, want)
		}
	}
}

// A key file can demand no more than init ever chose: the costs of a key
// file written by someone without the password are bounded.
func TestKDFBounds(t *testing.T) {
	for _, tc := range []struct {
		p  KDFParams
		ok bool
	}{
		{DefaultKDF, true},
		{KDFParams{Time: 3, Memory: 64 << 10, Threads: 2}, true}, // the first default
		{KDFParams{Time: 1, Memory: 8, Threads: 1}, true},
		{KDFParams{Time: 16, Memory: 32 << 10, Threads: 2}, false},
		{KDFParams{Time: 1, Memory: 1 << 20, Threads: 2}, false},
		{KDFParams{Time: 1, Memory: 32 << 10, Threads: 255}, false},
		{KDFParams{Time: 0, Memory: 32 << 10, Threads: 2}, false},
		{KDFParams{Time: 1, Memory: 4, Threads: 2}, false},
	} {
		err := tc.p.Check()
		if (err == nil) != tc.ok {
			t.Errorf("%+v: %v", tc.p, err)
		}
		k, _ := NewMasterKey(true)
		if _, err := WrapKey(k, []byte("pw"), tc.p, 1); (err == nil) != tc.ok {
			t.Errorf("WrapKey %+v: %v", tc.p, err)
		}
	}
}
