package crypto

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"

	"golang.org/x/crypto/argon2"
)

// ErrWrongPassword means no key file opened with the given password.
var ErrWrongPassword = errors.New("wrong password")

// KDFParams are Argon2id's costs, stored in each key file so they can change.
type KDFParams struct {
	Time    uint32 `json:"time"`
	Memory  uint32 `json:"memory"` // KiB
	Threads uint8  `json:"threads"`
}

// Limits on KDF costs: no more than any RunUp's init ever chose (64 MiB and
// 3 passes before, 32 MiB and 4 passes now, 2 lanes), so that a key file
// written by someone who can only write the storage costs at most what a
// real one does: about a quarter of a second and 64 MiB.
const (
	MaxKDFMemory  = 64 << 10 // KiB
	MaxKDFTime    = 4
	MaxKDFThreads = 4
)

// Check reports costs outside what init could have chosen.
func (p KDFParams) Check() error {
	if p.Time == 0 || p.Time > MaxKDFTime || p.Memory < 8 || p.Memory > MaxKDFMemory || p.Threads == 0 || p.Threads > MaxKDFThreads {
		return fmt.Errorf("key file: KDF costs out of range (time %d, memory %d KiB, threads %d; at most %d, %d KiB, %d)",
			p.Time, p.Memory, p.Threads, MaxKDFTime, MaxKDFMemory, MaxKDFThreads)
	}
	return nil
}

// DefaultKDF is Argon2id with 32 MiB, 4 passes and 2 lanes: about a tenth
// of a second on this class of machine, within OWASP's Argon2id guidance
// for memory-constrained settings. Every command on an encrypted
// repository pays it, so its memory is the floor of RunUp's peak memory;
// key files record their costs, so repositories made with other costs
// keep working.
var DefaultKDF = KDFParams{Time: 4, Memory: 32 * 1024, Threads: 2}

// KeyFile is the stored form of a wrapped master key. It is plain JSON so
// that a repository's format version can be read before any password.
type KeyFile struct {
	Format   int        `json:"format"`
	KDF      string     `json:"kdf"` // "argon2id" or "none"
	Params   *KDFParams `json:"params,omitempty"`
	Salt     []byte     `json:"salt,omitempty"`
	Host     string     `json:"host,omitempty"`
	Username string     `json:"username,omitempty"`
	Created  string     `json:"created,omitempty"`
	Data     []byte     `json:"data"` // the master key, sealed by the derived key or in clear
}

type storedMaster struct {
	Encrypted bool   `json:"encrypted"`
	Seal      []byte `json:"seal"`
	IDKey     []byte `json:"id"`
	Chunker   []byte `json:"chunker"`
}

func (k *MasterKey) marshal() ([]byte, error) {
	return json.Marshal(storedMaster{k.Encrypted, k.SealKey[:], k.IDKey[:], k.Chunker[:]})
}

func unmarshalMaster(b []byte) (*MasterKey, error) {
	var s storedMaster
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	if len(s.Seal) != 32 || len(s.IDKey) != 32 || len(s.Chunker) != 32 {
		return nil, errors.New("master key: wrong key length")
	}
	k := &MasterKey{Encrypted: s.Encrypted}
	copy(k.SealKey[:], s.Seal)
	copy(k.IDKey[:], s.IDKey)
	copy(k.Chunker[:], s.Chunker)
	return k, k.Init()
}

func deriveKey(password []byte, salt []byte, p KDFParams) (*MasterKey, error) {
	raw := argon2.IDKey(password, salt, p.Time, p.Memory, p.Threads, 32)
	k := &MasterKey{Encrypted: true}
	copy(k.SealKey[:], raw)
	// The wrapping key only seals; its ID and chunker keys are unused.
	return k, k.Init()
}

// WrapKey makes a key file for k. With a nil password the key is stored in
// clear, which is right only for an unencrypted repository.
func WrapKey(k *MasterKey, password []byte, p KDFParams, format int) (*KeyFile, error) {
	plain, err := k.marshal()
	if err != nil {
		return nil, err
	}
	if password == nil {
		if k.Encrypted {
			return nil, errors.New("an encrypted repository needs a password")
		}
		return &KeyFile{Format: format, KDF: "none", Data: plain}, nil
	}
	if err := p.Check(); err != nil {
		return nil, err
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	wk, err := deriveKey(password, salt, p)
	if err != nil {
		return nil, err
	}
	return &KeyFile{Format: format, KDF: "argon2id", Params: &p, Salt: salt, Data: wk.Seal(nil, plain)}, nil
}

// ParseKeyFile decodes a stored key file and checks its fields' ranges
// before any work is done with them.
func ParseKeyFile(b []byte) (*KeyFile, error) {
	var kf KeyFile
	if err := json.Unmarshal(b, &kf); err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	switch kf.KDF {
	case "none":
	case "argon2id":
		if kf.Params == nil || len(kf.Salt) < 8 {
			return nil, errors.New("key file: missing KDF parameters")
		}
		if err := kf.Params.Check(); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("key file: unknown KDF %q", kf.KDF)
	}
	return &kf, nil
}

// Unwrap opens a key file. It returns ErrWrongPassword when the password
// does not fit and another error when the file is damaged.
func (kf *KeyFile) Unwrap(password []byte) (*MasterKey, error) {
	switch kf.KDF {
	case "none":
		k, err := unmarshalMaster(kf.Data)
		if err != nil {
			return nil, err
		}
		if k.Encrypted {
			return nil, errors.New("key file: clear key for an encrypted repository")
		}
		return k, nil
	case "argon2id":
		if kf.Params == nil || len(kf.Salt) < 8 {
			return nil, errors.New("key file: missing KDF parameters")
		}
		p := *kf.Params
		if err := p.Check(); err != nil {
			return nil, err
		}
		if password == nil {
			return nil, ErrWrongPassword
		}
		wk, err := deriveKey(password, kf.Salt, p)
		if err != nil {
			return nil, err
		}
		plain, err := wk.Open(nil, kf.Data)
		if err != nil {
			return nil, ErrWrongPassword
		}
		return unmarshalMaster(plain)
	default:
		return nil, fmt.Errorf("key file: unknown KDF %q", kf.KDF)
	}
}
