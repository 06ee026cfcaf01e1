package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/moat-im/moat/internal/atomicfile"
	"os"
	"path/filepath"
	"sync"

	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/service"
)

func hexs(b []byte) string { return hex.EncodeToString(b) }

func unhex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil
	}
	return b
}

// adminKeyFile is an admin's private key file (mode 0600), as admin
// keygen writes it. Tenant is optional: the admin commands' default.
type adminKeyFile struct {
	Version int    `json:"version"`
	Tenant  string `json:"tenant,omitempty"`
	ID      string `json:"id"`
	Scheme  string `json:"scheme"` // "hybrid" or "ed25519"
	Seed    string `json:"seed"`
}

// adminPubFile is an admin's public key file, for moatd init --admin.
type adminPubFile struct {
	Version int    `json:"version"`
	ID      string `json:"id"`
	Scheme  string `json:"scheme"`
	Public  string `json:"public"`
}

var schemes = map[string]org.AdminScheme{"hybrid": org.AdminHybrid, "ed25519": org.AdminEd25519}

func schemeName(s org.AdminScheme) string {
	for n, v := range schemes {
		if v == s {
			return n
		}
	}
	return ""
}

func parseAdminID(s string) (org.AdminID, error) {
	var id org.AdminID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return id, fmt.Errorf("admin id must be 32 hex characters")
	}
	copy(id[:], b)
	if id.IsZero() {
		return id, errors.New("zero admin id")
	}
	return id, nil
}

// writeAdminKey writes k's private key file at path (0600) and its public
// key file at path.pub.
func writeAdminKey(path string, tenant org.TenantID, k *org.AdminPrivateKey) error {
	f := adminKeyFile{Version: 1, ID: k.Public().ID().String(), Scheme: schemeName(k.Public().Scheme()), Seed: hexs(k.Seed())}
	if !tenant.IsZero() {
		f.Tenant = tenant.String()
	}
	b, _ := json.MarshalIndent(f, "", "  ")
	if err := service.WriteFileExclusive(path, append(b, '\n'), 0o600); err != nil {
		return err
	}
	p := adminPubFile{Version: 1, ID: f.ID, Scheme: f.Scheme, Public: hexs(k.Public().Raw())}
	b, _ = json.MarshalIndent(p, "", "  ")
	return service.WriteFileExclusive(path+".pub", append(b, '\n'), 0o644)
}

// readAdminKey reads a private admin key file; it refuses one readable by
// group or others.
func readAdminKey(path string) (org.TenantID, *org.AdminPrivateKey, error) {
	var tenant org.TenantID
	if err := service.CheckPrivateFile(path); err != nil {
		return tenant, nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return tenant, nil, err
	}
	var f adminKeyFile
	if err := json.Unmarshal(b, &f); err != nil || f.Version != 1 {
		return tenant, nil, fmt.Errorf("%s: not an admin key file", path)
	}
	if f.Tenant != "" {
		if tenant, err = service.ParseTenantID(f.Tenant); err != nil {
			return tenant, nil, fmt.Errorf("%s: bad tenant", path)
		}
	}
	id, err := parseAdminID(f.ID)
	if err != nil {
		return tenant, nil, fmt.Errorf("%s: %w", path, err)
	}
	scheme, ok := schemes[f.Scheme]
	if !ok {
		return tenant, nil, fmt.Errorf("%s: unknown scheme %q", path, f.Scheme)
	}
	k, err := org.NewAdminPrivateKey(id, scheme, unhex(f.Seed))
	if err != nil {
		return tenant, nil, fmt.Errorf("%s: %w", path, err)
	}
	return tenant, k, nil
}

// readAdminPub reads a public admin key file.
func readAdminPub(path string) (*org.AdminKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f adminPubFile
	if err := json.Unmarshal(b, &f); err != nil || f.Version != 1 {
		return nil, fmt.Errorf("%s: not an admin public key file", path)
	}
	id, err := parseAdminID(f.ID)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	scheme, ok := schemes[f.Scheme]
	if !ok {
		return nil, fmt.Errorf("%s: unknown scheme %q", path, f.Scheme)
	}
	return org.NewAdminKey(id, scheme, unhex(f.Public))
}

// fileWitnessStore is the dev witness's tlog.WitnessStore: one file per
// log, replaced atomically and durably. Compare-and-swap is atomic within
// the process; moatd holds the badger lock of every tenant, so no other
// moatd uses the same data directory.
type fileWitnessStore struct {
	dir string
	mu  sync.Mutex
}

func (s *fileWitnessStore) path(origin string) string {
	h := sha256.Sum256([]byte(origin))
	return filepath.Join(s.dir, hexs(h[:]))
}

func (s *fileWitnessStore) Load(_ context.Context, origin string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := os.ReadFile(s.path(origin))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

func (s *fileWitnessStore) CompareAndSwap(_ context.Context, origin string, old, new []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, err := os.ReadFile(s.path(origin))
	if errors.Is(err, os.ErrNotExist) {
		cur, err = nil, nil
	}
	if err != nil {
		return err
	}
	if (cur == nil) != (old == nil) || !bytes.Equal(cur, old) {
		return tlog.ErrRecordChanged
	}
	return atomicfile.WriteFile(s.path(origin), new, 0o600)
}
