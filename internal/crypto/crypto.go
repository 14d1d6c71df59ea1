// Package crypto holds a repository's secrets and seals every file and blob.
//
// A repository has one master key: an AES-256 key for sealing, a BLAKE3 key
// for content IDs, and a key for the chunker's gear table. Password-derived
// keys (Argon2id) only wrap it, so several passwords can open one repository
// and changing a password rewrites one small file.
//
// An unencrypted repository seals with a keyed BLAKE3 tag instead of
// AES-GCM: no secrecy, but every byte read back is still verified.
package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"sync"

	"github.com/zeebo/blake3"
)

// IDSize is the length of a content ID.
const IDSize = 32

// ID names a blob or file by keyed BLAKE3 of its content.
type ID [IDSize]byte

func (id ID) String() string { return hex.EncodeToString(id[:]) }

// Short is the first eight hex digits, for messages.
func (id ID) Short() string { return hex.EncodeToString(id[:4]) }

// IsZero reports whether id is unset.
func (id ID) IsZero() bool { return id == ID{} }

// ParseID decodes a 64-digit hex ID.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 2*IDSize {
		return id, fmt.Errorf("invalid ID %q: want %d hex digits", s, 2*IDSize)
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("invalid ID %q: %w", s, err)
	}
	return id, nil
}

// ErrAuth is returned when sealed data fails its authentication: it was
// damaged, tampered with, or sealed under another key.
var ErrAuth = errors.New("authentication failed (data damaged or wrong key)")

const (
	nonceSize = 12
	tagSize   = 16
)

// MasterKey is the repository's key material, stored wrapped in key files.
type MasterKey struct {
	Encrypted bool
	SealKey   [32]byte // AES-256 key, or the tag key when unencrypted
	IDKey     [32]byte // keyed BLAKE3 for content IDs
	Chunker   [32]byte // keys the chunker's gear table

	aead   cipher.AEAD
	hasher *blake3.Hasher // keyed with IDKey; cloned per use
	tagger *blake3.Hasher // keyed with Seal, unencrypted mode
	// Hashers reset to IDKey: a clone costs a 10 KiB allocation, which
	// for small blobs cost more than the hashing.
	hashers sync.Pool
}

// NewMasterKey returns fresh random key material.
func NewMasterKey(encrypted bool) (*MasterKey, error) {
	k := &MasterKey{Encrypted: encrypted}
	for _, b := range [][]byte{k.SealKey[:], k.IDKey[:], k.Chunker[:]} {
		if _, err := rand.Read(b); err != nil {
			return nil, fmt.Errorf("random key: %w", err)
		}
	}
	return k, k.Init()
}

// Init prepares the ciphers after the key material is set or decoded.
func (k *MasterKey) Init() error {
	h, err := blake3.NewKeyed(k.IDKey[:])
	if err != nil {
		return err
	}
	k.hasher = h
	if k.Encrypted {
		block, err := aes.NewCipher(k.SealKey[:])
		if err != nil {
			return err
		}
		k.aead, err = cipher.NewGCM(block)
		if err != nil {
			return err
		}
		return nil
	}
	k.tagger, err = blake3.NewKeyed(k.SealKey[:])
	return err
}

// Hash returns the content ID of data.
func (k *MasterKey) Hash(data []byte) ID {
	h, _ := k.hashers.Get().(*blake3.Hasher)
	if h == nil {
		h = k.hasher.Clone()
	}
	_, _ = h.Write(data)
	var id ID
	h.Sum(id[:0])
	h.Reset()
	k.hashers.Put(h)
	return id
}

// NewHash returns a hash.Hash whose sum is the content ID of what is
// written to it, for content too large to hold in memory.
func (k *MasterKey) NewHash() hash.Hash { return k.hasher.Clone() }

// Overhead is how many bytes Seal adds.
func (k *MasterKey) Overhead() int {
	if k.Encrypted {
		return nonceSize + tagSize
	}
	return tagSize
}

// Seal appends the sealed form of plaintext to dst. plaintext and dst must
// not overlap.
func (k *MasterKey) Seal(dst, plaintext []byte) []byte {
	if k.Encrypted {
		var nonce [nonceSize]byte
		if _, err := rand.Read(nonce[:]); err != nil {
			panic("crypto/rand failed: " + err.Error()) // crypto/rand never fails on Linux
		}
		dst = append(dst, nonce[:]...)
		return k.aead.Seal(dst, nonce[:], plaintext, nil)
	}
	dst = append(dst, plaintext...)
	return append(dst, k.tag(plaintext)...)
}

func (k *MasterKey) tag(data []byte) []byte {
	h := k.tagger.Clone()
	_, _ = h.Write(data)
	var sum [32]byte
	h.Sum(sum[:0])
	return sum[:tagSize]
}

// Open verifies sealed and appends its plaintext to dst.
func (k *MasterKey) Open(dst, sealed []byte) ([]byte, error) {
	if len(sealed) < k.Overhead() {
		return nil, ErrAuth
	}
	if k.Encrypted {
		out, err := k.aead.Open(dst, sealed[:nonceSize], sealed[nonceSize:], nil)
		if err != nil {
			return nil, ErrAuth
		}
		return out, nil
	}
	body := sealed[:len(sealed)-tagSize]
	if subtle.ConstantTimeCompare(k.tag(body), sealed[len(body):]) != 1 {
		return nil, ErrAuth
	}
	return append(dst, body...), nil
}
