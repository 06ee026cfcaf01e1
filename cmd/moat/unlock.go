package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/moat-im/moat/client/localstore"
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

// storeSecret unlocks the local store: a passphrase, which the store
// stretches with Argon2id, or a key file of 32 random bytes
// (docs/spec/client-store.md §Key derivation). Exactly one is set.
type storeSecret struct {
	passphrase []byte
	keyFile    string
}

// wipe overwrites the passphrase in memory (best effort: Go may have
// copied it).
func (s *storeSecret) wipe() {
	clear(s.passphrase)
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
	_, err := os.Stat(o.KeyFile)
	if errors.Is(err, os.ErrNotExist) && create {
		err = localstore.CreateKeyFile(o.KeyFile)
	}
	if err == nil {
		err = service.CheckPrivateFile(o.KeyFile)
	}
	if err != nil {
		return nil, fmt.Errorf("--key-file: %w", err)
	}
	return &storeSecret{keyFile: o.KeyFile}, nil
}
