package client_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/moat-im/moat/client"
	"github.com/moat-im/moat/client/attach"
)

// TestSendFile: Bob's first device sends a file to Alice (two devices);
// both of Alice's devices and Bob's own second device download it, and
// what they wrote is the file. A download that names a file already
// there, a reference whose size disagrees with the message, and a
// reference to a tampered digest are refused and leave no file.
func TestSendFile(t *testing.T) {
	w := newWorld(t)
	b2 := enrol(t, w.s, w.bob, w.b1)
	w.s.Publish()
	ctx := context.Background()
	dir := t.TempDir()
	data := make([]byte, 3<<20+12345) // several segments, several upload chunks
	rand.Read(data)
	src := filepath.Join(dir, "minutes.txt")
	ok(t, os.WriteFile(src, data, 0o600))

	id, err := w.b1.SendFile(ctx, w.alice, src, &client.FileOptions{Caption: "the minutes",
		Attach: &attach.Options{ChunkSize: 1 << 20}})
	ok(t, err)
	if !bytes.Contains([]byte(w.s.Logs.String()), []byte("POST /relay/v1/attachments")) {
		t.Fatal("the relay logged no upload") // TestSendFileUnverifiedRecipient relies on it
	}
	syncAll(t, w.a1, w.a2, b2)
	for i, d := range []*device{w.a1, w.a2, b2} {
		conv := w.bob
		if d == b2 {
			conv = w.alice
		}
		r := only(t, history(t, d, conv))
		if r.ID != id || r.Kind != client.KindAttachment || r.Text != "the minutes" || r.Attachment == nil ||
			r.Attachment.Name != "minutes.txt" || r.Attachment.MediaType != "text/plain; charset=utf-8" ||
			r.Attachment.Size != uint64(len(data)) {
			t.Fatalf("device %d: record %+v", i, r)
		}
		out := filepath.Join(dir, "got", r.ID.String()+"-"+string(rune('a'+i)))
		ok(t, os.MkdirAll(filepath.Dir(out), 0o700))
		ok(t, d.DownloadAttachment(ctx, r.Attachment, out, nil))
		got, err := os.ReadFile(out)
		ok(t, err)
		if !bytes.Equal(got, data) {
			t.Fatalf("device %d: downloaded file differs from the one sent", i)
		}
		if err := d.DownloadAttachment(ctx, r.Attachment, out, nil); err == nil {
			t.Fatalf("device %d: a download replaced an existing file", i)
		}
		var buf bytes.Buffer
		ok(t, d.ReadAttachment(ctx, r.Attachment, &buf, nil))
		if !bytes.Equal(buf.Bytes(), data) {
			t.Fatalf("device %d: ReadAttachment differs from the file sent", i)
		}
	}

	// The size the message claims must be the reference's.
	r := only(t, history(t, w.a1, w.bob))
	lying := *r.Attachment
	lying.Size++
	bad := filepath.Join(dir, "bad")
	if err := w.a1.DownloadAttachment(ctx, &lying, bad, nil); !errors.Is(err, attach.ErrMalformedReference) {
		t.Fatalf("size mismatch: %v, want ErrMalformedReference", err)
	}
	// A reference whose digest is not the ciphertext's.
	ref, err := attach.ParseReference(r.Attachment.Ref)
	ok(t, err)
	ref.Digest[0] ^= 1
	tampered := *r.Attachment
	tampered.Ref, err = ref.Marshal()
	ok(t, err)
	if err := w.a1.DownloadAttachment(ctx, &tampered, bad, nil); !errors.Is(err, attach.ErrTampered) {
		t.Fatalf("tampered digest: %v, want ErrTampered", err)
	}
	if _, err := os.Lstat(bad); err == nil {
		t.Fatal("a refused download left a file")
	}
}

// TestSendFileUnverifiedRecipient: a file for a user the directory does
// not know is refused before anything is uploaded; so is a file name a
// message cannot carry.
func TestSendFileUnverifiedRecipient(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "f.bin")
	ok(t, os.WriteFile(src, []byte("data"), 0o600))
	var stranger client.UserID
	rand.Read(stranger[:])
	_, err := w.a1.SendFile(ctx, stranger, src, nil)
	var ue *client.UnverifiedContactError
	if !errors.As(err, &ue) {
		t.Fatalf("SendFile to an unknown user: %v, want *UnverifiedContactError", err)
	}
	long := string(bytes.Repeat([]byte("n"), 300))
	if _, err := w.a1.SendFile(ctx, w.bob, src, &client.FileOptions{Name: long}); !errors.Is(err, client.ErrInvalidMessage) {
		t.Fatalf("SendFile with a 300-byte name: %v, want ErrInvalidMessage", err)
	}
	if logs := w.s.Logs.String(); bytes.Contains([]byte(logs), []byte("POST /relay/v1/attachments")) {
		t.Fatal("a refused file was uploaded")
	}
}
