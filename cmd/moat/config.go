package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"github.com/moat-im/moat/internal/atomicfile"
)

// The data directory:
//
//	DIR/moat.json   where the device's organisation runs its server (no secret)
//	DIR/store/      the sealed local store: keys, sessions, contacts, history
const (
	configFile = "moat.json"
	storeDir   = "store"
)

// deviceConfig is DIR/moat.json: what the client SDK needs to reach the
// organisation's services, which the sealed store does not hold. The
// trust anchors (trust bundle, relay key) are pinned inside the store.
type deviceConfig struct {
	// Server is the base URL of moatd serve: the key directory and the
	// relay on one listener.
	Server string `json:"server"`
}

// checkServer checks a server URL: http or https with a host, nothing
// else (no query, no fragment, no credentials).
func checkServer(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("server URL %q: %w", s, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("server URL %q: want http(s)://host[:port][/path]", s)
	}
	return nil
}

// readConfig reads DIR/moat.json.
func readConfig(dir string) (*deviceConfig, error) {
	b, err := os.ReadFile(filepath.Join(dir, configFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s holds no enrolled device (moat enrol first)", dir)
	}
	if err != nil {
		return nil, err
	}
	var c deviceConfig
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, configFile), err)
	}
	if err := checkServer(c.Server); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, configFile), err)
	}
	return &c, nil
}

// writeConfig writes DIR/moat.json atomically.
func writeConfig(dir string, c *deviceConfig) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, configFile), append(b, '\n'), 0o600)
}
