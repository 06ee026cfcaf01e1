package service

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/moat-im/moat/internal/atomicfile"
	"io"
	"os"
	"path/filepath"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/vrf"
	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
)

// TenantKeys are the private keys a tenant's directory uses: the org CA
// (behind org.Signer, so that an HSM or KMS can hold it), the log's hybrid
// checkpoint key, the VRF key of the map labels, and the secret from which
// value-record nonces are derived (docs/spec/directory.md §Commitments).
type TenantKeys struct {
	CA     org.Signer
	Log    *keys.LogPrivateKey
	VRF    *vrf.PrivateKey
	Secret []byte // at least kt.MinSecretSize bytes; never leaves the directory
}

func (k *TenantKeys) check() error {
	if k == nil || k.CA == nil || k.CA.Public() == nil || k.Log == nil || k.VRF == nil || len(k.Secret) < kt.MinSecretSize {
		return errors.New("service: incomplete tenant keys")
	}
	return nil
}

// FileKeys are TenantKeys whose CA key is held in process memory, as the
// key file of WriteKeyFile stores them.
type FileKeys struct {
	CA     *keys.OrgPrivateKey
	Log    *keys.LogPrivateKey
	VRF    *vrf.PrivateKey
	Secret []byte
}

// TenantKeys returns k as TenantKeys.
func (k *FileKeys) TenantKeys() *TenantKeys {
	return &TenantKeys{CA: k.CA, Log: k.Log, VRF: k.VRF, Secret: bytes.Clone(k.Secret)}
}

// GenerateFileKeys returns new keys read from rnd (crypto/rand if nil).
func GenerateFileKeys(rnd io.Reader) (*FileKeys, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	k := &FileKeys{Secret: make([]byte, 32)}
	var err error
	if k.CA, err = keys.GenerateOrgKey(rnd); err != nil {
		return nil, err
	}
	if k.Log, err = keys.GenerateLogKey(rnd); err != nil {
		return nil, err
	}
	if k.VRF, err = vrf.GenerateKey(rnd); err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(rnd, k.Secret); err != nil {
		return nil, err
	}
	return k, nil
}

// keyFile is the JSON of a tenant key file. Seeds are hex.
type keyFile struct {
	Version int    `json:"version"`
	Tenant  string `json:"tenant"`
	CA      string `json:"ca_seed"`
	Log     string `json:"log_seed"`
	VRF     string `json:"vrf_seed"`
	Secret  string `json:"commitment_secret"`
}

// WriteKeyFile writes k for tenant to path, mode 0600, refusing to replace
// an existing file. The keys are in clear: a KMS- or tink-backed keystore
// is future work (docs/spec/directory-api.md §Keys).
func WriteKeyFile(path string, tenant org.TenantID, k *FileKeys) error {
	f := keyFile{
		Version: 1, Tenant: tenant.String(),
		CA: hex.EncodeToString(k.CA.Seed()), Log: hex.EncodeToString(k.Log.Seed()),
		VRF: hex.EncodeToString(k.VRF.Seed()), Secret: hex.EncodeToString(k.Secret),
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileExclusive(path, append(b, '\n'), 0o600)
}

// ReadKeyFile reads a key file written by WriteKeyFile. It refuses a file
// that is readable by group or others.
func ReadKeyFile(path string) (org.TenantID, *FileKeys, error) {
	var tenant org.TenantID
	if err := CheckPrivateFile(path); err != nil {
		return tenant, nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return tenant, nil, err
	}
	var f keyFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil || f.Version != 1 {
		return tenant, nil, fmt.Errorf("service: key file %s: malformed", path)
	}
	bad := func(what string) error { return fmt.Errorf("service: key file %s: bad %s", path, what) }
	if tenant, err = ParseTenantID(f.Tenant); err != nil {
		return tenant, nil, bad("tenant")
	}
	k := &FileKeys{}
	seed, err := hex.DecodeString(f.CA)
	if err != nil {
		return tenant, nil, bad("CA seed")
	}
	if k.CA, err = keys.NewOrgPrivateKey(seed); err != nil {
		return tenant, nil, bad("CA seed")
	}
	if seed, err = hex.DecodeString(f.Log); err != nil || len(seed) != keys.HybridSeedSize {
		return tenant, nil, bad("log seed")
	}
	// crypto/keys has no NewLogPrivateKey; GenerateLogKey reads exactly
	// the seed from its reader.
	if k.Log, err = keys.GenerateLogKey(bytes.NewReader(seed)); err != nil {
		return tenant, nil, bad("log seed")
	}
	if seed, err = hex.DecodeString(f.VRF); err != nil {
		return tenant, nil, bad("VRF seed")
	}
	if k.VRF, err = vrf.NewPrivateKey(seed); err != nil {
		return tenant, nil, bad("VRF seed")
	}
	if k.Secret, err = hex.DecodeString(f.Secret); err != nil || len(k.Secret) < kt.MinSecretSize {
		return tenant, nil, bad("commitment secret")
	}
	return tenant, k, nil
}

// CheckPrivateFile returns an error if path is not a regular file, or is
// readable or writable by group or others.
func CheckPrivateFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("service: %s is not a regular file", path)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("service: %s has mode %#o; private keys must be 0600", path, fi.Mode().Perm())
	}
	return nil
}

// WriteFileExclusive creates path with data and mode, fsyncs it and its
// directory, and fails if path exists.
func WriteFileExclusive(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return atomicfile.SyncDir(filepath.Dir(path))
}

// ParseTenantID parses a tenant id: 32 lowercase hex characters.
func ParseTenantID(s string) (org.TenantID, error) {
	var id org.TenantID
	err := parseID(s, id[:])
	if err == nil && id.IsZero() {
		err = errors.New("zero id")
	}
	return id, err
}

// ParseUserID parses a user id: 32 lowercase hex characters, not zero.
func ParseUserID(s string) (org.UserID, error) {
	var id org.UserID
	err := parseID(s, id[:])
	if err == nil && id.IsZero() {
		err = errors.New("zero id")
	}
	return id, err
}

// parseID parses exactly len(out) bytes of lowercase hex, so that every id
// has one text form.
func parseID(s string, out []byte) error {
	if len(s) != 2*len(out) {
		return errors.New("bad id length")
	}
	for _, c := range []byte(s) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return errors.New("id must be lowercase hex")
		}
	}
	_, err := hex.Decode(out, []byte(s))
	return err
}
