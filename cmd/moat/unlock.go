package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/moat-im/moat/keyserver/service"
)

// defaultTimeout bounds one request to the server.
const defaultTimeout = 30 * time.Second

// globalOptions are the flags every command shares: where the device's
// local store is and how to unlock it.
type globalOptions struct {
	Data           string
	PassphraseFile string
	KeyFile        string
	Timeout        time.Duration
}

// envPassphrase holds the local store's passphrase itself, for scripts
// that cannot write it to a file.
const envPassphrase = envPrefix + "PASSPHRASE"

// keyFileSize is the size of a key file's key: 256 bits, hex-encoded on
// one line in the file.
const keyFileSize = 32

// storeSecret unlocks the local store: a passphrase, which the store
// stretches with Argon2id, or a key file's key, used as is
// (docs/spec/client-store.md). Exactly one is set.
type storeSecret struct {
	passphrase []byte
	key        []byte
}

// wipe overwrites the secret in memory (best effort: Go may have copied it).
func (s *storeSecret) wipe() {
	clear(s.passphrase)
	clear(s.key)
}

var errNoSecret = errors.New("the local store needs a passphrase or a key: give --passphrase-file, MOAT_PASSPHRASE or --key-file")

// secret reads the local store's secret. With create (enrol) and a
// --key-file that does not exist, it generates a key and writes it to the
// file with mode 0600.
func (o *globalOptions) secret(create bool) (*storeSecret, error) {
	env := os.Getenv(envPassphrase) // empty is unset
	haveEnv := env != ""
	n := 0
	for _, set := range []bool{o.PassphraseFile != "", haveEnv, o.KeyFile != ""} {
		if set {
			n++
		}
	}
	switch {
	case n == 0:
		return nil, errNoSecret
	case n > 1:
		return nil, errors.New("give only one of --passphrase-file, MOAT_PASSPHRASE and --key-file")
	case haveEnv:
		return &storeSecret{passphrase: []byte(env)}, nil
	case o.PassphraseFile != "":
		b, err := os.ReadFile(o.PassphraseFile)
		if err != nil {
			return nil, fmt.Errorf("--passphrase-file: %w", err)
		}
		line, _, _ := bytes.Cut(b, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		p := bytes.Clone(line)
		clear(b)
		if len(p) == 0 {
			return nil, fmt.Errorf("--passphrase-file: %s: empty passphrase", o.PassphraseFile)
		}
		return &storeSecret{passphrase: p}, nil
	}
	key, err := readKeyFile(o.KeyFile)
	if errors.Is(err, os.ErrNotExist) && create {
		key, err = newKeyFile(o.KeyFile)
	}
	if err != nil {
		return nil, fmt.Errorf("--key-file: %w", err)
	}
	return &storeSecret{key: key}, nil
}

// readKeyFile reads a key file: the key in hex on one line, in a file
// that is not group- or world-readable.
func readKeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	if err := service.CheckPrivateFile(path); err != nil {
		return nil, err
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) != keyFileSize {
		clear(key)
		return nil, fmt.Errorf("%s: not a key file (%d bytes in hex on one line)", path, keyFileSize)
	}
	return key, nil
}

// newKeyFile generates a key and writes it to a new file, mode 0600.
func newKeyFile(path string) ([]byte, error) {
	key := make([]byte, keyFileSize)
	rand.Read(key)
	enc := []byte(hex.EncodeToString(key) + "\n")
	defer clear(enc)
	if err := service.WriteFileExclusive(path, enc, 0o600); err != nil {
		return nil, err
	}
	return key, nil
}
