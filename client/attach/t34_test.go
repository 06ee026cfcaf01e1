package attach_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moat-im/moat/client/attach"
	"github.com/moat-im/moat/server/relay"
	"github.com/moat-im/moat/server/store/blob/fsblob"
)

// TestT34AttachmentRelayHoldsCiphertext: after an upload and a download,
// no file of the relay's blob store holds the plaintext, the file key or
// the digest, and the relay's log holds neither the blob id nor the key.
func TestT34AttachmentRelayHoldsCiphertext(t *testing.T) {
	dir := t.TempDir()
	store := must(fsblob.Open(bg, fsblob.Options{Dir: dir, DiskReserve: -1}))
	defer store.Close()
	e := newEnv(t, store)
	marker := []byte("MOAT-PLAINTEXT-MARKER ")
	plain := bytes.Repeat(marker, 100_000)
	ref := must(attach.Upload(bg, e.dev, bytes.NewReader(plain), int64(len(plain)), &attach.Options{ChunkSize: 1 << 20}))
	var got bytes.Buffer
	ok(t, attach.Download(bg, e.anon, ref, &got, nil))
	if !bytes.Equal(got.Bytes(), plain) {
		t.Fatal("round trip")
	}
	files := 0
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		files++
		b := must(os.ReadFile(p))
		for name, secret := range map[string][]byte{"plaintext": marker, "key": ref.Key[:16], "digest": ref.Digest[:16]} {
			if bytes.Contains(b, secret) {
				t.Errorf("%s in %s", name, p)
			}
		}
		return nil
	})
	if files == 0 {
		t.Fatal("no stored files")
	}
	logs := e.logs.String()
	for name, s := range map[string]string{"id": hex.EncodeToString(ref.ID[:]), "key": hex.EncodeToString(ref.Key[:])} {
		if strings.Contains(strings.ToLower(logs), s[:16]) {
			t.Errorf("%s in the relay log", name)
		}
	}
}

// lossyRelay forgets committed bytes after the first chunk: its status
// answers 0 after an append fails.
type lossyRelay struct {
	attach.Relay
	appends int
}

func (l *lossyRelay) AppendAttachment(ctx context.Context, u *relay.AttachmentUpload, off int64, chunk []byte) (int64, error) {
	l.appends++
	if l.appends == 2 {
		return 0, errors.New("injected: connection reset")
	}
	return l.Relay.AppendAttachment(ctx, u, off, chunk)
}

func (l *lossyRelay) AttachmentUploadStatus(ctx context.Context, u *relay.AttachmentUpload) (*relay.AttachmentStatus, error) {
	st, err := l.Relay.AttachmentUploadStatus(ctx, u)
	if err == nil {
		st.Committed = 0
	}
	return st, err
}

// TestUploadRelayLostBytes: a relay whose committed offset goes back
// below what it acknowledged fails the upload with ErrRelay.
func TestUploadRelayLostBytes(t *testing.T) {
	e := newEnv(t, nil)
	_, err := attach.Upload(bg, &lossyRelay{Relay: e.dev}, gen(1, 3<<20), 3<<20,
		&attach.Options{ChunkSize: 1 << 20, Backoff: 1})
	if !errors.Is(err, attach.ErrRelay) {
		t.Fatalf("%v", err)
	}
}
