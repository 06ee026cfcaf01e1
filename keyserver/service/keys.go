package service

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/moat-im/moat/internal/atomicfile"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/vrf"
	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
)

// TenantKeys are the private keys a tenant's directory uses: the org CA
// (behind org.Signer, so that an HSM or KMS can hold it), the log's hybrid
// checkpoint key, the VRF key of the map labels, and the secret from which
// value-record nonces are derived (docs/spec/directory.md §Commitments).
//
// NextCAs and NextLogs are further CA and log keys, generated for
// rotations (KeyStore): the service signs with the CA key and the log key,
// among CA and NextCAs, Log and NextLogs, that the tenant's stored trust
// bundle names (docs/spec/directory-api.md §Keys).
type TenantKeys struct {
	CA     org.Signer
	Log    *keys.LogPrivateKey
	VRF    *vrf.PrivateKey
	Secret []byte // at least kt.MinSecretSize bytes; never leaves the directory

	NextCAs  []org.Signer
	NextLogs []*keys.LogPrivateKey
}

func (k *TenantKeys) check() error {
	if k == nil || k.CA == nil || k.CA.Public() == nil || k.Log == nil || k.VRF == nil || len(k.Secret) < kt.MinSecretSize {
		return errors.New("service: incomplete tenant keys")
	}
	for _, c := range k.NextCAs {
		if c == nil || c.Public() == nil {
			return errors.New("service: incomplete tenant keys")
		}
	}
	for _, l := range k.NextLogs {
		if l == nil {
			return errors.New("service: incomplete tenant keys")
		}
	}
	return nil
}

// KeyStore keeps a tenant's CA and log keys across rotations
// (docs/spec/directory-api.md §Keys): admin/rotate-ca and
// admin/rotate-log-key take their new key from it. Its methods are called
// with the tenant's lock held.
type KeyStore interface {
	// NewCA generates a CA key and stores it durably, with the keys it
	// holds, before it returns its signer; at the next start the service
	// must find it in TenantKeys.NextCAs (or CA).
	NewCA() (org.Signer, error)
	// NewLogKey does the same for a log key (TenantKeys.NextLogs or Log).
	NewLogKey() (*keys.LogPrivateKey, error)
	// Keep tells the store which keys the service may still need: the CA
	// and log keys of the published trust bundle, first, and those of
	// rotations under approval. The store makes the first ones its
	// current keys and may erase the others.
	Keep(cas []*keys.OrgPublicKey, logs []*keys.LogPublicKey) error
}

// FileKeys are TenantKeys whose CA key is held in process memory, as the
// key file of WriteKeyFile stores them.
type FileKeys struct {
	CA     *keys.OrgPrivateKey
	Log    *keys.LogPrivateKey
	VRF    *vrf.PrivateKey
	Secret []byte

	NextCAs  []*keys.OrgPrivateKey
	NextLogs []*keys.LogPrivateKey
}

// TenantKeys returns k as TenantKeys.
func (k *FileKeys) TenantKeys() *TenantKeys {
	tk := &TenantKeys{CA: k.CA, Log: k.Log, VRF: k.VRF, Secret: bytes.Clone(k.Secret), NextLogs: slices.Clone(k.NextLogs)}
	for _, c := range k.NextCAs {
		tk.NextCAs = append(tk.NextCAs, c)
	}
	return tk
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

// keyFile is the JSON of a tenant key file. Seeds are hex. NextCA and
// NextLog are the seeds of FileKeys.NextCAs and NextLogs.
type keyFile struct {
	Version int      `json:"version"`
	Tenant  string   `json:"tenant"`
	CA      string   `json:"ca_seed"`
	Log     string   `json:"log_seed"`
	VRF     string   `json:"vrf_seed"`
	Secret  string   `json:"commitment_secret"`
	NextCA  []string `json:"next_ca_seeds,omitempty"`
	NextLog []string `json:"next_log_seeds,omitempty"`
}

func encodeKeyFile(tenant org.TenantID, k *FileKeys) ([]byte, error) {
	f := keyFile{
		Version: 1, Tenant: tenant.String(),
		CA: hex.EncodeToString(k.CA.Seed()), Log: hex.EncodeToString(k.Log.Seed()),
		VRF: hex.EncodeToString(k.VRF.Seed()), Secret: hex.EncodeToString(k.Secret),
	}
	for _, c := range k.NextCAs {
		f.NextCA = append(f.NextCA, hex.EncodeToString(c.Seed()))
	}
	for _, l := range k.NextLogs {
		f.NextLog = append(f.NextLog, hex.EncodeToString(l.Seed()))
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// WriteKeyFile writes k for tenant to path, mode 0600, refusing to replace
// an existing file. The keys are in clear: a KMS- or tink-backed keystore
// is future work (docs/spec/directory-api.md §Keys).
func WriteKeyFile(path string, tenant org.TenantID, k *FileKeys) error {
	b, err := encodeKeyFile(tenant, k)
	if err != nil {
		return err
	}
	return WriteFileExclusive(path, b, 0o600)
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
	for _, h := range f.NextCA {
		seed, err := hex.DecodeString(h)
		if err != nil {
			return tenant, nil, bad("next CA seed")
		}
		c, err := keys.NewOrgPrivateKey(seed)
		if err != nil {
			return tenant, nil, bad("next CA seed")
		}
		k.NextCAs = append(k.NextCAs, c)
	}
	for _, h := range f.NextLog {
		seed, err := hex.DecodeString(h)
		if err != nil || len(seed) != keys.HybridSeedSize {
			return tenant, nil, bad("next log seed")
		}
		l, err := keys.GenerateLogKey(bytes.NewReader(seed))
		if err != nil {
			return tenant, nil, bad("next log seed")
		}
		k.NextLogs = append(k.NextLogs, l)
	}
	return tenant, k, nil
}

// FileKeyStore is the KeyStore of a key file written by WriteKeyFile:
// NewCA and NewLogKey add a key to the file's next keys, Keep makes the
// kept keys the file's CA and log key and drops the others; each replaces
// the file atomically and durably (mode 0600) before it returns. Rand is
// the source of new keys (crypto/rand if nil). It is safe for concurrent
// use within one process; the file belongs to one process.
type FileKeyStore struct {
	Path   string
	Tenant org.TenantID
	Rand   io.Reader
	mu     sync.Mutex
}

var _ KeyStore = (*FileKeyStore)(nil)

func (s *FileKeyStore) update(f func(k *FileKeys) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	tenant, k, err := ReadKeyFile(s.Path)
	if err != nil {
		return err
	}
	if tenant != s.Tenant {
		return fmt.Errorf("service: key file %s holds the keys of tenant %s", s.Path, tenant)
	}
	if err := f(k); err != nil {
		return err
	}
	b, err := encodeKeyFile(tenant, k)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(s.Path, b, 0o600)
}

func (s *FileKeyStore) rand() io.Reader {
	if s.Rand != nil {
		return s.Rand
	}
	return rand.Reader
}

// NewCA implements KeyStore.
func (s *FileKeyStore) NewCA() (org.Signer, error) {
	next, err := keys.GenerateOrgKey(s.rand())
	if err != nil {
		return nil, err
	}
	if err := s.update(func(k *FileKeys) error { k.NextCAs = append(k.NextCAs, next); return nil }); err != nil {
		return nil, err
	}
	return next, nil
}

// NewLogKey implements KeyStore.
func (s *FileKeyStore) NewLogKey() (*keys.LogPrivateKey, error) {
	next, err := keys.GenerateLogKey(s.rand())
	if err != nil {
		return nil, err
	}
	if err := s.update(func(k *FileKeys) error { k.NextLogs = append(k.NextLogs, next); return nil }); err != nil {
		return nil, err
	}
	return next, nil
}

// Keep implements KeyStore. It fails, and changes nothing, if the file
// does not hold the first of cas and the first of logs.
func (s *FileKeyStore) Keep(cas []*keys.OrgPublicKey, logs []*keys.LogPublicKey) error {
	if len(cas) == 0 || len(logs) == 0 {
		return errors.New("service: Keep needs the current CA and log keys")
	}
	return s.update(func(k *FileKeys) error {
		allCA := append([]*keys.OrgPrivateKey{k.CA}, k.NextCAs...)
		allLog := append([]*keys.LogPrivateKey{k.Log}, k.NextLogs...)
		var keptCA []*keys.OrgPrivateKey
		for _, pub := range cas {
			for _, c := range allCA {
				if c.Public().Equal(pub) && !slices.Contains(keptCA, c) {
					keptCA = append(keptCA, c)
					break
				}
			}
		}
		var keptLog []*keys.LogPrivateKey
		for _, pub := range logs {
			for _, l := range allLog {
				if l.Public().Equal(pub) && !slices.Contains(keptLog, l) {
					keptLog = append(keptLog, l)
					break
				}
			}
		}
		if len(keptCA) == 0 || !keptCA[0].Public().Equal(cas[0]) || len(keptLog) == 0 || !keptLog[0].Public().Equal(logs[0]) {
			return fmt.Errorf("service: key file %s does not hold the tenant's current CA or log key", s.Path)
		}
		k.CA, k.NextCAs = keptCA[0], keptCA[1:]
		k.Log, k.NextLogs = keptLog[0], keptLog[1:]
		return nil
	})
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
