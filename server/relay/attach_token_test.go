package relay_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moat-im/moat/server/relay"
	"github.com/moat-im/moat/server/store/blob/fsblob"
)

func TestUploadTokenText(t *testing.T) {
	var tok relay.UploadToken
	for i := range tok {
		tok[i] = byte(i * 7)
	}
	s := relay.FormatUploadToken(&tok)
	if len(s) != 43 || strings.ContainsAny(s, "+/=") {
		t.Fatalf("text %q", s)
	}
	if got, err := relay.ParseUploadToken(s); err != nil || got != tok {
		t.Fatalf("parse: %v", err)
	}
	// The last character carries 4 unused bits, which must be zero: "A"
	// ends a token of all zeros, "B" would set an unused bit.
	zero := strings.Repeat("A", 43)
	if _, err := relay.ParseUploadToken(zero); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", zero[:42], zero + "A", zero[:42] + "B", zero[:42] + "=",
		zero[:41] + "+A", zero[:41] + "/A", zero[:41] + " A", strings.Repeat("A", 44) + "=", s[:42] + "\x00"} {
		if _, err := relay.ParseUploadToken(bad); !errors.Is(err, relay.ErrMalformed) {
			t.Errorf("%q: %v", bad, err)
		}
	}
	// Formatting with %v, %+v, %#v or %s never shows the token.
	for _, f := range []string{"%v", "%+v", "%#v", "%s", "%x"} {
		out := fmt.Sprintf(f, tok) + fmt.Sprintf(f, relay.AttachmentUpload{Token: tok}) + fmt.Sprintf(f, &relay.AttachmentUpload{Token: tok})
		if strings.Contains(out, s) || strings.Contains(out, fmt.Sprintf("%x", tok[:])) || strings.Contains(out, fmt.Sprint(tok[:])) {
			t.Errorf("%s shows the token: %s", f, out)
		}
	}
}

// FuzzUploadToken: a text ParseUploadToken accepts is the one text of its
// token, and every token formats to a text that parses back to it.
func FuzzUploadToken(f *testing.F) {
	f.Add("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", []byte{})
	f.Add("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB", bytes.Repeat([]byte{0xff}, 32))
	f.Add("_-__________________________________________", []byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, s string, raw []byte) {
		if tok, err := relay.ParseUploadToken(s); err == nil {
			if relay.FormatUploadToken(&tok) != s {
				t.Fatalf("%q parses to a token whose text is %q", s, relay.FormatUploadToken(&tok))
			}
		} else if !errors.Is(err, relay.ErrMalformed) {
			t.Fatalf("untyped error %v", err)
		}
		var tok relay.UploadToken
		copy(tok[:], raw)
		if got, err := relay.ParseUploadToken(relay.FormatUploadToken(&tok)); err != nil || got != tok {
			t.Fatalf("round trip of %x: %v", tok[:], err)
		}
	})
}

// TestAttachmentUploadSurvivesRestart: over the durable blob store (as
// moatd serve runs it), an upload resumes after a relay restart under the
// same upload token, whose hash the store kept; the id alone, or the
// token of another device, still gets nothing.
func TestAttachmentUploadSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	open := func() *fsblob.Store {
		s := must(fsblob.Open(ctx, fsblob.Options{Dir: dir, DiskReserve: -1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}))
		t.Cleanup(func() { s.Close() })
		return s
	}
	store := open()
	w := newWorld(t, worldOptions{})
	w.srv.Close()
	w.relay.Close()
	w.opts.Blobs = store
	w.start()
	a, b := w.newDevice(tenantA, 0, 0), w.newDevice(tenantA, 0, 0)
	data := bytes.Repeat([]byte("ciphertext"), 1000)
	up, err := a.c.CreateAttachment(ctx, int64(len(data)), time.Now().Add(time.Hour))
	ok(t, err)
	_, err = a.c.AppendAttachment(ctx, up, 0, data[:4000])
	ok(t, err)

	w.srv.Close()
	w.relay.Close()
	ok(t, store.Close())
	w.opts.Blobs = open()
	w.start()
	a.c, b.c = w.client(a), w.client(b)

	st, err := a.c.AttachmentUploadStatus(ctx, up)
	ok(t, err)
	if st.Committed != 4000 || st.Final {
		t.Fatalf("status after restart: %+v", st)
	}
	// b, with a's token, and a with another token: as if there were no
	// such upload.
	_, err = b.c.AppendAttachment(ctx, up, 4000, data[4000:])
	wantStatus(t, err, http.StatusNotFound)
	other := *up
	other.Token[0] ^= 1
	_, err = a.c.AppendAttachment(ctx, &other, 4000, data[4000:])
	wantStatus(t, err, http.StatusNotFound)
	wantStatus(t, a.c.FinalizeAttachment(ctx, &other), http.StatusNotFound)

	_, err = a.c.AppendAttachment(ctx, up, 4000, data[4000:])
	ok(t, err)
	ok(t, a.c.FinalizeAttachment(ctx, up))
	body, n, err := w.anon().DownloadAttachment(ctx, up.ID, 0)
	ok(t, err)
	got := must(io.ReadAll(body))
	body.Close()
	if n != int64(len(data)) || !bytes.Equal(got, data) {
		t.Fatal("download after the resumed upload differs")
	}
	if m := metricsText(t, w); !strings.Contains(m, `moat_relay_attachment_requests_total{op="append",result="denied"} 2`) {
		t.Error("refused appends not counted as denied")
	}
}
