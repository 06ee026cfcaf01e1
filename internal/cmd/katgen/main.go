// Command katgen writes Moat's known-answer vectors for PQXDH and the
// post-quantum Double Ratchet (internal/kat) to the packages' testdata.
// Run it from the module root:
//
//	go run ./internal/cmd/katgen
//
// The vectors pin Moat's derivations and wire formats, and the tests of
// crypto/pqxdh and crypto/ratchet fail when Generate no longer reproduces
// them. Re-run katgen only for an intended, reviewed format change.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/moat-im/moat/internal/kat"
)

func main() {
	out := flag.String("out", kat.RatchetPath, "where to write the ratchet vectors")
	pqxdhOut := flag.String("pqxdh-out", kat.PQXDHPath, "where to write the PQXDH vectors")
	flag.Parse()
	if err := run(*out, *pqxdhOut); err != nil {
		fmt.Fprintln(os.Stderr, "katgen:", err)
		os.Exit(1)
	}
}

func run(ratchetPath, pqxdhPath string) error {
	v, err := kat.Generate()
	if err != nil {
		return err
	}
	pq, err := v.PQXDHJSON()
	if err != nil {
		return err
	}
	rt, err := v.RatchetJSON()
	if err != nil {
		return err
	}
	for _, f := range []struct {
		path string
		data []byte
		n    int
	}{{pqxdhPath, pq, len(v.PQXDH)}, {ratchetPath, rt, len(v.Ratchet)}} {
		if err := os.MkdirAll(filepath.Dir(f.path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(f.path, f.data, 0o644); err != nil {
			return err
		}
		fmt.Printf("wrote %s: %d vectors, %d bytes\n", f.path, f.n, len(f.data))
	}
	return nil
}
