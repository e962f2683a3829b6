package devicecert

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Identity is a device's own key and the certificate the coordinator gave
// it. Cert is nil until the device has enrolled.
type Identity struct {
	Key  ed25519.PrivateKey
	Cert []byte // wire form
}

// identityFile is the on-disk JSON. The key is stored as its 32-byte seed.
type identityFile struct {
	Version int    `json:"version"`
	Seed    string `json:"seed"`           // hex
	Cert    string `json:"cert,omitempty"` // hex of the wire form
}

// NewIdentity returns an identity with a fresh random key and no cert.
func NewIdentity() (*Identity, error) {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate device key: %w", err)
	}
	return &Identity{Key: k}, nil
}

// ClientID is the device public key in lowercase hex.
func (id *Identity) ClientID() string {
	return hex.EncodeToString(id.Key.Public().(ed25519.PublicKey))
}

// Public returns the device public key.
func (id *Identity) Public() ed25519.PublicKey { return id.Key.Public().(ed25519.PublicKey) }

// Parsed parses the identity's certificate (without verifying its
// signature: the device does not need to trust its own cert).
func (id *Identity) Parsed() (*Cert, error) {
	if len(id.Cert) == 0 {
		return nil, errors.New("identity has no certificate")
	}
	c, err := Parse(id.Cert)
	if err != nil {
		return nil, err
	}
	if !c.DevicePub.Equal(id.Public()) {
		return nil, errors.New("identity certificate is for another key")
	}
	return c, nil
}

// LoadIdentity reads an identity file written by Save. A file readable by
// group or others is refused: it holds a private key.
func LoadIdentity(path string) (*Identity, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("load identity: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("load identity %s: mode %#o lets others read the private key; chmod 600 it", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load identity: %w", err)
	}
	var f identityFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("load identity %s: %w", path, err)
	}
	if f.Version != 1 {
		return nil, fmt.Errorf("load identity %s: unknown version %d", path, f.Version)
	}
	seed, err := hex.DecodeString(f.Seed)
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("load identity %s: seed must be %d bytes of hex", path, ed25519.SeedSize)
	}
	id := &Identity{Key: ed25519.NewKeyFromSeed(seed)}
	if f.Cert != "" {
		if id.Cert, err = hex.DecodeString(f.Cert); err != nil {
			return nil, fmt.Errorf("load identity %s: cert: %w", path, err)
		}
		if _, err := id.Parsed(); err != nil {
			return nil, fmt.Errorf("load identity %s: %w", path, err)
		}
	}
	return id, nil
}

// Save writes the identity to path with mode 0600, atomically: a crash
// leaves either the old file or the new one.
func (id *Identity) Save(path string) error {
	if len(id.Key) != ed25519.PrivateKeySize {
		return errors.New("save identity: no private key")
	}
	b, err := json.MarshalIndent(identityFile{
		Version: 1,
		Seed:    hex.EncodeToString(id.Key.Seed()),
		Cert:    hex.EncodeToString(id.Cert),
	}, "", "  ")
	if err != nil {
		return fmt.Errorf("save identity: %w", err)
	}
	return WriteFileAtomic(path, append(b, '\n'), 0o600)
}

// WriteFileAtomic writes data to a temporary file beside path, syncs it and
// renames it over path, so readers never see a partial file.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
