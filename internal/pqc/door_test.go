package pqc

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// doorOnly are the circl packages with AVX2 code that returns without
// VZEROUPPER. Outside tests, only this package may import them.
var doorOnly = []string{
	"github.com/cloudflare/circl/kem/mlkem",
	"github.com/cloudflare/circl/kem/xwing",
	"github.com/cloudflare/circl/kem/kyber",
	"github.com/cloudflare/circl/pke/kyber",
	"github.com/cloudflare/circl/sign/mldsa",
	"github.com/cloudflare/circl/sign/dilithium",
	"github.com/cloudflare/circl/simd",
}

// TestOnlyDoor fails if a non-test Go file outside internal/pqc imports
// one of doorOnly, so that no call site can forget to clear the vector
// state.
func TestOnlyDoor(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not at %s: %v", root, err)
	}
	self, _ := filepath.Abs(".")
	fset := token.NewFileSet()
	files := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path == self || (path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		files++
		for _, im := range f.Imports {
			p, _ := strconv.Unquote(im.Path.Value)
			for _, banned := range doorOnly {
				if p == banned || strings.HasPrefix(p, banned+"/") {
					rel, _ := filepath.Rel(root, path)
					t.Errorf("%s imports %s: use internal/pqc", rel, p)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 100 {
		t.Fatalf("read only %d files under %s", files, root)
	}
}
