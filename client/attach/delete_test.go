package attach_test

import (
	"errors"
	"io"
	"testing"
	"time"

	"github.com/moat-im/moat/client/attach"
	"github.com/moat-im/moat/server/relay"
)

// TestDelete: the uploader deletes its blob with the token UploadOwned
// returned; recipients then get ErrNotFound. A delete whose answer is
// lost is retried and the retry's 404 counts as done; a 503 is retried;
// a repeated delete succeeds; a wrong token deletes nothing and, like an
// already deleted blob, is not an error (the relay does not tell them
// apart).
func TestDelete(t *testing.T) {
	e := newEnv(t, nil)
	opts := &attach.Options{Backoff: time.Millisecond}
	ref, tok, err := attach.UploadOwned(bg, e.dev, gen(1, 1000), 1000, opts)
	ok(t, err)
	wrong := relay.UploadToken{9}
	ok(t, attach.Delete(bg, e.dev, ref.ID, &wrong, opts))
	ok(t, attach.Download(bg, e.anon, ref, io.Discard, opts)) // still there

	// The first DELETE's answer is lost after the relay deleted; the
	// second gets a 503; the third a 404, which is success.
	e.faults.plan = func(k string, n int) fault {
		if k == "DELETE blob" {
			return map[int]fault{1: dropAnswer, 2: answer503}[n]
		}
		return pass
	}
	ok(t, attach.Delete(bg, e.dev, ref.ID, tok, opts))
	if n := e.faults.count("DELETE blob"); n != 3 {
		t.Fatalf("%d DELETE requests, want 3", n)
	}
	if err := attach.Download(bg, e.anon, ref, io.Discard, opts); !errors.Is(err, attach.ErrNotFound) {
		t.Fatalf("download after delete: %v", err)
	}
	ok(t, attach.Delete(bg, e.dev, ref.ID, tok, opts))
	if err := attach.Delete(bg, e.dev, ref.ID, nil, opts); !errors.Is(err, attach.ErrMalformedReference) {
		t.Fatalf("delete without a token: %v", err)
	}
	// A session that cannot authenticate is an error, not a success.
	e.faults.plan = nil
	d := &relay.Client{BaseURL: e.dev.BaseURL, Name: e.dev.Name, RelayKey: e.dev.RelayKey, HTTP: e.dev.HTTP,
		Device: &relay.DeviceCredentials{Tenant: e.dev.Device.Tenant, Device: [16]byte{0xee}, Key: e.dev.Device.Key}}
	if err := attach.Delete(bg, d, ref.ID, tok, opts); err == nil {
		t.Fatal("delete by an unknown device succeeded")
	}
}
