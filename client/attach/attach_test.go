package attach_test

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-im/moat/client/attach"
	"github.com/moat-im/moat/server/store/blob"
	"github.com/moat-im/moat/server/store/blob/fsblob"
)

const (
	F = attach.FirstSegmentPlaintext
	C = attach.SegmentPlaintext
)

func TestCiphertextSize(t *testing.T) {
	for _, tc := range []struct{ p, n, c int64 }{
		{0, 1, 56}, {1, 1, 57}, {F, 1, 1 << 20}, {F + 1, 2, 1<<20 + 17}, {F + C, 2, 2 << 20},
		{F + C + 1, 3, 2<<20 + 17}, {256 << 20, 257, 268_439_608},
	} {
		if n, c := attach.Segments(tc.p), attach.CiphertextSize(tc.p); n != tc.n || c != tc.c {
			t.Errorf("P=%d: n=%d size=%d, want %d %d", tc.p, n, c, tc.n, tc.c)
		}
	}
}

// TestRoundTrip uploads and downloads plaintexts around segment and chunk
// boundaries; Upload checks that it produced CiphertextSize(PaddedSize(P))
// bytes.
func TestRoundTrip(t *testing.T) {
	e := newEnv(t, nil)
	opts := &attach.Options{ChunkSize: 700_000, Backoff: time.Millisecond}
	for i, p := range []int64{0, 1, F - 1, F, F + 1, F + C, F + C + 1, 3*C + 17} {
		ref, err := attach.Upload(bg, e.dev, gen(uint64(i), p), p, opts)
		ok(t, err)
		if ref.PlaintextSize != p || ref.CiphertextSize != attach.CiphertextSize(attach.PaddedSize(p)) {
			t.Fatalf("P=%d: reference %d %d", p, ref.PlaintextSize, ref.CiphertextSize)
		}
		// The reference travels as bytes.
		ref = must(attach.ParseReference(must(ref.Marshal())))
		c := newChecker(uint64(i))
		ok(t, attach.Download(bg, e.anon, ref, c, opts))
		if c.bad != nil || c.n != p {
			t.Fatalf("P=%d: got %d bytes: %v", p, c.n, c.bad)
		}
	}
}

func TestUploadSizeMismatch(t *testing.T) {
	e := newEnv(t, nil)
	_, err := attach.Upload(bg, e.dev, gen(1, 999), 1000, nil)
	if !errors.Is(err, attach.ErrSize) {
		t.Fatalf("short reader: %v", err)
	}
	_, err = attach.Upload(bg, e.dev, gen(1, 1001), 1000, nil)
	if !errors.Is(err, attach.ErrSize) {
		t.Fatalf("long reader: %v", err)
	}
	for _, p := range []int64{-1, attach.MaxPlaintextSize + 1} {
		if _, err := attach.Upload(bg, e.dev, gen(1, 0), p, nil); !errors.Is(err, attach.ErrSize) {
			t.Fatalf("size %d: %v", p, err)
		}
	}
	// Over the relay's limit: refused at creation (413), nothing sent.
	_, err = attach.Upload(bg, e.dev, gen(1, 5<<30), 5<<30, nil)
	if !errors.Is(err, attach.ErrTooLarge) || e.faults.count("PATCH upload") != 0 {
		t.Fatalf("5 GiB: %v", err)
	}
}

// TestResumableUpload interrupts an upload and a download in every way the
// transport can — answers lost after the relay committed a chunk, request
// bodies cut halfway, 503s, a relay restart that forgets the session, a
// response body cut halfway — and checks that both resume from the relay's
// committed offset and deliver the file intact.
func TestResumableUpload(t *testing.T) {
	e := newEnv(t, nil)
	e.faults.env = e
	const size = 10 << 20
	e.faults.plan = func(k string, n int) fault {
		switch k {
		case "PATCH upload":
			return map[int]fault{2: dropAnswer, 4: cutRequest, 5: answer503, 7: restart, 9: dropAnswer, 10: cutRequest}[n]
		case "GET upload":
			return map[int]fault{2: answer503}[n]
		case "POST finalize":
			return map[int]fault{1: dropAnswer}[n]
		case "GET blob":
			return map[int]fault{1: cutAnswer, 2: cutAnswer, 3: answer503}[n]
		}
		return pass
	}
	opts := &attach.Options{ChunkSize: 1 << 20, Backoff: time.Millisecond}
	ref, err := attach.Upload(bg, e.dev, gen(7, size), size, opts)
	ok(t, err)
	c := newChecker(7)
	ok(t, attach.Download(bg, e.anon, ref, c, opts))
	if c.bad != nil || c.n != size {
		t.Fatalf("got %d bytes: %v", c.n, c.bad)
	}
	e.faults.mu.Lock()
	defer e.faults.mu.Unlock()
	if e.faults.injected[dropAnswer] != 3 || e.faults.injected[cutRequest] != 2 || e.faults.injected[answer503] != 3 ||
		e.faults.injected[restart] != 1 || e.faults.injected[cutAnswer] != 2 {
		t.Fatalf("faults injected: %v", e.faults.injected)
	}
	// Chunks ≈ 11 of 1 MiB: the 6 failed PATCHes were resent, and the
	// client asked for the committed offset after each failure.
	if e.faults.counts["GET upload"] < 5 || e.faults.counts["POST /relay/v1/auth/session"] != 2 {
		t.Fatalf("requests: %v", e.faults.counts)
	}
}

// TestResumeGivesUp: a relay that keeps failing ends the upload with the
// error after Retries attempts.
func TestResumeGivesUp(t *testing.T) {
	e := newEnv(t, nil)
	e.faults.plan = func(k string, n int) fault {
		if k == "PATCH upload" {
			return answer503
		}
		return pass
	}
	_, err := attach.Upload(bg, e.dev, gen(1, 3<<20), 3<<20, &attach.Options{Retries: 3, Backoff: time.Millisecond})
	if err == nil || e.faults.count("PATCH upload") != 4 {
		t.Fatalf("err %v after %d PATCHes", err, e.faults.count("PATCH upload"))
	}
}

// TestDownloadNotFound: an unknown or expired blob is ErrNotFound.
func TestDownloadNotFound(t *testing.T) {
	e := newEnv(t, nil)
	ref := must(attach.Upload(bg, e.dev, gen(1, 10), 10, nil))
	ref.ID[0] ^= 1
	if err := attach.Download(bg, e.anon, ref, io.Discard, nil); !errors.Is(err, attach.ErrNotFound) {
		t.Fatalf("%v", err)
	}
}

// TestLargeAttachmentStreamed streams a file from a generator through
// Upload, a relay on loopback HTTP with the file blob store, and Download
// into a comparing writer, and asserts that the heap never grows by a
// quarter of the file or 64 MiB, whichever is less: the file is never in
// memory (one upload chunk and a few segments are, about 8 MiB). 256 MiB;
// 128 MiB with -short, enough that buffering the file fails the bound;
// 2 GiB with MOAT_LONG=1.
func TestLargeAttachmentStreamed(t *testing.T) {
	size := int64(256 << 20)
	if testing.Short() {
		size = 128 << 20
	}
	if os.Getenv("MOAT_LONG") == "1" {
		size = 2 << 30
	}
	store := must(fsblob.Open(bg, fsblob.Options{Dir: t.TempDir(), DiskReserve: -1}))
	defer store.Close()
	e := newEnv(t, store)

	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
	ref, err := attach.Upload(bg, e.dev, gen(42, size), size, nil)
	ok(t, err)
	c := newChecker(42)
	err = attach.Download(bg, e.anon, ref, c, nil)
	close(stop)
	wg.Wait()
	ok(t, err)
	if c.bad != nil || c.n != size {
		t.Fatalf("got %d bytes: %v", c.n, c.bad)
	}
	growth := int64(peak.Load()) - int64(base.HeapInuse)
	t.Logf("%d MiB: heap in use grew by at most %.1f MiB", size>>20, float64(growth)/(1<<20))
	if growth >= min(64<<20, size/4) {
		t.Fatalf("heap in use grew by %d MiB streaming %d MiB", growth>>20, size>>20)
	}
}

// TestT39AttachmentStoreCorruption: a bit flipped in the relay's blob
// file makes the relay end the download early (its CRC check), and the
// client refuses the attachment (ErrTruncated after its retries), having
// written only authenticated segments.
func TestT39AttachmentStoreCorruption(t *testing.T) {
	dir := t.TempDir()
	store := must(fsblob.Open(bg, fsblob.Options{Dir: dir, DiskReserve: -1}))
	defer store.Close()
	e := newEnv(t, store)
	const size = 3 << 20
	ref := must(attach.Upload(bg, e.dev, gen(3, size), size, &attach.Options{ChunkSize: 8 << 20}))
	flipInBlobFile(t, dir, 2<<20+100<<10) // in segment 2, past its first CRC block
	c := newChecker(3)
	err := attach.Download(bg, e.anon, ref, c, &attach.Options{Retries: 2, Backoff: time.Millisecond})
	if !errors.Is(err, attach.ErrTruncated) && !errors.Is(err, attach.ErrTampered) {
		t.Fatalf("%v", err)
	}
	if c.bad != nil || c.n != F+C {
		t.Fatalf("writer received %d bytes (%v), want the first two segments", c.n, c.bad)
	}
}

// TestAttachmentKeyNotPrinted: printing a Key or a Reference does not
// reveal the key.
func TestAttachmentKeyNotPrinted(t *testing.T) {
	ref := &attach.Reference{ID: blob.ID{1}}
	rand.Read(ref.Key[:])
	for _, s := range []string{fmt.Sprint(ref.Key), fmt.Sprintf("%v %+v %#v %s", ref, *ref, *ref, ref.Key)} {
		for _, enc := range []string{hex.EncodeToString(ref.Key[:4]), fmt.Sprint(ref.Key[0], " ", ref.Key[1], " ", ref.Key[2])} {
			if strings.Contains(s, enc) {
				t.Fatalf("key in %q", s)
			}
		}
	}
}

// TestUploadQuota: a spent device budget is ErrQuota at once, not retried.
func TestUploadQuota(t *testing.T) {
	e := newEnv(t, nil)
	e.opts.AttachmentLimits.DeviceBudget.PerSecond = 0.001
	e.opts.AttachmentLimits.DeviceBudget.Burst = 1 << 20
	e.restart()
	_, err := attach.Upload(bg, e.dev, gen(1, 600<<10), 600<<10, nil)
	ok(t, err)
	_, err = attach.Upload(bg, e.dev, gen(1, 600<<10), 600<<10, nil)
	if !errors.Is(err, attach.ErrQuota) || e.faults.count("POST /relay/v1/attachments") != 2 {
		t.Fatalf("%v after %d creations", err, e.faults.count("POST /relay/v1/attachments"))
	}
}

// TestRoundTripHTTP2TLS: upload and download over HTTP/2 and TLS, with
// device authentication bound to the TLS channel.
func TestRoundTripHTTP2TLS(t *testing.T) {
	e := newEnvTLS(t, nil, true)
	const size = 3<<20 + 5
	ref, err := attach.Upload(bg, e.dev, gen(9, size), size, &attach.Options{ChunkSize: 1 << 20})
	ok(t, err)
	c := newChecker(9)
	ok(t, attach.Download(bg, e.anon, ref, c, nil))
	if c.bad != nil || c.n != size {
		t.Fatalf("got %d bytes: %v", c.n, c.bad)
	}
	// The transport the clients use speaks HTTP/2 to the relay.
	resp, err := (&http.Client{Transport: e.faults.base}).Get(e.srv.URL + "/healthz")
	ok(t, err)
	resp.Body.Close()
	if resp.Proto != "HTTP/2.0" || resp.TLS == nil {
		t.Fatalf("served %s", resp.Proto)
	}
}
