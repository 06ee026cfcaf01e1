package atomicfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moat-im/moat/internal/faultfs"
	"github.com/moat-im/moat/internal/vfs"
)

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "key")
	for _, content := range []string{"first", "second, longer"} {
		if err := WriteFile(file, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(file)
		if err != nil || string(got) != content {
			t.Fatalf("read back %q, %v; want %q", got, err, content)
		}
		fi, err := os.Stat(file)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("mode %v, %v", fi.Mode(), err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), TempPrefix) {
			t.Fatalf("temporary file left behind: %s", e.Name())
		}
	}
}

func TestWriteFileMissingDirectory(t *testing.T) {
	if err := WriteFile(filepath.Join(t.TempDir(), "absent", "key"), []byte("x"), 0o600); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
}

// TestWriteFileFaults: a full disk or a failed sync leaves the old
// contents and no temporary file.
func TestWriteFileFaults(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "state")
	if err := WriteFile(file, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	inj := faultfs.New()
	fsys := faultfs.FS(vfs.OS, inj)
	for name, fault := range map[string]func(){
		"disk full":   func() { inj.SetFull(true) },
		"short write": func() { inj.SetWriteBudget(3) },
		"failed sync": func() { inj.FailSyncs(1) },
	} {
		fault()
		err := WriteFileFS(fsys, file, []byte("new contents"), 0o600)
		if err == nil {
			t.Fatalf("%s: write succeeded", name)
		}
		inj.SetFull(false)
		inj.FailSyncs(0)
		if got, _ := os.ReadFile(file); string(got) != "old" {
			t.Fatalf("%s: contents %q", name, got)
		}
		entries, _ := os.ReadDir(dir)
		if len(entries) != 1 {
			t.Fatalf("%s: %d files left", name, len(entries))
		}
	}
	if err := WriteFileFS(fsys, file, []byte("new"), 0o600); err != nil {
		t.Fatalf("after the faults cleared: %v", err)
	}
}
