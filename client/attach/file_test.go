package attach_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/moat-im/moat/client/attach"
)

// TestFiles: UploadFile and DownloadFile round trip; a tampered download
// leaves neither the target nor a temporary file; an existing target is
// not replaced.
func TestFiles(t *testing.T) {
	e := newEnv(t, nil)
	dir := t.TempDir()
	src := filepath.Join(dir, "in.bin")
	data := bytes.Repeat([]byte("0123456789"), 300_000)
	ok(t, os.WriteFile(src, data, 0o600))
	ref := must(attach.UploadFile(bg, e.dev, src, nil))

	out := filepath.Join(dir, "out", "got.bin")
	ok(t, os.Mkdir(filepath.Dir(out), 0o700))
	ok(t, attach.DownloadFile(bg, e.anon, ref, out, nil))
	if got := must(os.ReadFile(out)); !bytes.Equal(got, data) {
		t.Fatal("content differs")
	}
	if st := must(os.Stat(out)); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
	if err := attach.DownloadFile(bg, e.anon, ref, out, nil); err == nil {
		t.Fatal("replaced an existing file")
	}

	ct := fetch(t, e, ref)
	ct[2*S+5] ^= 1
	bad := filepath.Join(dir, "out", "bad.bin")
	err := attach.DownloadFile(bg, &evilRelay{Relay: e.anon, ct: ct}, ref, bad, nil)
	if !errors.Is(err, attach.ErrTampered) {
		t.Fatalf("%v", err)
	}
	if ents := must(os.ReadDir(filepath.Dir(bad))); len(ents) != 1 || ents[0].Name() != "got.bin" {
		t.Fatalf("left behind: %v", ents)
	}
	if _, err := attach.UploadFile(bg, e.dev, dir, nil); err == nil {
		t.Fatal("uploaded a directory")
	}
}
