package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/moat-im/moat/internal/atomicfile"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/tlog"
)

// The witness directory (--dir):
//
//	config.json     name and logs, public (0644)
//	ed25519.seed    Ed25519 seed, lowercase hex and a newline (0600)
//	mldsa44.seed    ML-DSA-44 seed ξ, likewise, if init ran with --mldsa (0600)
//	state/          one witness record per log, file name hex SHA-256(origin)
//	lock            flock(2)ed by serve, so that one process owns state/
//
// The directory itself is created 0700.
const (
	configFile  = "config.json"
	ed25519Seed = "ed25519.seed"
	mldsa44Seed = "mldsa44.seed"
	stateDir    = "state"
	lockFile    = "lock"
)

// config is config.json.
type config struct {
	// Name is the witness's cosigner name, shared by its keys.
	Name string `json:"name"`
	// Logs are the logs the witness cosigns, in the order they were added.
	Logs []logConfig `json:"logs"`
}

type logConfig struct {
	Origin string `json:"origin"`
	// Key is the log's public key in its text encoding, moat-log1:….
	Key string `json:"key"`
}

// witnessDir is a loaded witness directory.
type witnessDir struct {
	path string
	cfg  config
	keys []*tlog.WitnessPrivateKey // Ed25519 first
	logs map[string]*keys.LogPublicKey
}

// initDir creates a witness directory at path with a new Ed25519 key and,
// if withMLDSA, a new ML-DSA-44 key, all under name. It refuses to touch a
// directory that already holds a witness.
func initDir(path, name string, withMLDSA bool) (*witnessDir, error) {
	types := []tlog.CosignatureType{tlog.CosignatureEd25519}
	if withMLDSA {
		types = append(types, tlog.CosignatureMLDSA44)
	}
	var ks []*tlog.WitnessPrivateKey
	for _, typ := range types {
		k, err := tlog.GenerateWitnessKey(rand.Reader, name, typ)
		if err != nil {
			return nil, fmt.Errorf("witness name %q: %w", name, err)
		}
		ks = append(ks, k)
	}
	if err := os.MkdirAll(path, 0o700); err != nil {
		return nil, err
	}
	for _, f := range []string{configFile, ed25519Seed, mldsa44Seed, stateDir} {
		if _, err := os.Lstat(filepath.Join(path, f)); !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s already holds a witness (%s exists); refusing to overwrite it", path, f)
		}
	}
	if err := os.Mkdir(filepath.Join(path, stateDir), 0o700); err != nil {
		return nil, err
	}
	for _, k := range ks {
		seed := k.Seed()
		data := []byte(hex.EncodeToString(seed) + "\n")
		clear(seed)
		err := writeNewFile(filepath.Join(path, seedFile(k.Public().Type())), data, 0o600)
		clear(data)
		if err != nil {
			return nil, err
		}
	}
	d := &witnessDir{path: path, cfg: config{Name: name, Logs: []logConfig{}}, keys: ks, logs: map[string]*keys.LogPublicKey{}}
	if err := d.saveConfig(); err != nil {
		return nil, err
	}
	return d, nil
}

func seedFile(t tlog.CosignatureType) string {
	if t == tlog.CosignatureMLDSA44 {
		return mldsa44Seed
	}
	return ed25519Seed
}

// loadDir loads the witness directory at path: its config and keys.
func loadDir(path string) (*witnessDir, error) {
	raw, err := os.ReadFile(filepath.Join(path, configFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s is not a witness directory (no %s); run moat-witness init", path, configFile)
	}
	if err != nil {
		return nil, err
	}
	d := &witnessDir{path: path, logs: map[string]*keys.LogPublicKey{}}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d.cfg); err != nil {
		return nil, fmt.Errorf("%s: %v", configFile, err)
	}
	for _, l := range d.cfg.Logs {
		k, err := parseLogKey(l.Key)
		if err != nil {
			return nil, fmt.Errorf("%s: log %q: %v", configFile, l.Origin, err)
		}
		if _, dup := d.logs[l.Origin]; dup {
			return nil, fmt.Errorf("%s: log %q listed twice", configFile, l.Origin)
		}
		d.logs[l.Origin] = k
	}
	for _, typ := range []tlog.CosignatureType{tlog.CosignatureEd25519, tlog.CosignatureMLDSA44} {
		k, err := loadSeed(filepath.Join(path, seedFile(typ)), d.cfg.Name, typ)
		if errors.Is(err, fs.ErrNotExist) && typ != tlog.CosignatureEd25519 {
			continue
		}
		if err != nil {
			return nil, err
		}
		d.keys = append(d.keys, k)
	}
	// NewWitness checks the names, origins and key set.
	if _, err := d.witness(tlog.NewMemoryWitnessStore()); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return d, nil
}

func loadSeed(file, name string, typ tlog.CosignatureType) (*tlog.WitnessPrivateKey, error) {
	fi, err := os.Stat(file)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s is accessible by other users (mode %v); chmod 600 it", file, fi.Mode().Perm())
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	defer clear(data)
	seed := make([]byte, tlog.WitnessSeedSize)
	defer clear(seed)
	// Do not echo the file's contents in errors: it is a secret.
	if len(data) != 2*tlog.WitnessSeedSize+1 || data[len(data)-1] != '\n' {
		return nil, fmt.Errorf("%s: not a %d-byte hex seed", file, tlog.WitnessSeedSize)
	}
	if _, err := hex.Decode(seed, data[:len(data)-1]); err != nil {
		return nil, fmt.Errorf("%s: not a %d-byte hex seed", file, tlog.WitnessSeedSize)
	}
	k, err := tlog.NewWitnessPrivateKey(name, typ, seed)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", file, err)
	}
	return k, nil
}

// witness returns the witness core over store.
func (d *witnessDir) witness(store tlog.WitnessStore) (*tlog.Witness, error) {
	return tlog.NewWitness(tlog.WitnessConfig{Keys: d.keys, Logs: d.logs, Store: store})
}

// vkeys returns the witness's public keys in vkey form, Ed25519 first.
func (d *witnessDir) vkeys() []string {
	var out []string
	for _, k := range d.keys {
		out = append(out, k.Public().String())
	}
	return out
}

// addLog adds a log and saves the config. It refuses an origin that is
// already configured: changing a log's key is not something to do by
// accident.
func (d *witnessDir) addLog(origin string, key *keys.LogPublicKey) error {
	if _, ok := d.logs[origin]; ok {
		return fmt.Errorf("log %q is already configured", origin)
	}
	logs := map[string]*keys.LogPublicKey{origin: key}
	for o, k := range d.logs {
		logs[o] = k
	}
	if _, err := tlog.NewWitness(tlog.WitnessConfig{Keys: d.keys, Logs: logs, Store: tlog.NewMemoryWitnessStore()}); err != nil {
		return err
	}
	d.logs = logs
	d.cfg.Logs = append(d.cfg.Logs, logConfig{Origin: origin, Key: key.String()})
	return d.saveConfig()
}

// origins returns the configured origins, sorted.
func (d *witnessDir) origins() []string {
	out := []string{}
	for o := range d.logs {
		out = append(out, o)
	}
	slices.Sort(out)
	return out
}

func (d *witnessDir) saveConfig() error {
	data, err := json.MarshalIndent(d.cfg, "", "\t")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(d.path, configFile), append(data, '\n'), 0o644)
}

// logKeyTextPrefix is the text-encoding prefix of a log public key
// (docs/spec/keys.md §Text encoding).
const logKeyTextPrefix = "moat-log1:"

// parseLogKey parses a log public key given either in its text encoding
// (moat-log1:base64url) or as hex of its tagged binary encoding.
//
// crypto/keys has no text parser for LogPublicKey, so the text form is
// decoded here into the binary encoding, parsed with keys.ParseLogPublicKey,
// and accepted only if it re-encodes to exactly the input, which makes the
// parse as strict as the binary one.
func parseLogKey(s string) (*keys.LogPublicKey, error) {
	s = strings.TrimSpace(s)
	if body, ok := strings.CutPrefix(s, logKeyTextPrefix); ok {
		raw, err := base64.RawURLEncoding.Strict().DecodeString(body)
		if err != nil {
			return nil, errors.New("log key: malformed moat-log1: text encoding")
		}
		k, err := keys.ParseLogPublicKey(append([]byte{byte(keys.TagLogSigning)}, raw...))
		if err != nil {
			return nil, fmt.Errorf("log key: %v", err)
		}
		if k.String() != s {
			return nil, errors.New("log key: non-canonical moat-log1: text encoding")
		}
		return k, nil
	}
	if strings.HasPrefix(s, "moat-") && strings.Contains(s, ":") {
		return nil, fmt.Errorf("log key: %q is not a log key (want %s…)", s[:strings.IndexByte(s, ':')+1], logKeyTextPrefix)
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("log key: neither %s… nor hex", logKeyTextPrefix)
	}
	k, err := keys.ParseLogPublicKey(b)
	if err != nil {
		return nil, fmt.Errorf("log key: %v", err)
	}
	return k, nil
}

// writeNewFile creates file with data and perm, failing if it exists, and
// syncs it and its directory.
func writeNewFile(file string, data []byte, perm fs.FileMode) error {
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return atomicfile.SyncDir(filepath.Dir(file))
}
