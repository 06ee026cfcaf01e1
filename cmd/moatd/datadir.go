package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/service"
	"github.com/moat-im/moat/keyserver/store/badgerstore"
)

// The data directory:
//
//	DIR/tenants/<tenant>/keys.json        CA, log and VRF seeds, commitment secret,
//	                                      keys of rotations under approval (0600)
//	DIR/tenants/<tenant>/tenant.json      tenant id, origin, public log key at creation
//	DIR/tenants/<tenant>/db/              the tenant's badger store (with the
//	                                      latest cosigned checkpoint)
//	DIR/dev/admin-1.key, admin-2.key      dev mode's admin keys (0600)
//	DIR/dev/witness.json, witness-state/  dev mode's embedded witness (0600)

const (
	tenantsDir   = "tenants"
	keysFile     = "keys.json"
	infoFile     = "tenant.json"
	dbDir        = "db"
	devDir       = "dev"
	devWitness   = "witness.json"
	devWitnessSt = "witness-state"
)

// tenantInfo is DIR/tenants/<tenant>/tenant.json: public facts, for
// operators and scripts.
type tenantInfo struct {
	Tenant string `json:"tenant"`
	Origin string `json:"origin"`
	LogKey string `json:"log_key"` // moat-log1:…, the key at creation
}

func tenantDir(data string, id org.TenantID) string {
	return filepath.Join(data, tenantsDir, id.String())
}

// listTenants returns the tenants of the data directory.
func listTenants(data string) ([]org.TenantID, error) {
	ents, err := os.ReadDir(filepath.Join(data, tenantsDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ids []org.TenantID
	for _, e := range ents {
		id, err := service.ParseTenantID(e.Name())
		if err != nil || !e.IsDir() {
			continue
		}
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i].String() < ids[j].String() })
	return ids, nil
}

// openStore opens a tenant's badger store; memTableMB is badger's
// memtable size in MiB, 0 for the store's default.
func openStore(ctx context.Context, dir string, log *slog.Logger, memTableMB int) (*badgerstore.Store, error) {
	return badgerstore.Open(ctx, badgerstore.Options{Dir: filepath.Join(dir, dbDir), Logger: log, MemTableSize: int64(memTableMB) << 20})
}

// readVkeys reads witness vkeys (one per line, as moat-witness init and
// vkeys print them) and groups them by witness name.
func readVkeys(paths []string) ([]org.WitnessKey, error) {
	byName := map[string]*org.WitnessKey{}
	var order []string
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if line == "" {
				continue
			}
			k, err := tlog.ParseWitnessPublicKey(line)
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("%s: %w", p, err)
			}
			w := byName[k.Name()]
			if w == nil {
				w = &org.WitnessKey{Name: k.Name()}
				byName[k.Name()] = w
				order = append(order, k.Name())
			}
			switch k.Type() {
			case tlog.CosignatureEd25519:
				w.Ed25519 = k.Bytes()
			case tlog.CosignatureMLDSA44:
				w.MLDSA44 = k.Bytes()
			}
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return nil, err
		}
	}
	var out []org.WitnessKey
	for _, n := range order {
		if byName[n].Ed25519 == nil {
			return nil, fmt.Errorf("witness %s has no Ed25519 vkey", n)
		}
		out = append(out, *byName[n])
	}
	return out, nil
}

// devWitnessFile is the embedded dev witness's keys.
type devWitnessFile struct {
	Name    string `json:"name"`
	Ed25519 string `json:"ed25519_seed"`
	MLDSA44 string `json:"mldsa44_seed"`
}

// devWitnessKeys loads the dev witness of data, creating it if create.
func devWitnessKeys(data string, create bool) ([]*tlog.WitnessPrivateKey, error) {
	path := filepath.Join(data, devDir, devWitness)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		if !create {
			return nil, nil
		}
		name := "dev-witness.moat.localhost/w"
		ed, err := tlog.GenerateWitnessKey(rand.Reader, name, tlog.CosignatureEd25519)
		if err != nil {
			return nil, err
		}
		pq, err := tlog.GenerateWitnessKey(rand.Reader, name, tlog.CosignatureMLDSA44)
		if err != nil {
			return nil, err
		}
		b, _ := json.MarshalIndent(devWitnessFile{Name: name, Ed25519: hexs(ed.Seed()), MLDSA44: hexs(pq.Seed())}, "", "  ")
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		if err := service.WriteFileExclusive(path, append(b, '\n'), 0o600); err != nil {
			return nil, err
		}
	}
	if err := service.CheckPrivateFile(path); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f devWitnessFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ed, err := tlog.NewWitnessPrivateKey(f.Name, tlog.CosignatureEd25519, unhex(f.Ed25519))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	pq, err := tlog.NewWitnessPrivateKey(f.Name, tlog.CosignatureMLDSA44, unhex(f.MLDSA44))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return []*tlog.WitnessPrivateKey{ed, pq}, nil
}

func witnessKeyOf(ks []*tlog.WitnessPrivateKey) org.WitnessKey {
	w := org.WitnessKey{Name: ks[0].Public().Name()}
	for _, k := range ks {
		switch k.Public().Type() {
		case tlog.CosignatureEd25519:
			w.Ed25519 = k.Public().Bytes()
		case tlog.CosignatureMLDSA44:
			w.MLDSA44 = k.Public().Bytes()
		}
	}
	return w
}
